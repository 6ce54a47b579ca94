/**
 * Gradient rules for pooling. MaxPool routes each output cotangent to its window's argmax
 * (the MaxPool `Indices` output) with a scatter-add, exact for overlapping windows. AveragePool
 * is linear, y = diag(1 / count) S x with S the window-sum map, so dX = S^T (dY / count):
 * S^T is a ConvTranspose with a ones kernel (channels folded into the batch, so any C works),
 * and count is S applied to the indicator of the positions the divisor counts (real pixels for
 * count_include_pad=0, real plus pad for 1), which also covers ceil_mode's partial windows.
 * @module
 */
import type { GraphBuilder } from "../onnx/builder.ts";
import {
  castLike,
  constLike,
  filledLike,
  i64Const,
  intAttr,
  intsAttr,
  nodeLike,
  reshapeLike,
  scatterAddFlat,
  spatialShape,
  stringAttr,
} from "./_emit.ts";
import { beginPads, listAttr, padSpatial, spatialRank } from "./rules_conv.ts";
import type { GradRule } from "./rule.ts";

/** MaxPool: dX[argmax of window o] += dY[o], with the argmax from a re-run that returns Indices. */
const maxPool: GradRule = {
  slots: ["diff"],
  nonDiffOutputs: [1],
  vjp: ({ b, node, dy }) => {
    const x = node.input[0];
    // storage_order=0: flat row-major indices into the whole [N, C, ...] tensor.
    const [, indices] = nodeLike(b, "MaxPool", [x], node, ["storage_order"], 2);
    const scattered = scatterAddFlat(b, b.node("Size", [x]), indices, dy[0]!);
    return [reshapeLike(b, scattered, x)];
  },
};

/** End pads of a pool per spatial axis (int64 [n]): the attribute, or total - begin for SAME_*. */
function endPads(
  b: GraphBuilder,
  pads: number[],
  n: number,
  begin: string,
  total?: string,
): string {
  return total ? b.node("Sub", [total, begin]) : i64Const(b, pads.slice(n, 2 * n));
}

/** AveragePool: dX = S^T (dY / count); see the module doc. */
const averagePool: GradRule = {
  slots: ["diff"],
  check: (node) => {
    if (!intsAttr(node, "kernel_shape")?.length) return "AveragePool needs kernel_shape";
    const dilated = (intsAttr(node, "dilations") ?? []).some((d) => d !== 1);
    if (dilated && stringAttr(node, "auto_pad", "NOTSET").startsWith("SAME")) {
      return "dilations with auto_pad SAME_* are not supported (ONNX Runtime splits the pads " +
        "differently from the spec there); use explicit pads";
    }
    return undefined;
  },
  vjp: (ctx) => {
    const { b, node, dy } = ctx;
    const x = node.input[0];
    const g = dy[0]!;
    const n = spatialRank(ctx);
    const kernel = listAttr(node, "kernel_shape", n, 1);
    const strides = listAttr(node, "strides", n, 1);
    const dilations = listAttr(node, "dilations", n, 1);
    const pads = listAttr(node, "pads", 2 * n, 0);
    const { begin, total } = beginPads(b, node, x, n, () => i64Const(b, kernel));
    const h = spatialShape(b, x);
    const ho = spatialShape(b, g);
    // Padded extent the windows span: (Ho - 1) s + (k - 1) d + 1 = begin + H + tail.
    const extent = kernel.map((k, i) => (k - 1) * dilations[i] + 1);
    const span = b.node("Add", [
      b.node("Mul", [b.node("Sub", [ho, i64Const(b, 1, [])]), i64Const(b, strides)]),
      i64Const(b, extent),
    ]);
    const tail = b.node("Sub", [span, b.node("Add", [begin, h])]);
    const size = kernel.reduce((a, c) => a * c, 1);
    const ones = castLike(
      b,
      b.constant("ad_pool_ones", [1, 1, ...kernel], new Float32Array(size).fill(1)),
      g,
    );
    // Indicator of the counted positions, [1, 1, span...].
    const unit = filledLike(b, b.node("Concat", [i64Const(b, [1, 1]), h], { axis: 0 }), 1, g);
    let counted: string;
    if (intAttr(node, "count_include_pad", 0) === 1) {
      // Ones over input and pads, zeros over the rest of ceil_mode's last windows.
      const end = endPads(b, pads, n, begin, total);
      const withPads = padSpatialFill(b, unit, begin, end, constLike(b, 1, unit));
      counted = padSpatial(b, withPads, i64Const(b, Array(n).fill(0)), b.node("Sub", [tail, end]));
    } else counted = padSpatial(b, unit, begin, tail);
    const count = b.node("Conv", [counted, ones], { strides, dilations });
    // Channels folded into the batch: [N*C, 1, Ho...].
    const folded = b.node("Reshape", [
      g,
      b.node("Concat", [i64Const(b, [-1, 1]), ho], { axis: 0 }),
    ]);
    const spread = b.node("ConvTranspose", [b.node("Div", [folded, count]), ones], {
      strides,
      dilations,
    });
    const cropped = padSpatial(b, spread, b.node("Neg", [begin]), b.node("Neg", [tail]));
    return [reshapeLike(b, cropped, x)];
  },
};

/** padSpatial with a constant fill value (a scalar of v's type). */
function padSpatialFill(
  b: GraphBuilder,
  v: string,
  begin: string,
  end: string,
  fill: string,
): string {
  const zeros2 = i64Const(b, [0, 0]);
  return b.node("Pad", [v, b.node("Concat", [zeros2, begin, zeros2, end], { axis: 0 }), fill]);
}

/** GlobalAveragePool: dX = dY / (H W ...) broadcast over the spatial axes. */
const globalAveragePool: GradRule = {
  slots: ["diff"],
  vjp: ({ b, node, dy }) => {
    const x = node.input[0];
    const g = dy[0]!;
    const count = castLike(b, b.node("Div", [b.node("Size", [x]), b.node("Size", [g])]), g);
    // Divided before the broadcast: on [N, C, 1, ...], not on x's size.
    return [b.node("Expand", [b.node("Div", [g, count]), b.node("Shape", [x])])];
  },
};

/**
 * GlobalMaxPool: y = max over the spatial axes (kept as size 1). The cotangent goes to the
 * positions attaining the maximum, split evenly between ties (as torch.amax): counted in the
 * [N, C, H W ...] view, so any rank works.
 */
const globalMaxPool: GradRule = {
  slots: ["diff"],
  vjp: ({ b, node, dy }) => {
    const [x, y] = [node.input[0], node.output[0]];
    const mask = b.node("Equal", [x, y]);
    const flat = b.node("Reshape", [castLike(b, mask, x), i64Const(b, [0, 0, -1])]);
    const count = b.node("ReduceSum", [flat, i64Const(b, [2])], { keepdims: 1 });
    const share = b.node("Div", [dy[0]!, reshapeLike(b, count, y)]);
    return [b.node("Where", [mask, share, constLike(b, 0, x)])];
  },
};

/** Pooling rules by op type. */
export const POOL_RULES: Readonly<Record<string, GradRule>> = {
  AveragePool: averagePool,
  GlobalAveragePool: globalAveragePool,
  GlobalMaxPool: globalMaxPool,
  MaxPool: maxPool,
};
