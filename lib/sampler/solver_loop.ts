/**
 * One batch through a fast ODE solver (DPM-Solver++(2M), UniPC-2, Heun) over any
 * {@link Denoiser}: the loop that keeps the solvers' history and calls their pure step functions
 * (lib/sampler/dpmpp_2m.ts, unipc.ts, heun.ts). Guidance wraps the denoiser, so every solver is
 * guided unchanged. Deterministic: the only noise is x_T, drawn by the caller.
 * @module
 */
import { abarAt, type NoiseSchedule } from "../schedule.ts";
import { stepPairs } from "../timesteps.ts";
import { type FloatArray, x0FromEps } from "./data_prediction.ts";
import { dpmpp2mOrder, dpmpp2mStep } from "./dpmpp_2m.ts";
import { checkedDenoise, checkUpdate } from "./finite.ts";
import { heunCorrect, heunEuler } from "./heun.ts";
import type { DenoiseContext, Denoiser, SampleHooks, SamplerKind } from "./loop.ts";
import { unipcCorrect, type UnipcHistory, unipcOrder, unipcPredict } from "./unipc.ts";

/** The ODE solvers of this module. */
export type SolverKind = "dpmpp-2m" | "unipc" | "heun";

/** Whether a sampler is one of the ODE solvers of this module. */
export function isSolver(kind: SamplerKind): kind is SolverKind {
  return kind === "dpmpp-2m" || kind === "unipc" || kind === "heun";
}

/**
 * Network (denoiser) calls per image of a run with `steps` grid points: Heun evaluates twice
 * per step except on the last step (2 steps - 1); every other sampler once per step.
 */
export function networkCalls(kind: SamplerKind, steps: number): number {
  return kind === "heun" ? 2 * steps - 1 : steps;
}

/** What one batch of a solver run needs. */
export interface SolverBatch {
  /** Which solver. */
  kind: SolverKind;
  /** The schedule (abar of each grid point). */
  schedule: NoiseSchedule;
  /** Descending timestep grid; the last step goes to the clean image. */
  grid: readonly number[];
  /**
   * abar at a grid point (default: the schedule's; -1 is the clean image, abar = 1). Tests pass
   * a continuous schedule or diffusers' own sigmas here.
   */
  abarOf?: (t: number) => number;
  /** Clip x0_hat to [-1, 1] (the model's clip_sample; DPM-Solver++'s thresholding at 1). */
  clip: boolean;
  /** The denoiser context of this batch, without the step fields. */
  ctx: Omit<DenoiseContext, "stepIndex" | "steps">;
}

/**
 * Runs one batch from x_T (VP) to the clean image; returns the final x. Float32 in sampling;
 * float64 arrays (with a float64 denoiser) in the reference tests.
 */
export async function solveBatch(
  denoiser: Denoiser,
  b: SolverBatch,
  xT: FloatArray,
  hooks: SampleHooks = {},
): Promise<FloatArray> {
  const pairs = stepPairs(b.grid);
  const steps = pairs.length;
  const calls = networkCalls(b.kind, steps);
  let call = 0;
  const abar = b.abarOf ?? ((t: number) => abarAt(b.schedule, t));
  /** x0_hat(x, t) from one denoiser call. */
  const ctxOf = (): DenoiseContext => ({ ...b.ctx, stepIndex: call, steps: calls });
  const predict = async (x: FloatArray, t: number): Promise<FloatArray> => {
    const eps = await checkedDenoise(denoiser, x as Float32Array, t, ctxOf()); // NaN/Inf named
    call++;
    if (eps.length !== x.length) {
      throw new Error(`denoiser returned ${eps.length} values for ${x.length} at t = ${t}`);
    }
    return x0FromEps(x, eps, abar(t), b.clip);
  };
  const report = (i: number, x: FloatArray, x0: FloatArray) => {
    // the last call made is the one this update used
    checkUpdate(x as Float32Array, b.kind, pairs[i][0], {
      ...b.ctx,
      stepIndex: call - 1,
      steps: calls,
    });
    return hooks.onStep?.({
      stepIndex: i,
      steps,
      t: pairs[i][0],
      tPrev: pairs[i][1],
      x: x as Float32Array,
      x0: x0 as Float32Array,
      items: b.ctx.items,
      seeds: b.ctx.seeds,
    });
  };
  let x: FloatArray = xT;
  switch (b.kind) {
    case "dpmpp-2m": {
      let prev: { x0: FloatArray; abar: number } | undefined;
      for (let i = 0; i < steps; i++) {
        const [t, tNext] = pairs[i];
        const x0 = await predict(x, t);
        const second = dpmpp2mOrder(i, steps) === 2;
        x = dpmpp2mStep({
          x,
          x0,
          abarS: abar(t),
          abarT: abar(tNext),
          prev: second ? prev : undefined,
        });
        prev = { x0, abar: abar(t) };
        await report(i, x, x0);
      }
      break;
    }
    case "unipc": {
      // The predictor of step i-1 started at xLast with data prediction mLast (history hLast).
      let xLast: FloatArray | undefined, mLast: FloatArray | undefined;
      let hLast: UnipcHistory | undefined, tLast = 0;
      for (let i = 0; i < steps; i++) {
        const [t, tNext] = pairs[i];
        const m = await predict(x, t); // at the predicted x_t: the corrector reuses it
        if (xLast && mLast) {
          x = unipcCorrect({
            x: xLast,
            x0: mLast,
            x0T: m,
            abarS: abar(tLast),
            abarT: abar(t),
            prev: hLast,
          });
        }
        const hist = unipcOrder(i, steps) === 2 && mLast
          ? { x0: mLast, abar: abar(tLast) }
          : undefined;
        xLast = x;
        mLast = m;
        hLast = hist;
        tLast = t;
        x = unipcPredict({ x, x0: m, abarS: abar(t), abarT: abar(tNext), prev: hist });
        await report(i, x, m);
      }
      break;
    }
    case "heun": {
      for (let i = 0; i < steps; i++) {
        const [t, tNext] = pairs[i];
        const x0 = await predict(x, t);
        const e = heunEuler({ x, x0, abarS: abar(t), abarT: abar(tNext) });
        x = tNext === -1 ? e.x : heunCorrect({
          x,
          d: e.d,
          xEuler: e.x,
          x0T: await predict(e.x, tNext),
          abarS: abar(t),
          abarT: abar(tNext),
        });
        await report(i, x, x0);
      }
      break;
    }
  }
  if (call !== calls) throw new Error(`solver ${b.kind} made ${call} calls, expected ${calls}`);
  return x;
}
