// Tiny hand-built classifiers for the energy-head tests, and the head's closed form on them.
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType } from "../lib/onnx/proto.ts";
import { RandomStream } from "../lib/random.ts";
import type { InputConventions } from "../lib/energy/head.ts";

/** A linear classifier logits = W flatten(u) + bias, u the classifier's (normalised) input. */
export interface TinyLinear {
  bytes: Uint8Array;
  C: number;
  H: number;
  W: number;
  K: number;
  /** [K, D] in the classifier's input layout, float32 values. */
  weight: Float32Array;
  bias: Float32Array;
  layout: "nchw" | "nhwc";
}

/** How the classifier flattens its input (fixed-batch exports use Reshape [1, -1] or [1, D]). */
export type FlattenKind = "flatten" | "reshape-1" | "reshape-D" | "constant-node";

/** Builds `logits = Gemm(flatten(u), W, bias, transB=1)` with a fixed batch of 1. */
export function tinyLinear(opts: {
  C?: number;
  H?: number;
  W?: number;
  K?: number;
  layout?: "nchw" | "nhwc";
  flatten?: FlattenKind;
  opset?: number;
  inputName?: string;
  outputName?: string;
  seed?: number;
}): TinyLinear {
  const { C = 3, H = 4, W = 5, K = 7, layout = "nchw", flatten = "flatten", opset = 9 } = opts;
  const D = C * H * W;
  const rng = new RandomStream(opts.seed ?? 1);
  const weight = new Float32Array(K * D).map(() => 0.3 * rng.normal());
  const bias = new Float32Array(K).map(() => 0.5 * rng.normal());
  const b = new GraphBuilder({ opset });
  const u = b.input(
    opts.inputName ?? "input",
    DataType.FLOAT,
    layout === "nchw" ? [1, C, H, W] : [1, H, W, C],
  );
  let flat: string;
  if (flatten === "flatten") flat = b.node("Flatten", [u], { axis: 1 });
  else if (flatten === "constant-node") {
    const shape = b.node("Constant", [], { value: makeI64Tensor([1, -1]) });
    flat = b.node("Reshape", [u, shape]);
  } else flat = b.node("Reshape", [u, b.i64("shape", flatten === "reshape-1" ? [1, -1] : [1, D])]);
  const logits = b.node(
    "Gemm",
    [flat, b.constant("W", [K, D], weight), b.constant("b", [K], bias)],
    {
      transB: 1,
    },
    { outputs: [opts.outputName ?? "out"] },
  );
  b.output(logits, DataType.FLOAT, [1, K]);
  return { bytes: b.toBytes(), C, H, W, K, weight, bias, layout };
}

function makeI64Tensor(values: number[]) {
  const data = BigInt64Array.from(values.map(BigInt));
  return {
    dims: [values.length],
    data_type: DataType.INT64,
    raw_data: new Uint8Array(data.buffer),
  };
}

/** The head's outputs computed in float64 from the closed form of a {@link TinyLinear}. */
export function linearHeadClosedForm(
  m: TinyLinear,
  conv: InputConventions,
  x01: Float32Array,
  n: number,
  y: readonly number[],
  coef: readonly number[], // [n, 3]
  eStar: readonly number[],
) {
  const { C, H, W, K } = m;
  const D = C * H * W;
  const [s, o] = conv.range === "pm1" ? [2, -1] : [1, 0];
  const mean = conv.mean ?? new Array(C).fill(0), std = conv.std ?? new Array(C).fill(1);
  // index of NCHW element (c, h, w) in the classifier's flattened input
  const at = (c: number, h: number, w: number) =>
    m.layout === "nchw" ? (c * H + h) * W + w : (h * W + w) * C + c;
  const logits = new Float64Array(n * K),
    energyXY = new Float64Array(n),
    energyX = new Float64Array(n);
  const grad = new Float64Array(n * D);
  for (let i = 0; i < n; i++) {
    const u = new Float64Array(D);
    for (let c = 0; c < C; c++) {
      for (let h = 0; h < H; h++) {
        for (let w = 0; w < W; w++) {
          u[at(c, h, w)] = (s * x01[i * D + (c * H + h) * W + w] + o - mean[c]) / std[c];
        }
      }
    }
    const f = new Float64Array(K);
    for (let k = 0; k < K; k++) {
      let acc = m.bias[k];
      for (let d = 0; d < D; d++) acc += m.weight[k * D + d] * u[d];
      f[k] = acc;
    }
    const mx = Math.max(...f);
    const lse = mx + Math.log(f.reduce((a, v) => a + Math.exp(v - mx), 0));
    logits.set(f, i * K);
    energyXY[i] = -f[y[i]];
    energyX[i] = -lse;
    const [a, bb, cc] = coef.slice(i * 3, i * 3 + 3);
    const sign = Math.sign(eStar[i] - energyX[i]);
    const cot = f.map((v, k) => -a * (k === y[i] ? 1 : 0) + (cc * sign - bb) * Math.exp(v - lse));
    for (let c = 0; c < C; c++) {
      for (let h = 0; h < H; h++) {
        for (let w = 0; w < W; w++) {
          let g = 0;
          const d = at(c, h, w);
          for (let k = 0; k < K; k++) g += m.weight[k * D + d] * cot[k];
          grad[i * D + (c * H + h) * W + w] = g * s / std[c];
        }
      }
    }
  }
  return { logits, energyXY, energyX, grad };
}

/** max |a - b| / max(max |b|, floor). */
export function relMaxError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  let num = 0, den = floor;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}
