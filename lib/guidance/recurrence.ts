/**
 * Recurrence ("time travel"): at a step t -> t', take the guided step, re-noise the result back to
 * t with the forward kernel, and repeat, before the sampler takes its real step. One generic
 * wrapper for every method that repeats steps:
 *
 * - FreeDoM (Yu et al. 2023, §3.3 and Alg 1, time-travel strategy): r repeats inside a window of t;
 * - Universal Guidance (Bansal et al. 2023, Alg 1, eq 9): k recurrence steps at every t;
 * - TFG (Ye et al. 2024, Alg 1): N_recur recurrences.
 *
 * All re-noise with x_t = sqrt(alpha_t) x_{t'} + sqrt(1 - alpha_t) z, alpha_t = abar_t / abar_t'
 * (UGD eq 9; TFG's `_predict_xt`). Guidance wraps the denoiser: this wrapper takes the guided
 * denoiser, takes the inner steps with the samplers' own pure step function (lib/sampler/ddim.ts;
 * DDPM is DDIM with eta = 1 on the full grid), and writes the re-noised x_t into the buffer the
 * sampling loop passed in, which the loop then steps from (lib/sampler/loop.ts calls the denoiser on
 * its working x_t and steps from that same array). Auxiliary noise comes from per-image streams
 * seeded by (seed, step, round), so images stay independent of batch size and order.
 * @module
 */
import type { Denoiser } from "../sampler/loop.ts";
import { ddimSigma, ddimStep } from "../sampler/ddim.ts";
import { abarAt } from "../schedule.ts";
import { RandomStream } from "../random.ts";
import { auxSeed } from "./methods/core.ts";

/** How many extra rounds a step gets, and how the inner step is taken. */
export interface RecurrenceSpec {
  /** Extra rounds at step `stepIndex` (timestep t): 0 is the plain step. */
  rounds: (t: number, stepIndex: number) => number;
  /** The sampler's next grid point after step `stepIndex` (-1: the clean image). */
  nextT: (stepIndex: number) => number;
  /** DDIM eta of the inner step (1 for DDPM). */
  eta: number;
  /** Clip x0_hat in the inner step (the model's clip_sample). */
  clip: boolean;
}

/** First purpose code of the recurrence's auxiliary streams (methods use 1..99). */
const PURPOSE = 100;

/**
 * Wraps a (guided) denoiser with recurrence (module doc). With `rounds` 0 everywhere it returns
 * exactly the wrapped denoiser's eps for every call (tested).
 */
export function recurrent(inner: Denoiser, spec: RecurrenceSpec): Denoiser {
  return async (x, t, ctx) => {
    const r = spec.rounds(t, ctx.stepIndex);
    if (!(Number.isInteger(r) && r >= 0)) {
      throw new Error(`recurrence rounds ${r} at t = ${t} is invalid: use an integer >= 0`);
    }
    if (r === 0) return await inner(x, t, ctx);
    const tPrev = spec.nextT(ctx.stepIndex);
    const abarT = abarAt(ctx.schedule, t), abarPrev = abarAt(ctx.schedule, tPrev);
    const alpha = abarT / abarPrev;
    const per = x.length / ctx.n;
    const sigma = ddimSigma(abarT, abarPrev, spec.eta);
    const z = new Float32Array(x.length), w = new Float32Array(x.length);
    for (let round = 0; round < r; round++) {
      const eps = await inner(x, t, ctx);
      for (let i = 0; i < ctx.n; i++) {
        const s = new RandomStream(auxSeed(ctx.seeds[i], ctx.stepIndex, PURPOSE + round));
        if (sigma > 0) s.fillNormal(z.subarray(i * per, (i + 1) * per));
        s.fillNormal(w.subarray(i * per, (i + 1) * per));
      }
      const { x: xPrev } = ddimStep({
        x,
        eps,
        abarT,
        abarPrev,
        eta: spec.eta,
        noise: sigma > 0 ? z : undefined,
        clip: spec.clip,
      });
      // UGD eq 9 / TFG: x_t = sqrt(alpha_t) x_{t'} + sqrt(1 - alpha_t) w, written in place
      const a = Math.sqrt(alpha), b = Math.sqrt(1 - alpha);
      for (let i = 0; i < x.length; i++) x[i] = a * xPrev[i] + b * w[i];
    }
    return await inner(x, t, ctx);
  };
}
