/**
 * The sampling loop: DDIM (Alg 5) or DDPM over any {@link Denoiser}. It knows nothing about
 * classifiers: guidance wraps the denoiser (k-diffusion style, lib/guidance), so every sampler is
 * guided for free. Images are processed in batches, but each draws its noise from its own seeded
 * stream (lib/random.ts), so results do not depend on batch size or order.
 * @module
 */
import { RandomStream } from "../random.ts";
import { abarAt, type NoiseSchedule, type VarianceKind } from "../schedule.ts";
import { type Spacing, stepPairs, timestepGrid } from "../timesteps.ts";
import { ddimSigma, ddimStep } from "./ddim.ts";
import { ddpmStep } from "./ddpm.ts";
import { checkedDenoise, checkUpdate } from "./finite.ts";
import { isSolver, solveBatch } from "./solver_loop.ts";

/** Channels, height and width of one image. */
export interface ImageShape {
  /** Channels. */
  c: number;
  /** Height in pixels. */
  h: number;
  /** Width in pixels. */
  w: number;
}

/** What a denoiser call is told besides x_t and t. */
export interface DenoiseContext {
  /** Images in this call. */
  n: number;
  /** Shape of each image. */
  shape: ImageShape;
  /** Seeds of these images (per-image streams) and their positions in the whole run. */
  seeds: readonly number[];
  /** Positions of these images in the whole run (0-based). */
  items: readonly number[];
  /** 0-based step index and number of steps. */
  stepIndex: number;
  /** Number of steps in the run. */
  steps: number;
  /** The schedule being sampled (guidance weights read abar from it). */
  schedule: NoiseSchedule;
  /**
   * Set by the denoiser (not by the caller) when its model learns its variance: the variance
   * interpolation v in [-1, 1] of x, per element (lib/models/parameterisation.ts). The DDPM step
   * with variance "learned" reads it; eps-only samplers ignore it.
   */
  v?: Float32Array;
}

/**
 * A denoiser: eps_hat(x_t, t) for a batch of images in [-1, 1] (METHOD.md §1). All images of a
 * call share the timestep t. Returns a new array of the same length as x.
 */
export type Denoiser = (x: Float32Array, t: number, ctx: DenoiseContext) => Promise<Float32Array>;

/** Reported after every step (trajectories, progress). Arrays are views valid during the call. */
export interface StepEvent {
  /** 0-based index of the step just taken. */
  stepIndex: number;
  /** Number of steps in the run. */
  steps: number;
  /** Timestep t the step started from. */
  t: number;
  /** Timestep t' the step went to (-1 after the last step: the clean image). */
  tPrev: number;
  /** x_t' after the step, and x0_hat of the step, for the images of this batch. */
  x: Float32Array;
  /** x0_hat of the step, for the images of this batch. */
  x0: Float32Array;
  /** Positions of these images in the whole run (0-based). */
  items: readonly number[];
  /** Seeds of these images. */
  seeds: readonly number[];
}

/**
 * Which sampler: DDIM on a sub-grid, ancestral DDPM on the full grid, or a fast ODE solver
 * (lib/sampler/solver_loop.ts): DPM-Solver++(2M), UniPC-2 (bh2), Heun (Karras et al. 2022).
 */
export type SamplerKind = "ddim" | "ddpm" | "dpmpp-2m" | "unipc" | "heun";

/** Everything that determines a sample, as a plain value. */
export interface SamplerConfig {
  /** Which sampler runs. */
  sampler: SamplerKind;
  /** The noise schedule to sample from. */
  schedule: NoiseSchedule;
  /** DDIM steps (grid size); DDPM always runs all T steps and requires steps = T. */
  steps: number;
  /** DDIM eta (ignored for DDPM). */
  eta: number;
  /** How the DDIM sub-grid spreads over 0..T-1 (DDPM always uses the full grid). */
  spacing: Spacing;
  /** Clip x0_hat to [-1, 1] (DDIM then re-derives eps from the clipped x0_hat; see ddimStep). */
  clip: boolean;
  /** DDIM with `clip`: keep the unclipped eps in the direction term, as diffusers does. */
  keepEps?: boolean;
  /** DDPM variance. */
  variance: VarianceKind;
  /** One seed per image: sets the number of images and each image's noise stream. */
  seeds: readonly number[];
  /** Shape of each image. */
  shape: ImageShape;
  /** Images per denoiser call (does not change results). */
  batchSize: number;
}

/** Options that do not change results. */
export interface SampleHooks {
  /** Called (and awaited) after every step of every batch. */
  onStep?: (ev: StepEvent) => void | Promise<void>;
  /** Called (and awaited) when a batch is finished, with its final images: write them here so
   * a killed run can resume. */
  onBatch?: (ev: BatchEvent) => void | Promise<void>;
}

/** A finished batch: its images (NCHW, [-1, 1]) and where they sit in the run. */
export interface BatchEvent {
  /** Positions of these images in the run. */
  items: readonly number[];
  /** Their seeds. */
  seeds: readonly number[];
  /** Their final images, concatenated. */
  x: Float32Array;
}

/** The timestep grid a config samples on. */
export function gridFor(cfg: SamplerConfig): number[] {
  if (cfg.sampler === "ddpm") {
    if (cfg.steps !== cfg.schedule.T) {
      throw new Error(
        `the DDPM sampler runs all ${cfg.schedule.T} steps, not --steps ${cfg.steps}; ` +
          `use --steps ${cfg.schedule.T}, or --sampler ddim --eta 1 for a stochastic sub-grid`,
      );
    }
    return timestepGrid(cfg.schedule.T, cfg.schedule.T, "leading");
  }
  if (!(cfg.eta >= 0)) {
    throw new Error(`--eta ${cfg.eta} is invalid: use a number >= 0 (0 = DDIM, 1 = DDPM-like)`);
  }
  return timestepGrid(cfg.schedule.T, cfg.steps, cfg.spacing, cfg.schedule.alphasCumprod);
}

/**
 * Samples `cfg.seeds.length` images (concatenated NCHW, range [-1, 1]).
 * DDIM: eq 2.25 / Alg 5; DDPM: eq 2.13. x_T ~ N(0, I) from each image's stream.
 */
export async function sample(
  denoiser: Denoiser,
  cfg: SamplerConfig,
  hooks: SampleHooks = {},
): Promise<Float32Array> {
  const grid = gridFor(cfg);
  const pairs = stepPairs(grid);
  const per = cfg.shape.c * cfg.shape.h * cfg.shape.w;
  const total = cfg.seeds.length;
  if (!(Number.isInteger(cfg.batchSize) && cfg.batchSize >= 1)) {
    throw new Error(`--batch ${cfg.batchSize} is invalid: use an integer >= 1`);
  }
  const result = new Float32Array(total * per);
  for (let start = 0; start < total; start += cfg.batchSize) {
    const seeds = cfg.seeds.slice(start, start + cfg.batchSize);
    const items = seeds.map((_, i) => start + i);
    const n = seeds.length;
    const streams = seeds.map((s) => new RandomStream(s));
    let x = new Float32Array(n * per);
    streams.forEach((s, i) => s.fillNormal(x.subarray(i * per, (i + 1) * per)));
    if (isSolver(cfg.sampler)) {
      const ctx = { n, shape: cfg.shape, seeds, items, schedule: cfg.schedule };
      const b = { kind: cfg.sampler, schedule: cfg.schedule, grid, clip: cfg.clip, ctx };
      const xs = await solveBatch(denoiser, b, x, hooks) as Float32Array;
      result.set(xs, start * per);
      await hooks.onBatch?.({ items, seeds, x: xs });
      continue;
    }
    let spare = new Float32Array(n * per);
    const x0 = new Float32Array(n * per);
    const noise = new Float32Array(n * per);
    for (let i = 0; i < pairs.length; i++) {
      const [t, tPrev] = pairs[i];
      const ctx: DenoiseContext = {
        n,
        shape: cfg.shape,
        seeds,
        items,
        stepIndex: i,
        steps: pairs.length,
        schedule: cfg.schedule,
      };
      const eps = await checkedDenoise(denoiser, x, t, ctx);
      if (eps.length !== x.length) {
        throw new Error(`denoiser returned ${eps.length} values for ${x.length} at t = ${t}`);
      }
      const abarT = abarAt(cfg.schedule, t), abarPrev = abarAt(cfg.schedule, tPrev);
      const stochastic = cfg.sampler === "ddpm" ? t > 0 : ddimSigma(abarT, abarPrev, cfg.eta) > 0;
      if (stochastic) {
        streams.forEach((s, k) => s.fillNormal(noise.subarray(k * per, (k + 1) * per)));
      }
      if (cfg.sampler === "ddim") {
        ddimStep({
          x,
          eps,
          abarT,
          abarPrev,
          eta: cfg.eta,
          noise,
          clip: cfg.clip,
          out: spare,
          x0Out: x0,
        });
      } else {
        ddpmStep({
          x,
          eps,
          schedule: cfg.schedule,
          t,
          variance: cfg.variance,
          v: ctx.v,
          noise,
          clip: cfg.clip,
          out: spare,
          x0Out: x0,
        });
      }
      checkUpdate(spare, cfg.sampler, t, ctx);
      [x, spare] = [spare, x];
      await hooks.onStep?.({ stepIndex: i, steps: pairs.length, t, tPrev, x, x0, items, seeds });
    }
    result.set(x, start * per);
    await hooks.onBatch?.({ items, seeds, x });
  }
  return result;
}
