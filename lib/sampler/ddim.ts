/**
 * The DDIM step (Song et al. 2021, METHOD.md §2, eq 2.25, Alg 5) as a pure function.
 * Paper notation: x_t -> `x`, eps_hat -> `eps`, x0_hat -> `x0`, t' -> the next grid point.
 * @module
 */

/** sigma_t(eta) = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t') (eq 2.25). */
export function ddimSigma(abarT: number, abarPrev: number, eta: number): number {
  return eta * Math.sqrt((1 - abarPrev) / (1 - abarT)) * Math.sqrt(1 - abarT / abarPrev);
}

/** Inputs of one DDIM step. */
export interface DdimStepInput {
  /** x_t, any number of images concatenated. */
  x: Float32Array;
  /** eps_hat(x_t, t) for the same images. */
  eps: Float32Array;
  /** abar_t and abar_t' (t' = -1 means abar = 1). */
  abarT: number;
  /** abar_t' of the next grid point t' (1 when t' = -1). */
  abarPrev: number;
  /** 0 is deterministic DDIM, 1 on the full grid is DDPM (fixed_small). */
  eta: number;
  /** z ~ N(0, I), required when sigma > 0. */
  noise?: Float32Array;
  /**
   * Clip x0_hat to [-1, 1] (clip_sample). The direction term then uses the eps consistent with
   * the clipped x0_hat, eps' = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t), as guided-diffusion
   * does; this keeps DDIM(eta = 1) equal to DDPM under clipping. diffusers' DDIMScheduler keeps the
   * unclipped eps instead (`keepEps`): with classifier guidance in eps (Alg 6) at high noise, the
   * clip then removes the guidance from x0_hat and leaves only -sqrt(1 - abar_t' - sigma^2) s g in
   * the direction term, which moves x_t *away* from the class (measured: 0% target accuracy).
   */
  clip?: boolean;
  /** With `clip`, use the unclipped eps in the direction term (diffusers' behaviour). */
  keepEps?: boolean;
  /** Optional output buffers (reused across steps). */
  out?: Float32Array;
  /** Optional buffer for x0_hat (reused across steps). */
  x0Out?: Float32Array;
}

/**
 * One DDIM step t -> t' (eq 2.25):
 * x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
 * x_t' = sqrt(abar_t') x0_hat + sqrt(1 - abar_t' - sigma^2) eps + sigma z.
 * Returns x_t' and x0_hat. With clipping, eps is re-derived from the clipped x0_hat (see `clip`).
 */
export function ddimStep(p: DdimStepInput): { x: Float32Array; x0: Float32Array } {
  const n = p.x.length;
  if (p.eps.length !== n) throw new Error(`ddimStep: eps has ${p.eps.length} values, x has ${n}`);
  const sigma = ddimSigma(p.abarT, p.abarPrev, p.eta);
  if (sigma > 0 && (!p.noise || p.noise.length !== n)) {
    throw new Error(
      `ddimStep: eta = ${p.eta} gives sigma = ${sigma} > 0, so noise of length ${n} is required`,
    );
  }
  const out = p.out ?? new Float32Array(n);
  const x0 = p.x0Out ?? new Float32Array(n);
  const sa = Math.sqrt(p.abarT), s1a = Math.sqrt(1 - p.abarT);
  const sap = Math.sqrt(p.abarPrev);
  const dir = Math.sqrt(Math.max(0, 1 - p.abarPrev - sigma * sigma));
  const z = p.noise;
  const recompute = p.clip && !p.keepEps;
  for (let i = 0; i < n; i++) {
    let x0i = (p.x[i] - s1a * p.eps[i]) / sa;
    let e = p.eps[i];
    if (p.clip && (x0i < -1 || x0i > 1)) {
      x0i = x0i < -1 ? -1 : 1;
      if (recompute) e = (p.x[i] - sa * x0i) / s1a;
    }
    x0[i] = x0i;
    out[i] = sap * x0i + dir * e + (sigma > 0 ? sigma * z![i] : 0);
  }
  return { x: out, x0 };
}
