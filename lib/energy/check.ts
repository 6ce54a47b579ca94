/**
 * Checks of an energy head against its classifier: logits equal to the classifier's own (run
 * one image at a time, as a fixed-batch export must be), and the gradient against central finite
 * differences of the head's own energies along random directions (the head runs in float32, so
 * per-pixel differences drown in rounding; directional ones over a few dozen directions do not).
 * @module
 */
import { RandomStream } from "../random.ts";
import { type OnnxModel, runOnnx } from "../runtime/session.ts";
import type { LogitsTrace } from "./logits.ts";
import type { Coefficients, EnergyClassifier } from "./classifier.ts";
import { type InputConventions, toClassifierInput } from "./conventions.ts";

/** Largest logit difference between a head and its classifier. */
export interface LogitsCheck {
  /** max |head - classifier| over all images and classes. */
  maxAbsDiff: number;
  /** max |classifier logit|, for scale. */
  maxAbsLogit: number;
}

/** One row of logits turned into what the classifier outputs (its `kind`, HeadInfo.outputKind). */
function asOutput(row: Float32Array, kind: LogitsTrace["kind"]): Float64Array {
  if (kind === "logits") return Float64Array.from(row);
  const max = Math.max(...row);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (v) => kind === "softmax" ? Math.exp(v - lse) : v - lse);
}

/**
 * Runs the raw `classifier` one image at a time (its input convention applied in TypeScript)
 * and compares with `headLogits` ([n, K], the head's output for the same x01). `kind` says what
 * the classifier's output holds (HeadInfo.outputKind): for a classifier ending in a softmax the
 * head's logits are compared through the same softmax. A float16 classifier is compared in its
 * float32 form (`float32Classifier`, lib/energy/precision.ts).
 */
export async function compareLogits(
  classifier: OnnxModel,
  conv: InputConventions,
  x01: Float32Array,
  n: number,
  shape: readonly [number, number, number],
  headLogits: Float32Array,
  kind: LogitsTrace["kind"] = "logits",
): Promise<LogitsCheck> {
  const size = shape[0] * shape[1] * shape[2], K = headLogits.length / n;
  const input = toClassifierInput(x01, n, shape, conv);
  const info = classifier.inputs[0];
  const dims = info.shape.map((d, i) => i === 0 ? 1 : Number(d));
  let maxAbsDiff = 0, maxAbsLogit = 0;
  for (let i = 0; i < n; i++) {
    const res = await runOnnx(classifier, {
      [info.name]: { data: input.subarray(i * size, (i + 1) * size), dims },
    });
    const out = Object.values(res).find((t) => t.dims.length === 2 && t.dims[1] === K);
    if (!out) {
      throw new Error(`${classifier.source} has no [1, ${K}] output to compare logits with`);
    }
    const data = out.data as Float32Array;
    const head = asOutput(headLogits.subarray(i * K, (i + 1) * K), kind);
    for (let k = 0; k < K; k++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(data[k] - head[k]));
      maxAbsLogit = Math.max(maxAbsLogit, Math.abs(data[k]));
    }
  }
  return { maxAbsDiff, maxAbsLogit };
}

/**
 * Why `logits` ([n, K], a head's output on test images) look like probabilities rather than
 * logits, or undefined: every row in [0, 1] summing to 1 (softmax outputs), or every row <= 0
 * with logsumexp 0 (log-probabilities). Either reading makes the energies meaningless
 * (E(x,y) = -p_y; E(x) = 0), so a head whose output could not be traced back to logits
 * (lib/energy/logits.ts) and still looks like this is refused.
 */
export function probabilityProblem(logits: Float32Array, n: number): string | undefined {
  const K = logits.length / n;
  let probs = true, logProbs = true;
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * K, (i + 1) * K);
    let sum = 0;
    for (const v of row) {
      sum += v;
      if (!(v >= -1e-6 && v <= 1 + 1e-6)) probs = false;
      if (!(v <= 1e-6)) logProbs = false;
    }
    if (Math.abs(sum - 1) > 1e-4) probs = false;
    const max = Math.max(...row);
    let e = 0;
    for (const v of row) e += Math.exp(v - max);
    if (Math.abs(max + Math.log(e)) > 1e-4) logProbs = false;
  }
  if (probs) return "probabilities (every row is in [0, 1] and sums to 1)";
  if (logProbs) return "log-probabilities (every row has logsumexp 0, so E(x) would be 0)";
  return undefined;
}

/** Options of {@link directionalGradCheck}. */
export interface GradCheckOptions {
  /** Random unit directions (default 32). */
  directions?: number;
  /** Step along each unit direction, in [0, 1] pixel units of L2 norm (default 3e-3: below it
   * float32 rounding dominates, above it ReLU kinks do; see tools/measure_energy_head.ts). */
  step?: number;
  /** Seed of the directions (default 0). */
  seed?: number;
}

/** Agreement between the head gradient g and finite differences along directions v_i. */
export interface GradCheckResult {
  /** cos(d, G) with d_i the finite difference and G_i = g . v_i over the random directions. */
  cosine: number;
  /** |d - G| / |G| over the random directions. */
  relError: number;
  /** Relative error of the finite difference along g / |g| against |g|. */
  alongGradRelError: number;
  /** |g|. */
  gradNorm: number;
  /** Number of random directions. */
  directions: number;
  /** Finite-difference step h. */
  step: number;
}

/**
 * The objective J(x) = a E(x,y) + b E(x) + c abs(E* - E(x)) for one image, from the energies
 * (computed in float64 from the head's float32 outputs).
 */
export function objectiveValue(
  coef: Coefficients,
  energyXY: number,
  energyX: number,
  eStar: number,
): number {
  return coef[0] * energyXY + coef[1] * energyX + coef[2] * Math.abs(eStar - energyX);
}

/**
 * Compares the head's gradient at one image `x01` (C*H*W values in [0, 1]) with central finite
 * differences (J(x + h v) - J(x - h v)) / 2h of the same objective along `directions` random
 * unit directions and along the gradient itself. All perturbed images go through the head in
 * one batched call.
 */
export async function directionalGradCheck(
  clf: EnergyClassifier,
  x01: Float32Array,
  y: number,
  coef: Coefficients,
  eStar = 0,
  opts: GradCheckOptions = {},
): Promise<GradCheckResult> {
  const k = opts.directions ?? 32, h = opts.step ?? 3e-3;
  const D = clf.imageSize;
  if (x01.length !== D) throw new Error(`x01 has ${x01.length} values; one image needs ${D}`);
  const base = await clf.energies(x01, 1, [y], coef, eStar);
  const g = base.grad;
  let gradNorm = 0;
  for (let d = 0; d < D; d++) gradNorm += g[d] * g[d];
  gradNorm = Math.sqrt(gradNorm);
  const rng = new RandomStream(opts.seed ?? 0);
  // k random unit directions, then g / |g|
  const dirs = new Float64Array((k + 1) * D);
  for (let i = 0; i < k; i++) {
    let norm = 0;
    for (let d = 0; d < D; d++) {
      const v = rng.normal();
      dirs[i * D + d] = v;
      norm += v * v;
    }
    norm = Math.sqrt(norm);
    for (let d = 0; d < D; d++) dirs[i * D + d] /= norm;
  }
  for (let d = 0; d < D; d++) dirs[k * D + d] = gradNorm > 0 ? g[d] / gradNorm : 0;
  const m = 2 * (k + 1);
  const xs = new Float32Array(m * D);
  for (let i = 0; i <= k; i++) {
    for (let d = 0; d < D; d++) {
      xs[2 * i * D + d] = x01[d] + h * dirs[i * D + d];
      xs[(2 * i + 1) * D + d] = x01[d] - h * dirs[i * D + d];
    }
  }
  const fwd = await clf.forward(xs, m, new Array(m).fill(y));
  const fd = new Float64Array(k + 1), an = new Float64Array(k + 1);
  for (let i = 0; i <= k; i++) {
    const plus = objectiveValue(coef, fwd.energyXY[2 * i], fwd.energyX[2 * i], eStar);
    const minus = objectiveValue(coef, fwd.energyXY[2 * i + 1], fwd.energyX[2 * i + 1], eStar);
    fd[i] = (plus - minus) / (2 * h);
    let dot = 0;
    for (let d = 0; d < D; d++) dot += g[d] * dirs[i * D + d];
    an[i] = dot;
  }
  let dd = 0, aa = 0, da = 0, diff = 0;
  for (let i = 0; i < k; i++) {
    dd += fd[i] * fd[i];
    aa += an[i] * an[i];
    da += fd[i] * an[i];
    diff += (fd[i] - an[i]) ** 2;
  }
  return {
    cosine: da / Math.sqrt(dd * aa),
    relError: Math.sqrt(diff / aa),
    alongGradRelError: Math.abs(fd[k] - gradNorm) / gradNorm,
    gradNorm,
    directions: k,
    step: h,
  };
}
