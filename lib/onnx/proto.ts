/**
 * ONNX model decode/encode through protobufjs and the official ONNX schema (lib/onnx/onnx.proto,
 * compiled into `_schema.ts`). Field names keep the schema's snake_case (`op_type`, `raw_data`)
 * so code reads like the ONNX documentation. int64 fields become JS numbers (exact below 2^53,
 * which covers every shape and attribute a vision model uses).
 * @module
 */
// Full npm: specifier so mod.ts also runs from a URL, where deno.json's import map is absent.
// deno-lint-ignore no-import-prefix
import protobuf from "npm:protobufjs@8.8.1";
import { ONNX_SCHEMA_JSON } from "./_schema.ts";

/** ONNX TensorProto.DataType values used by this project. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  DOUBLE: 11,
} as const;

/** A tensor constant (initializer or attribute value). */
export interface TensorProto {
  /** Tensor name (the value name when it is an initializer). */
  name?: string;
  /** Shape, outermost dimension first; empty or absent for a scalar. */
  dims?: number[];
  /** Element type, a {@link DataType} code. */
  data_type?: number;
  /** Elements as packed little-endian bytes (instead of a typed `*_data` field). */
  raw_data?: Uint8Array;
  /** FLOAT elements, when not in `raw_data`. */
  float_data?: number[];
  /** INT32, INT8, UINT8, BOOL (and other narrow integer) elements, when not in `raw_data`. */
  int32_data?: number[];
  /** INT64 elements, when not in `raw_data`. */
  int64_data?: number[];
  /** DOUBLE elements, when not in `raw_data`. */
  double_data?: number[];
  /** UINT32 and UINT64 elements, when not in `raw_data`. */
  uint64_data?: number[];
}

/** A node attribute: one typed value (f, i, s, t, g) or a list (floats, ints, ...). */
export interface AttributeProto {
  /** Attribute name, e.g. `kernel_shape`. */
  name: string;
  /** AttributeType code: 1 FLOAT, 2 INT, 3 STRING, 4 TENSOR, 5 GRAPH, 6 FLOATS, 7 INTS. */
  type?: number;
  /** Value of a FLOAT attribute. */
  f?: number;
  /** Value of an INT attribute. */
  i?: number;
  /** Value of a STRING attribute, as UTF-8 bytes. */
  s?: Uint8Array;
  /** Value of a TENSOR attribute. */
  t?: TensorProto;
  /** Value of a GRAPH attribute (an If/Loop/Scan body). */
  g?: GraphProto;
  /** Values of a FLOATS attribute. */
  floats?: number[];
  /** Values of an INTS attribute. */
  ints?: number[];
  /** Values of a STRINGS attribute, each as UTF-8 bytes. */
  strings?: Uint8Array[];
  /** Values of a TENSORS attribute. */
  tensors?: TensorProto[];
  /** Values of a GRAPHS attribute. */
  graphs?: GraphProto[];
}

/** One operator application. */
export interface NodeProto {
  /** Input value names in operator order (`""` for an omitted optional input). */
  input: string[];
  /** Output value names in operator order. */
  output: string[];
  /** Node name (for diagnostics). */
  name?: string;
  /** Operator name, e.g. `Conv`. */
  op_type: string;
  /** Operator-set domain; empty or absent for the default `ai.onnx` set. */
  domain?: string;
  /** The node's attributes. */
  attribute?: AttributeProto[];
}

/** One dimension: a fixed size or a symbolic name. */
export interface DimProto {
  /** Fixed size of the dimension. */
  dim_value?: number;
  /** Symbolic name of the dimension, e.g. `N`. */
  dim_param?: string;
}

/** Type of a graph value (only tensors are used here). */
export interface TypeProto {
  /** Tensor element type (a {@link DataType} code) and shape (absent: unknown rank). */
  tensor_type?: { elem_type?: number; shape?: { dim?: DimProto[] } };
}

/** Name and type of a graph input, output or intermediate. */
export interface ValueInfoProto {
  /** Value name. */
  name: string;
  /** Element type and shape of the value. */
  type?: TypeProto;
  /** Free-text documentation. */
  doc_string?: string;
}

/** A computation graph. */
export interface GraphProto {
  /** Graph name. */
  name?: string;
  /** Nodes, in topological order. */
  node: NodeProto[];
  /** Constant tensors (weights), each named by the value it defines. */
  initializer?: TensorProto[];
  /** Graph inputs. */
  input: ValueInfoProto[];
  /** Graph outputs. */
  output: ValueInfoProto[];
  /** Types and shapes of intermediate values, where known. */
  value_info?: ValueInfoProto[];
  /** Free-text documentation. */
  doc_string?: string;
}

/** Operator-set import. An empty domain is the default `ai.onnx` set. */
export interface OperatorSetIdProto {
  /** Operator-set domain; empty or absent for the default `ai.onnx` set. */
  domain?: string;
  /** Opset version imported from that domain. */
  version: number;
}

/** Key/value metadata stored in the model. */
export interface StringStringEntryProto {
  /** Metadata key. */
  key: string;
  /** Metadata value. */
  value: string;
}

/** A whole ONNX model. */
export interface ModelProto {
  /** ONNX IR (file format) version. */
  ir_version?: number;
  /** Operator sets the graph uses, one per domain. */
  opset_import?: OperatorSetIdProto[];
  /** Name of the tool that wrote the model. */
  producer_name?: string;
  /** Version of the tool that wrote the model. */
  producer_version?: string;
  /** Free-text documentation. */
  doc_string?: string;
  /** The computation graph. */
  graph: GraphProto;
  /** Key/value metadata stored in the model. */
  metadata_props?: StringStringEntryProto[];
}

let modelType: protobuf.Type | undefined;
function getModelType(): protobuf.Type {
  if (!modelType) {
    modelType = protobuf.Root.fromJSON(ONNX_SCHEMA_JSON as protobuf.INamespace).lookupType(
      "onnx.ModelProto",
    );
  }
  return modelType;
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, arrays: true, defaults: false };

/**
 * Decodes ONNX model bytes. `what` names the source in errors (a path, say).
 * Throws if the bytes are not an ONNX ModelProto with a graph.
 */
export function decodeModel(bytes: Uint8Array, what = "model bytes"): ModelProto {
  let model: ModelProto;
  try {
    const type = getModelType();
    model = type.toObject(type.decode(bytes), TO_OBJECT) as unknown as ModelProto;
  } catch (e) {
    throw new Error(
      `${what} is not an ONNX model (protobuf decode failed: ${(e as Error).message}); ` +
        `pass a .onnx file exported by torch.onnx.export, tf2onnx or this toolkit`,
    );
  }
  if (!model.graph || !Array.isArray(model.graph.node) || model.graph.node.length === 0) {
    throw new Error(
      `${what} is not an ONNX model (no graph nodes found in ${bytes.length} bytes); ` +
        `pass a .onnx file exported by torch.onnx.export, tf2onnx or this toolkit`,
    );
  }
  normaliseGraph(model.graph);
  return model;
}

function normaliseGraph(g: GraphProto): void {
  g.node ??= [];
  g.input ??= [];
  g.output ??= [];
  g.initializer ??= [];
  g.value_info ??= [];
  for (const n of g.node) {
    n.input ??= [];
    n.output ??= [];
    n.attribute ??= [];
  }
}

/** Encodes a model to ONNX protobuf bytes. */
export function encodeModel(model: ModelProto): Uint8Array {
  const type = getModelType();
  const msg = type.fromObject(model as unknown as Record<string, unknown>);
  return type.encode(msg).finish();
}

/** Opset version of the default domain (`""` or `ai.onnx`), or throws if the model has none. */
export function defaultOpset(model: ModelProto): number {
  const imp = (model.opset_import ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
  if (!imp) throw new Error("model imports no default (ai.onnx) opset; it cannot be run");
  return imp.version;
}
