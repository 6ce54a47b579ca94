/**
 * Node-emitting helpers shared by the gradient rules: typed constants, zeros, broadcast
 * reduction, index tensors and scatter-add. Everything is shape-dynamic (Shape-based), so a
 * backward pass works for any batch size. Needs opset >= 16 (CastLike, ScatterElements add).
 * Internal to lib/autodiff.
 * @module
 */
import { type DecodedAttr, getAttr, type GraphBuilder } from "../onnx/builder.ts";
import { DataType, type NodeProto, type TensorProto } from "../onnx/proto.ts";
import { makeTensor } from "../onnx/tensor.ts";
import { type StaticDim, staticElemType, staticShape } from "./static_info.ts";

/** Integer attribute `name` of `node`, or `fallback`. */
export function intAttr(node: NodeProto, name: string, fallback: number): number {
  return Number(getAttr(node, name, fallback));
}

/** Float attribute `name` of `node`, or `fallback`. */
export function floatAttr(node: NodeProto, name: string, fallback: number): number {
  return Number(getAttr(node, name, fallback));
}

/** Integer-list attribute `name` of `node`, or undefined when absent. */
export function intsAttr(node: NodeProto, name: string): number[] | undefined {
  const v = getAttr<DecodedAttr | undefined>(node, name, undefined);
  return v === undefined ? undefined : (v as number[]).map(Number);
}

/** String attribute `name` of `node`, or `fallback`. */
export function stringAttr(node: NodeProto, name: string, fallback: string): string {
  return String(getAttr(node, name, fallback));
}

const i64Cache = new WeakMap<GraphBuilder, Map<string, string>>();

/**
 * An int64 constant (1-D, or a scalar when `dims` is []), shared by all rules on one builder so
 * the backward pass does not repeat small initializers.
 */
export function i64Const(
  b: GraphBuilder,
  values: number | readonly number[],
  dims?: readonly number[],
): string {
  let cache = i64Cache.get(b);
  if (!cache) i64Cache.set(b, cache = new Map());
  const key = JSON.stringify([values, dims]);
  let name = cache.get(key);
  if (!name || !b.initializer(name)) {
    name = b.i64("ad_i64", values, dims);
    cache.set(key, name);
  }
  return name;
}

/** Input `i` of `node`, or undefined when absent or given as the empty name. */
export function optionalInput(node: NodeProto, i: number): string | undefined {
  const v = node.input[i];
  return v ? v : undefined;
}

/**
 * A scalar with value `value` and the element type of `like`: an initializer of that type when
 * it is known statically (float32 or float64), else a CastLike of a float64 constant.
 */
export function constLike(b: GraphBuilder, value: number, like: string): string {
  const type = staticElemType(b, like);
  if (type === DataType.FLOAT) return b.constant("ad_const", [], Float32Array.of(value));
  if (type === DataType.DOUBLE) return b.constant("ad_const", [], Float64Array.of(value));
  return b.node("CastLike", [b.constant("ad_const", [], Float64Array.of(value)), like]);
}

/** `v` converted to the element type of `like`: a Cast when that type is known, else CastLike. */
export function castLike(b: GraphBuilder, v: string, like: string): string {
  const type = staticElemType(b, like);
  if (type === undefined) return b.node("CastLike", [v, like]);
  return staticElemType(b, v) === type ? v : b.node("Cast", [v], { to: type });
}

/** A tensor of shape `shape` (int64 1-D value) filled with `value` in the element type of `like`. */
export function filledLike(b: GraphBuilder, shape: string, value: number, like: string): string {
  const type = staticElemType(b, like);
  if (type === DataType.FLOAT || type === DataType.DOUBLE) {
    const data = type === DataType.FLOAT ? Float32Array.of(value) : Float64Array.of(value);
    return b.node("ConstantOfShape", [shape], { value: makeTensor("value", [1], data) });
  }
  const filled = b.node("ConstantOfShape", [shape], {
    value: makeTensor("value", [1], Float64Array.of(value)),
  });
  return b.node("CastLike", [filled, like]);
}

/**
 * `g` where the boolean `mask` holds, 0 elsewhere, as g * float(mask): measured 30% faster in
 * ONNX Runtime than Where(mask, g, 0) on the large activations of a backward pass.
 */
export function maskedBy(b: GraphBuilder, g: string, mask: string): string {
  return b.node("Mul", [g, castLike(b, mask, g)]);
}

/** Zeros with the shape and element type of `like`. */
export function zerosLike(b: GraphBuilder, like: string): string {
  return filledLike(b, b.node("Shape", [like]), 0, like);
}

/** A one-element int64 tensor used as ConstantOfShape's fill value. */
export function i64Fill(value: number): TensorProto {
  return makeTensor("value", [1], BigInt64Array.of(BigInt(value)));
}

/**
 * `v` reshaped to Shape(like), with allowzero=1 (opset 14) so that a 0 in the shape means an
 * empty axis, not "copy this axis from v".
 */
export function reshapeLike(b: GraphBuilder, v: string, like: string): string {
  return b.node("Reshape", [v, b.node("Shape", [like])], { allowzero: 1 });
}

/** Sum of cotangent contributions (the value itself when there is one). */
export function sumValues(b: GraphBuilder, values: readonly string[]): string {
  if (values.length === 0) throw new Error("sumValues: no values to add (internal error)");
  return values.length === 1 ? values[0] : b.node("Sum", values);
}

/** Shape(v)[2:], the spatial sizes of an N,C,D1,... tensor (Shape-15 start attribute). */
export function spatialShape(b: GraphBuilder, v: string): string {
  return b.node("Shape", [v], { start: 2 });
}

/**
 * The gradient of a numpy-broadcast operand: sums `g` (the output cotangent) over the axes that
 * broadcasting added or stretched, then reshapes to Shape(operand). `out` is a value with g's
 * shape (the forward output; default `g` itself) or g's static shape itself, used to decide statically where shapes are
 * known: when the operand provably has g's shape, g is returned as is; when the operand's
 * shape is fully known, the axes are constants. Otherwise the axes are found at run time:
 * Shape(operand) is left-padded with ones to the rank of `g`, and every axis where it is 1 is
 * summed with keepdims (summing a size-1 axis of `g` changes nothing), so dynamic shapes work.
 */
export function unbroadcast(
  b: GraphBuilder,
  g: string,
  operand: string,
  out: string | readonly StaticDim[] = g,
): string {
  const so = staticShape(b, operand);
  const sg = typeof out === "string" ? staticShape(b, out) : out;
  if (so && sg && so.length <= sg.length) {
    const padded = [...Array(sg.length - so.length).fill(1), ...so];
    // An axis is kept as is when the operand's size there is known to be g's (the same number
    // or symbol), or a known size other than 1 (broadcasting then requires g's size to match).
    const kept = padded.map((d, i) =>
      d !== undefined && (d === sg[i] || (typeof d === "number" && d !== 1))
    );
    if (so.length === sg.length && kept.every((k) => k)) return g;
    // Static axes when every axis is kept or has operand size 1 (summed; a no-op where g's
    // size is 1 too); symbolic sizes elsewhere are fine.
    if (padded.every((d, i) => kept[i] || d === 1)) {
      const axes = padded.flatMap((d, i) => d === 1 && sg[i] !== 1 ? [i] : []);
      const summed = axes.length === 0
        ? g
        : b.node("ReduceSum", [g, i64Const(b, axes)], { keepdims: 1 });
      // summed now has the shape `padded` (summed axes are 1, the others match g's sizes).
      if (so.length === sg.length) return summed;
      return so.every((d) => typeof d === "number")
        ? b.node("Reshape", [summed, i64Const(b, so as number[])], { allowzero: 1 })
        : reshapeLike(b, summed, operand);
    }
  }
  const sa = b.node("Shape", [operand]);
  const diff = b.node("Sub", [b.node("Shape", [b.node("Shape", [g])]), b.node("Shape", [sa])]);
  const ones = b.node("ConstantOfShape", [diff], { value: i64Fill(1) });
  const paddedShape = b.node("Concat", [ones, sa], { axis: 0 });
  const mask = b.node("Equal", [paddedShape, i64Const(b, 1, [])]);
  const axes = b.node("Reshape", [b.node("NonZero", [mask]), i64Const(b, [-1])]);
  const summed = b.node("ReduceSum", [g, axes], { keepdims: 1, noop_with_empty_axes: 1 });
  return b.node("Reshape", [summed, sa], { allowzero: 1 });
}

/** Positions 0..size-1 of `x`'s elements (int64), shaped like `x`: the index tensor ("iota"). */
export function iotaLike(b: GraphBuilder, x: string): string {
  const range = b.node("Range", [i64Const(b, 0, []), b.node("Size", [x]), i64Const(b, 1, [])]);
  return reshapeLike(b, range, x);
}

/**
 * Adds every element of `g` into a zero vector of length `length` (int64 scalar) at the flat
 * position given by the matching element of `index`; duplicates accumulate (ScatterElements with
 * reduction "add", opset 16). This is the adjoint of a gather: y = x.flat[index].
 */
export function scatterAddFlat(b: GraphBuilder, length: string, index: string, g: string): string {
  const flat = i64Const(b, [-1]);
  const zeros = filledLike(b, b.node("Reshape", [length, flat]), 0, g);
  return b.node("ScatterElements", [
    zeros,
    b.node("Reshape", [index, flat]),
    b.node("Reshape", [g, flat]),
  ], {
    axis: 0,
    reduction: "add",
  });
}

/**
 * Cotangent of `x` for any op that only moves or copies elements (Slice, Pad, Gather, Tile...):
 * `gather(iota)` applies the same op to the index tensor of `x` (positions, int64), so each
 * output element names the input element it came from; the output cotangent is scattered back
 * with addition. Positions equal to Size(x) (Pad's fill) land in one extra slot that is dropped.
 */
export function gatherAdjoint(
  b: GraphBuilder,
  x: string,
  g: string,
  gather: (iota: string, size: string) => string,
): string {
  const size = b.node("Size", [x]);
  const index = gather(iotaLike(b, x), size);
  const length = b.node("Add", [size, i64Const(b, 1, [])]);
  const scattered = scatterAddFlat(b, length, index, g);
  const kept = b.node("Slice", [
    scattered,
    i64Const(b, [0]),
    b.node("Reshape", [size, i64Const(b, [-1])]),
  ]);
  return reshapeLike(b, kept, x);
}

/** Transposes the last two axes of a value of known rank `rank` (>= 2). */
export function swapLastTwo(b: GraphBuilder, v: string, rank: number): string {
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return b.node("Transpose", [v], { perm });
}

/**
 * Appends a node of type `op` carrying `from`'s attributes (minus `drop`), e.g. a re-run of a
 * forward MaxPool that also returns its argmax indices; returns the output names.
 */
export function nodeLike(
  b: GraphBuilder,
  op: string,
  inputs: readonly string[],
  from: NodeProto,
  drop: readonly string[],
  outputs: number,
): string[] {
  const outs = b.nodeN(op, inputs, {}, { outputs });
  const added = b.graph.node[b.graph.node.length - 1];
  added.attribute = (from.attribute ?? []).filter((a) => !drop.includes(a.name)).map((a) => ({
    ...a,
  }));
  return outs;
}
