/**
 * Reduced-precision classifiers (float16, bfloat16 weights, inputs or outputs) run in the
 * energy head in float32: every float16/bfloat16 tensor (initializers, Constant and
 * ConstantOfShape values) is widened to float32 (exactly: both formats are subsets of
 * float32), Casts to them become Casts to float32, and declared types follow. The head then
 * computes the classifier's function with its own weights at float32 precision, so its results
 * agree with a float64 evaluation of the same weights to float32 rounding (the zoo's fp16
 * fixture holds them to 1e-4 relative, as every other model), and differ from the float16
 * model's own outputs by float16 rounding (about 1e-3 relative per layer).
 * @module
 */
import {
  DataType,
  decodeModel,
  encodeModel,
  type GraphProto,
  type TensorProto,
  type TypeProto,
} from "../onnx/proto.ts";

/** ONNX element types float16 and bfloat16 (TensorProto.DataType). */
const FLOAT16 = 10, BFLOAT16 = 16;
const HALF = new Set([FLOAT16, BFLOAT16]);

/** float16 bits -> number (IEEE 754 binary16). */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** bfloat16 bits -> number (the top half of a float32). */
export function bfloat16ToFloat(h: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, (h & 0xffff) << 16);
  return view.getFloat32(0);
}

/** The float32 values of a float16/bfloat16 tensor (raw_data or int32_data bit patterns). */
function widen(t: TensorProto): Float32Array {
  const n = (t.dims ?? []).reduce((a, d) => a * Number(d), 1);
  const decode = t.data_type === BFLOAT16 ? bfloat16ToFloat : halfToFloat;
  const out = new Float32Array(n);
  const raw = t.raw_data && t.raw_data.length > 0 ? t.raw_data : undefined;
  if (raw) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < n; i++) out[i] = decode(view.getUint16(2 * i, true));
  } else {
    const bits = t.int32_data ?? [];
    for (let i = 0; i < n; i++) out[i] = decode(Number(bits[i] ?? 0));
  }
  return out;
}

/** Widens `t` in place to float32 when it is float16/bfloat16; true when it was. */
function widenTensor(t: TensorProto | undefined): boolean {
  if (!t || !HALF.has(t.data_type ?? 0)) return false;
  const values = widen(t);
  t.data_type = DataType.FLOAT;
  t.raw_data = new Uint8Array(values.buffer);
  t.int32_data = [];
  return true;
}

function widenType(type: TypeProto | undefined): boolean {
  const tt = type?.tensor_type;
  if (!tt || !HALF.has(tt.elem_type ?? 0)) return false;
  tt.elem_type = DataType.FLOAT;
  return true;
}

/**
 * Rewrites `graph` in place so that it computes in float32 (see the module doc). Returns the
 * reduced-precision types it found ("float16", "bfloat16"), empty when the graph was float32.
 */
export function widenToFloat32(graph: GraphProto): string[] {
  const found = new Set<string>();
  const note = (type: number | undefined) => found.add(type === BFLOAT16 ? "bfloat16" : "float16");
  for (const t of graph.initializer ?? []) {
    const type = t.data_type;
    if (widenTensor(t)) note(type);
  }
  for (const v of [...graph.input, ...graph.output, ...(graph.value_info ?? [])]) {
    const type = v.type?.tensor_type?.elem_type;
    if (widenType(v.type)) note(type);
  }
  for (const n of graph.node) {
    for (const a of n.attribute ?? []) {
      if (a.t) {
        const type = a.t.data_type;
        if (widenTensor(a.t)) note(type);
      }
      if ((a.name === "to" || a.name === "dtype") && HALF.has(Number(a.i ?? 0))) {
        note(Number(a.i));
        a.i = DataType.FLOAT;
      }
      if (a.g) { for (const t of widenToFloat32(a.g)) found.add(t); }
    }
  }
  return [...found].sort();
}

/**
 * The classifier in `bytes` as it runs inside the head: widened to float32 when it used
 * float16/bfloat16 (the same bytes otherwise). For comparing a head with its classifier
 * (onnxruntime-node under Deno cannot feed float16 tensors).
 */
export function float32Classifier(bytes: Uint8Array, source = "classifier"): Uint8Array {
  const model = decodeModel(bytes, source);
  return widenToFloat32(model.graph).length > 0 ? encodeModel(model) : bytes;
}
