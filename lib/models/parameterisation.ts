/**
 * What a denoiser network outputs, converted to eps and x0_hat in ONE place.
 *
 * With alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t) and x_t = alpha_t x0 + sigma_t eps
 * (METHOD.md §2, eq 2.11):
 *   - `epsilon` (Ho et al. 2020): the network gives eps; x0_hat = (x_t - sigma_t eps) / alpha_t.
 *   - `sample` (predict_xstart): the network gives x0; eps = (x_t - alpha_t x0) / sigma_t.
 *   - `v_prediction` (Salimans and Ho 2022, §4 and appendix D): the network gives
 *     v = alpha_t eps - sigma_t x0, so x0_hat = alpha_t x_t - sigma_t v and
 *     eps = sigma_t x_t + alpha_t v (alpha^2 + sigma^2 = 1).
 * A `learned_range` variance (Nichol and Dhariwal 2021, §3.1, eq 15) doubles the output channels:
 * per image the first C channels are the prediction above, the other C the variance interpolation
 * v in [-1, 1] that the DDPM step reads (lib/sampler/ddpm.ts); DDIM ignores it.
 * @module
 */

/** What the network predicts (diffusers' `prediction_type`). */
export type PredictionType = "epsilon" | "v_prediction" | "sample";

/** Whether the network also outputs its variance (diffusers' `variance_type` "learned_range"). */
export type VarianceType = "fixed" | "learned_range";

/** A denoiser's output parameterisation. */
export interface OutputSpec {
  /** What the first C output channels are. */
  prediction: PredictionType;
  /** `learned_range`: C more channels hold the variance interpolation v (2C in all). */
  variance: VarianceType;
}

/** Every prediction type, in the order the CLI lists them. */
export const PREDICTION_TYPES: readonly PredictionType[] = ["epsilon", "v_prediction", "sample"];

/** Output channels a model with `spec` has for `c` image channels. */
export function outputChannels(spec: OutputSpec, c: number): number {
  return spec.variance === "learned_range" ? 2 * c : c;
}

/** eps_hat, x0_hat and (learned variance) v of one network output. */
export interface Converted {
  /** eps_hat, [N, C, H, W]. */
  eps: Float32Array;
  /** x0_hat, [N, C, H, W] (not clipped). */
  x0: Float32Array;
  /** The variance interpolation v in [-1, 1], [N, C, H, W], for `learned_range` models. */
  v?: Float32Array;
}

/**
 * Converts a network output at timestep t (abar = abar_t) to eps_hat and x0_hat (equations in
 * the module doc), and splits off the learned variance. `out` holds n images of
 * outputChannels(spec, C) x H x W values; `x` holds the n inputs x_t of `per` = C H W values each.
 * Arithmetic in float64.
 */
export function convertOutput(
  out: Float32Array,
  x: Float32Array,
  abar: number,
  spec: OutputSpec,
  n: number,
): Converted {
  const per = x.length / n;
  const perOut = spec.variance === "learned_range" ? 2 * per : per;
  if (out.length !== n * perOut) {
    throw new Error(
      `denoiser output holds ${out.length} values for ${n} images of ${per}: a ${spec.prediction}` +
        `${
          spec.variance === "learned_range" ? " + learned variance" : ""
        } model must give ${perOut} per image`,
    );
  }
  if (!(abar > 0 && abar <= 1)) throw new Error(`abar_t = ${abar} is outside (0, 1]`);
  const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
  const eps = new Float32Array(n * per), x0 = new Float32Array(n * per);
  const v = spec.variance === "learned_range" ? new Float32Array(n * per) : undefined;
  for (let k = 0; k < n; k++) {
    const o = k * perOut, b = k * per;
    for (let i = 0; i < per; i++) {
      const xi = x[b + i], p = out[o + i];
      switch (spec.prediction) {
        case "epsilon":
          eps[b + i] = p;
          x0[b + i] = (xi - s * p) / a;
          break;
        case "sample":
          x0[b + i] = p;
          eps[b + i] = (xi - a * p) / s;
          break;
        case "v_prediction":
          x0[b + i] = a * xi - s * p;
          eps[b + i] = s * xi + a * p;
          break;
        default:
          throw new Error(`unknown prediction type '${spec.prediction}'`);
      }
    }
    if (v) v.set(out.subarray(o + per, o + 2 * per), b);
  }
  return { eps, x0, v };
}

/**
 * The inverse of {@link convertOutput}: what a network of parameterisation `spec` outputs when
 * its eps_hat is `eps` (and, for learned variance, its v). Used to write a known denoiser (the
 * exact Gaussian mixture) in every parameterisation for the property tests.
 */
export function networkOutput(
  eps: Float32Array,
  x: Float32Array,
  abar: number,
  spec: OutputSpec,
  n: number,
  v?: Float32Array,
): Float32Array {
  const per = x.length / n;
  const perOut = spec.variance === "learned_range" ? 2 * per : per;
  const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
  const out = new Float32Array(n * perOut);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < per; i++) {
      const xi = x[k * per + i], e = eps[k * per + i];
      const x0 = (xi - s * e) / a;
      out[k * perOut + i] = spec.prediction === "epsilon"
        ? e
        : spec.prediction === "sample"
        ? x0
        : a * e - s * x0;
    }
    if (spec.variance === "learned_range") {
      if (!v) throw new Error("networkOutput: a learned_range output needs v");
      out.set(v.subarray(k * per, (k + 1) * per), k * perOut + per);
    }
  }
  return out;
}
