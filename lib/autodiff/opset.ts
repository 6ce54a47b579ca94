/**
 * Raising a graph's default-domain opset. The backward pass uses ops and forms that older
 * opsets lack (ReduceSum with an axes input, CastLike, ScatterElements with reduction "add"),
 * so `appendVjp` first raises the graph to {@link BACKWARD_OPSET}. Ops whose signature or
 * meaning changed on the way are rewritten to the new form so the forward graph computes
 * exactly what it did (the ONNX operator changelog, docs/Changelog.md, is the reference):
 *
 * | op | at | change | rewrite |
 * | --- | --- | --- | --- |
 * | Slice | 10 | starts/ends/axes attributes -> inputs | attributes to int64 inputs |
 * | TopK | 10 | k attribute -> input | attribute to input |
 * | Clip | 11 | min/max attributes -> inputs | CastLike constants as inputs |
 * | Pad | 11 | pads/value attributes -> inputs | pads input, CastLike value input |
 * | Scatter | 11 | deprecated | renamed ScatterElements (same semantics) |
 * | Dropout | 12 | ratio attribute -> input | ratio dropped (inference ignores it) |
 * | Squeeze, Unsqueeze, ReduceSum, Split | 13 | axes/split attribute -> input | to input |
 * | Softmax, LogSoftmax, Hardmax | 13 | 2-D coercion -> one axis | Flatten, op(axis 1), Reshape |
 * | BatchNormalization | 14 | training outputs | extra (unused) outputs dropped |
 * | other Reduce* | 18 | axes attribute -> input | to input |
 * | DFT | 20 | axis attribute -> input | to input (the old default 1 made explicit) |
 * | GridSample | 20 | modes bilinear/bicubic renamed linear/cubic | renamed |
 * | GroupNormalization | 21 | scale, bias per group [G] -> per channel [C] | each repeated C/G times |
 *
 * Every other change from 19 to {@link MAX_TARGET_OPSET} only adds types, attributes with the
 * old behaviour as default, or new ops (the ONNX version converter's adapters,
 * onnx/version_converter/convert.h, list no other upward change). One numeric difference:
 * GroupNormalization-21 normalises float16 inputs in float32 (stash_type 1), -18 in float16.
 *
 * Ops that cannot be carried over exactly (Upsample, Resize-10, the removed experimental ops,
 * and any node with a sub-graph) make it throw, naming the node.
 * @module
 */
import { type GraphBuilder, makeAttribute } from "../onnx/builder.ts";
import type { AttributeProto, GraphProto, NodeProto } from "../onnx/proto.ts";
import { constLike, floatAttr, i64Const, intAttr, intsAttr, stringAttr } from "./_emit.ts";

/** Opset the backward pass is written for; graphs below it are raised to it. */
export const BACKWARD_OPSET = 17;

/** Oldest model opset `upgradeOpset` reads. */
export const MIN_SOURCE_OPSET = 9;

/**
 * Newest opset `upgradeOpset` writes (every signature change up to it is handled); also the
 * newest ONNX Runtime 1.30 loads.
 */
export const MAX_TARGET_OPSET = 26;

/** Ops that no longer exist at a newer opset (deprecated or removed experimental ops). */
const GONE = new Map<string, number>([
  ["Upsample", 10],
  ["ImageScaler", 10],
  ["Crop", 10],
  ["ScaledTanh", 10],
  ["Affine", 10],
  ["ParametricSoftplus", 10],
  ["GivenTensorFill", 10],
  ["ConstantFill", 10],
  ["DynamicSlice", 10],
  ["GRUUnit", 10],
  ["Scale", 10],
]);

const OTHER_REDUCTIONS = [
  "ReduceMean",
  "ReduceMax",
  "ReduceMin",
  "ReduceProd",
  "ReduceL1",
  "ReduceL2",
  "ReduceLogSum",
  "ReduceLogSumExp",
  "ReduceSumSquare",
];

/** Appends the new form of `n` to b.graph.node; `old` is the whole node list before the rewrite. */
type Rewrite = (b: GraphBuilder, n: NodeProto, old: readonly NodeProto[]) => void;

/** Where each op changed, and how to carry a node across that version. */
const REWRITES: ReadonlyArray<{ ops: readonly string[]; at: number; rewrite: Rewrite }> = [
  { ops: ["Slice"], at: 10, rewrite: attrsToInputs(["starts", "ends", "axes"]) },
  {
    ops: ["TopK"],
    at: 10,
    rewrite: (b, n) => moveToInputs(b, n, [["k", (v) => i64Const(b, [v as number])]]),
  },
  { ops: ["Clip"], at: 11, rewrite: clipToInputs },
  { ops: ["Pad"], at: 11, rewrite: padToInputs },
  {
    ops: ["Scatter"],
    at: 11,
    rewrite: (b, n) => b.graph.node.push({ ...n, op_type: "ScatterElements" }),
  },
  { ops: ["Dropout"], at: 12, rewrite: dropoutToInference },
  { ops: ["Squeeze", "Unsqueeze", "ReduceSum"], at: 13, rewrite: attrsToInputs(["axes"]) },
  { ops: ["Split"], at: 13, rewrite: attrsToInputs(["split"]) },
  { ops: ["Softmax", "LogSoftmax", "Hardmax"], at: 13, rewrite: softmaxToOneAxis },
  { ops: ["BatchNormalization"], at: 14, rewrite: batchNormInference },
  { ops: OTHER_REDUCTIONS, at: 18, rewrite: attrsToInputs(["axes"]) },
  { ops: ["DFT"], at: 20, rewrite: dftAxisToInput },
  { ops: ["GridSample"], at: 20, rewrite: gridSampleModes },
  { ops: ["GroupNormalization"], at: 21, rewrite: groupNormPerChannel },
];

/**
 * Raises the default-domain opset of the graph in `b` to `target` (no-op when it is already
 * there or above), rewriting attribute-form ops to their new forms in place (see the module
 * doc), and raises the model's IR version to at least 8. Afterwards `b.opset === target`:
 * nodes added later must be valid at the new opset.
 */
export function upgradeOpset(b: GraphBuilder, target: number): void {
  const from = b.opset;
  if (target <= from) return;
  if (from < MIN_SOURCE_OPSET) {
    throw new Error(
      `cannot raise opset ${from} to ${target}: models below opset ${MIN_SOURCE_OPSET} are not ` +
        `supported; convert the model first (python: onnx.version_converter.convert_version(m, 13))`,
    );
  }
  if (target > MAX_TARGET_OPSET || target < 15) {
    throw new Error(
      `upgradeOpset target ${target} is outside the supported range 15..${MAX_TARGET_OPSET}; ` +
        `pass a target in that range (appendVjp uses ${BACKWARD_OPSET})`,
    );
  }
  const old = b.graph.node;
  for (const n of old) checkCarriable(n, from, target);
  b.graph.node = [];
  for (const n of old) {
    const step = isDefaultDomain(n)
      ? REWRITES.find((r) => r.ops.includes(n.op_type) && from < r.at && r.at <= target)
      : undefined;
    if (step) step.rewrite(b, n, old);
    else b.graph.node.push(n);
  }
  const model = b.toModel();
  const imp = (model.opset_import ?? []).find((o) => !o.domain || o.domain === "ai.onnx")!;
  imp.version = target;
  b.opset = target;
  model.ir_version = Math.max(model.ir_version ?? 0, 8);
}

function isDefaultDomain(n: NodeProto): boolean {
  return !n.domain || n.domain === "ai.onnx";
}

function checkCarriable(n: NodeProto, from: number, target: number): void {
  const label = `node '${n.name ?? ""}' (${n.op_type}, outputs ${n.output.join(",")})`;
  if ((n.attribute ?? []).some((a) => a.g !== undefined || (a.graphs?.length ?? 0) > 0)) {
    throw new Error(
      `cannot raise the opset from ${from} to ${target}: ${label} has a sub-graph, whose nodes ` +
        `would change meaning too; convert the model to opset ${target} first (onnx.version_converter)`,
    );
  }
  if (!isDefaultDomain(n)) return;
  const gone = GONE.get(n.op_type);
  const resize10 = n.op_type === "Resize" && from < 11 && target >= 11;
  if ((gone !== undefined && from < gone && gone <= target) || resize10) {
    throw new Error(
      `cannot raise the opset from ${from} to ${target}: ${label} has no exact equivalent at ` +
        `opset ${target}; convert the model first (python: onnx.version_converter.convert_version)`,
    );
  }
}

/** Moves attributes to inputs 1, 2, ... in the given order; absent ones become "" (optional). */
function attrsToInputs(names: readonly string[]): Rewrite {
  return (b, n) =>
    moveToInputs(b, n, names.map((name) => [name, (v) => i64Const(b, v as number[])]));
}

function moveToInputs(
  b: GraphBuilder,
  n: NodeProto,
  moves: ReadonlyArray<readonly [string, (value: number | number[]) => string]>,
): void {
  const inputs = [n.input[0]];
  for (const [name, make] of moves) {
    const a = (n.attribute ?? []).find((x) => x.name === name);
    inputs.push(a ? make(attrValue(a)) : "");
  }
  while (inputs.length > 1 && inputs[inputs.length - 1] === "") inputs.pop();
  const dropped = new Set(moves.map(([name]) => name));
  b.graph.node.push({
    ...n,
    input: inputs,
    attribute: (n.attribute ?? []).filter((a) => !dropped.has(a.name)),
  });
}

function attrValue(a: AttributeProto): number | number[] {
  if (a.ints && a.ints.length > 0) return a.ints.map(Number);
  if (a.floats && a.floats.length > 0) return a.floats;
  return a.type === 1 ? a.f ?? 0 : Number(a.i ?? 0);
}

/** Clip-6 min/max attributes -> Clip-11 inputs of x's type. */
function clipToInputs(b: GraphBuilder, n: NodeProto): void {
  const x = n.input[0];
  const has = (name: string) => (n.attribute ?? []).some((a) => a.name === name);
  const lo = has("min") ? constLike(b, floatAttr(n, "min", 0), x) : "";
  const hi = has("max") ? constLike(b, floatAttr(n, "max", 0), x) : "";
  const input = [x, lo, hi];
  while (input.length > 1 && input[input.length - 1] === "") input.pop();
  b.graph.node.push({ ...n, input, attribute: [] });
}

/** Pad-2 pads/value attributes -> Pad-11 inputs. */
function padToInputs(b: GraphBuilder, n: NodeProto): void {
  const x = n.input[0];
  const pads = i64Const(b, intsAttr(n, "pads") ?? []);
  const value = floatAttr(n, "value", 0);
  const mode = stringAttr(n, "mode", "constant");
  const input = mode === "constant" && value !== 0 ? [x, pads, constLike(b, value, x)] : [x, pads];
  b.graph.node.push({
    ...n,
    input,
    attribute: (n.attribute ?? []).filter((a) => a.name === "mode"),
  });
}

/** Whether any node or graph output reads value `name`. */
function consumed(graph: GraphProto, old: readonly NodeProto[], name: string): boolean {
  if (!name) return false;
  return old.some((m) => m.input.includes(name)) || graph.output.some((o) => o.name === name);
}

/** Dropout-7..11 -> 12: ratio only matters in training; the mask output must be unused. */
function dropoutToInference(b: GraphBuilder, node: NodeProto, old: readonly NodeProto[]): void {
  if (consumed(b.graph, old, node.output[1])) {
    throw new Error(
      `cannot raise the opset: the mask output '${node.output[1]}' of Dropout node '${
        node.name ?? ""
      }' ` +
        `is used, and its type changed at opset 10; remove the use or convert the model first`,
    );
  }
  b.graph.node.push({
    ...node,
    output: [node.output[0]],
    attribute: (node.attribute ?? []).filter((a) => a.name !== "ratio"),
  });
}

/** BatchNormalization-9 -> 14: outputs beyond Y (training statistics) must be unused. */
function batchNormInference(b: GraphBuilder, node: NodeProto, old: readonly NodeProto[]): void {
  const used = node.output.slice(1).filter((o) => consumed(b.graph, old, o));
  if (used.length > 0) {
    throw new Error(
      `cannot raise the opset: BatchNormalization node '${node.name ?? ""}' uses its training ` +
        `outputs (${used.join(", ")}); export the model in eval mode`,
    );
  }
  b.graph.node.push({
    ...node,
    output: [node.output[0]],
    attribute: (node.attribute ?? []).filter((a) => a.name !== "spatial"),
  });
}

/**
 * Softmax-1..11 works on x coerced to 2-D at `axis` (default 1); from 13 it works on one axis.
 * Exact rewrite: Flatten(x, axis) -> op(axis=1) -> Reshape(Shape(x)).
 */
function softmaxToOneAxis(b: GraphBuilder, n: NodeProto): void {
  const x = n.input[0];
  const flat = b.node("Flatten", [x], { axis: intAttr(n, "axis", 1) });
  const y = b.node(n.op_type, [flat], { axis: 1 }, { name: n.name });
  b.node("Reshape", [y, b.node("Shape", [x])], { allowzero: 1 }, { outputs: [n.output[0]] });
}

/** DFT-17 axis attribute (default 1) -> DFT-20 input 2 (whose default is -2). */
function dftAxisToInput(b: GraphBuilder, n: NodeProto): void {
  const input = [n.input[0], n.input[1] ?? "", i64Const(b, intAttr(n, "axis", 1), [])];
  b.graph.node.push({
    ...n,
    input,
    attribute: (n.attribute ?? []).filter((a) => a.name !== "axis"),
  });
}

/** GridSample-16 -> 20: mode "bilinear" is now "linear", "bicubic" is "cubic" (same meaning). */
function gridSampleModes(b: GraphBuilder, n: NodeProto): void {
  const renamed: Record<string, string> = { bilinear: "linear", bicubic: "cubic" };
  b.graph.node.push({
    ...n,
    attribute: (n.attribute ?? []).map((a) => {
      if (a.name !== "mode") return a;
      const mode = stringAttr(n, "mode", "bilinear");
      return makeAttribute("mode", renamed[mode] ?? mode);
    }),
  });
}

/**
 * GroupNormalization-18 -> 21: scale and bias were per group [G], now per channel [C]; each
 * group's value is repeated for its C / G channels (numpy.repeat; as the ONNX converter's
 * GroupNormalization_20_21 adapter): Reshape(v, [G, 1]) -> Expand([1, C / G]) -> Reshape([-1]),
 * C read from x at run time.
 */
function groupNormPerChannel(b: GraphBuilder, n: NodeProto): void {
  const [x, scale, bias] = n.input;
  const G = intAttr(n, "num_groups", 1);
  const C = b.node("Shape", [x], { start: 1, end: 2 });
  const per = b.node("Div", [C, i64Const(b, [G])]);
  const wide = b.node("Concat", [i64Const(b, [1]), per], { axis: 0 });
  const column = i64Const(b, [-1, 1]);
  const flat = i64Const(b, [-1]);
  const repeat = (v: string) =>
    b.node("Reshape", [b.node("Expand", [b.node("Reshape", [v, column]), wide]), flat]);
  b.graph.node.push({ ...n, input: [x, repeat(scale), repeat(bias)] });
}
