/**
 * Frechet distance between two Gaussians fitted to feature sets (Heusel et al. 2017, eq. 6; the
 * quantity pytorch-fid and torch-fidelity report as FID when the features are Inception pool3):
 *
 *   FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).
 *
 * pytorch-fid takes `scipy.linalg.sqrtm(S1 @ S2)` (a Schur method on a non-symmetric matrix, which
 * can return complex noise); torch-fidelity sums the square roots of `eigvals(S1 @ S2)`. Here the
 * trace is taken without a non-symmetric matrix: with S1 = L L^T (pivoted Cholesky, so a singular
 * S1 is fine), S1 S2 = L (L^T S2) is similar, on its non-zero spectrum, to the symmetric PSD
 * matrix M = L^T S2 L, so tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(M)). Eigenvalues that rounding
 * makes slightly negative count as 0 and are reported.
 * @module
 */
import { congruence, pivotedCholesky, symmetricEigenvalues } from "./_linalg.ts";
import type { FeatureStatistics } from "./statistics.ts";

/** The Frechet distance and its parts. */
export interface FrechetDistance {
  /** |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). */
  value: number;
  /** |mu1 - mu2|^2. */
  meanTerm: number;
  /** tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). */
  covarianceTerm: number;
  /** tr((S1 S2)^(1/2)). */
  traceSqrt: number;
  /** Numerical rank of S1 (its pivoted Cholesky factor's width). */
  rank1: number;
  /** Most negative eigenvalue of L^T S2 L (rounding); 0 when none. Clipped to 0 in the trace. */
  negativeEigenvalue: number;
}

/**
 * Frechet distance between N(mu1, S1) and N(mu2, S2), in float64.
 *
 * @param a statistics of the first set (e.g. the generated images).
 * @param b statistics of the second set (e.g. the reference images); the value is symmetric in
 *   a and b up to rounding.
 * @example
 * ```ts
 * const fd = frechetDistance(featureStatistics(fake, n1, d), featureStatistics(real, n2, d));
 * console.log(fd.value);
 * ```
 */
export function frechetDistance(a: FeatureStatistics, b: FeatureStatistics): FrechetDistance {
  if (a.dim !== b.dim) {
    throw new Error(
      `frechetDistance: feature dimensions differ (${a.dim} vs ${b.dim}); both statistics must ` +
        `come from the same feature network and layer`,
    );
  }
  const d = a.dim;
  for (const [name, s] of [["first", a], ["second", b]] as const) {
    if (s.mean.length !== d || s.cov.length !== d * d) {
      throw new Error(
        `frechetDistance: ${name} statistics hold ${s.mean.length} means and ${s.cov.length} ` +
          `covariance entries for dim ${d} (expected ${d} and ${d * d})`,
      );
    }
  }
  let meanTerm = 0;
  for (let i = 0; i < d; i++) {
    const diff = a.mean[i] - b.mean[i];
    meanTerm += diff * diff;
  }
  let traces = 0;
  for (let i = 0; i < d; i++) traces += a.cov[i * d + i] + b.cov[i * d + i];
  const traceSqrt = traceSqrtProduct(a.cov, b.cov, d);
  const covarianceTerm = traces - 2 * traceSqrt.value;
  return {
    value: meanTerm + covarianceTerm,
    meanTerm,
    covarianceTerm,
    traceSqrt: traceSqrt.value,
    rank1: traceSqrt.rank,
    negativeEigenvalue: traceSqrt.negative,
  };
}

/**
 * tr((S1 S2)^(1/2)) for symmetric PSD S1, S2 (d x d, row-major float64): the sum of the square
 * roots of the eigenvalues of L^T S2 L, where S1 = L L^T. Costs about 2.8 d^3 multiply-adds
 * (d = 2048: tens of seconds in one thread).
 */
export function traceSqrtProduct(
  s1: Float64Array,
  s2: Float64Array,
  d: number,
): { value: number; rank: number; negative: number } {
  const { l, rank } = pivotedCholesky(s1, d);
  if (rank === 0) return { value: 0, rank, negative: 0 };
  const eig = symmetricEigenvalues(congruence(s2, l, d, rank), rank);
  let value = 0;
  let negative = 0;
  for (const v of eig) {
    if (v > 0) value += Math.sqrt(v);
    else negative = Math.min(negative, v);
  }
  return { value, rank, negative };
}
