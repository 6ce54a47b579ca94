/**
 * Classification accuracy and its chance level, for the robustness and noise experiments
 * (METHOD.md §5 items 1, 3, 4). Pure functions over logits arrays ([n, K], row-major).
 * @module
 */
import { argmaxRow } from "../attacks/pgd.ts";

export { argmaxRow };

/** Number of rows of `logits` ([n, K]) whose argmax (first on ties) equals the label. */
export function countCorrect(
  logits: Float32Array,
  y: ArrayLike<number>,
  n: number,
  K: number,
): number {
  if (logits.length !== n * K) {
    throw new Error(`countCorrect: logits hold ${logits.length} values, n*K = ${n * K}`);
  }
  let c = 0;
  for (let i = 0; i < n; i++) if (argmaxRow(logits, i, K) === y[i]) c++;
  return c;
}

/** Adds each row's predicted class to `counts` (length K), for the share of the most common one. */
export function tallyPredictions(
  logits: Float32Array,
  n: number,
  K: number,
  counts: Float64Array,
): void {
  for (let i = 0; i < n; i++) counts[argmaxRow(logits, i, K)]++;
}

/** Binomial standard error sqrt(p (1 - p) / n) of an accuracy p measured on n images. */
export function binomialSE(p: number, n: number): number {
  return Math.sqrt(Math.max(0, p * (1 - p)) / n);
}

/**
 * The accuracy at or below which a classifier counts as "at chance" on n images of K classes:
 * 1/K + 2 SE, with SE = sqrt((1/K)(1 - 1/K)/n) the standard error of a chance-level accuracy
 * (K = 10, n = 1000: 0.1 + 2 * 0.0095 = 0.119).
 */
export function chanceThreshold(n: number, K: number): number {
  return 1 / K + 2 * binomialSE(1 / K, n);
}

/**
 * The first t (in grid order) whose accuracy is <= `threshold`, or null if none; the "falls to
 * chance" time of Fig 4.5.
 */
export function firstAtOrBelow(
  ts: readonly number[],
  accuracy: readonly number[],
  threshold: number,
): number | null {
  if (ts.length !== accuracy.length) {
    throw new Error(`firstAtOrBelow: ${ts.length} timesteps, ${accuracy.length} accuracies`);
  }
  const i = accuracy.findIndex((a) => a <= threshold);
  return i < 0 ? null : ts[i];
}
