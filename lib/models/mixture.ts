/**
 * An exact denoiser for a mixture of isotropic Gaussians in image space: the optimal
 * eps*(x_t, t) = E[eps | x_t] when x0 ~ sum_k pi_k N(mu_k, s2_k I) and
 * x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (eq 2.11). It is the toolkit's always-runnable
 * model and the oracle for sampler tests.
 *
 * Under the forward process x_t | k ~ N(sqrt(abar) mu_k, v_k I), v_k = abar s2_k + 1 - abar, so
 *   r_k(x_t) = softmax_k( log pi_k - D/2 log v_k - |x_t - sqrt(abar) mu_k|^2 / (2 v_k) ),
 *   score(x_t) = -sum_k r_k (x_t - sqrt(abar) mu_k) / v_k,
 *   eps*(x_t) = -sqrt(1 - abar) score(x_t).
 * @module
 */
import { DataType } from "../onnx/proto.ts";
import { GraphBuilder } from "../onnx/builder.ts";
import type { NoiseSchedule } from "../schedule.ts";
import type { ImageShape } from "../sampler/loop.ts";

/** A mixture of K isotropic Gaussians in D dimensions (pixel space [-1, 1]). */
export interface GaussianMixture {
  /** K*D component means, row-major. */
  means: Float64Array;
  /** K mixture weights (sum 1). */
  weights: Float64Array;
  /** K per-component isotropic variances s2_k. */
  variances: Float64Array;
  /** Number of components K. */
  k: number;
  /** Dimension D of each component (values per image, C*H*W). */
  dim: number;
}

/** Validates and builds a mixture value. */
export function gaussianMixture(
  means: ArrayLike<number>,
  weights: ArrayLike<number>,
  variances: ArrayLike<number>,
): GaussianMixture {
  const k = weights.length;
  if (k < 1 || variances.length !== k || means.length % k !== 0) {
    throw new Error(
      `mixture: ${k} weights, ${variances.length} variances and ${means.length} mean values do not fit`,
    );
  }
  const sum = Array.from(weights).reduce((a, b) => a + b, 0);
  if (Math.abs(sum - 1) > 1e-6 || Array.from(weights).some((w) => !(w > 0))) {
    throw new Error(`mixture weights must be positive and sum to 1; they sum to ${sum}`);
  }
  if (Array.from(variances).some((v) => !(v > 0))) throw new Error("mixture variances must be > 0");
  return {
    means: Float64Array.from(means),
    weights: Float64Array.from(weights),
    variances: Float64Array.from(variances),
    k,
    dim: means.length / k,
  };
}

/** Posterior component probabilities r_k(x_t) for n images (n*K, float64). */
export function mixtureResponsibilities(
  m: GaussianMixture,
  x: ArrayLike<number>,
  n: number,
  abar: number,
): Float64Array {
  const { k, dim } = m;
  const sa = Math.sqrt(abar);
  const r = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let j = 0; j < k; j++) {
      const v = abar * m.variances[j] + 1 - abar;
      let d2 = 0;
      for (let p = 0; p < dim; p++) {
        const d = x[i * dim + p] - sa * m.means[j * dim + p];
        d2 += d * d;
      }
      const l = Math.log(m.weights[j]) - dim / 2 * Math.log(v) - d2 / (2 * v);
      r[i * k + j] = l;
      if (l > max) max = l;
    }
    let z = 0;
    for (let j = 0; j < k; j++) z += r[i * k + j] = Math.exp(r[i * k + j] - max);
    for (let j = 0; j < k; j++) r[i * k + j] /= z;
  }
  return r;
}

/** eps*(x_t) of the mixture in float64 (the reference the ONNX graph is tested against). */
export function mixtureEps(
  m: GaussianMixture,
  x: ArrayLike<number>,
  n: number,
  abar: number,
): Float64Array {
  const { k, dim } = m;
  const r = mixtureResponsibilities(m, x, n, abar);
  const sa = Math.sqrt(abar), s1a = Math.sqrt(1 - abar);
  const out = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      const w = r[i * k + j] / (abar * m.variances[j] + 1 - abar);
      if (w === 0) continue;
      for (let p = 0; p < dim; p++) {
        out[i * dim + p] += s1a * w * (x[i * dim + p] - sa * m.means[j * dim + p]);
      }
    }
  }
  return out;
}

/**
 * The constants both mixture graphs use for |x - c mu_k|^2 = |x|^2 - 2c x.mu_k + c^2 |mu_k|^2:
 * the means transposed to [D, K] (for x . mu_k as one MatMul) and |mu_k|^2 (float32).
 */
function meanTerms(m: GaussianMixture): { muT: Float32Array; mm: Float32Array } {
  const { k, dim } = m;
  const muT = new Float32Array(dim * k), mm = new Float32Array(k);
  for (let j = 0; j < k; j++) {
    for (let p = 0; p < dim; p++) {
      const mu = m.means[j * dim + p];
      muT[p * k + j] = mu;
      mm[j] += mu * mu;
    }
  }
  return { muT, mm };
}

/**
 * Builds the mixture's exact denoiser as an ONNX graph (opset 17) with the toolkit's denoiser
 * contract: inputs `x` float32 [N,C,H,W] in [-1, 1] and `t` int64 [N]; output `eps` float32
 * [N,C,H,W]. abar_t is a Gather from a table of the schedule (computed in float64, stored float32).
 */
export function buildMixtureDenoiser(
  m: GaussianMixture,
  schedule: NoiseSchedule,
  shape: ImageShape,
): Uint8Array {
  const { k, dim } = m;
  if (shape.c * shape.h * shape.w !== dim) {
    throw new Error(
      `mixture has dimension ${dim}, image shape ${shape.c}x${shape.h}x${shape.w} does not match`,
    );
  }
  const b = new GraphBuilder({ name: "gaussian_mixture_denoiser", opset: 17 });
  const x = b.input("x", DataType.FLOAT, ["N", shape.c, shape.h, shape.w]);
  const t = b.input("t", DataType.INT64, ["N"]);
  const table = b.constant("abar_table", [schedule.T], Float32Array.from(schedule.alphasCumprod));
  const a = b.node("Unsqueeze", [b.node("Gather", [table, t], { axis: 0 }), b.i64("ax1", [1])]); // [N,1]
  const sa = b.node("Sqrt", [a]);
  const oneMinusA = b.node("Sub", [b.f32("one", 1), a]);
  const s1a = b.node("Sqrt", [oneMinusA]);
  const xf = b.node("Reshape", [x, b.i64("flat", [0, -1])]); // [N,D]
  // v_k = abar s2_k + (1 - abar)   [N,K]
  const v = b.node("Add", [
    b.node("Mul", [a, b.f32("s2", Array.from(m.variances), [1, k])]),
    oneMinusA,
  ]);
  const { muT, mm } = meanTerms(m);
  const xm = b.node("MatMul", [xf, b.constant("muT", [dim, k], muT)]); // [N,K]
  const xx = b.node("ReduceSum", [b.node("Mul", [xf, xf]), b.i64("ax", [1])], { keepdims: 1 });
  // |x - sqrt(abar) mu_k|^2 = |x|^2 - 2 sqrt(abar) x.mu_k + abar |mu_k|^2
  const d2 = b.node("Add", [
    b.node("Sub", [xx, b.node("Mul", [b.f32("two", 2), b.node("Mul", [sa, xm])])]),
    b.node("Mul", [a, b.f32("mu_sq", Array.from(mm), [1, k])]),
  ]);
  const logits = b.node("Sub", [
    b.node("Sub", [
      b.f32("log_pi", Array.from(m.weights, Math.log), [1, k]),
      b.node("Mul", [b.f32("half_d", dim / 2), b.node("Log", [v])]),
    ]),
    b.node("Div", [d2, b.node("Mul", [b.f32("two_", 2), v])]),
  ]);
  const r = b.node("Softmax", [logits], { axis: 1 });
  const rv = b.node("Div", [r, v]); // r_k / v_k
  const sumRv = b.node("ReduceSum", [rv, b.i64("ax_", [1])], { keepdims: 1 });
  const mu = b.constant("mu", [k, dim], Float32Array.from(m.means));
  const inner = b.node("Sub", [
    b.node("Mul", [xf, sumRv]),
    b.node("Mul", [sa, b.node("MatMul", [rv, mu])]),
  ]);
  const eps = b.node("Reshape", [b.node("Mul", [s1a, inner]), b.node("Shape", [x])]);
  b.output(eps, DataType.FLOAT, ["N", shape.c, shape.h, shape.w], "eps");
  b.setMetadata("robust_guidance.kind", "denoiser");
  b.setMetadata("robust_guidance.model", `gaussian-mixture(K=${k}, D=${dim})`);
  b.setMetadata("robust_guidance.schedule", schedule.name);
  return b.toBytes();
}

/**
 * The mixture's clean-space class posterior as an ONNX classifier: input `x` float32 [N,C,H,W]
 * in [-1, 1] (compile its energy head with range "pm1"); output `logits` [N,K] with
 * logits_k = log pi_k - D/2 log s2_k - |x - mu_k|^2 / (2 s2_k), so softmax(logits) = p(k | x0 = x).
 * The exact classifier for guidance tests (METHOD.md §4).
 */
export function buildMixtureClassifier(m: GaussianMixture, shape: ImageShape): Uint8Array {
  const { k, dim } = m;
  if (shape.c * shape.h * shape.w !== dim) {
    throw new Error(
      `mixture has dimension ${dim}, image shape ${shape.c}x${shape.h}x${shape.w} does not match`,
    );
  }
  const b = new GraphBuilder({ name: "gaussian_mixture_posterior", opset: 13 });
  const x = b.input("x", DataType.FLOAT, ["N", shape.c, shape.h, shape.w]);
  const xf = b.node("Reshape", [x, b.i64("flat", [0, -1])]); // [N,D]
  const { muT, mm } = meanTerms(m);
  const xx = b.node("ReduceSum", [b.node("Mul", [xf, xf]), b.i64("ax", [1])], { keepdims: 1 }); // [N,1]
  const xm = b.node("MatMul", [xf, b.constant("muT", [dim, k], muT)]); // [N,K]
  // |x - mu_k|^2 = |x|^2 - 2 x.mu_k + |mu_k|^2
  const d2 = b.node("Add", [
    b.node("Sub", [xx, b.node("Mul", [b.f32("two", 2), xm])]),
    b.f32("mu_sq", Array.from(mm), [1, k]),
  ]);
  const inv2s2 = b.f32("inv_2s2", Array.from(m.variances, (v) => 1 / (2 * v)), [1, k]);
  const bias = b.f32(
    "bias",
    Array.from(m.weights, (w, j) => Math.log(w) - dim / 2 * Math.log(m.variances[j])),
    [1, k],
  );
  const logits = b.node("Sub", [bias, b.node("Mul", [d2, inv2s2])]);
  b.output(logits, DataType.FLOAT, ["N", k], "logits");
  return b.toBytes();
}
