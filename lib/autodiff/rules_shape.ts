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
import { type StaticDim, staticShape } from "./static_info.ts";
import type { GraphBuilder } from "../onnx/builder.ts";
import type { NodeProto } from "../onnx/proto.ts";

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

/** Constant int values of input `i` of `node`, or undefined. */
function constInts(b: GraphBuilder, node: NodeProto, i: number): number[] | undefined {
  const name = node.input[i];
  const c = name ? b.constantValue(name) : undefined;
  return c ? Array.from(c.values) : undefined;
}

/**
 * dY placed back into zeros of x's shape by padding: per axis a, `before[a]` zeros in front and
 * as many after as make x's size (a negative amount crops). One Pad node, no scatter.
 */
function padBack(b: GraphBuilder, g: string, before: number[], after: number[]): string {
  return b.node("Pad", [g, i64Const(b, [...before, ...after])]);
}

/**
 * The static form of a Slice's adjoint, or undefined: with constant starts/ends/axes/steps,
 * positive steps and x's size known on every sliced axis, each sliced axis with step k takes
 * positions s, s + k, ..., s + (m - 1) k: dY is spread out with k - 1 zeros after every entry
 * (Unsqueeze, Pad, Reshape; skipped for k = 1) and padded by s in front and the rest behind.
 */
function staticSliceAdjoint(b: GraphBuilder, node: NodeProto, g: string): string | undefined {
  const x = node.input[0];
  const shape = staticShape(b, x);
  const starts = constInts(b, node, 1), ends = constInts(b, node, 2);
  if (!shape || !starts || !ends || node.input.length < 3) return undefined;
  const r = shape.length;
  const axes = (node.input[3] ? constInts(b, node, 3) : starts.map((_, i) => i))?.map((a) =>
    a < 0 ? a + r : a
  );
  const steps = node.input[4] ? constInts(b, node, 4) : starts.map(() => 1);
  if (!axes || !steps || steps.some((k) => k <= 0)) return undefined;
  const before = Array(r).fill(0), after = Array(r).fill(0);
  // Sizes of dY (x's, with each sliced axis cut to its m), updated as axes are spread.
  const cur: StaticDim[] = [...shape];
  const plan: Array<{ a: number; s: number; m: number; k: number; dim: number }> = [];
  for (let j = 0; j < axes.length; j++) {
    const a = axes[j], dim = shape[a], k = steps[j];
    if (typeof dim !== "number") return undefined;
    const s = Math.min(Math.max(starts[j] < 0 ? starts[j] + dim : starts[j], 0), dim);
    const e = Math.min(Math.max(ends[j] < 0 ? ends[j] + dim : ends[j], 0), dim);
    const m = Math.max(0, Math.ceil((e - s) / k));
    if (m === 0) return undefined; // an empty slice: leave it to the general form
    cur[a] = m;
    plan.push({ a, s, m, k, dim });
  }
  let v = g;
  for (const { a, s, m, k, dim } of plan) {
    before[a] = s;
    after[a] = dim - s - m * k;
    if (k === 1) continue;
    // Reshaping back needs every other size static (or the batch, axis 0, copied with 0).
    if (!cur.every((d, i) => i === a || typeof d === "number" || (i === 0 && a !== 0))) {
      return undefined;
    }
    const spread = b.node("Pad", [
      b.node("Unsqueeze", [v, i64Const(b, [a + 1])]),
      i64Const(b, [
        ...Array(r + 1).fill(0),
        ...Array.from({ length: r + 1 }, (_, i) => i === a + 1 ? k - 1 : 0),
      ]),
    ]);
    cur[a] = m * k;
    v = b.node("Reshape", [spread, i64Const(b, cur.map((d) => (typeof d === "number" ? d : 0)))]);
  }
  return padBack(b, v, before, after);
}

/**
 * Slice: any starts/ends/axes/steps (attributes before opset 10, inputs from 10). With static
 * sizes and positive steps the cotangent is padded back ({@link staticSliceAdjoint}); otherwise
 * the index-tensor form.
 */
const slice: GradRule = {
  slots: ["diff", "index", "index", "index", "index"],
  vjp: (ctx) => {
    const fast = staticSliceAdjoint(ctx.b, ctx.node, ctx.dy[0]!);
    return fast ? [fast] : sameOpOnIndices(false)(ctx);
  },
};

/** Pad (inputs, opset >= 11): any mode; the padding value is a parameter (no gradient). */
const pad: GradRule = {
  slots: ["diff", "index", "param", "index"],
  check: (_node, opset) =>
    opset < 11 ? "Pad before opset 11 must be upgraded first (upgradeOpset)" : undefined,
  vjp: sameOpOnIndices(true),
};

/**
 * Gather / GatherElements on the data input (indices may repeat: the scatter adds). A Gather of
 * one constant index i (a class token, x[:, 0]) or a constant ascending run i..i+m-1 on an axis
 * of known size d is padded back instead: i zeros before, d - i - m after (Unsqueeze first for a
 * scalar index).
 */
const gatherElements: GradRule = { slots: ["diff", "index"], vjp: sameOpOnIndices(false) };

const gather: GradRule = {
  slots: ["diff", "index"],
  vjp: (ctx) => {
    const { b, node, dy } = ctx;
    const x = node.input[0];
    const shape = staticShape(b, x);
    const idx = b.constantValue(node.input[1]);
    if (shape && idx && idx.dims.length <= 1 && idx.values.length > 0) {
      const r = shape.length;
      const a0 = intAttr(node, "axis", 0), a = a0 < 0 ? a0 + r : a0;
      const d = shape[a];
      if (typeof d === "number") {
        const v = Array.from(idx.values, (i) => (i < 0 ? i + d : i));
        const run = v.every((i, j) => i === v[0] + j) && v[0] >= 0 && v[v.length - 1] < d;
        if (run) {
          const g = idx.dims.length === 0
            ? b.node("Unsqueeze", [dy[0]!, i64Const(b, [a])])
            : dy[0]!;
          const before = Array(r).fill(0), after = Array(r).fill(0);
          before[a] = v[0];
          after[a] = d - v[0] - v.length;
          return [padBack(b, g, before, after)];
        }
      }
    }
    return sameOpOnIndices(false)(ctx);
  },
};

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
  GatherElements: gatherElements,
  Pad: pad,
  Reshape: reshapeBack,
  Slice: slice,
  Split: split,
  Squeeze: reshapeBack,
  Tile: tile,
  Transpose: transpose,
  Unsqueeze: reshapeBack,
};
