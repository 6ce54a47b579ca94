/**
 * Static rank, shape and element-type inference for the gradient rules: MatMul's 1-D special
 * cases need ranks at build time, typed constants (0, 1, alpha...) are emitted directly in a
 * value's element type when it is known (a CastLike otherwise), and known sizes let rules pick
 * cheaper equivalent forms (static conv pads, no broadcast reduction). Reads declared shapes
 * and types (graph inputs, outputs, value_info), initializers and Constant nodes, and
 * propagates through common ops; returns undefined when unsure.
 * @module
 */
import { type DecodedAttr, getAttr, type GraphBuilder } from "../onnx/builder.ts";
import { DataType, type NodeProto, type TensorProto, type ValueInfoProto } from "../onnx/proto.ts";

/** Ops whose output has the rank of their first input. */
const SAME_RANK = new Set([
  "Abs",
  "AveragePool",
  "BatchNormalization",
  "Cast",
  "CastLike",
  "Ceil",
  "Clip",
  "Conv",
  "ConvTranspose",
  "Cos",
  "Dropout",
  "Elu",
  "Erf",
  "Exp",
  "Floor",
  "GlobalAveragePool",
  "GlobalMaxPool",
  "HardSigmoid",
  "Identity",
  "InstanceNormalization",
  "LRN",
  "LayerNormalization",
  "LeakyRelu",
  "Log",
  "LogSoftmax",
  "LpNormalization",
  "MaxPool",
  "Neg",
  "Pad",
  "PRelu",
  "Reciprocal",
  "Relu",
  "Round",
  "Selu",
  "Sigmoid",
  "Sign",
  "Sin",
  "Slice",
  "Softmax",
  "Softplus",
  "Softsign",
  "Sqrt",
  "Tanh",
  "Tile",
  "Transpose",
  "Split",
  "Concat",
  "Resize",
  "Upsample",
  "DepthToSpace",
  "SpaceToDepth",
  "Gelu",
  "HardSwish",
  "Mish",
  "ThresholdedRelu",
  "GatherElements",
]);

/** Ops that broadcast their inputs (numpy rules): output rank is the largest input rank. */
const BROADCAST = new Set([
  "Add",
  "Sub",
  "Mul",
  "Div",
  "Pow",
  "Max",
  "Min",
  "Sum",
  "Mean",
  "Where",
  "Equal",
  "Greater",
  "Less",
  "GreaterOrEqual",
  "LessOrEqual",
  "And",
  "Or",
  "Xor",
  "Mod",
  "BitShift",
]);

/** Reductions (keepdims keeps the rank; otherwise rank minus the number of axes). */
const REDUCE = new Set([
  "ReduceSum",
  "ReduceMean",
  "ReduceMax",
  "ReduceMin",
  "ReduceProd",
  "ReduceL1",
  "ReduceL2",
  "ReduceLogSum",
  "ReduceLogSumExp",
  "ReduceSumSquare",
  "ArgMax",
  "ArgMin",
]);

/** Ops with int64 outputs; and ops with bool outputs. */
const INT64_OUT = new Set(["Shape", "Size", "NonZero", "ArgMax", "ArgMin"]);
const BOOL_OUT = new Set([
  "Equal",
  "Greater",
  "Less",
  "GreaterOrEqual",
  "LessOrEqual",
  "And",
  "Or",
  "Xor",
  "Not",
  "IsNaN",
  "IsInf",
]);
/** Ops whose output type is not their first input's and is not handled below. */
const OTHER_TYPE = new Set([
  "EyeLike",
  "RandomNormalLike",
  "RandomUniformLike",
  "Multinomial",
  "Bernoulli",
  "QuantizeLinear",
  "DequantizeLinear",
  "DynamicQuantizeLinear",
  "MatMulInteger",
  "ConvInteger",
  "QLinearConv",
  "QLinearMatMul",
  "Unique",
  "StringNormalizer",
  "TfIdfVectorizer",
]);

interface Cache {
  nodes: NodeProto[];
  seen: number;
  producer: Map<string, NodeProto>;
  declared: Map<string, ValueInfoProto>;
  types: Map<string, number | undefined>;
}
const caches = new WeakMap<GraphBuilder, Cache>();

/** The producer map of `b`'s graph, extended incrementally as nodes are appended. */
function cacheOf(b: GraphBuilder): Cache {
  let c = caches.get(b);
  if (!c || c.nodes !== b.graph.node || c.seen > b.graph.node.length) {
    c = {
      nodes: b.graph.node,
      seen: 0,
      producer: new Map(),
      declared: new Map(),
      types: new Map(),
    };
    caches.set(b, c);
  }
  for (; c.seen < c.nodes.length; c.seen++) {
    for (const o of c.nodes[c.seen].output) if (o) c.producer.set(o, c.nodes[c.seen]);
  }
  const g = b.graph;
  c.declared.clear();
  for (const v of [...(g.value_info ?? []), ...g.output, ...g.input]) c.declared.set(v.name, v);
  return c;
}

/**
 * Rank of value `name` in the graph of `b`, or undefined when it cannot be told statically.
 * Declared shapes win; then initializers and Constant nodes; then the producing op.
 */
export function staticRank(b: GraphBuilder, name: string): number | undefined {
  const c = cacheOf(b);
  const memo = new Map<string, number | undefined>();
  const rank = (v: string | undefined, depth: number): number | undefined => {
    if (!v || depth > 2000) return undefined;
    if (memo.has(v)) return memo.get(v);
    memo.set(v, undefined);
    const shape = c.declared.get(v)?.type?.tensor_type?.shape;
    const init = shape ? undefined : b.initializer(v);
    const producer = c.producer.get(v);
    const r = shape
      ? (shape.dim ?? []).length
      : init
      ? (init.dims ?? []).length
      : producer
      ? rankOfOutput(b, producer, (u) => rank(u, depth + 1))
      : undefined;
    memo.set(v, r);
    return r;
  };
  return rank(name, 0);
}

function rankOfOutput(
  b: GraphBuilder,
  n: NodeProto,
  rankOf: (v: string | undefined) => number | undefined,
): number | undefined {
  const r = (i: number) => rankOf(n.input[i]);
  const constLen = (i: number) => {
    const c = n.input[i] ? b.constantValue(n.input[i]) : undefined;
    return c ? c.values.length : undefined;
  };
  const op = n.op_type;
  if (op === "Constant") return b.constantValue(n.output[0])?.dims.length;
  if (SAME_RANK.has(op)) return r(0);
  if (BROADCAST.has(op)) {
    const ranks = n.input.map((_, i) => r(i));
    return ranks.every((x) => x !== undefined) ? Math.max(...(ranks as number[])) : undefined;
  }
  if (op === "Gemm" || op === "Flatten" || op === "NonZero") return 2;
  if (op === "Shape") return 1;
  if (op === "Size") return 0;
  if (op === "Reshape" || op === "ConstantOfShape") return constLen(op === "Reshape" ? 1 : 0);
  if (op === "Expand") {
    const [rx, k] = [r(0), constLen(1)];
    return rx !== undefined && k !== undefined ? Math.max(rx, k) : undefined;
  }
  if (op === "MatMul") {
    const [ra, rb] = [r(0), r(1)];
    if (ra === undefined || rb === undefined) return undefined;
    if (ra === 1 || rb === 1) return ra + rb - 2;
    return Math.max(ra, rb);
  }
  if (op === "Unsqueeze" || op === "Squeeze") {
    const rx = r(0);
    const k = intList(n, "axes")?.length ?? constLen(1);
    if (rx === undefined || k === undefined) return undefined;
    return op === "Unsqueeze" ? rx + k : rx - k;
  }
  if (REDUCE.has(op)) {
    const rx = r(0);
    if (rx === undefined) return undefined;
    if (Number(getAttr(n, "keepdims", 1)) === 1) return rx;
    if (op === "ArgMax" || op === "ArgMin") return rx - 1;
    const k = intList(n, "axes")?.length ?? (n.input[1] ? constLen(1) : 0);
    if (k === undefined) return undefined;
    if (k === 0) return Number(getAttr(n, "noop_with_empty_axes", 0)) === 1 ? rx : 0;
    return rx - k;
  }
  if (op === "Gather") {
    const [rx, ri] = [r(0), r(1)];
    return rx !== undefined && ri !== undefined ? rx + ri - 1 : undefined;
  }
  return undefined;
}

function intList(n: NodeProto, name: string): number[] | undefined {
  const v = getAttr<DecodedAttr | undefined>(n, name, undefined);
  return Array.isArray(v) ? v.map(Number) : undefined;
}

/**
 * Element type (ONNX DataType number) of value `name`, or undefined when it cannot be told
 * statically. Declared types win; then initializers and Constant nodes; then the producing op
 * (most ops keep their first input's type).
 */
export function staticElemType(b: GraphBuilder, name: string): number | undefined {
  const c = cacheOf(b);
  const stack: string[] = [];
  const type = (v: string | undefined): number | undefined => {
    if (!v || stack.length > 2000) return undefined;
    if (c.types.has(v)) return c.types.get(v);
    if (stack.includes(v)) return undefined;
    stack.push(v);
    const declared = c.declared.get(v)?.type?.tensor_type?.elem_type;
    const init = declared ? undefined : b.initializer(v);
    const producer = c.producer.get(v);
    const t = declared ||
      (init ? init.data_type : producer ? typeOfOutput(producer, v, type) : undefined);
    stack.pop();
    c.types.set(v, t);
    return t;
  };
  return type(name);
}

function typeOfOutput(
  n: NodeProto,
  out: string,
  typeOf: (v: string | undefined) => number | undefined,
): number | undefined {
  if (n.domain && n.domain !== "ai.onnx") return undefined;
  const op = n.op_type;
  const k = n.output.indexOf(out);
  if (op === "Constant") return (getAttr(n, "value") as TensorProto | undefined)?.data_type;
  if (op === "Cast") return Number(getAttr(n, "to", 0)) || undefined;
  if (op === "CastLike") return typeOf(n.input[1]);
  if (INT64_OUT.has(op)) return DataType.INT64;
  if (BOOL_OUT.has(op)) return DataType.BOOL;
  if (op === "ConstantOfShape") {
    return (getAttr(n, "value") as TensorProto | undefined)?.data_type ?? DataType.FLOAT;
  }
  if (op === "Where") return typeOf(n.input[1]);
  if (op === "OneHot") return typeOf(n.input[2]);
  if ((op === "MaxPool" || op === "TopK") && k === 1) return DataType.INT64;
  if (op === "Dropout" && k === 1) return undefined;
  if (OTHER_TYPE.has(op) || k > 0 && op !== "Split") return undefined;
  return typeOf(n.input[0]);
}

/**
 * One dimension as far as it is known statically: a size, a symbolic name (a declared
 * dim_param; the same name denotes the same size throughout a graph, as in the ONNX IR), or
 * undefined when unknown.
 */
export type StaticDim = number | string | undefined;

/** Ops whose (first) output has exactly the shape of their first input. */
const SAME_SHAPE = new Set([
  "Abs",
  "BatchNormalization",
  "Cast",
  "CastLike",
  "Ceil",
  "Clip",
  "Cos",
  "Dropout",
  "Elu",
  "Erf",
  "Exp",
  "Floor",
  "Gelu",
  "HardSigmoid",
  "HardSwish",
  "Identity",
  "InstanceNormalization",
  "LRN",
  "LayerNormalization",
  "LeakyRelu",
  "Log",
  "LogSoftmax",
  "Mish",
  "Neg",
  "PRelu",
  "Reciprocal",
  "Relu",
  "Round",
  "Selu",
  "Sigmoid",
  "Sign",
  "Sin",
  "Softmax",
  "Softplus",
  "Softsign",
  "Sqrt",
  "Tanh",
  "ThresholdedRelu",
]);

/** Elementwise ops with numpy broadcasting over all their inputs. */
const BROADCAST_SHAPE = new Set(["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean"]);

/**
 * Shape of value `name` in the graph of `b` as far as it can be told statically (see
 * {@link StaticDim}), or undefined when even the rank is unknown. Declared shapes win; then
 * initializers and Constant nodes; then the producing op, for same-shape elementwise ops,
 * broadcasting arithmetic, Where and Conv. Used to pick cheaper but equivalent backward forms
 * (static pads, no broadcast reduction) where sizes are known, with dynamic forms otherwise.
 */
export function staticShape(b: GraphBuilder, name: string): StaticDim[] | undefined {
  const c = cacheOf(b);
  const memo = new Map<string, StaticDim[] | undefined>();
  const shape = (v: string | undefined, depth: number): StaticDim[] | undefined => {
    if (!v || depth > 2000) return undefined;
    if (memo.has(v)) return memo.get(v);
    memo.set(v, undefined);
    const declared = c.declared.get(v)?.type?.tensor_type?.shape;
    let s: StaticDim[] | undefined;
    if (declared) {
      s = (declared.dim ?? []).map((d) =>
        d.dim_param
          ? `param:${d.dim_param}`
          : typeof d.dim_value === "number"
          ? d.dim_value
          : undefined
      );
    } else {
      const init = b.initializer(v);
      const producer = c.producer.get(v);
      if (init) s = (init.dims ?? []).map(Number);
      else if (producer?.op_type === "Constant") s = b.constantValue(v)?.dims;
      else if (producer && producer.output[0] === v) {
        s = shapeOfOutput(producer, (u) => shape(u, depth + 1));
      }
    }
    memo.set(v, s);
    return s;
  };
  return shape(name, 0);
}

function shapeOfOutput(
  n: NodeProto,
  shapeOf: (v: string | undefined) => StaticDim[] | undefined,
): StaticDim[] | undefined {
  if (n.domain && n.domain !== "ai.onnx") return undefined;
  const op = n.op_type;
  if (SAME_SHAPE.has(op)) return shapeOf(n.input[0]);
  if (BROADCAST_SHAPE.has(op) || op === "Where") {
    const shapes = n.input.map((i) => shapeOf(i));
    return shapes.every((s) => s !== undefined)
      ? broadcastDims(shapes as StaticDim[][])
      : undefined;
  }
  if (op === "Conv") return windowOutputShape(n, shapeOf(n.input[0]), shapeOf(n.input[1]));
  return undefined;
}

/** Numpy broadcast of static shapes: a dim is known when the rules pin it down. */
export function broadcastDims(shapes: readonly (readonly StaticDim[])[]): StaticDim[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  return Array.from({ length: rank }, (_, i) => {
    const dims = shapes.map((s) => i < rank - s.length ? 1 : s[i - (rank - s.length)]);
    const big = new Set(dims.filter((d) => typeof d === "number" && d !== 1));
    if (big.size === 1) return [...big][0]; // every other dim is 1 or this size
    if (big.size > 1) return undefined; // inconsistent: the graph is invalid, say nothing
    if (dims.includes(undefined)) return undefined;
    const names = new Set(dims.filter((d) => typeof d === "string"));
    if (names.size === 0) return 1;
    return names.size === 1 ? [...names][0] : undefined; // 1 and N broadcast to N
  });
}

/**
 * Output shape of a Conv or a pool (MaxPool, AveragePool, LpPool) from its input (and, for Conv,
 * weight) shapes and attributes (ONNX Conv-11 / pools with ceil_mode).
 * @param n the node
 * @param xs the input shape
 * @param ws the weight shape (Conv only)
 */
export function windowOutputShape(
  n: NodeProto,
  xs: StaticDim[] | undefined,
  ws: StaticDim[] | undefined,
): StaticDim[] | undefined {
  if (!xs || xs.length < 3) return undefined;
  const k = xs.length - 2;
  const kernel = intList(n, "kernel_shape") ?? ws?.slice(2);
  const list = (name: string, len: number, fill: number) => {
    const v = intList(n, name);
    return v && v.length > 0 ? v : Array(len).fill(fill);
  };
  const strides = list("strides", k, 1), dilations = list("dilations", k, 1);
  const pads = list("pads", 2 * k, 0);
  const autoPad = String(getAttr(n, "auto_pad", "NOTSET"));
  const ceil = Number(getAttr(n, "ceil_mode", 0)) === 1;
  const spatial = xs.slice(2).map((h, i) => {
    const ki = kernel?.[i];
    if (typeof h !== "number") return undefined;
    if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") return Math.ceil(h / strides[i]);
    if (typeof ki !== "number") return undefined;
    const extent = (ki - 1) * dilations[i] + 1;
    const padded = autoPad === "VALID" ? h : h + pads[i] + pads[i + k];
    const q = (padded - extent) / strides[i];
    let out = (ceil ? Math.ceil(q) : Math.floor(q)) + 1;
    // ceil_mode: the last window must start inside the input or the begin padding.
    if (ceil && (out - 1) * strides[i] >= h + pads[i]) out--;
    return out;
  });
  const channels = n.op_type === "Conv" ? ws?.[0] : xs[1];
  return [xs[0], channels, ...spatial];
}
