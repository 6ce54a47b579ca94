/**
 * A small ONNX graph builder, made for both writing graphs from scratch (test models, the
 * mixture denoiser) and rewriting existing ones (the energy head appends a backward pass).
 * It edits a plain {@link ModelProto}; nothing is hidden: `toModel()` returns the value.
 * @module
 */
import {
  type AttributeProto,
  DataType,
  defaultOpset,
  type DimProto,
  encodeModel,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from "./proto.ts";
import { makeTensor, type TensorData, tensorToFloat64 } from "./tensor.ts";

/** A float attribute even when the number is integral (ONNX attributes are typed). */
export interface FloatAttr {
  /** The number or list to store as FLOAT or FLOATS. */
  readonly float: number | readonly number[];
}
/** Wraps a number (or list) so it is stored as a FLOAT(S) attribute. */
export function float(value: number | readonly number[]): FloatAttr {
  return { float: value };
}

/**
 * Attribute values: integers become INT(S) (except names ONNX always types FLOAT, such as alpha,
 * beta, epsilon), non-integers FLOAT(S), `float(x)` forces FLOAT(S), strings STRING, a
 * TensorProto TENSOR.
 */
export type AttrValue = number | readonly number[] | string | FloatAttr | TensorProto;

const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

/** Attribute names that ONNX types as FLOAT in every default-domain op that has them. */
const FLOAT_ATTRS = new Set([
  "alpha",
  "beta",
  "gamma",
  "epsilon",
  "momentum",
  "bias",
  "lambd",
  "ratio",
  "min",
  "max",
  "scale",
  "spatial_scale",
  "extrapolation_value",
  "cubic_coeff_a",
]);

/** Encodes one attribute value. */
export function makeAttribute(name: string, value: AttrValue): AttributeProto {
  if (typeof value === "string") {
    return { name, type: AttrType.STRING, s: new TextEncoder().encode(value) };
  }
  if (typeof value === "number") {
    return Number.isInteger(value) && !FLOAT_ATTRS.has(name)
      ? { name, type: AttrType.INT, i: value }
      : { name, type: AttrType.FLOAT, f: value };
  }
  if (Array.isArray(value)) {
    const arr = value as number[];
    return arr.every(Number.isInteger)
      ? { name, type: AttrType.INTS, ints: [...arr] }
      : { name, type: AttrType.FLOATS, floats: [...arr] };
  }
  if ("float" in (value as FloatAttr)) {
    const f = (value as FloatAttr).float;
    return typeof f === "number"
      ? { name, type: AttrType.FLOAT, f }
      : { name, type: AttrType.FLOATS, floats: [...f] };
  }
  return { name, type: AttrType.TENSOR, t: value as TensorProto };
}

/** Decoded attribute value: number, number[], string, or tensor. */
export type DecodedAttr = number | number[] | string | TensorProto | GraphProto;

/** Reads attribute `name` of `node`, or `fallback` when it is absent. */
export function getAttr<T extends DecodedAttr | undefined>(
  node: NodeProto,
  name: string,
  fallback?: T,
): DecodedAttr | T {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  if (!a) return fallback as T;
  switch (a.type) {
    case AttrType.FLOAT:
      return a.f ?? 0;
    case AttrType.INT:
      return a.i ?? 0;
    case AttrType.STRING:
      return new TextDecoder().decode(a.s ?? new Uint8Array());
    case AttrType.TENSOR:
      return a.t as TensorProto;
    case AttrType.FLOATS:
      return a.floats ?? [];
    case AttrType.INTS:
      return a.ints ?? [];
    case 5: // GRAPH
      return a.g as GraphProto;
    default:
      throw new Error(
        `attribute ${name} of node ${nodeLabel(node)} has unsupported type ${a.type}`,
      );
  }
}

/** "Conv (name 'conv1')" for error messages. */
export function nodeLabel(node: NodeProto): string {
  return `${node.op_type} (name '${node.name ?? ""}', outputs ${node.output.join(",")})`;
}

/** A dimension: a fixed size or a symbolic name such as "N". */
export type Dim = number | string;

/** Builds a tensor ValueInfoProto. */
export function valueInfo(name: string, elemType: number, shape?: readonly Dim[]): ValueInfoProto {
  const tensor_type: NonNullable<ValueInfoProto["type"]>["tensor_type"] = { elem_type: elemType };
  if (shape) {
    tensor_type.shape = {
      dim: shape.map((d): DimProto => typeof d === "number" ? { dim_value: d } : { dim_param: d }),
    };
  }
  return { name, type: { tensor_type } };
}

/** Options of {@link GraphBuilder.node}. */
export interface NodeOptions {
  /** Number of outputs (names generated) or explicit output names. Default 1. */
  outputs?: number | string[];
  /** Node name; generated from the op type when absent. */
  name?: string;
  /** Operator-set domain of the op; absent for the default `ai.onnx` set. */
  domain?: string;
}

/**
 * Mutable builder over an ONNX graph. Create empty with `new GraphBuilder()` or wrap an existing
 * model with {@link GraphBuilder.fromModel} to rewrite it.
 */
export class GraphBuilder {
  /** The graph being built (a plain value; edits are visible immediately). */
  readonly graph: GraphProto;
  /** Default-domain opset the graph targets. */
  opset: number;
  private model: ModelProto;
  private used = new Set<string>();
  private counter = 0;

  /** An empty graph targeting `opset` (default 17). */
  constructor(opts: { name?: string; opset?: number; model?: ModelProto } = {}) {
    this.model = opts.model ?? {
      ir_version: 8,
      producer_name: "robust-guidance",
      opset_import: [{ domain: "", version: opts.opset ?? 17 }],
      graph: { name: opts.name ?? "graph", node: [], initializer: [], input: [], output: [] },
    };
    this.graph = this.model.graph;
    this.graph.initializer ??= [];
    this.graph.value_info ??= [];
    this.opset = defaultOpset(this.model);
    for (const n of this.graph.node) {
      for (const o of n.output) this.used.add(o);
      if (n.name) this.used.add(n.name);
    }
    for (const v of [...this.graph.input, ...this.graph.output]) this.used.add(v.name);
    for (const t of this.graph.initializer) if (t.name) this.used.add(t.name);
  }

  /** Wraps an existing model for rewriting (the model is edited in place). */
  static fromModel(model: ModelProto): GraphBuilder {
    return new GraphBuilder({ model });
  }

  /** A fresh value/node name starting with `hint`. */
  fresh(hint: string): string {
    let name = hint;
    while (this.used.has(name)) name = `${hint}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  /** Adds a graph input and returns its name. */
  input(name: string, elemType: number, shape: readonly Dim[]): string {
    if (this.used.has(name)) throw new Error(`graph already has a value named '${name}'`);
    this.used.add(name);
    this.graph.input.push(valueInfo(name, elemType, shape));
    return name;
  }

  /** Marks `value` as a graph output, renaming through an Identity when `as` differs. */
  output(
    value: string,
    elemType: number = DataType.FLOAT,
    shape?: readonly Dim[],
    as?: string,
  ): string {
    let name = value;
    if (as !== undefined && as !== value) {
      if (this.used.has(as)) throw new Error(`graph already has a value named '${as}'`);
      this.used.add(as);
      this.node("Identity", [value], {}, { outputs: [as] });
      name = as;
    }
    this.graph.output.push(valueInfo(name, elemType, shape));
    return name;
  }

  /**
   * Drops the initializers that no node (here or in a subgraph) and no graph output reads, and
   * returns how many. Gradient rules can emit a constant whose use folds away; onnxruntime warns
   * on stderr about each such initializer when it loads the graph.
   */
  dropUnusedInitializers(): number {
    const read = new Set(this.graph.output.map((v) => v.name));
    const visit = (g: GraphProto) => {
      for (const n of g.node ?? []) {
        for (const i of n.input ?? []) read.add(i);
        for (const a of n.attribute ?? []) {
          for (const sub of [a.g, ...(a.graphs ?? [])]) if (sub) visit(sub);
        }
      }
    };
    visit(this.graph);
    const before = this.graph.initializer!.length;
    this.graph.initializer = this.graph.initializer!.filter((t) => read.has(t.name ?? ""));
    return before - this.graph.initializer.length;
  }

  /** Adds an initializer and returns its (fresh) name. */
  constant(hint: string, dims: readonly number[], data: TensorData): string {
    const name = this.fresh(hint);
    this.graph.initializer!.push(makeTensor(name, dims, data));
    return name;
  }

  /** A float32 constant (scalar when `dims` is empty). */
  f32(hint: string, values: number | readonly number[], dims?: readonly number[]): string {
    const arr = typeof values === "number" ? [values] : [...values];
    return this.constant(
      hint,
      dims ?? (typeof values === "number" ? [] : [arr.length]),
      Float32Array.from(arr),
    );
  }

  /** An int64 1-D constant (shapes, axes, indices), or a scalar when `dims` is []. */
  i64(hint: string, values: number | readonly number[], dims?: readonly number[]): string {
    const arr = typeof values === "number" ? [values] : [...values];
    return this.constant(
      hint,
      dims ?? (typeof values === "number" ? [] : [arr.length]),
      BigInt64Array.from(arr.map(BigInt)),
    );
  }

  /** Appends a node; returns its single output name (see {@link nodeN} for several). */
  node(
    opType: string,
    inputs: readonly string[],
    attrs: Record<string, AttrValue | undefined> = {},
    opts: NodeOptions = {},
  ): string {
    return this.nodeN(opType, inputs, attrs, opts)[0];
  }

  /** Appends a node and returns all its output names. */
  nodeN(
    opType: string,
    inputs: readonly string[],
    attrs: Record<string, AttrValue | undefined> = {},
    opts: NodeOptions = {},
  ): string[] {
    const outs = Array.isArray(opts.outputs)
      ? opts.outputs
      : Array.from({ length: opts.outputs ?? 1 }, (_, i) =>
        this.fresh(`${opType.toLowerCase()}${i ? `_o${i}` : ""}`));
    for (const o of outs) this.used.add(o);
    const attribute = Object.entries(attrs)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => makeAttribute(k, v as AttrValue));
    const node: NodeProto = {
      op_type: opType,
      input: [...inputs],
      output: outs,
      name: opts.name ?? this.fresh(`${opType}_n`),
      attribute,
    };
    if (opts.domain) node.domain = opts.domain;
    this.graph.node.push(node);
    return outs;
  }

  /** The initializer called `name`, if any. */
  initializer(name: string): TensorProto | undefined {
    return this.graph.initializer!.find((t) => t.name === name);
  }

  /** Constant value of `name` when it is an initializer or a Constant node's output. */
  constantValue(name: string): { dims: number[]; values: Float64Array } | undefined {
    const init = this.initializer(name);
    if (init) return { dims: init.dims ?? [], values: tensorToFloat64(init) };
    const producer = this.graph.node.find((n) => n.op_type === "Constant" && n.output[0] === name);
    if (producer) {
      const t = getAttr(producer, "value") as TensorProto | undefined;
      if (t && typeof t === "object" && ("dims" in t || "raw_data" in t)) {
        return { dims: t.dims ?? [], values: tensorToFloat64(t) };
      }
    }
    return undefined;
  }

  /** Sets a metadata key (kept in the model file). */
  setMetadata(key: string, value: string): void {
    this.model.metadata_props ??= [];
    const hit = this.model.metadata_props.find((e) => e.key === key);
    if (hit) hit.value = value;
    else this.model.metadata_props.push({ key, value });
  }

  /** The model value. */
  toModel(): ModelProto {
    return this.model;
  }

  /** ONNX bytes of the model. */
  toBytes(): Uint8Array {
    return encodeModel(this.model);
  }
}
