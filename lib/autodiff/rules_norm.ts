/**
 * Gradient rules for the normalisation layers of transformers and modern CNNs:
 * LayerNormalization (opset 17), GroupNormalization (18, per-group affine; 21, per-channel) and
 * InstanceNormalization. Each standardises x over a set of axes, xhat = (x - mean) / sigma with
 * sigma = sqrt(var + eps) (biased variance), then applies a per-element affine map. With
 * gh = dY * scale (the cotangent of xhat), the input cotangent is the standard result
 * (Ioffe and Szegedy 2015, "Batch Normalization", §3, with the statistics over the normalised
 * axes instead of the batch):
 *
 *   dX = (gh - mean(gh) - xhat mean(gh xhat)) / sigma,
 *
 * means over the normalised axes. Scale and bias are parameters (no gradient).
 * @module
 */
import type { GraphBuilder } from "../onnx/builder.ts";
import { float } from "../onnx/builder.ts";
import {
  castLike,
  constLike,
  filledLike,
  floatAttr,
  i64Const,
  i64Fill,
  intAttr,
  reshapeLike,
} from "./_emit.ts";
import { staticElemType, staticRank } from "./static_info.ts";
import { describeNode, type GradRule } from "./rule.ts";
import { DataType, type NodeProto } from "../onnx/proto.ts";

/** ReduceMean over `axes` with keepdims=1, in the form the graph's opset wants. */
export function meanKeep(b: GraphBuilder, v: string, axes: readonly number[]): string {
  return b.opset >= 18
    ? b.node("ReduceMean", [v, i64Const(b, [...axes])], { keepdims: 1 })
    : b.node("ReduceMean", [v], { axes: [...axes], keepdims: 1 });
}

/**
 * (gh - mean(gh) - xhat mean(gh xhat)) * inv over `axes`, inv = 1 / sigma broadcastable to
 * xhat: the cotangent of x for xhat = standardise(x) given the cotangent gh of xhat.
 */
export function standardiseVjp(
  b: GraphBuilder,
  gh: string,
  xhat: string,
  inv: string,
  axes: readonly number[],
): string {
  const centred = b.node("Sub", [gh, meanKeep(b, gh, axes)]);
  const proj = b.node("Mul", [xhat, meanKeep(b, b.node("Mul", [gh, xhat]), axes)]);
  return b.node("Mul", [b.node("Sub", [centred, proj]), inv]);
}

/** xhat and 1 / sigma of `v` standardised over `axes` (biased variance, epsilon `eps`). */
function standardise(
  b: GraphBuilder,
  v: string,
  axes: readonly number[],
  eps: number,
): { xhat: string; inv: string } {
  const centred = b.node("Sub", [v, meanKeep(b, v, axes)]);
  const variance = meanKeep(b, b.node("Mul", [centred, centred]), axes);
  const inv = b.node("Reciprocal", [
    b.node("Sqrt", [b.node("Add", [variance, constLike(b, eps, variance)])]),
  ]);
  return { xhat: b.node("Mul", [centred, inv]), inv };
}

/**
 * LayerNormalization (opset 17): normalised axes axis..rank-1 (axis default -1). For float32
 * the mean and 1/sigma come from the forward node's optional outputs Mean and InvStdDev (added
 * to it when absent), xhat = (x - mean) / sigma; for other types from a second normalisation
 * with unit scale computed in x's precision.
 */
const layerNorm: GradRule = {
  slots: ["diff", "param", "param"],
  nonDiffOutputs: [1, 2],
  check: (node, _opset, b) => {
    const axis = intAttr(node, "axis", -1);
    if (axis < 0 || staticRank(b, node.input[0]) !== undefined) return undefined;
    return `axis ${axis} is positive and the rank of input '${node.input[0]}' is not known ` +
      `statically; declare its shape in graph.value_info`;
  },
  vjp: ({ b, node, dy, opset }) => {
    const [x, scale] = node.input;
    const axis = intAttr(node, "axis", -1);
    let axes: number[];
    if (axis < 0) axes = Array.from({ length: -axis }, (_, i) => axis + i);
    else {
      const r = staticRank(b, x);
      if (r === undefined) throw new Error(`cannot differentiate ${describeNode(node, opset)}`);
      axes = Array.from({ length: r - axis }, (_, i) => axis + i);
    }
    let xhat: string, inv: string;
    if (staticElemType(b, x) === DataType.FLOAT) {
      // The forward node's own Mean and InvStdDev outputs (named here when it has none): xhat
      // costs two elementwise passes instead of a second normalisation.
      while (node.output.length < 3) node.output.push("");
      if (!node.output[1]) node.output[1] = b.fresh(`${node.output[0]}_mean`);
      if (!node.output[2]) node.output[2] = b.fresh(`${node.output[0]}_inv_std`);
      inv = castLike(b, node.output[2], x);
      xhat = b.node("Mul", [b.node("Sub", [x, castLike(b, node.output[1], x)]), inv]);
    } else {
      // Other types: a second normalisation with unit scale, whose xhat keeps x's precision
      // (the forward's Mean/InvStdDev are float32, stash_type 1).
      const ones = filledLike(b, b.node("Shape", [scale]), 1, x);
      const outs = b.nodeN("LayerNormalization", [x, ones], {
        axis,
        epsilon: float(floatAttr(node, "epsilon", 1e-5)),
      }, { outputs: 3 });
      xhat = outs[0];
      inv = castLike(b, outs[2], x);
    }
    const gh = b.node("Mul", [dy[0]!, scale]);
    return [standardiseVjp(b, gh, xhat, inv, axes)];
  },
};

/**
 * `v` ([N, C, ...]) viewed as [N, G, rest] (G = `groups`, 0 = keep C): the view in which group
 * and instance normalisation standardise over axis 2, for any rank.
 */
function grouped(b: GraphBuilder, v: string, groups: number): string {
  return b.node("Reshape", [v, i64Const(b, [0, groups, -1])]);
}

/** `p` ([C]) reshaped to [C, 1, ..., 1] for a rank-r value: from Shape(x) when r is unknown. */
function perChannel(b: GraphBuilder, p: string, x: string): string {
  const r = staticRank(b, x);
  if (r !== undefined) return b.node("Reshape", [p, i64Const(b, [-1, ...Array(r - 2).fill(1)])]);
  const rank = b.node("Shape", [b.node("Shape", [x])]);
  const ones = b.node("ConstantOfShape", [b.node("Sub", [rank, i64Const(b, [2])])], {
    value: i64Fill(1),
  });
  return b.node("Reshape", [p, b.node("Concat", [i64Const(b, [-1]), ones], { axis: 0 })]);
}

/** InstanceNormalization: per (n, c), over the spatial axes; scale and B are [C]. */
const instanceNorm: GradRule = {
  slots: ["diff", "param", "param"],
  vjp: ({ b, node, dy }) => {
    const [x, scale] = node.input;
    const eps = floatAttr(node, "epsilon", 1e-5);
    const { xhat, inv } = standardise(b, grouped(b, x, 0), [2], eps);
    const gh = grouped(b, b.node("Mul", [dy[0]!, castLike(b, perChannel(b, scale, x), x)]), 0);
    return [reshapeLike(b, standardiseVjp(b, gh, xhat, inv, [2]), x)];
  },
};

/**
 * GroupNormalization (opset 18: scale and bias per group [G]; opset 21: per channel [C]):
 * standardised over each group of C / G channels and the spatial axes.
 */
const groupNorm: GradRule = {
  slots: ["diff", "param", "param"],
  vjp: ({ b, node, dy, opset }) => {
    const [x, scale] = node.input;
    const G = intAttr(node, "num_groups", 1);
    const eps = floatAttr(node, "epsilon", 1e-5);
    const { xhat, inv } = standardise(b, grouped(b, x, G), [2], eps);
    const gh = opset >= 21
      ? grouped(b, b.node("Mul", [dy[0]!, castLike(b, perChannel(b, scale, x), x)]), G)
      : b.node("Mul", [
        grouped(b, dy[0]!, G),
        castLike(b, b.node("Reshape", [scale, i64Const(b, [1, -1, 1])]), x),
      ]);
    return [reshapeLike(b, standardiseVjp(b, gh, xhat, inv, [2]), x)];
  },
};

/** Normalised axes axis..rank-1 of a LayerNormalization-style node, or undefined. */
function trailingAxes(b: GraphBuilder, node: NodeProto, axis: number): number[] | undefined {
  if (axis < 0) return Array.from({ length: -axis }, (_, i) => axis + i);
  const r = staticRank(b, node.input[0]);
  return r === undefined ? undefined : Array.from({ length: r - axis }, (_, i) => axis + i);
}

/**
 * RMSNormalization (opset 23): y = scale x / rms, rms = sqrt(mean(x^2) + eps) over axes
 * axis..rank-1. With xhat = x / rms and gh = dY scale: dX = (gh - xhat mean(gh xhat)) / rms
 * (the standardisation rule without the centring).
 */
const rmsNorm: GradRule = {
  slots: ["diff", "param"],
  check: (node, _opset, b) =>
    trailingAxes(b, node, intAttr(node, "axis", -1)) === undefined
      ? `axis ${intAttr(node, "axis", -1)} is positive and the rank of input ` +
        `'${node.input[0]}' is not known statically; declare its shape in graph.value_info`
      : undefined,
  vjp: ({ b, node, dy }) => {
    const [x, scale] = node.input;
    const axes = trailingAxes(b, node, intAttr(node, "axis", -1))!;
    const eps = floatAttr(node, "epsilon", 1e-5);
    const ms = meanKeep(b, b.node("Mul", [x, x]), axes);
    const inv = b.node("Reciprocal", [
      b.node("Sqrt", [b.node("Add", [ms, constLike(b, eps, ms)])]),
    ]);
    const xhat = b.node("Mul", [x, inv]);
    const gh = b.node("Mul", [dy[0]!, scale]);
    const proj = b.node("Mul", [xhat, meanKeep(b, b.node("Mul", [gh, xhat]), axes)]);
    return [b.node("Mul", [b.node("Sub", [gh, proj]), inv])];
  },
};

/**
 * LpNormalization, y = x / ||x||_p along `axis` (p 1 or 2; ONNX divides by the norm as is):
 * p = 2: dX = (dY - y sum(dY y)) / ||x||; p = 1: dX = (dY - sign(x) sum(dY y)) / ||x||_1.
 */
const lpNorm: GradRule = {
  slots: ["diff"],
  check: (node) => {
    const p = intAttr(node, "p", 2);
    return p === 1 || p === 2 ? undefined : `p = ${p} (ONNX allows 1 or 2)`;
  },
  vjp: ({ b, node, dy }) => {
    const [x, y] = [node.input[0], node.output[0]];
    const axes = i64Const(b, [intAttr(node, "axis", -1)]);
    const g = dy[0]!;
    const p = intAttr(node, "p", 2);
    const norm = p === 2
      ? b.node("ReduceL2", b.opset >= 18 ? [x, axes] : [x], {
        keepdims: 1,
        ...(b.opset >= 18 ? {} : { axes: [intAttr(node, "axis", -1)] }),
      })
      : b.node("ReduceL1", b.opset >= 18 ? [x, axes] : [x], {
        keepdims: 1,
        ...(b.opset >= 18 ? {} : { axes: [intAttr(node, "axis", -1)] }),
      });
    const dot = b.node("ReduceSum", [b.node("Mul", [g, y]), axes], { keepdims: 1 });
    const dir = p === 2 ? y : b.node("Sign", [x]);
    return [b.node("Div", [b.node("Sub", [g, b.node("Mul", [dir, dot])]), norm])];
  },
};

/** Normalisation rules by op type. */
export const NORM_RULES: Readonly<Record<string, GradRule>> = {
  GroupNormalization: groupNorm,
  InstanceNormalization: instanceNorm,
  LayerNormalization: layerNorm,
  LpNormalization: lpNorm,
  RMSNormalization: rmsNorm,
};
