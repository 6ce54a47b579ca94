/**
 * Gradient rules for reductions and the softmax family. A reduction's cotangent is first given
 * its reduced axes back (Unsqueeze when keepdims=0) and then broadcast to Shape(x) with Expand:
 * ReduceSum copies it, ReduceMean also divides by Size(x) / Size(y), ReduceLogSumExp weights it
 * by softmax = exp(x - y). Softmax: dX = y (dY - sum(dY y)); LogSoftmax: dX = dY - exp(y) sum(dY),
 * sums over the softmax axis (opset >= 13 semantics; older graphs are upgraded first).
 * @module
 */
import type { NodeProto } from "../onnx/proto.ts";
import { castLike, constLike, i64Const, intAttr, intsAttr, optionalInput } from "./_emit.ts";
import type { GradRule, VjpContext } from "./rule.ts";

/** First opset where each reduction takes `axes` as an input instead of an attribute. */
function axesInputSince(op: string): number {
  return op === "ReduceSum" ? 13 : 18;
}

/**
 * The reduced axes of a reduction node: a list (attribute form), an int64 tensor name (input
 * form), `"all"` for every axis, or `"none"` when the node is the identity (empty axes with
 * noop_with_empty_axes=1).
 */
function reducedAxes(ctx: VjpContext, node: NodeProto): number[] | string | "all" | "none" {
  const { b, opset } = ctx;
  if (opset < axesInputSince(node.op_type)) {
    const axes = intsAttr(node, "axes");
    return axes && axes.length > 0 ? axes : "all";
  }
  const axes = optionalInput(node, 1);
  const known = axes === undefined ? undefined : b.constantValue(axes);
  const empty = axes === undefined || (known !== undefined && known.values.length === 0);
  if (empty) return intAttr(node, "noop_with_empty_axes", 0) === 1 ? "none" : "all";
  return axes!;
}

/** `v` (a reduction's output or cotangent) broadcast back to Shape(x). */
function expandBack(ctx: VjpContext, v: string, axes: number[] | string): string {
  const { b, node } = ctx;
  const keep = intAttr(node, "keepdims", 1) === 1 || axes === "all";
  const kept = keep
    ? v
    : b.node("Unsqueeze", [v, typeof axes === "string" ? axes : i64Const(b, axes)]);
  return b.node("Expand", [kept, b.node("Shape", [node.input[0]])]);
}

function reduction(
  weight: (ctx: VjpContext, spread: string, axes: number[] | string) => string,
): GradRule {
  return {
    slots: ["diff", "index"],
    vjp: (ctx) => {
      const axes = reducedAxes(ctx, ctx.node);
      if (axes === "none") return [ctx.dy[0]];
      return [weight(ctx, expandBack(ctx, ctx.dy[0]!, axes), axes)];
    },
  };
}

/** ReduceSum: dX = dY broadcast back. */
const reduceSum = reduction((_ctx, spread) => spread);

/** ReduceMean: dX = (dY / (Size(x) / Size(y))) broadcast back (divided on the small side). */
const reduceMean: GradRule = {
  slots: ["diff", "index"],
  vjp: (ctx) => {
    const { b, node, dy } = ctx;
    const axes = reducedAxes(ctx, node);
    if (axes === "none") return [dy[0]];
    const count = b.node("Div", [
      b.node("Size", [node.input[0]]),
      b.node("Size", [node.output[0]]),
    ]);
    const scaled = b.node("Div", [dy[0]!, castLike(b, count, dy[0]!)]);
    return [expandBack(ctx, scaled, axes)];
  },
};

/** ReduceLogSumExp: dX = dY broadcast back * exp(x - y broadcast back). */
const reduceLogSumExp = reduction((ctx, spread, axes) => {
  const { b, node } = ctx;
  const y = expandBack(ctx, node.output[0], axes);
  return b.node("Mul", [spread, b.node("Exp", [b.node("Sub", [node.input[0], y])])]);
});

/**
 * ReduceMax / ReduceMin: the cotangent goes to the positions that attain the extreme value,
 * split evenly between ties (as torch.amax/amin's backward): dX = mask dY / count, mask =
 * (x == y broadcast back), count = the number of such positions in each reduced group.
 */
const reduceExtreme = reduction((ctx, spread, axes) => {
  const { b, node } = ctx;
  const x = node.input[0];
  const mask = b.node("Equal", [x, expandBack(ctx, node.output[0], axes)]);
  const ones = castLike(b, mask, spread);
  const count = axes === "all"
    ? b.node("ReduceSum", [ones], { keepdims: 1 })
    : b.node("ReduceSum", [ones, typeof axes === "string" ? axes : i64Const(b, axes)], {
      keepdims: 1,
    });
  const share = b.node("Div", [spread, b.node("Expand", [count, b.node("Shape", [x])])]);
  return b.node("Where", [mask, share, constLike(b, 0, spread)]);
});

/** ReduceL2, y = sqrt(sum x^2): dX = dY x / y (0 where y = 0, the subgradient PyTorch takes). */
const reduceL2 = reduction((ctx, spread, axes) => {
  const { b, node } = ctx;
  const y = expandBack(ctx, node.output[0], axes);
  const safe = b.node("Where", [
    b.node("Equal", [y, constLike(b, 0, y)]),
    constLike(b, 1, y),
    y,
  ]);
  return b.node("Mul", [spread, b.node("Div", [node.input[0], safe])]);
});

/** ReduceSumSquare, y = sum x^2: dX = 2 dY x. */
const reduceSumSquare = reduction(({ b, node }, spread) =>
  b.node("Mul", [spread, b.node("Mul", [node.input[0], constLike(b, 2, node.input[0])])])
);

/** ReduceL1, y = sum |x|: dX = dY sign(x). */
const reduceL1 = reduction(({ b, node }, spread) =>
  b.node("Mul", [spread, b.node("Sign", [node.input[0]])])
);

const olderSoftmax = (_node: NodeProto, opset: number) =>
  opset < 13
    ? "softmax before opset 13 (2-D coercion) must be upgraded first (upgradeOpset)"
    : undefined;

/** Softmax (opset >= 13, one axis): dX = y (dY - sum_axis(dY y)). */
const softmax: GradRule = {
  slots: ["diff"],
  check: olderSoftmax,
  vjp: ({ b, node, dy }) => {
    const y = node.output[0];
    const axes = i64Const(b, [intAttr(node, "axis", -1)]);
    const gy = b.node("Mul", [dy[0]!, y]);
    return [
      b.node("Sub", [gy, b.node("Mul", [y, b.node("ReduceSum", [gy, axes], { keepdims: 1 })])]),
    ];
  },
};

/** LogSoftmax (opset >= 13, one axis): dX = dY - exp(y) sum_axis(dY). */
const logSoftmax: GradRule = {
  slots: ["diff"],
  check: olderSoftmax,
  vjp: ({ b, node, dy }) => {
    const axes = i64Const(b, [intAttr(node, "axis", -1)]);
    const total = b.node("ReduceSum", [dy[0]!, axes], { keepdims: 1 });
    return [b.node("Sub", [dy[0]!, b.node("Mul", [b.node("Exp", [node.output[0]]), total])])];
  },
};

/** Reduction and softmax rules by op type. */
export const REDUCE_RULES: Readonly<Record<string, GradRule>> = {
  LogSoftmax: logSoftmax,
  ReduceL1: reduceL1,
  ReduceL2: reduceL2,
  ReduceLogSumExp: reduceLogSumExp,
  ReduceMax: reduceExtreme,
  ReduceMin: reduceExtreme,
  ReduceSumSquare: reduceSumSquare,
  ReduceMean: reduceMean,
  ReduceSum: reduceSum,
  Softmax: softmax,
};
