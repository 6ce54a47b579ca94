/**
 * The guided denoiser (METHOD.md §4, Alg 6): wraps any {@link Denoiser} so that
 *   eps_hat = eps_theta(x_t, t) - w(t) s g(x_t),
 * and so DDIM and DDPM both become guided without changing the samplers (k-diffusion style).
 * @module
 */
import type { Denoiser } from "../sampler/loop.ts";
import { abarAt, type VarianceKind } from "../schedule.ts";
import { ddpmCoefficients } from "../sampler/ddpm.ts";
import {
  type Accumulate,
  type DirectionSpec,
  type EnergySource,
  guidanceDirection,
  imageNorms,
} from "./directions.ts";
import { guidanceFactor, type StrengthSchedule } from "./strength.ts";
import { NonFiniteError } from "../errors.ts";
import { firstNonFinite } from "../sampler/finite.ts";

/** Where the classifier looks: x_t (the thesis) or x0_hat (MPGD-style, no UNet backprop). */
export type GuidancePoint = "xt" | "x0";

/**
 * How the direction enters the step: `eps` (Alg 6: eps_hat = eps - w s g), or `mean-shift`
 * (Dhariwal and Nichol: the DDPM posterior mean moves by w s sigma_t^2 g; DDPM sampler only).
 */
export type GuidanceForm = "eps" | "mean-shift";

/** Per-step guidance statistics (for logs and run.json). */
export interface GuidanceStepInfo {
  /** 0-based step index. */
  stepIndex: number;
  /** Timestep t of the step. */
  t: number;
  /** s * w(t) (0 when guidance is off). */
  factor: number;
  /** Positions of this call's images in the whole run (0-based). */
  items: readonly number[];
  /** Per image, at the evaluation point: E(x,y), E(x), |g|. Empty when guidance is off. */
  energyXY: Float32Array;
  /** E(x) per image, at the evaluation point. */
  energyX: Float32Array;
  /** L2 norm of g per image, before any clipping. */
  gradNorm: Float64Array;
}

/** Everything guidance needs; a plain value. */
export interface GuidanceConfig {
  /** Energy source giving energies and gradients. */
  classifier: EnergySource;
  /** Which guidance direction to follow. */
  direction: DirectionSpec;
  /** Accumulation of the direction over several points (§4.3); none when absent. */
  accumulate?: Accumulate;
  /** The strength s (ignored by two-phase schedules, which carry their own strengths). */
  scale: number;
  /** Time weighting w(t) of the strength and its activation window. */
  strength: StrengthSchedule;
  /** Requested class of every image of the run, indexed by the loop's `items`. */
  labels: ArrayLike<number>;
  /** Where the classifier evaluates: x_t or x0_hat. */
  point: GuidancePoint;
  /** How the direction enters the step (`mean-shift` needs the DDPM sampler). */
  form: GuidanceForm;
  /** DDPM variance, for the mean-shift form. */
  variance?: VarianceKind;
  /** Per-image max L2 norm of g (no clipping when undefined). */
  clipGradNorm?: number;
  /** Called after every denoiser call with that step's statistics. */
  onStep?: (info: GuidanceStepInfo) => void;
}

/**
 * Returns a denoiser applying classifier guidance (Alg 6). Scale 0, or a step inside the
 * activation window (§4.3), returns the wrapped denoiser's eps unchanged, so the unguided sampler
 * is reproduced exactly.
 */
export function guided(denoiser: Denoiser, cfg: GuidanceConfig): Denoiser {
  if (cfg.clipGradNorm !== undefined && !(cfg.clipGradNorm > 0)) {
    throw new Error(`gradient-norm clip ${cfg.clipGradNorm} is invalid: use a number > 0`);
  }
  return async (x, t, ctx) => {
    const eps = await denoiser(x, t, ctx);
    const factor = guidanceFactor(
      cfg.strength,
      cfg.scale,
      t,
      ctx.stepIndex,
      ctx.steps,
      ctx.schedule,
    );
    if (factor === 0) {
      cfg.onStep?.({
        stepIndex: ctx.stepIndex,
        t,
        factor,
        items: ctx.items,
        energyXY: new Float32Array(),
        energyX: new Float32Array(),
        gradNorm: new Float64Array(),
      });
      return eps;
    }
    const n = ctx.n, per = x.length / n;
    const y = ctx.items.map((i) => {
      const c = cfg.labels[i];
      if (c === undefined) throw new Error(`no class label for image ${i} of the run`);
      return c;
    });
    const abar = abarAt(ctx.schedule, t);
    let at = x;
    if (cfg.point === "x0") {
      // x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar), clipped to the image range [-1, 1]
      at = new Float32Array(x.length);
      const sa = Math.sqrt(abar), s1a = Math.sqrt(1 - abar);
      for (let i = 0; i < x.length; i++) {
        const v = (x[i] - s1a * eps[i]) / sa;
        at[i] = v < -1 ? -1 : v > 1 ? 1 : v;
      }
    }
    // where a first non-finite value sits: step, t, image (run position), seed, flat index
    const located = (i: number) => {
      const k = Math.floor(i / per);
      return `step ${ctx.stepIndex + 1}/${ctx.steps} (t = ${t}, image ${ctx.items[k]}) ` +
        `[seed ${ctx.seeds[k]}, flat index ${i}]`;
    };
    const epsAt = firstNonFinite(eps);
    if (epsAt >= 0) {
      throw new NonFiniteError(
        `the denoiser returned ${eps[epsAt]} at ${located(epsAt)}, before guidance`,
        "the denoiser",
        eps[epsAt],
        epsAt,
      );
    }
    const dir = await guidanceDirection(cfg.direction, cfg.accumulate, cfg.classifier, at, n, y)
      .catch((e) => {
        if (!(e instanceof NonFiniteError) || e.where.startsWith("the ")) throw e;
        throw new NonFiniteError(
          `the classifier: ${e.message}`,
          `the classifier (${e.where})`,
          e.value,
          e.index,
        );
      });
    const g = dir.g;
    const gAt = firstNonFinite(g);
    if (gAt >= 0) {
      throw new NonFiniteError(
        `the classifier's guidance gradient holds ${g[gAt]} at ${located(gAt)}, evaluated ` +
          `${cfg.point === "x0" ? "at x0_hat" : "at x_t"}; lower --scale, add --clip-grad, or ` +
          `check the classifier`,
        "the classifier",
        g[gAt],
        gAt,
      );
    }
    const norms = imageNorms(g, n);
    if (cfg.clipGradNorm !== undefined) {
      for (let k = 0; k < n; k++) {
        if (norms[k] <= cfg.clipGradNorm) continue;
        const c = cfg.clipGradNorm / norms[k];
        for (let p = k * per; p < (k + 1) * per; p++) g[p] *= c;
      }
    }
    // eps form (Alg 6): eps_hat = eps - s w(t) g. Mean-shift form: the DDPM mean
    // mu = c0 x0_hat + ct x_t moves by s w(t) var g; since d mu / d eps = -c0 sqrt(1-abar)/sqrt(abar),
    // that is eps_hat = eps - s w(t) var sqrt(abar) / (c0 sqrt(1 - abar)) g (exact without x0 clipping).
    let k = factor;
    if (cfg.form === "mean-shift") {
      const { c0, variance } = ddpmCoefficients(ctx.schedule, t, cfg.variance ?? "fixed_small");
      k = factor * variance * Math.sqrt(abar) / (c0 * Math.sqrt(1 - abar));
    }
    const out = new Float32Array(eps.length);
    for (let i = 0; i < out.length; i++) out[i] = eps[i] - k * g[i];
    const outAt = firstNonFinite(out);
    if (outAt >= 0) {
      const gAbs = Math.abs(g[outAt]).toPrecision(3);
      throw new NonFiniteError(
        `the guidance arithmetic eps - s w(t) g (s w(t) = ${k.toPrecision(3)}) gave ` +
          `${out[outAt]} at ${located(outAt)} from a finite eps (the denoiser's) and g (the ` +
          `classifier's, |g| = ${gAbs}): it exceeds float32; lower --scale or add --clip-grad`,
        "the guidance arithmetic",
        out[outAt],
        outAt,
      );
    }
    cfg.onStep?.({
      stepIndex: ctx.stepIndex,
      t,
      factor,
      items: ctx.items,
      energyXY: dir.energyXY,
      energyX: dir.energyX,
      gradNorm: norms,
    });
    return out;
  };
}
