/**
 * Converting ONNX TensorProto constants to and from typed arrays (little-endian raw_data).
 * @module
 */
import { DataType, type TensorProto } from "./proto.ts";

/** Typed arrays that can back an ONNX tensor constant. */
export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** Builds a TensorProto holding `data` with shape `dims` as little-endian raw bytes. */
export function makeTensor(name: string, dims: readonly number[], data: TensorData): TensorProto {
  const size = dims.reduce((a, b) => a * b, 1);
  if (size !== data.length) {
    throw new Error(
      `tensor ${name}: shape [${dims}] holds ${size} values, data has ${data.length}`,
    );
  }
  let dataType: number;
  if (data instanceof Float32Array) dataType = DataType.FLOAT;
  else if (data instanceof Float64Array) dataType = DataType.DOUBLE;
  else if (data instanceof BigInt64Array) dataType = DataType.INT64;
  else if (data instanceof Int32Array) dataType = DataType.INT32;
  else dataType = DataType.UINT8;
  const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  return { name, dims: [...dims], data_type: dataType, raw_data: raw };
}

/** Numbers of a TensorProto as float64 (any numeric type), in row-major order. */
export function tensorToFloat64(t: TensorProto): Float64Array {
  const n = (t.dims ?? []).reduce((a, b) => a * b, 1);
  const raw = t.raw_data && t.raw_data.length > 0 ? t.raw_data : undefined;
  const out = new Float64Array(n);
  if (raw) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const read: (i: number) => number = {
      [DataType.FLOAT]: (i: number) => view.getFloat32(i * 4, true),
      [DataType.DOUBLE]: (i: number) => view.getFloat64(i * 8, true),
      [DataType.INT64]: (i: number) => Number(view.getBigInt64(i * 8, true)),
      [DataType.INT32]: (i: number) => view.getInt32(i * 4, true),
      [DataType.UINT8]: (i: number) => view.getUint8(i),
      [DataType.INT8]: (i: number) => view.getInt8(i),
      [DataType.BOOL]: (i: number) => view.getUint8(i),
    }[t.data_type ?? 0] ?? (() => {
      throw new Error(`tensor ${t.name ?? "?"}: data_type ${t.data_type} is not supported`);
    });
    for (let i = 0; i < n; i++) out[i] = read(i);
    return out;
  }
  const src = t.float_data?.length
    ? t.float_data
    : t.double_data?.length
    ? t.double_data
    : t.int64_data?.length
    ? t.int64_data
    : t.int32_data?.length
    ? t.int32_data
    : t.uint64_data ?? [];
  if (src.length !== n && n !== 0) {
    throw new Error(
      `tensor ${t.name ?? "?"}: shape [${t.dims}] needs ${n} values, has ${src.length}`,
    );
  }
  for (let i = 0; i < n; i++) out[i] = Number(src[i]);
  return out;
}
