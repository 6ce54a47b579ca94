/**
 * ONNX model decode/encode through protobufjs and the official ONNX schema (lib/onnx/onnx.proto,
 * compiled into `_schema.ts`). Field names keep the schema's snake_case (`op_type`, `raw_data`)
 * so code reads like the ONNX documentation. int64 fields become JS numbers (exact below 2^53,
 * which covers every shape and attribute a vision model uses).
 * @module
 */
import protobuf from "protobufjs";
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
  name?: string;
  dims?: number[];
  data_type?: number;
  raw_data?: Uint8Array;
  float_data?: number[];
  int32_data?: number[];
  int64_data?: number[];
  double_data?: number[];
  uint64_data?: number[];
}

/** A graph used as an attribute (If/Loop bodies); kept opaque by this project. */
export interface AttributeProto {
  name: string;
  type?: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  floats?: number[];
  ints?: number[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
}

/** One operator application. */
export interface NodeProto {
  input: string[];
  output: string[];
  name?: string;
  op_type: string;
  domain?: string;
  attribute?: AttributeProto[];
}

/** One dimension: a fixed size or a symbolic name. */
export interface DimProto {
  dim_value?: number;
  dim_param?: string;
}

/** Type of a graph value (only tensors are used here). */
export interface TypeProto {
  tensor_type?: { elem_type?: number; shape?: { dim?: DimProto[] } };
}

/** Name and type of a graph input, output or intermediate. */
export interface ValueInfoProto {
  name: string;
  type?: TypeProto;
  doc_string?: string;
}

/** A computation graph. */
export interface GraphProto {
  name?: string;
  node: NodeProto[];
  initializer?: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  value_info?: ValueInfoProto[];
  doc_string?: string;
}

/** Operator-set import. An empty domain is the default `ai.onnx` set. */
export interface OperatorSetIdProto {
  domain?: string;
  version: number;
}

/** Key/value metadata stored in the model. */
export interface StringStringEntryProto {
  key: string;
  value: string;
}

/** A whole ONNX model. */
export interface ModelProto {
  ir_version?: number;
  opset_import?: OperatorSetIdProto[];
  producer_name?: string;
  producer_version?: string;
  doc_string?: string;
  graph: GraphProto;
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
