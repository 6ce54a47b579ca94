// Feature sets and logits rebuilt exactly as tools/metrics_reference.py builds them (from the
// project's RandomStream uniforms, mixed in float64 in a fixed order, rounded to float32), so the
// fixtures need not store them.
import { RandomStream } from "../lib/random.ts";

/** Parameters of a mixed feature set (see tools/metrics_reference.py `mixed_set`). */
export interface MixedSetSpec {
  n: number;
  dim: number;
  latent: number;
  noise: number;
  mixSeed: number;
  latentSeed: number;
  noiseSeed: number;
  scale: number;
  shift: number;
}

/** Parameters of class-sorted logits (tools/metrics_reference.py `class_logits`). */
export interface LogitsSpec {
  n: number;
  classes: number;
  seed: number;
  spread: number;
  bias: number;
}

/** rows x cols uniforms on (-1, 1), row-major, from one stream. */
function uniformMatrix(seed: number, rows: number, cols: number): Float64Array {
  const r = new RandomStream(seed);
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = r.uniform() * 2 - 1;
  return out;
}

/** x[i][j] = fround(sum_k (sqrt(3) z[i][k] scale + shift) A[k][j] + noise e[i][j]). */
export function mixedSet(s: MixedSetSpec): Float32Array {
  const { n, dim: d, latent: q } = s;
  const z = uniformMatrix(s.latentSeed, n, q);
  const a = uniformMatrix(s.mixSeed, q, d);
  const e = uniformMatrix(s.noiseSeed, n, d);
  const out = new Float32Array(n * d);
  const lat = new Float64Array(q);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < q; k++) lat[k] = Math.sqrt(3) * z[i * q + k] * s.scale + s.shift;
    for (let j = 0; j < d; j++) {
      let v = 0;
      for (let k = 0; k < q; k++) v += lat[k] * a[k * d + j];
      v += s.noise * e[i * d + j];
      out[i * d + j] = v;
    }
  }
  return out;
}

/** logit[i][c] = spread u + (bias when c = floor(i K / n)). */
export function classLogits(s: LogitsSpec): Float32Array {
  const u = uniformMatrix(s.seed, s.n, s.classes);
  const out = new Float32Array(s.n * s.classes);
  for (let i = 0; i < s.n; i++) {
    const cls = Math.floor(i * s.classes / s.n);
    for (let c = 0; c < s.classes; c++) {
      out[i * s.classes + c] = s.spread * u[i * s.classes + c] + (c === cls ? s.bias : 0);
    }
  }
  return out;
}

/** sum_i (i % 97 + 1) x[i] in float64 (the fixtures' rebuild check). */
export function checksum(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += (i % 97 + 1) * x[i];
  return s;
}
