/**
 * The guided denoiser of the training-free methods: at every step the two TFG terms
 * (core.ts) and their entry into the step, either as a shift of x_{t'} (TFG Alg 1, DPS, FreeDoM,
 * MPGD), handed to the sampler as the equivalent eps_hat, or directly in eps (UGD eq 6 and 8).
 * @module
 */
import type { Denoiser } from "../../sampler/loop.ts";
import { abarAt } from "../../schedule.ts";
import { type CoreParams, coreTerms, shiftToEps } from "./core.ts";
import { labelsOf, type MethodEnv } from "./env.ts";
import { nextT } from "./step_grid.ts";

/** The step's parameters and how the terms enter the step. */
export interface StepForm extends CoreParams {
  /**
   * `x-shift`: x_{t'} += meanWeight rho grad_{x_t} log f~ + sqrt(abar_t') Delta_0 (TFG Alg 1 has
   * meanWeight = 1/sqrt(alpha_t)). `eps`: eps_hat = eps - rho grad_{x_t} log f~ -
   * sqrt(abar_t/(1-abar_t)) Delta_0 (UGD eq 6 and 8; the caller puts sqrt(1 - abar_t) into rho).
   */
  form: "x-shift" | "eps";
  /** Multiplies the mean term in the x-shift form (see `form`). */
  meanWeight: number;
}

/** A denoiser applying the terms of `paramsAt(stepIndex, t)` at every step (module doc). */
export function trainingFreeGuided(
  env: MethodEnv,
  paramsAt: (stepIndex: number, t: number) => StepForm,
): Denoiser {
  return async (x, t, ctx) => {
    const p = paramsAt(ctx.stepIndex, t);
    if (p.rho === 0 && (p.mu === 0 || p.iters === 0)) return await env.denoiser(x, t, ctx);
    const tPrev = nextT(env.grid, ctx.stepIndex);
    const abarT = abarAt(ctx.schedule, t), abarPrev = abarAt(ctx.schedule, tPrev);
    const step = {
      t,
      abarT,
      abarPrev,
      y: labelsOf(env, ctx.items),
      seeds: ctx.seeds,
      stepIndex: ctx.stepIndex,
    };
    const terms = await coreTerms(
      x,
      ctx.n,
      step,
      p,
      (at) => env.denoiser(at, t, ctx),
      env.pullback,
      env.classifier,
      env.through,
    );
    const { eps, gradXt, delta0 } = terms;
    if (p.form === "eps") {
      const back = Math.sqrt(abarT / (1 - abarT));
      const out = new Float32Array(eps.length);
      for (let i = 0; i < out.length; i++) out[i] = eps[i] - p.rho * gradXt[i] - back * delta0[i];
      return out;
    }
    const shift = new Float32Array(eps.length);
    const m = p.rho * p.meanWeight, s0 = Math.sqrt(abarPrev);
    for (let i = 0; i < shift.length; i++) shift[i] = m * gradXt[i] + s0 * delta0[i];
    return shiftToEps(eps, shift, abarT, abarPrev, env.grid.eta);
  };
}
