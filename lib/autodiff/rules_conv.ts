/**
 * Gradient rules for Conv, ConvTranspose and inference BatchNormalization.
 *
 * Conv and ConvTranspose are adjoint linear maps for the same weights, strides, dilations and
 * groups (Dumoulin and Visin 2016, "A guide to convolution arithmetic", §4), so the input
 * gradient of one is the other. Padding is handled outside the adjoint op and at run time:
 * the transposed conv is taken without pads (its "full" result) and then cropped or zero-padded
 * with one Pad whose amounts come from Shape(x), which covers asymmetric pads, auto_pad SAME_*
 * and the rows a strided conv never reads, for any (dynamic) input size.
 * @module
 */
import type { GraphBuilder } from "../onnx/builder.ts";
import type { NodeProto } from "../onnx/proto.ts";
import {
  castLike,
  constLike,
  floatAttr,
  i64Const,
  i64Fill,
  intAttr,
  intsAttr,
  optionalInput,
  spatialShape,
  stringAttr,
} from "./_emit.ts";
import { staticRank } from "./static_info.ts";
import { describeNode, type GradRule, type VjpContext } from "./rule.ts";

/** Number of spatial axes of a conv/pool node: from its attributes, weight, or input rank. */
export function spatialRank(ctx: VjpContext): number {
  const { b, node } = ctx;
  const fromAttr = ["kernel_shape", "strides", "dilations"].map((a) => intsAttr(node, a)?.length)
    .find((n) => n !== undefined && n > 0) ?? (intsAttr(node, "pads")?.length ?? 0) / 2;
  if (fromAttr > 0) return fromAttr;
  const w = optionalInput(node, 1);
  const rw = w === undefined ? undefined : staticRank(b, w);
  if (rw !== undefined && node.op_type.startsWith("Conv")) return rw - 2;
  const rx = staticRank(b, node.input[0]);
  if (rx !== undefined) return rx - 2;
  throw new Error(
    `cannot differentiate ${
      describeNode(node, ctx.opset)
    }: the number of spatial axes is unknown; ` +
      `give the node a kernel_shape attribute or declare the input shape in graph.value_info`,
  );
}

/** Attribute `name` (a list of `n` ints), or `fill` repeated. */
export function listAttr(node: NodeProto, name: string, n: number, fill: number): number[] {
  const v = intsAttr(node, name);
  return v && v.length > 0 ? v : Array(n).fill(fill);
}

/** The kernel extent per spatial axis, (k - 1) d + 1, as an int64 [n] tensor. */
export function kernelExtent(
  b: GraphBuilder,
  kernel: string,
  dilations: readonly number[],
): string {
  const d = i64Const(b, dilations);
  return b.node("Add", [
    b.node("Mul", [b.node("Sub", [kernel, i64Const(b, 1, [])]), d]),
    i64Const(b, 1, []),
  ]);
}

/**
 * Begin pads of a conv/pool per spatial axis as an int64 [n] tensor: the `pads` attribute,
 * zeros for VALID, or for SAME_UPPER / SAME_LOWER the ONNX rule computed from Shape(x) at run
 * time: total = max(0, (ceil(H / s) - 1) s + extent - H), begin = total / 2 (UPPER, rounded
 * down) or total - total / 2 (LOWER).
 */
export function beginPads(
  b: GraphBuilder,
  node: NodeProto,
  x: string,
  n: number,
  kernel: () => string,
): { begin: string; total?: string } {
  const autoPad = stringAttr(node, "auto_pad", "NOTSET");
  if (autoPad === "NOTSET") {
    return { begin: i64Const(b, listAttr(node, "pads", 2 * n, 0).slice(0, n)) };
  }
  if (autoPad === "VALID") {
    return { begin: i64Const(b, Array(n).fill(0)), total: i64Const(b, Array(n).fill(0)) };
  }
  const s = i64Const(b, listAttr(node, "strides", n, 1));
  const h = spatialShape(b, x);
  const one = i64Const(b, 1, []);
  const outSize = b.node("Div", [b.node("Sub", [b.node("Add", [h, s]), one]), s]); // ceil(H / s)
  const extent = kernelExtent(b, kernel(), listAttr(node, "dilations", n, 1));
  const need = b.node("Sub", [
    b.node("Add", [b.node("Mul", [b.node("Sub", [outSize, one]), s]), extent]),
    h,
  ]);
  const total = b.node("Max", [need, i64Const(b, 0, [])]);
  const half = b.node("Div", [total, i64Const(b, 2, [])]);
  if (autoPad === "SAME_UPPER") return { begin: half, total };
  if (autoPad === "SAME_LOWER") return { begin: b.node("Sub", [total, half]), total };
  throw new Error(
    `node '${node.name ?? ""}' (${node.op_type}) has auto_pad '${autoPad}'; ONNX allows NOTSET, ` +
      `VALID, SAME_UPPER or SAME_LOWER`,
  );
}

/** Pad `v` ([N, C, spatial...]) by int64 [n] tensors `begin` and `end` (negative crops). */
export function padSpatial(b: GraphBuilder, v: string, begin: string, end: string): string {
  const zeros2 = i64Const(b, [0, 0]);
  const pads = b.node("Concat", [zeros2, begin, zeros2, end], { axis: 0 });
  return b.node("Pad", [v, pads]);
}

/**
 * Conv: dX = ConvTranspose(dY, W) with the conv's strides, dilations and group and no pads
 * (size s (out - 1) + (k - 1) d + 1 per axis), then cropped by the begin pads and cut or
 * zero-extended at the end to Shape(X).
 */
const conv: GradRule = {
  slots: ["diff", "param", "param"],
  vjp: (ctx) => {
    const { b, node, dy } = ctx;
    const [x, w] = node.input;
    const n = spatialRank(ctx);
    const strides = listAttr(node, "strides", n, 1);
    const dilations = listAttr(node, "dilations", n, 1);
    const full = b.node("ConvTranspose", [dy[0]!, w], {
      strides,
      dilations,
      group: intAttr(node, "group", 1),
    });
    const { begin } = beginPads(b, node, x, n, () => spatialShape(b, w));
    // end = H - (full - begin): negative cuts, positive appends zeros (rows no window reads).
    const end = b.node("Sub", [spatialShape(b, x), b.node("Sub", [spatialShape(b, full), begin])]);
    return [padSpatial(b, full, b.node("Neg", [begin]), end)];
  },
};

/**
 * ConvTranspose: Y[j] = F[j + pad_begin] where F is the unpadded transposed conv of X (size
 * s (H - 1) + (k - 1) d + 1, zero beyond: output_padding only appends). So
 * dX = Conv(dF, W) with dF = dY shifted back by the begin pads and cut or zero-extended to F's size.
 * auto_pad SAME_* and output_shape are not supported (their pad split is runtime-specific).
 */
const convTranspose: GradRule = {
  slots: ["diff", "param", "param"],
  check: (node) => {
    const autoPad = stringAttr(node, "auto_pad", "NOTSET");
    if (autoPad !== "NOTSET" && autoPad !== "VALID") {
      return `auto_pad '${autoPad}' is not supported; use explicit pads`;
    }
    if (intsAttr(node, "output_shape")?.length) {
      return "the output_shape attribute is not supported; use pads and output_padding";
    }
    return undefined;
  },
  vjp: (ctx) => {
    const { b, node, dy } = ctx;
    const [x, w] = node.input;
    const g = dy[0]!;
    const n = spatialRank(ctx);
    const strides = listAttr(node, "strides", n, 1);
    const dilations = listAttr(node, "dilations", n, 1);
    const begin = i64Const(
      b,
      stringAttr(node, "auto_pad", "NOTSET") === "VALID"
        ? Array(n).fill(0)
        : listAttr(node, "pads", 2 * n, 0).slice(0, n),
    );
    const extent = kernelExtent(b, spatialShape(b, w), dilations);
    const h = spatialShape(b, x);
    const fullSize = b.node("Add", [
      b.node("Mul", [b.node("Sub", [h, i64Const(b, 1, [])]), i64Const(b, strides)]),
      extent,
    ]);
    const end = b.node("Sub", [fullSize, b.node("Add", [begin, spatialShape(b, g)])]);
    const dF = padSpatial(b, g, begin, end);
    return [b.node("Conv", [dF, w], { strides, dilations, group: intAttr(node, "group", 1) })];
  },
};

/**
 * Inference BatchNormalization, y = scale (x - mean) / sqrt(var + eps) + B per channel (axis 1):
 * dX = dY scale / sqrt(var + eps), the factor reshaped to [C, 1, ..., 1] (rank(x) - 1 axes).
 */
const batchNorm: GradRule = {
  slots: ["diff", "param", "param", "param", "param"],
  nonDiffOutputs: [1, 2, 3, 4],
  check: (node) =>
    intAttr(node, "training_mode", 0) !== 0
      ? "training_mode=1 (batch statistics) is not supported; export the model in eval mode"
      : undefined,
  vjp: ({ b, node, dy }) => {
    const [x, scale, , , variance] = node.input;
    const eps = floatAttr(node, "epsilon", 1e-5);
    const factor = b.node("Div", [
      scale,
      b.node("Sqrt", [b.node("Add", [variance, constLike(b, eps, variance)])]),
    ]);
    // [C] -> [C, 1, ..., 1] with rank(x) - 2 trailing ones, built from Shape(x) at run time.
    const rank = b.node("Shape", [b.node("Shape", [x])]);
    const ones = b.node("ConstantOfShape", [b.node("Sub", [rank, i64Const(b, [2])])], {
      value: i64Fill(1),
    });
    const shape = b.node("Concat", [i64Const(b, [-1]), ones], { axis: 0 });
    const perChannel = castLike(b, b.node("Reshape", [factor, shape]), x);
    return [b.node("Mul", [dy[0]!, perChannel])];
  },
};

/** Conv-family rules by op type. */
export const CONV_RULES: Readonly<Record<string, GradRule>> = {
  BatchNormalization: batchNorm,
  Conv: conv,
  ConvTranspose: convTranspose,
};
