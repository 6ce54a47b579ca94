/**
 * The DDPM ancestral step (Ho et al. 2020, METHOD.md §2, eq 2.13) as a pure function, with a
 * fixed variance or the model's learned one (Nichol and Dhariwal 2021, eq 15).
 * @module
 */
import {
  abarAt,
  learnedLogBounds,
  type NoiseSchedule,
  posteriorVariance,
  type VarianceKind,
} from "../schedule.ts";

/** Inputs of one DDPM step t -> t-1. */
export interface DdpmStepInput {
  /** x_t, any number of images concatenated. */
  x: Float32Array;
  /** eps_hat(x_t, t) for the same images. */
  eps: Float32Array;
  /** The noise schedule. */
  schedule: NoiseSchedule;
  /** Current timestep t in 0..T-1; the step goes to t-1. */
  t: number;
  /** Posterior variance kind ("learned" needs `v`). */
  variance: VarianceKind;
  /** The model's variance interpolation v in [-1, 1] per element (learned-range models). */
  v?: Float32Array;
  /** z ~ N(0, I); required for t > 0 (no noise is added at t = 0). */
  noise?: Float32Array;
  /** Clip x0_hat to [-1, 1] before forming the posterior mean (Ho et al., diffusers clip_sample). */
  clip?: boolean;
  /** Shift added to the posterior mean, scaled by the step variance: mu + var * meanShift
   * (Dhariwal and Nichol's classifier-guided mean; see lib/guidance). */
  meanShift?: Float32Array;
  /** Optional buffer for x_{t-1} (reused across steps). */
  out?: Float32Array;
  /** Optional buffer for x0_hat (reused across steps). */
  x0Out?: Float32Array;
}

/** Coefficients of the posterior mean mu = c0 x0_hat + ct x_t, and the step variance. */
export function ddpmCoefficients(
  s: NoiseSchedule,
  t: number,
  variance: VarianceKind,
): { c0: number; ct: number; variance: number } {
  const abarT = abarAt(s, t), abarPrev = abarAt(s, t - 1);
  const beta = s.betas[t], alpha = s.alphas[t];
  return {
    c0: Math.sqrt(abarPrev) * beta / (1 - abarT),
    ct: Math.sqrt(alpha) * (1 - abarPrev) / (1 - abarT),
    variance: t > 0 ? posteriorVariance(s, t, variance) : 0,
  };
}

/** Posterior-mean coefficients only (they do not depend on the variance). */
function meanCoefficients(s: NoiseSchedule, t: number): { c0: number; ct: number } {
  const abarT = abarAt(s, t), abarPrev = abarAt(s, t - 1);
  return {
    c0: Math.sqrt(abarPrev) * s.betas[t] / (1 - abarT),
    ct: Math.sqrt(s.alphas[t]) * (1 - abarPrev) / (1 - abarT),
  };
}

/**
 * One DDPM step: x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
 * mu = (sqrt(abar_{t-1}) beta_t x0_hat + sqrt(alpha_t)(1 - abar_{t-1}) x_t) / (1 - abar_t),
 * x_{t-1} = mu + sqrt(var) z (no noise at t = 0). With `variance` "learned", var is per element:
 * Sigma = exp(f log beta_t + (1 - f) log beta~_t), f = (v + 1) / 2 (Nichol and Dhariwal 2021,
 * eq 15, as improved-/guided-diffusion's p_mean_variance computes it).
 */
export function ddpmStep(p: DdpmStepInput): { x: Float32Array; x0: Float32Array } {
  const n = p.x.length;
  if (p.eps.length !== n) throw new Error(`ddpmStep: eps has ${p.eps.length} values, x has ${n}`);
  if (p.variance === "learned") return ddpmLearnedStep(p);
  const { c0, ct, variance } = ddpmCoefficients(p.schedule, p.t, p.variance);
  if (variance > 0 && (!p.noise || p.noise.length !== n)) {
    throw new Error(`ddpmStep: t = ${p.t} > 0 needs noise of length ${n}`);
  }
  const abarT = abarAt(p.schedule, p.t);
  const sa = Math.sqrt(abarT), s1a = Math.sqrt(1 - abarT), sd = Math.sqrt(variance);
  const out = p.out ?? new Float32Array(n);
  const x0 = p.x0Out ?? new Float32Array(n);
  const z = p.noise, shift = p.meanShift;
  for (let i = 0; i < n; i++) {
    let x0i = (p.x[i] - s1a * p.eps[i]) / sa;
    if (p.clip) x0i = x0i < -1 ? -1 : x0i > 1 ? 1 : x0i;
    x0[i] = x0i;
    let mu = c0 * x0i + ct * p.x[i];
    if (shift) mu += variance * shift[i];
    out[i] = variance > 0 ? mu + sd * z![i] : mu;
  }
  return { x: out, x0 };
}

/** {@link ddpmStep} with the model's per-element variance (eq 15); meanShift scales by it too. */
function ddpmLearnedStep(p: DdpmStepInput): { x: Float32Array; x0: Float32Array } {
  const n = p.x.length;
  if (!p.v || p.v.length !== n) {
    throw new Error(
      `ddpmStep: variance "learned" needs the model's variance output v of length ${n} ` +
        `(got ${p.v?.length ?? "none"}); this model has no learned variance: use fixed_small`,
    );
  }
  const noisy = p.t > 0;
  if (noisy && (!p.noise || p.noise.length !== n)) {
    throw new Error(`ddpmStep: t = ${p.t} > 0 needs noise of length ${n}`);
  }
  const { c0, ct } = meanCoefficients(p.schedule, p.t);
  const [maxLog, minLog] = learnedLogBounds(p.schedule, p.t);
  const abarT = abarAt(p.schedule, p.t);
  const sa = Math.sqrt(abarT), s1a = Math.sqrt(1 - abarT);
  const out = p.out ?? new Float32Array(n);
  const x0 = p.x0Out ?? new Float32Array(n);
  const z = p.noise, shift = p.meanShift, v = p.v;
  for (let i = 0; i < n; i++) {
    let x0i = (p.x[i] - s1a * p.eps[i]) / sa;
    if (p.clip) x0i = x0i < -1 ? -1 : x0i > 1 ? 1 : x0i;
    x0[i] = x0i;
    const f = (v[i] + 1) / 2;
    const variance = Math.exp(f * maxLog + (1 - f) * minLog);
    let mu = c0 * x0i + ct * p.x[i];
    if (shift) mu += variance * shift[i];
    out[i] = noisy ? mu + Math.sqrt(variance) * z![i] : mu;
  }
  return { x: out, x0 };
}
