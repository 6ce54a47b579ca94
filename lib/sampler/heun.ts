/**
 * Heun's second-order method on the probability-flow ODE (Karras et al. 2022, "Elucidating the
 * Design Space of Diffusion-Based Generative Models", arXiv:2206.00364, Algorithm 1, the
 * deterministic sampler, with sigma(t) = t and s(t) = 1), applied to the VP model through
 * z = x_t / alpha_t and sigma = sigma_t / alpha_t, where the probability-flow ODE (their eq 1)
 * reads dz/dsigma = (z - D(z; sigma)) / sigma with D = x0_hat; steps on Karras sigmas (eq 5).
 * Conventions of diffusers' HeunDiscreteScheduler (use_karras_sigmas, clip_sample on x0): Euler
 * to the next sigma, then the trapezoidal correction with a second model evaluation there, except
 * on the last step to sigma = 0 (Alg 1 line 7), so n steps cost 2n - 1 network calls.
 * Two pure functions, because the correction needs a model evaluation between them.
 * x is stored in VP form (x_t) like every other sampler; the functions convert.
 * @module
 */
import { type FloatArray, sameKind } from "./data_prediction.ts";

/** sigma = sqrt((1 - abar) / abar), the noise level of z = x_t / sqrt(abar_t). */
function veSigma(abar: number): number {
  return Math.sqrt((1 - abar) / abar);
}

/** Inputs of the Euler half of a Heun step s -> t. */
export interface HeunEulerInput {
  /** x_s (VP). */
  x: FloatArray;
  /** x0_hat(x_s, s) = D(z_s; sigma_s). */
  x0: FloatArray;
  /** abar_s. */
  abarS: number;
  /** abar_t (1 for the clean image). */
  abarT: number;
}

/**
 * Alg 1 lines 4-6: d_s = (z_s - D(z_s)) / sigma_s, z_t = z_s + (sigma_t - sigma_s) d_s.
 * Returns x_t (VP) and d_s (for {@link heunCorrect}).
 */
export function heunEuler(p: HeunEulerInput): { x: FloatArray; d: FloatArray } {
  const n = p.x.length;
  if (p.x0.length !== n) throw new Error(`heunEuler: x0 has ${p.x0.length} values, x has ${n}`);
  const aS = Math.sqrt(p.abarS), aT = Math.sqrt(p.abarT);
  const sS = veSigma(p.abarS), sT = veSigma(p.abarT);
  const d = sameKind(p.x), out = sameKind(p.x);
  for (let i = 0; i < n; i++) {
    const z = p.x[i] / aS;
    d[i] = (z - p.x0[i]) / sS;
    out[i] = (z + (sT - sS) * d[i]) * aT;
  }
  return { x: out, d };
}

/** Inputs of the correction half of a Heun step s -> t (sigma_t > 0). */
export interface HeunCorrectInput {
  /** x_s (VP), where the step started. */
  x: FloatArray;
  /** d_s from {@link heunEuler}. */
  d: FloatArray;
  /** The Euler result x_t (VP). */
  xEuler: FloatArray;
  /** x0_hat at the Euler result: D(z_t; sigma_t). */
  x0T: FloatArray;
  /** abar_s. */
  abarS: number;
  /** abar_t (< 1). */
  abarT: number;
}

/**
 * Alg 1 lines 7-8: d'_t = (z_t - D(z_t)) / sigma_t, z_t <- z_s + (sigma_t - sigma_s) (d_s + d'_t) / 2.
 * Returns the corrected x_t (VP).
 */
export function heunCorrect(p: HeunCorrectInput): FloatArray {
  const n = p.x.length;
  if (p.d.length !== n || p.xEuler.length !== n || p.x0T.length !== n) {
    throw new Error(`heunCorrect: d, xEuler and x0T must have ${n} values like x`);
  }
  if (!(p.abarT < 1)) throw new Error("heunCorrect: the last step onto sigma = 0 is Euler only");
  const aS = Math.sqrt(p.abarS), aT = Math.sqrt(p.abarT);
  const sS = veSigma(p.abarS), sT = veSigma(p.abarT);
  const out = sameKind(p.x);
  for (let i = 0; i < n; i++) {
    const zT = p.xEuler[i] / aT;
    const d2 = (zT - p.x0T[i]) / sT;
    out[i] = (p.x[i] / aS + (sT - sS) * 0.5 * (p.d[i] + d2)) * aT;
  }
  return out;
}
