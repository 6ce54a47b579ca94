/**
 * Dense float64 linear algebra for the metrics, on row-major `Float64Array`s: a pivoted
 * Cholesky factor of a symmetric positive semi-definite matrix and the eigenvalues of a
 * symmetric matrix (Householder tridiagonalisation, then implicit QL). Internal: not public API.
 * @module
 */

/**
 * Pivoted Cholesky factor of a symmetric PSD matrix `a` (n x n): `a = L L^T` with `L` of n rows
 * and `rank` columns, stored row-major as n x `rank` (LAPACK `dpstrf`'s algorithm, without
 * permuting the rows of L). Pivots at or below `n * eps * max(diag)` end the factorisation, as
 * in `dpstrf`, so a singular covariance (a constant feature, fewer samples than dimensions)
 * gets the rank it has instead of failing.
 *
 * @throws when a diagonal entry is negative beyond rounding or the matrix holds NaN/Inf.
 */
export function pivotedCholesky(a: Float64Array, n: number): { l: Float64Array; rank: number } {
  checkSquare(a, n, "pivotedCholesky");
  const diag = new Float64Array(n);
  let maxDiag = 0;
  for (let i = 0; i < n; i++) {
    diag[i] = a[i * n + i];
    if (!Number.isFinite(diag[i])) {
      throw new Error(`pivotedCholesky: diagonal entry ${i} is ${diag[i]}; the matrix is invalid`);
    }
    maxDiag = Math.max(maxDiag, diag[i]);
  }
  const tol = n * Number.EPSILON * maxDiag;
  for (let i = 0; i < n; i++) {
    if (diag[i] < -Math.max(tol, 1e-12 * maxDiag)) {
      throw new Error(
        `pivotedCholesky: diagonal entry ${i} is ${diag[i]} < 0; a covariance matrix is ` +
          `positive semi-definite, so the input is not one`,
      );
    }
  }
  // full[i * n + j]: column j of L (pivot order) at original row i.
  const full = new Float64Array(n * n);
  const done = new Uint8Array(n);
  let rank = 0;
  for (let j = 0; j < n; j++) {
    let p = -1;
    for (let i = 0; i < n; i++) if (!done[i] && (p < 0 || diag[i] > diag[p])) p = i;
    if (p < 0 || !(diag[p] > tol)) break;
    done[p] = 1;
    const pivot = Math.sqrt(diag[p]);
    full[p * n + j] = pivot;
    const rowP = full.subarray(p * n, p * n + j);
    for (let i = 0; i < n; i++) {
      if (done[i]) continue;
      const rowI = full.subarray(i * n, i * n + j);
      let s = a[i * n + p];
      for (let k = 0; k < j; k++) s -= rowI[k] * rowP[k];
      const v = s / pivot;
      full[i * n + j] = v;
      diag[i] -= v * v;
    }
    rank = j + 1;
  }
  const l = new Float64Array(n * rank);
  for (let i = 0; i < n; i++) l.set(full.subarray(i * n, i * n + rank), i * rank);
  return { l, rank };
}

/**
 * `L^T S L` for S (n x n, symmetric) and L (n x r, row-major): an r x r symmetric matrix.
 * Costs n^2 r + n r^2 / 2 multiply-adds.
 */
export function congruence(s: Float64Array, l: Float64Array, n: number, r: number): Float64Array {
  checkSquare(s, n, "congruence");
  if (l.length !== n * r) {
    throw new Error(`congruence: L holds ${l.length} values, expected n*r = ${n}*${r}`);
  }
  // T = S L (n x r), row i = sum_k S[i,k] L[k,:].
  const t = new Float64Array(n * r);
  for (let i = 0; i < n; i++) {
    const ti = t.subarray(i * r, (i + 1) * r);
    for (let k = 0; k < n; k++) {
      const sik = s[i * n + k];
      if (sik === 0) continue;
      const lk = l.subarray(k * r, (k + 1) * r);
      for (let c = 0; c < r; c++) ti[c] += sik * lk[c];
    }
  }
  // M = L^T T: M[a, b] = sum_i L[i,a] T[i,b]; upper triangle, then mirrored.
  const m = new Float64Array(r * r);
  for (let i = 0; i < n; i++) {
    const ti = t.subarray(i * r, (i + 1) * r);
    for (let a = 0; a < r; a++) {
      const lia = l[i * r + a];
      if (lia === 0) continue;
      const base = a * r;
      for (let b = a; b < r; b++) m[base + b] += lia * ti[b];
    }
  }
  for (let a = 0; a < r; a++) for (let b = a + 1; b < r; b++) m[b * r + a] = m[a * r + b];
  return m;
}

/**
 * Eigenvalues of a symmetric matrix (n x n, row-major; only its values are read, the argument is
 * not modified), in ascending order. Householder reduction to tridiagonal form (Numerical
 * Recipes `tred2` without eigenvectors, keeping the full symmetric matrix so every inner loop
 * runs along a row), then the QL algorithm with implicit shifts (`tqli`). About n^3
 * multiply-adds.
 *
 * @throws when QL needs more than 60 iterations for one eigenvalue (NaN input, say).
 */
export function symmetricEigenvalues(s: Float64Array, n: number): Float64Array {
  checkSquare(s, n, "symmetricEigenvalues");
  const a = Float64Array.from(s);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const u = new Float64Array(n);
  for (let i = n - 1; i >= 1; i--) {
    const l = i - 1;
    const rowI = a.subarray(i * n, i * n + i);
    if (l === 0) {
      e[i] = rowI[0];
      continue;
    }
    let scale = 0;
    for (let k = 0; k <= l; k++) scale += Math.abs(rowI[k]);
    if (scale === 0) {
      e[i] = rowI[l];
      continue;
    }
    let h = 0;
    for (let k = 0; k <= l; k++) {
      u[k] = rowI[k] / scale;
      h += u[k] * u[k];
    }
    const f = u[l];
    const g = f >= 0 ? -Math.sqrt(h) : Math.sqrt(h);
    e[i] = scale * g;
    h -= f * g;
    u[l] = f - g;
    // p = A u / h (into e[0..l]), K = u.p / 2h, q = p - K u; then A -= u q^T + q u^T.
    let fSum = 0;
    for (let j = 0; j <= l; j++) {
      const rowJ = a.subarray(j * n, j * n + l + 1);
      let dot = 0;
      for (let k = 0; k <= l; k++) dot += rowJ[k] * u[k];
      e[j] = dot / h;
      fSum += e[j] * u[j];
    }
    const hh = fSum / (h + h);
    for (let j = 0; j <= l; j++) e[j] -= hh * u[j];
    for (let j = 0; j <= l; j++) {
      const rowJ = a.subarray(j * n, j * n + l + 1);
      const uj = u[j], qj = e[j];
      for (let k = 0; k <= l; k++) rowJ[k] -= uj * e[k] + qj * u[k];
    }
  }
  for (let i = 0; i < n; i++) d[i] = a[i * n + i];
  // e[i] is the subdiagonal between rows i-1 and i; tqli wants e[i] between i and i+1.
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  tridiagonalQl(d, e, n);
  return d.sort();
}

/** Implicit-shift QL on a tridiagonal matrix (diagonal d, subdiagonal e); eigenvalues into d. */
function tridiagonalQl(d: Float64Array, e: Float64Array, n: number): void {
  for (let l = 0; l < n; l++) {
    let iter = 0;
    let m: number;
    do {
      for (m = l; m < n - 1; m++) {
        const dd = Math.abs(d[m]) + Math.abs(d[m + 1]);
        if (Math.abs(e[m]) <= Number.EPSILON * dd) break;
      }
      if (m !== l) {
        if (iter++ === 60) {
          throw new Error(
            `symmetricEigenvalues: QL did not converge for eigenvalue ${l} after 60 ` +
              `iterations; the matrix holds NaN/Inf or is not symmetric`,
          );
        }
        let g = (d[l + 1] - d[l]) / (2 * e[l]);
        let r = Math.hypot(g, 1);
        g = d[m] - d[l] + e[l] / (g + (g >= 0 ? Math.abs(r) : -Math.abs(r)));
        let s = 1, c = 1, p = 0;
        let i: number;
        let underflow = false;
        for (i = m - 1; i >= l; i--) {
          const f = s * e[i];
          const b = c * e[i];
          r = Math.hypot(f, g);
          e[i + 1] = r;
          if (r === 0) {
            d[i + 1] -= p;
            e[m] = 0;
            underflow = true;
            break;
          }
          s = f / r;
          c = g / r;
          g = d[i + 1] - p;
          r = (d[i] - g) * s + 2 * c * b;
          p = s * r;
          d[i + 1] = g + p;
          g = c * r - b;
        }
        if (underflow) continue;
        d[l] -= p;
        e[l] = g;
        e[m] = 0;
      }
    } while (m !== l);
  }
}

function checkSquare(a: Float64Array, n: number, fn: string): void {
  if (!Number.isInteger(n) || n < 1 || a.length !== n * n) {
    throw new Error(`${fn}: matrix holds ${a.length} values, expected n*n with n = ${n}`);
  }
}
