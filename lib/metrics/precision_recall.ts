/**
 * Improved precision and recall (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric
 * for Assessing Generative Models", eq. 1-3): each set's manifold is the union of balls around
 * its samples, each ball reaching the sample's k-th nearest neighbour within the same set (k = 3,
 * the sample itself not counted). Precision is the share of generated samples inside the real
 * manifold, recall the share of real samples inside the generated one.
 *
 * Convention (torch-fidelity `metric_prc.py` and NVlabs stylegan2-ada-pytorch): a sample is
 * inside a ball when its distance is <= the radius (prdc uses <, which differs only on ties).
 * So a collapsed generated set (all samples identical) has every radius 0: recall is the share
 * of real samples exactly equal to the collapsed point (0 for a generic point), and precision is
 * 1 when that point lies in some real ball, else 0.
 *
 * Distances are exact float64 sums of squared differences (no |a|^2 + |b|^2 - 2ab shortcut), so
 * identical points are exactly 0 apart. Memory is O((n_real + n_fake) d): no distance matrix is
 * stored; radii keep the k smallest distances per row, and a membership scan stops at the first
 * ball that holds the sample. Sums stop early once they cannot matter (exact: partial sums of
 * squares only grow). Time is O(n^2 d) at worst, in one thread.
 * @module
 */

/** Dimensions summed between checks of the early exit. */
const BLOCK = 16;

/** Precision and recall of a generated set against a real one. */
export interface PrecisionRecall {
  /** Share of generated samples inside the real manifold. */
  precision: number;
  /** Share of real samples inside the generated manifold. */
  recall: number;
  /** Neighbourhood size k. */
  k: number;
  /** Real samples. */
  nReal: number;
  /** Generated samples. */
  nFake: number;
}

/** Options of {@link precisionRecall}. */
export interface PrecisionRecallOptions {
  /** Neighbourhood size (default 3). */
  k?: number;
  /** Called with (rows done, rows in total) as the four passes advance. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Precision and recall with k-NN balls. `real` and `fake` are [n, dim] row-major features from
 * the same network.
 *
 * @example
 * ```ts
 * const { precision, recall } = precisionRecall(realFeatures, 1000, fakeFeatures, 1000, 100);
 * ```
 */
export function precisionRecall(
  real: Float32Array | Float64Array,
  nReal: number,
  fake: Float32Array | Float64Array,
  nFake: number,
  dim: number,
  opts: PrecisionRecallOptions = {},
): PrecisionRecall {
  const k = opts.k ?? 3;
  if (!Number.isInteger(k) || k < 1) {
    throw new Error(`precisionRecall: k must be a positive integer, got ${k}`);
  }
  const r = toRows(real, nReal, dim, "real", k);
  const f = toRows(fake, nFake, dim, "generated", k);
  const total = 2 * (nReal + nFake);
  let done = 0;
  const tick = (rows: number) => opts.onProgress?.(done += rows, total);
  const realRadii = kthNeighbourDistances(r, nReal, dim, k, tick);
  const fakeRadii = kthNeighbourDistances(f, nFake, dim, k, tick);
  const precision = shareInsideBalls(f, nFake, r, realRadii, nReal, dim, tick);
  const recall = shareInsideBalls(r, nReal, f, fakeRadii, nFake, dim, tick);
  return { precision, recall, k, nReal, nFake };
}

/**
 * Squared distance from every row to its k-th nearest other row (rows are [n, d] row-major).
 * Each pair is computed once and offered to both rows.
 *
 * @param onRows called with the number of rows finished, as they finish.
 */
export function kthNeighbourDistances(
  x: Float64Array,
  n: number,
  d: number,
  k: number,
  onRows?: (rows: number) => void,
): Float64Array {
  if (n < k + 1) {
    throw new Error(`kthNeighbourDistances: ${n} samples have no ${k}-th neighbour; need > ${k}`);
  }
  // best[i * k ..]: the k smallest squared distances of row i, ascending.
  const best = new Float64Array(n * k).fill(Infinity);
  const last = k - 1;
  for (let i = 0; i < n; i++) {
    const a = x.subarray(i * d, (i + 1) * d);
    for (let j = i + 1; j < n; j++) {
      // A pair whose partial sum already reaches both rows' current k-th distance can enter
      // neither list (sums only grow): stop summing it. Exact, and most pairs stop early.
      const limit = Math.max(best[i * k + last], best[j * k + last]);
      const off = j * d;
      let s = 0;
      for (let c0 = 0; c0 < d && s < limit; c0 += BLOCK) {
        const end = Math.min(d, c0 + BLOCK);
        for (let c = c0; c < end; c++) {
          const t = a[c] - x[off + c];
          s += t * t;
        }
      }
      if (s >= limit) continue;
      insertSmallest(best, i * k, k, s);
      insertSmallest(best, j * k, k, s);
    }
    onRows?.(1);
  }
  const radii = new Float64Array(n);
  for (let i = 0; i < n; i++) radii[i] = best[i * k + k - 1];
  return radii;
}

/**
 * Share of the `n` rows of `points` within (<=) squared distance `radii2[j]` of some row j of
 * `centres`.
 */
export function shareInsideBalls(
  points: Float64Array,
  n: number,
  centres: Float64Array,
  radii2: Float64Array,
  m: number,
  d: number,
  onRows?: (rows: number) => void,
): number {
  let inside = 0;
  for (let i = 0; i < n; i++) {
    const p = points.subarray(i * d, (i + 1) * d);
    for (let j = 0; j < m; j++) {
      const off = j * d;
      const limit = radii2[j];
      let s = 0;
      for (let c0 = 0; c0 < d && s <= limit; c0 += BLOCK) {
        const end = Math.min(d, c0 + BLOCK);
        for (let c = c0; c < end; c++) {
          const t = p[c] - centres[off + c];
          s += t * t;
        }
      }
      if (s <= limit) {
        inside++;
        break;
      }
    }
    onRows?.(1);
  }
  return inside / n;
}

/** Keeps the k smallest values seen in best[at .. at+k) (ascending). */
function insertSmallest(best: Float64Array, at: number, k: number, v: number): void {
  if (v >= best[at + k - 1]) return;
  let p = at + k - 1;
  while (p > at && best[p - 1] > v) {
    best[p] = best[p - 1];
    p--;
  }
  best[p] = v;
}

/** Checks a feature set and copies it to float64. */
function toRows(
  x: Float32Array | Float64Array,
  n: number,
  d: number,
  name: string,
  k: number,
): Float64Array {
  if (!Number.isInteger(d) || d < 1 || !Number.isInteger(n) || x.length !== n * d) {
    throw new Error(
      `precisionRecall: ${name} features hold ${x.length} values, expected n*dim = ${n}*${d}`,
    );
  }
  if (n < k + 1) {
    throw new Error(
      `precisionRecall: the ${name} set has ${n} samples; k = ${k} neighbours need at least ` +
        `${k + 1}`,
    );
  }
  const out = Float64Array.from(x);
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) {
      throw new Error(
        `precisionRecall: ${name} feature ${i % d} of sample ${Math.floor(i / d)} is ${out[i]}`,
      );
    }
  }
  return out;
}
