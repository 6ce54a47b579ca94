/**
 * Gradient rules for ops that only move, copy or regroup elements. Reshape-like ops give the
 * cotangent back through Reshape to Shape(x); Transpose through the inverse permutation;
 * Concat and Split through each other. Slice, Pad, Gather, GatherElements and Tile use one exact
 * construction for all their attribute and opset variants: the same op applied to the index
 * tensor of x says where each output element came from, and the cotangent is scattered back
 * with addition (see `gatherAdjoint`), so steps, negative or clamped bounds, reflect/edge
 * padding and repeated indices need no special cases.
 * @module
 */
import {
  gatherAdjoint,
  i64Const,
  intAttr,
  intsAttr,
  nodeLike,
  reshapeLike,
  unbroadcast,
  zerosLike,
} from "./_emit.ts";
import type { GradRule, VjpContext } from "./rule.ts";

/** dX = Reshape(dY, Shape(X)): Flatten, Reshape, Squeeze, Unsqueeze (any opset). */
const reshapeBack: GradRule = {
  slots: ["diff", "index"],
  vjp: ({ b, node, dy }) => [reshapeLike(b, dy[0]!, node.input[0])],
};

/** dX = Transpose(dY, inverse(perm)); no perm reverses the axes, its own inverse. */
const transpose: GradRule = {
  slots: ["diff"],
  vjp: ({ b, node, dy }) => {
    const perm = intsAttr(node, "perm");
    if (!perm || perm.length === 0) return [b.node("Transpose", [dy[0]!])];
    const inverse = Array<number>(perm.length);
    perm.forEach((p, i) => inverse[p] = i);
    return [b.node("Transpose", [dy[0]!], { perm: inverse })];
  },
};

/** Concat: dY split back along `axis` into pieces of each input's size there. */
const concat: GradRule = {
  slots: [],
  rest: "diff",
  vjp: ({ b, node, dy, needs }) => {
    const axis = intAttr(node, "axis", 0);
    const at = i64Const(b, [axis]);
    const sizes = node.input.map((x) => b.node("Gather", [b.node("Shape", [x]), at], { axis: 0 }));
    const parts = b.nodeN("Split", [dy[0]!, b.node("Concat", sizes, { axis: 0 })], { axis }, {
      outputs: node.input.length,
    });
    return parts.map((p, i) => needs[i] ? p : undefined);
  },
};

/** Split: dX = Concat of the outputs' cotangents along `axis`, zeros for unused outputs. */
const split: GradRule = {
  slots: ["diff", "index"],
  vjp: ({ b, node, dy }) => {
    const pieces = node.output.map((y, i) => dy[i] ?? zerosLike(b, y));
    return [b.node("Concat", pieces, { axis: intAttr(node, "axis", 0) })];
  },
};

/** The gather-style rule: the same node applied to x's index tensor, its other inputs kept. */
function sameOpOnIndices(replaceFill: boolean): GradRule["vjp"] {
  return ({ b, node, dy }: VjpContext) => {
    const x = node.input[0];
    return [gatherAdjoint(b, x, dy[0]!, (iota, size) => {
      const inputs = [iota, ...node.input.slice(1)];
      // Pad's fill marks padded positions with Size(x): an index one past the end, dropped.
      if (replaceFill) inputs[2] = size;
      return nodeLike(b, node.op_type, inputs, node, [], 1)[0];
    })];
  };
}

/** Slice: any starts/ends/axes/steps (attributes before opset 10, inputs from 10). */
const slice: GradRule = {
  slots: ["diff", "index", "index", "index", "index"],
  vjp: sameOpOnIndices(false),
};

/** Pad (inputs, opset >= 11): any mode; the padding value is a parameter (no gradient). */
const pad: GradRule = {
  slots: ["diff", "index", "param", "index"],
  check: (_node, opset) =>
    opset < 11 ? "Pad before opset 11 must be upgraded first (upgradeOpset)" : undefined,
  vjp: sameOpOnIndices(true),
};

/** Gather / GatherElements on the data input (indices may repeat: the scatter adds). */
const gather: GradRule = { slots: ["diff", "index"], vjp: sameOpOnIndices(false) };

/** Tile: every copy's cotangent is added back. */
const tile: GradRule = { slots: ["diff", "index"], vjp: sameOpOnIndices(false) };

/** Expand broadcasts: the cotangent is summed back over the broadcast axes. */
const expand: GradRule = {
  slots: ["diff", "index"],
  vjp: ({ b, node, dy }) => [unbroadcast(b, dy[0]!, node.input[0])],
};

/** Shape-moving rules by op type. */
export const SHAPE_RULES: Readonly<Record<string, GradRule>> = {
  Concat: concat,
  Expand: expand,
  Flatten: reshapeBack,
  Gather: gather,
  GatherElements: gather,
  Pad: pad,
  Reshape: reshapeBack,
  Slice: slice,
  Split: split,
  Squeeze: reshapeBack,
  Tile: tile,
  Transpose: transpose,
  Unsqueeze: reshapeBack,
};
