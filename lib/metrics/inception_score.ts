/**
 * Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), computed on `splits`
 * disjoint chunks of the samples; the score is the mean over chunks and its spread their
 * standard deviation. The formula and defaults are torch-fidelity's `isc_features_to_metric`:
 * softmax and log-softmax of the logits in float64, chunk i = rows [i N / splits, (i+1) N /
 * splits) (integer division), p(y) = the chunk's mean of p(y|x), std with divisor `splits`
 * (`np.std`), and the rows shuffled first with `numpy.random.RandomState(2020).permutation`
 * (reproduced exactly, see {@link numpyPermutation}) so that a class-sorted set (a guided run)
 * does not put one class in each chunk. The classifier is whatever produced the logits: name the
 * score after it (e.g. "IS_sri-resnet-a"); only Inception-v3 logits give "the" Inception Score.
 * @module
 */
import { numpyPermutation } from "./numpy_permutation.ts";

/** Options of {@link inceptionScore}. */
export interface InceptionScoreOptions {
  /** Number of chunks (default 10, as torch-fidelity and the original code). */
  splits?: number;
  /**
   * Seed of the numpy permutation applied before splitting (default 2020, torch-fidelity's
   * `rng_seed`); `null` keeps the given order.
   */
  shuffleSeed?: number | null;
}

/** Inception Score over the chunks. */
export interface InceptionScore {
  /** Mean of the per-chunk scores. */
  mean: number;
  /** Standard deviation (divisor `splits`) of the per-chunk scores. */
  std: number;
  /** The per-chunk scores exp(mean_x KL(p(y|x) || p_chunk(y))). */
  scores: number[];
  /** Number of chunks. */
  splits: number;
  /** Seed of the shuffle, or null when none. */
  shuffleSeed: number | null;
}

/**
 * Inception Score from logits ([n, k] row-major; softmax gives p(y|x)).
 *
 * A class that gets probability exactly 0 (underflow) in every row of a chunk contributes 0 to
 * the KL (its limit), where torch-fidelity would produce NaN.
 *
 * @example
 * ```ts
 * const is = inceptionScore(logits, n, 10); // { mean, std, scores, splits: 10, ... }
 * ```
 */
export function inceptionScore(
  logits: Float32Array | Float64Array,
  n: number,
  k: number,
  opts: InceptionScoreOptions = {},
): InceptionScore {
  const splits = opts.splits ?? 10;
  const shuffleSeed = opts.shuffleSeed === undefined ? 2020 : opts.shuffleSeed;
  if (!Number.isInteger(k) || k < 2) {
    throw new Error(`inceptionScore: k (classes) must be an integer >= 2, got ${k}`);
  }
  if (!Number.isInteger(n) || logits.length !== n * k) {
    throw new Error(
      `inceptionScore: logits hold ${logits.length} values, expected n*k = ${n}*${k}; pass ` +
        `[n, k] row-major logits`,
    );
  }
  if (!Number.isInteger(splits) || splits < 1 || splits > n) {
    throw new Error(
      `inceptionScore: splits must be an integer in 1..n (n = ${n} samples), got ${splits}; ` +
        `every chunk needs at least one sample`,
    );
  }
  const order = shuffleSeed === null ? null : numpyPermutation(n, shuffleSeed);
  // log p(y|x) per row, float64, max-shifted.
  const logP = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    const row = (order ? order[i] : i) * k;
    let max = -Infinity;
    for (let c = 0; c < k; c++) {
      const v = logits[row + c];
      if (!Number.isFinite(v)) {
        throw new Error(`inceptionScore: logit ${c} of sample ${row / k} is ${v}`);
      }
      if (v > max) max = v;
    }
    let sum = 0;
    for (let c = 0; c < k; c++) sum += Math.exp(logits[row + c] - max);
    const lse = max + Math.log(sum);
    for (let c = 0; c < k; c++) logP[i * k + c] = logits[row + c] - lse;
  }
  const scores: number[] = [];
  const q = new Float64Array(k);
  for (let s = 0; s < splits; s++) {
    const lo = Math.floor(s * n / splits), hi = Math.floor((s + 1) * n / splits);
    q.fill(0);
    for (let i = lo; i < hi; i++) for (let c = 0; c < k; c++) q[c] += Math.exp(logP[i * k + c]);
    for (let c = 0; c < k; c++) q[c] /= hi - lo;
    let kl = 0;
    for (let i = lo; i < hi; i++) {
      let row = 0;
      for (let c = 0; c < k; c++) {
        const p = Math.exp(logP[i * k + c]);
        if (p > 0) row += p * (logP[i * k + c] - Math.log(q[c]));
      }
      kl += row;
    }
    scores.push(Math.exp(kl / (hi - lo)));
  }
  const mean = scores.reduce((a, b) => a + b, 0) / splits;
  const std = Math.sqrt(scores.reduce((a, b) => a + (b - mean) ** 2, 0) / splits);
  return { mean, std, scores, splits, shuffleSeed };
}
