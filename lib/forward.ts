/**
 * The forward (noising) process q(x_t | x0) (METHOD.md §2, eq 2.11).
 * @module
 */

/** x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, element-wise (eq 2.11). */
export function qSample(
  x0: Float32Array,
  abar: number,
  eps: Float32Array,
  out: Float32Array = new Float32Array(x0.length),
): Float32Array {
  if (eps.length !== x0.length) {
    throw new Error(`qSample: eps has ${eps.length} values, x0 has ${x0.length}`);
  }
  const a = Math.sqrt(abar), b = Math.sqrt(1 - abar);
  for (let i = 0; i < x0.length; i++) out[i] = a * x0[i] + b * eps[i];
  return out;
}
