/**
 * DPM-Solver++(2M): the multistep second-order solver of the probability-flow ODE in data
 * prediction (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
 * Probabilistic Models", arXiv:2211.01095, Algorithm 2; its first-order step DPM-Solver++(1) is
 * DDIM with eta = 0), the form the paper recommends for guided sampling. Conventions of diffusers'
 * DPMSolverMultistepScheduler (algorithm_type "dpmsolver++", solver_order 2, solver_type
 * "midpoint", lower_order_final, final_sigmas_type "zero"). A pure function: the loop keeps the
 * previous data prediction.
 * Notation: x_s -> `x`, x_theta(x_s, s) = x0_hat -> `x0`, the previous grid point s_1 -> `prev`.
 * @module
 */
import { expNegH, type FloatArray, sameKind, vpPoint } from "./data_prediction.ts";

/** Inputs of one DPM-Solver++ step s -> t. */
export interface DpmppStepInput {
  /** x_s (VP), any number of images concatenated. */
  x: FloatArray;
  /** The data prediction x0_hat(x_s, s) for the same images (clipped when the run clips). */
  x0: FloatArray;
  /** abar_s of the current grid point. */
  abarS: number;
  /** abar_t of the next grid point (1 for the clean image). */
  abarT: number;
  /**
   * The data prediction at the previous grid point s_1 and its abar: given, the step is second
   * order (2M); absent, first order (the first step, and the last step onto abar = 1).
   */
  prev?: { x0: FloatArray; abar: number };
  /** 2M's second-order term: "midpoint" (diffusers' default) or "heun". */
  solverType?: "midpoint" | "heun";
  /** Optional output buffer. */
  out?: FloatArray;
}

/**
 * The order diffusers' DPMSolverMultistepScheduler (solver_order 2) uses at step `i` of a grid
 * ending on the clean image: 1 at the first step (no history) and at the last step
 * (final_sigmas_type "zero": h is infinite there), 2 elsewhere.
 */
export function dpmpp2mOrder(i: number, steps: number): 1 | 2 {
  return i === 0 || i === steps - 1 ? 1 : 2;
}

/**
 * One step s -> t, with h = lambda_t - lambda_s:
 * first order: x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0,
 * 2M (Alg 2, r = h_1 / h, h_1 = lambda_s - lambda_{s_1}, D = (x0 - x0_prev) / r):
 * x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) (x0 + D / 2)        ("midpoint"),
 * x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0 + alpha_t ((e^{-h} - 1)/h + 1) D ("heun").
 */
export function dpmpp2mStep(p: DpmppStepInput): FloatArray {
  const n = p.x.length;
  if (p.x0.length !== n) throw new Error(`dpmpp2mStep: x0 has ${p.x0.length} values, x has ${n}`);
  const s = vpPoint(p.abarS), t = vpPoint(p.abarT);
  const out = p.out ?? sameKind(p.x);
  const ratio = t.sigma / s.sigma;
  const em1 = expNegH(s, t) - 1; // e^{-h} - 1
  const c0 = -t.alpha * em1;
  if (!p.prev) {
    for (let i = 0; i < n; i++) out[i] = ratio * p.x[i] + c0 * p.x0[i];
    return out;
  }
  if (p.prev.x0.length !== n) {
    throw new Error(`dpmpp2mStep: prev.x0 has ${p.prev.x0.length} values, x has ${n}`);
  }
  if (p.abarT === 1) {
    throw new Error("dpmpp2mStep: the step onto the clean image (abar = 1) must be first order");
  }
  const h = t.lambda - s.lambda, h1 = s.lambda - vpPoint(p.prev.abar).lambda;
  const r = h1 / h;
  const c1 = (p.solverType ?? "midpoint") === "midpoint"
    ? -0.5 * t.alpha * em1 / r
    : t.alpha * (em1 / h + 1) / r;
  const m1 = p.prev.x0;
  for (let i = 0; i < n; i++) {
    out[i] = ratio * p.x[i] + c0 * p.x0[i] + c1 * (p.x0[i] - m1[i]);
  }
  return out;
}
