/**
 * Noise schedules as plain values (METHOD.md §2). All arithmetic in float64 (JS numbers), as EDM
 * does, so abar products are exact to double precision whatever the step count.
 *
 * Notation (diffusers -> paper): `betas` -> beta_t, `alphas` -> alpha_t = 1 - beta_t,
 * `alphasCumprod` -> abar_t = prod_{s<=t} alpha_s. Index t runs 0..T-1 (diffusers convention:
 * the paper's t = 1..T shifted by one).
 * @module
 */

/** A discrete-time diffusion noise schedule. Immutable by convention; build with the helpers. */
export interface NoiseSchedule {
  /** What built it, e.g. "linear(1e-4,0.02,1000)"; recorded in run.json. */
  readonly name: string;
  /** Number of training timesteps T. */
  readonly T: number;
  /** beta_t for t = 0..T-1. */
  readonly betas: Float64Array;
  /** alpha_t = 1 - beta_t. */
  readonly alphas: Float64Array;
  /** abar_t = prod_{s<=t} alpha_s (eq 2.11). */
  readonly alphasCumprod: Float64Array;
}

/** Builds a schedule from explicit betas (each in (0, 1)). */
export function scheduleFromBetas(betas: ArrayLike<number>, name = "betas"): NoiseSchedule {
  const T = betas.length;
  if (T < 1) throw new Error("a schedule needs at least one beta; got an empty array");
  const b = Float64Array.from(betas);
  const a = new Float64Array(T);
  const ab = new Float64Array(T);
  let prod = 1;
  for (let t = 0; t < T; t++) {
    if (!(b[t] > 0 && b[t] < 1)) {
      throw new Error(`beta[${t}] = ${b[t]} is outside (0, 1); every beta must be in (0, 1)`);
    }
    a[t] = 1 - b[t];
    prod *= a[t];
    ab[t] = prod;
  }
  return { name, T, betas: b, alphas: a, alphasCumprod: ab };
}

/** Linear betas from `start` to `end` (Ho et al. 2020; google/ddpm-cifar10-32: 1e-4..0.02, T=1000). */
export function linearSchedule(T = 1000, start = 1e-4, end = 0.02): NoiseSchedule {
  const b = new Float64Array(T);
  for (let t = 0; t < T; t++) b[t] = T === 1 ? start : start + (end - start) * t / (T - 1);
  return scheduleFromBetas(b, `linear(${start},${end},${T})`);
}

/** diffusers "scaled_linear": betas linear in sqrt space. */
export function scaledLinearSchedule(T = 1000, start = 1e-4, end = 0.02): NoiseSchedule {
  const b = new Float64Array(T);
  const s0 = Math.sqrt(start), s1 = Math.sqrt(end);
  for (let t = 0; t < T; t++) b[t] = (T === 1 ? s0 : s0 + (s1 - s0) * t / (T - 1)) ** 2;
  return scheduleFromBetas(b, `scaled_linear(${start},${end},${T})`);
}

/**
 * Cosine schedule (Nichol and Dhariwal 2021, eq 17): abar(t) = f(t)/f(0),
 * f(t) = cos^2(((t/T + s)/(1 + s)) pi/2), betas clipped at `maxBeta` (diffusers "squaredcos_cap_v2").
 */
export function cosineSchedule(T = 1000, s = 0.008, maxBeta = 0.999): NoiseSchedule {
  const f = (t: number) => Math.cos(((t / T + s) / (1 + s)) * Math.PI / 2) ** 2;
  const b = new Float64Array(T);
  for (let t = 0; t < T; t++) b[t] = Math.min(1 - f(t + 1) / f(t), maxBeta);
  return scheduleFromBetas(b, `cosine(${s},${T})`);
}

/** abar at t, with abar(-1) = 1 (the clean image; diffusers' set_alpha_to_one). */
export function abarAt(s: NoiseSchedule, t: number): number {
  if (t === -1) return 1;
  if (!Number.isInteger(t) || t < 0 || t >= s.T) {
    throw new Error(`timestep ${t} is outside 0..${s.T - 1} of schedule ${s.name}`);
  }
  return s.alphasCumprod[t];
}

/**
 * DDPM posterior variance kinds: beta~_t ("fixed_small"), beta_t ("fixed_large"), or the
 * model's own ("learned": Sigma interpolated between them by its output v, eq 15 of Nichol and
 * Dhariwal 2021; see learnedLogVariance).
 */
export type VarianceKind = "fixed_small" | "fixed_large" | "learned";

/**
 * Variance of the DDPM reverse step t -> t-1 (METHOD.md §2):
 * fixed_small: beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t); fixed_large: beta_t.
 */
export function posteriorVariance(s: NoiseSchedule, t: number, kind: VarianceKind): number {
  if (kind === "learned") {
    throw new Error(
      "the learned variance is per element and comes from the model (learnedLogVariance)",
    );
  }
  const abarT = abarAt(s, t);
  const abarPrev = abarAt(s, t - 1);
  const beta = s.betas[t];
  return kind === "fixed_small" ? beta * (1 - abarPrev) / (1 - abarT) : beta;
}

/** Schedule description as stored in the weights manifest and run.json. */
export interface ScheduleSpec {
  /** Beta schedule family. */
  type: "linear" | "scaled_linear" | "cosine";
  /** Number of training timesteps (default 1000). */
  T?: number;
  /** First beta (default 1e-4; ignored by cosine). */
  beta_start?: number;
  /** Last beta (default 0.02; ignored by cosine). */
  beta_end?: number;
  /** Whether the model was trained/used with x0 clipping to [-1, 1]. */
  clip_sample?: boolean;
  /** What the network predicts (default epsilon; lib/models/parameterisation.ts). */
  prediction_type?: "epsilon" | "v_prediction" | "sample";
  /** "learned_range": the network also outputs its variance interpolation (2C channels);
   * undefined: not declared (a model given by path is then read from its output channels). */
  variance_type?: "fixed" | "learned_range";
  /** The timestep value the network was trained on ({@link timestepValue}; default index). */
  timestep?: TimestepConvention;
}

/**
 * How the discrete index t in 0..T-1 is fed to the network: `index` t itself (diffusers,
 * guided-diffusion), `rescaled` t * 1000 / T (improved-diffusion's rescale_timesteps), or
 * `continuous` (t + 1) / T in (0, 1] (continuous-time models; DPM-Solver's discrete-to-continuous
 * map).
 */
export type TimestepConvention = "index" | "rescaled" | "continuous";

/** The value a network with convention `conv` is given for the index t of a T-step schedule. */
export function timestepValue(t: number, T: number, conv: TimestepConvention = "index"): number {
  switch (conv) {
    case "index":
      return t;
    case "rescaled":
      return t * 1000 / T;
    case "continuous":
      return (t + 1) / T;
    default:
      throw new Error(`unknown timestep convention '${conv}'; use index, rescaled or continuous`);
  }
}

/**
 * A diffusers scheduler config (scheduler_config.json of DDPMScheduler/DDIMScheduler) as the
 * toolkit's schedule: beta_schedule linear / scaled_linear / squaredcos_cap_v2 (-> cosine),
 * num_train_timesteps, beta_start/end, clip_sample, prediction_type (epsilon, v_prediction,
 * sample) and variance_type (learned_range: 2C output channels; the fixed kinds: C).
 */
export function scheduleSpecFromDiffusers(cfg: Record<string, unknown>): ScheduleSpec {
  const pred = (cfg.prediction_type as string | undefined) ?? "epsilon";
  if (pred !== "epsilon" && pred !== "v_prediction" && pred !== "sample") {
    throw new Error(
      `scheduler prediction_type '${pred}' is not supported: use epsilon, v_prediction or sample`,
    );
  }
  const vt = cfg.variance_type as string | undefined;
  let variance_type: ScheduleSpec["variance_type"];
  if (vt === "learned_range") variance_type = "learned_range";
  else if (vt === undefined || vt === null) variance_type = undefined;
  else if (/^fixed_(small|large)(_log)?$/.test(vt)) variance_type = "fixed";
  else {
    throw new Error(
      `scheduler variance_type '${vt}' is not supported: use learned_range (the network outputs ` +
        `the interpolation v, 2C channels) or a fixed_* kind`,
    );
  }
  if (cfg.trained_betas) {
    throw new Error(
      "scheduler config with trained_betas is not supported; give beta_schedule instead",
    );
  }
  const kinds: Record<string, ScheduleSpec["type"]> = {
    linear: "linear",
    scaled_linear: "scaled_linear",
    squaredcos_cap_v2: "cosine",
  };
  const bs = (cfg.beta_schedule as string | undefined) ?? "linear";
  const type = kinds[bs];
  if (!type) {
    throw new Error(
      `scheduler beta_schedule '${bs}' is not supported: use linear, scaled_linear or squaredcos_cap_v2`,
    );
  }
  return {
    type,
    T: (cfg.num_train_timesteps as number | undefined) ?? 1000,
    beta_start: (cfg.beta_start as number | undefined) ?? 1e-4,
    beta_end: (cfg.beta_end as number | undefined) ?? 0.02,
    clip_sample: (cfg.clip_sample as boolean | undefined) ?? true,
    // only what differs from the defaults (eps, variance read from the output channels), so an
    // eps model's spec (and the run identity built from it) is what it was before these fields
    ...(pred !== "epsilon" ? { prediction_type: pred } : {}),
    ...(variance_type ? { variance_type } : {}),
  };
}

/** Builds a schedule from its manifest description. */
export function scheduleFromSpec(spec: ScheduleSpec): NoiseSchedule {
  const T = spec.T ?? 1000;
  switch (spec.type) {
    case "linear":
      return linearSchedule(T, spec.beta_start ?? 1e-4, spec.beta_end ?? 0.02);
    case "scaled_linear":
      return scaledLinearSchedule(T, spec.beta_start ?? 1e-4, spec.beta_end ?? 0.02);
    case "cosine":
      return cosineSchedule(T);
    default:
      throw new Error(
        `unknown schedule type '${
          (spec as ScheduleSpec).type
        }'; use linear, scaled_linear or cosine`,
      );
  }
}

/**
 * log Sigma_theta of a learned-range model (Nichol and Dhariwal 2021, §3.1, eq 15):
 * Sigma = exp(f log beta_t + (1 - f) log beta~_t), with f = (v + 1) / 2 for the network output
 * v in [-1, 1] (improved-/guided-diffusion's LEARNED_RANGE), and beta~_0 (= 0) replaced by
 * beta~_1 as their posterior_log_variance_clipped does.
 */
export function learnedLogVariance(
  s: NoiseSchedule,
  t: number,
  v: number,
): number {
  const [maxLog, minLog] = learnedLogBounds(s, t);
  const f = (v + 1) / 2;
  return f * maxLog + (1 - f) * minLog;
}

/** (log beta_t, log beta~_t clipped at t = 0 to beta~_1): the bounds of eq 15. */
export function learnedLogBounds(s: NoiseSchedule, t: number): [number, number] {
  const tilde = (k: number) => s.betas[k] * (1 - abarAt(s, k - 1)) / (1 - abarAt(s, k));
  const minLog = Math.log(t === 0 ? (s.T > 1 ? tilde(1) : s.betas[0]) : tilde(t));
  return [Math.log(s.betas[t]), minLog];
}
