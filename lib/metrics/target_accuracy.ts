/**
 * Target accuracy (METHOD.md §6): the share of images that an independent classifier assigns to
 * the class they were meant to show (for real images, their label), overall and per class.
 * @module
 */

/** Accuracy of argmax predictions against intended labels. */
export interface TargetAccuracy {
  /** Share of all images predicted as their label. */
  overall: number;
  /** Per class k: share of the images labelled k predicted as k; null when none is labelled k. */
  perClass: (number | null)[];
  /** Images per label. */
  counts: number[];
  /** confusion[label][predicted]: image counts. */
  confusion: number[][];
}

/**
 * Scores logits ([n, k] row-major) against labels; the prediction is the first maximal logit.
 * @example
 * ```ts
 * targetAccuracy(Float32Array.of(1, 0, 0, 2), [0, 0], 2).overall; // 0.5
 * ```
 */
export function targetAccuracy(
  logits: Float32Array | Float64Array,
  labels: ArrayLike<number>,
  k: number,
): TargetAccuracy {
  const n = labels.length;
  if (n < 1 || logits.length !== n * k) {
    throw new Error(
      `targetAccuracy: ${logits.length} logits for ${n} labels and k = ${k} classes; pass ` +
        `[n, k] logits and n labels (n >= 1)`,
    );
  }
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  const counts = new Array<number>(k).fill(0);
  let hits = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= k) {
      throw new Error(`targetAccuracy: label ${i} is ${y}, not a class index in 0..${k - 1}`);
    }
    let pred = 0;
    for (let c = 1; c < k; c++) if (logits[i * k + c] > logits[i * k + pred]) pred = c;
    counts[y]++;
    confusion[y][pred]++;
    if (pred === y) hits++;
  }
  return {
    overall: hits / n,
    perClass: counts.map((c, y) => c ? confusion[y][y] / c : null),
    counts,
    confusion,
  };
}
