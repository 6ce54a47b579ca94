/**
 * Feature statistics for the Frechet distance: the mean and the unbiased covariance (divisor
 * n - 1, as `numpy.cov` in pytorch-fid and torch-fidelity), accumulated in float64 one sample at
 * a time in the order given, so the result is bit-for-bit the same whatever the batch size the
 * features arrive in.
 * @module
 */

/** Mean and covariance of n feature vectors of dimension `dim`. */
export interface FeatureStatistics {
  /** Number of samples. */
  n: number;
  /** Feature dimension d. */
  dim: number;
  /** Mean, [d]. */
  mean: Float64Array;
  /** Unbiased covariance (divisor n - 1), [d, d] row-major, symmetric. */
  cov: Float64Array;
}

/**
 * Streaming mean and covariance. Sums are of deviations from the first sample (a shift that
 * keeps the cancellation in S - s s^T / n small) and are updated one sample at a time, so
 * splitting the same rows into other batches gives identical bits.
 *
 * @example
 * ```ts
 * const acc = new MomentAccumulator(d);
 * for (const batch of batches) acc.add(batch);
 * const stats = acc.statistics();
 * ```
 */
export class MomentAccumulator {
  /** Feature dimension d. */
  readonly dim: number;
  private n = 0;
  private shift: Float64Array;
  private sum: Float64Array;
  /** Upper triangle (row-major, full d x d storage) of sum (x - shift)(x - shift)^T. */
  private outer: Float64Array;
  private dev: Float64Array;

  /** An empty accumulator for d-dimensional features. */
  constructor(dim: number) {
    if (!Number.isInteger(dim) || dim < 1) {
      throw new Error(`MomentAccumulator: dim must be a positive integer, got ${dim}`);
    }
    this.dim = dim;
    this.shift = new Float64Array(dim);
    this.sum = new Float64Array(dim);
    this.outer = new Float64Array(dim * dim);
    this.dev = new Float64Array(dim);
  }

  /** Samples added so far. */
  get count(): number {
    return this.n;
  }

  /**
   * Adds the rows of `features` ([m, d] row-major; m = length / d).
   * @throws when the length is not a multiple of d or a value is NaN/Inf (naming the row).
   */
  add(features: Float32Array | Float64Array): void {
    const d = this.dim;
    if (features.length % d !== 0) {
      throw new Error(
        `MomentAccumulator.add: ${features.length} values are not whole rows of dim ${d}; ` +
          `pass [m, ${d}] row-major features`,
      );
    }
    const m = features.length / d;
    const { shift, sum, outer, dev } = this;
    for (let r = 0; r < m; r++) {
      const off = r * d;
      for (let j = 0; j < d; j++) {
        const v = features[off + j];
        if (!Number.isFinite(v)) {
          throw new Error(
            `MomentAccumulator.add: feature ${j} of row ${r} (sample ${this.n}) is ${v}; the ` +
              `feature network produced a non-finite value`,
          );
        }
      }
      if (this.n === 0) { for (let j = 0; j < d; j++) shift[j] = features[off + j]; }
      for (let j = 0; j < d; j++) {
        dev[j] = features[off + j] - shift[j];
        sum[j] += dev[j];
      }
      for (let j = 0; j < d; j++) {
        const dj = dev[j];
        if (dj === 0) continue;
        const base = j * d;
        for (let k = j; k < d; k++) outer[base + k] += dj * dev[k];
      }
      this.n++;
    }
  }

  /**
   * The mean and unbiased covariance of everything added.
   * @throws with fewer than 2 samples (the covariance needs n - 1 > 0).
   */
  statistics(): FeatureStatistics {
    const { n, dim: d } = this;
    if (n < 2) {
      throw new Error(
        `feature statistics need at least 2 samples for a covariance, got ${n}; evaluate more ` +
          `images`,
      );
    }
    const mean = new Float64Array(d);
    for (let j = 0; j < d; j++) mean[j] = this.shift[j] + this.sum[j] / n;
    const cov = new Float64Array(d * d);
    for (let j = 0; j < d; j++) {
      for (let k = j; k < d; k++) {
        const c = (this.outer[j * d + k] - this.sum[j] * this.sum[k] / n) / (n - 1);
        cov[j * d + k] = c;
        cov[k * d + j] = c;
      }
    }
    return { n, dim: d, mean, cov };
  }
}

/**
 * Mean and unbiased covariance of n feature rows ([n, d] row-major) in one call.
 * @example
 * ```ts
 * const stats = featureStatistics(features, 1000, 100);
 * ```
 */
export function featureStatistics(
  features: Float32Array | Float64Array,
  n: number,
  dim: number,
): FeatureStatistics {
  if (features.length !== n * dim) {
    throw new Error(
      `featureStatistics: ${features.length} values, expected n*dim = ${n}*${dim} = ${n * dim}`,
    );
  }
  const acc = new MomentAccumulator(dim);
  acc.add(features);
  return acc.statistics();
}
