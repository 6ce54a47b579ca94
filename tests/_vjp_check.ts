// Finite-difference checks of appendVjp: build f(x), take the objective L = sum(w * f(x)) with a
// fixed pseudo-random w computed in the graph (so the cotangent of f(x) is w), append the VJP,
// run with onnxruntime-node, and compare <grad, v> with the central difference
// (L(x + eps v) - L(x - eps v)) / (2 eps) along random directions v. L is summed in float64 in JS.
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { appendVjp } from "../lib/autodiff/vjp.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, type ModelProto } from "../lib/onnx/proto.ts";
import { RandomStream } from "../lib/random.ts";

/** float64 graphs (ORT double kernels) or float32 ones (ops with float-only kernels). */
export type Precision = "double" | "float";

/**
 * Per precision: FD step, tolerance and unit roundoff. A direction passes when
 * |fd - ad| <= tol * scale + noise, scale = max(|ad|, |g| |v| / sqrt(n)) (the typical size of a
 * directional derivative, so a near-zero one by chance does not inflate the error) and
 * noise = 16 unit sum|w y| / eps (what rounding of L lets a difference quotient resolve).
 * double: step 1e-6 (truncation ~1e-12, rounding ~1e-10 relative), tol 1e-6; float: step 1e-2,
 * tol 1e-2: the O(eps^2) truncation of smooth ops and float32 rounding stay well under it.
 */
export const FD = {
  double: { eps: 1e-6, tol: 1e-6, unit: 2 ** -53 },
  float: { eps: 1e-2, tol: 1e-2, unit: 2 ** -24 },
} as const;

/** One finite-difference case. */
export interface VjpCase {
  /** Appends f(x) to `b` and returns its output value. */
  build: (b: GraphBuilder, x: string) => string;
  xDims: readonly number[];
  /**
   * Shape declared for the input x (default xDims): symbolic names (strings) make sizes
   * unknown when the graph is built, exercising the rules' dynamic (Shape-based) forms.
   */
  declaredDims?: readonly (number | string)[];
  precision: Precision;
  /** Opset the forward graph is written for (default 17). */
  opset?: number;
  seed: number;
  /** Input sampler (default standard normal). */
  sample?: (rng: RandomStream, n: number) => Float64Array;
  /** Number of random directions (default 2). */
  directions?: number;
  /** FD step and tolerance, when not the precision's defaults ({@link FD}). */
  eps?: number;
  tol?: number;
  /**
   * Piecewise-linear f (Relu, MaxPool inside): when a direction disagrees, retry it with the
   * step divided by 8, twice, before failing; a kink inside the step goes away, a wrong
   * gradient does not.
   */
  kinks?: boolean;
  /** Differentiate an existing model: `build` then receives its builder and input `input`. */
  from?: { model: ModelProto; input: string };
}

/** Result of one case, for messages. */
export interface VjpReport {
  errors: number[];
  gradDims: number[];
  outDims: number[];
}

/** Standard normals whose magnitude is at least `margin` (keeps float32 FD off kinks at 0). */
export function awayFromZero(margin: number): (rng: RandomStream, n: number) => Float64Array {
  return (rng, n) =>
    Float64Array.from({ length: n }, () => {
      const v = rng.normal();
      return Math.sign(v || 1) * (margin + Math.abs(v));
    });
}

/** Distinct values (a shuffled grid with spacing 0.1): pooling windows have a clear argmax. */
export function distinctValues(rng: RandomStream, n: number): Float64Array {
  const v = Float64Array.from({ length: n }, (_, i) => (i - n / 2) * 0.1);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [v[i], v[j]] = [v[j], v[i]];
  }
  return v;
}

/** Appends w = sin(a i + c) shaped like `y` (i the flat position), in `y`'s element type. */
export function appendWeights(
  b: GraphBuilder,
  y: string,
  a: number,
  c: number,
  elem: number,
): string {
  const scalar = (v: number) =>
    elem === DataType.DOUBLE ? b.constant("wc", [], Float64Array.of(v)) : b.f32("wc", v, []);
  const n = b.node("Cast", [b.node("Size", [y])], { to: elem });
  const iota = b.node("Range", [scalar(0), n, scalar(1)]);
  const phase = b.node("Add", [b.node("Mul", [iota, scalar(a)]), scalar(c)]);
  // allowzero (valid once appendVjp raises the opset): empty outputs keep their empty axes.
  return b.node("Reshape", [b.node("Sin", [phase]), b.node("Shape", [y])], { allowzero: 1 });
}

/** Builds the case's graph: outputs y = f(x), the weights w and the gradient of sum(w y). */
export function buildCase(c: VjpCase, rng: RandomStream): { bytes: Uint8Array; input: string } {
  const elem = c.precision === "double" ? DataType.DOUBLE : DataType.FLOAT;
  const b = c.from
    ? GraphBuilder.fromModel(c.from.model)
    : new GraphBuilder({ opset: c.opset ?? 17 });
  const x = c.from ? c.from.input : b.input("x", elem, c.declaredDims ?? c.xDims);
  const y = c.build(b, x);
  const w = appendWeights(b, y, 1.1 + 2 * rng.uniform(), 6 * rng.uniform(), elem);
  const g = appendVjp(b, y, w, x);
  b.output(y, elem, undefined, "vjp_check_y");
  b.output(w, elem, undefined, "vjp_check_w");
  b.output(g, elem, undefined, "vjp_check_g");
  return { bytes: b.toBytes(), input: x };
}

/** Runs one case and asserts the FD agreement; returns the relative errors. */
export async function checkVjp(c: VjpCase, label = ""): Promise<VjpReport> {
  const rng = new RandomStream(c.seed);
  const { bytes, input } = buildCase(c, rng);
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionProviders: ["cpu"],
  });
  const n = c.xDims.reduce((a, d) => a * d, 1);
  const x0 = (c.sample ?? ((r, k) => Float64Array.from({ length: k }, () => r.normal())))(rng, n);
  const type = c.precision === "double" ? "float64" : "float32";
  const run = async (x: Float64Array) => {
    const data = c.precision === "double" ? x : Float32Array.from(x);
    const out = await session.run({ [input]: new ort.Tensor(type, data, [...c.xDims]) });
    const y = out.vjp_check_y.data as Float64Array | Float32Array;
    const w = out.vjp_check_w.data as Float64Array | Float32Array;
    let L = 0, S = 0;
    for (let i = 0; i < y.length; i++) {
      L += w[i] * y[i];
      S += Math.abs(w[i] * y[i]);
    }
    return {
      L,
      S,
      g: out.vjp_check_g.data as Float64Array | Float32Array,
      gDims: [...out.vjp_check_g.dims],
      yDims: [...out.vjp_check_y.dims],
    };
  };
  const base = await run(x0);
  const what = `${label} x[${c.xDims}] seed ${c.seed}`;
  assert.deepEqual(
    base.gDims,
    [...c.xDims],
    `${what}: gradient shape ${base.gDims} != input shape`,
  );
  for (const v of base.g) assert.ok(Number.isFinite(v), `${what}: gradient holds ${v}`);
  const eps = c.eps ?? FD[c.precision].eps, tol = c.tol ?? FD[c.precision].tol;
  const errors: number[] = [];
  for (let d = 0; d < (c.directions ?? 2); d++) {
    const v = Float64Array.from({ length: n }, () => 2 * rng.uniform() - 1);
    let ad = 0, gg = 0, vv = 0;
    for (let i = 0; i < n; i++) {
      ad += base.g[i] * v[i];
      gg += base.g[i] ** 2;
      vv += v[i] ** 2;
    }
    const scale = Math.max(Math.abs(ad), Math.sqrt(gg * vv / n));
    let message = "";
    for (let attempt = 0, step = eps; attempt < (c.kinks ? 3 : 1); attempt++, step /= 8) {
      const plus = await run(x0.map((xi, i) => xi + step * v[i]));
      const minus = await run(x0.map((xi, i) => xi - step * v[i]));
      const fd = (plus.L - minus.L) / (2 * step);
      // Rounding of L (cancellation in sum(w y)) bounds what a difference quotient can resolve.
      const noise = 16 * FD[c.precision].unit * Math.max(base.S, plus.S) / step;
      const diff = Math.abs(fd - ad);
      const err = diff === 0 ? 0 : diff / (scale + noise / tol);
      if (err <= tol) {
        errors.push(err);
        message = "";
        break;
      }
      message =
        `${what}: directional derivative ${ad} vs finite difference ${fd} with step ${step} ` +
        `(rel err ${err.toExponential(2)} > ${tol})`;
    }
    assert.ok(message === "", message);
  }
  return { errors, gradDims: base.gDims, outDims: base.yDims };
}
