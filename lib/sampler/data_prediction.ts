/**
 * The data-prediction view shared by the ODE solvers (DPM-Solver++, UniPC, Heun): the VP point
 * (alpha_t, sigma_t, lambda_t) of an abar, and x0_hat from eps (METHOD.md §2). Pure functions
 * over float32 or float64 arrays.
 * @module
 */

/** Float32 (sampling) or float64 (reference tests) image batch. */
export type FloatArray = Float32Array | Float64Array;

/**
 * A point of the VP process: alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t) and the
 * half log-SNR lambda_t = log(alpha_t / sigma_t) (Lu et al. 2022, DPM-Solver §3.1). abar = 1 is
 * the clean image: sigma = 0, lambda = +Infinity.
 */
export interface VpPoint {
  /** abar_t. */
  abar: number;
  /** alpha_t = sqrt(abar_t). */
  alpha: number;
  /** sigma_t = sqrt(1 - abar_t). */
  sigma: number;
  /** lambda_t = log alpha_t - log sigma_t. */
  lambda: number;
}

/** The VP point of abar in (0, 1]. */
export function vpPoint(abar: number): VpPoint {
  if (!(abar > 0 && abar <= 1)) throw new Error(`abar = ${abar} is outside (0, 1]`);
  const alpha = Math.sqrt(abar), sigma = Math.sqrt(1 - abar);
  return { abar, alpha, sigma, lambda: Math.log(alpha) - Math.log(sigma) };
}

/**
 * exp(-h) for h = lambda_t - lambda_s, as sigma_t alpha_s / (alpha_t sigma_s): exact, and 0 when
 * t is the clean image (h = +Infinity).
 */
export function expNegH(s: VpPoint, t: VpPoint): number {
  return (t.sigma * s.alpha) / (t.alpha * s.sigma);
}

/** An empty array of the same kind and length as `like`. */
export function sameKind(like: FloatArray, n = like.length): FloatArray {
  return like instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

/**
 * x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (METHOD.md §2), optionally clipped to
 * [-1, 1]: the `clip_sample` of the model, which is also diffusers' dynamic thresholding with
 * `sample_max_value = 1` (the quantile is clamped to [1, 1]) as DPM-Solver++ §5 uses it for
 * guided pixel-space sampling.
 */
export function x0FromEps(
  x: FloatArray,
  eps: FloatArray,
  abar: number,
  clip: boolean,
  out: FloatArray = sameKind(x),
): FloatArray {
  const n = x.length;
  if (eps.length !== n) throw new Error(`x0FromEps: eps has ${eps.length} values, x has ${n}`);
  const sa = Math.sqrt(abar), s1a = Math.sqrt(1 - abar);
  for (let i = 0; i < n; i++) {
    const v = (x[i] - s1a * eps[i]) / sa;
    out[i] = clip ? (v < -1 ? -1 : v > 1 ? 1 : v) : v;
  }
  return out;
}
