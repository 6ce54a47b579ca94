// Decoding the base64 arrays of the JSON fixtures (written by the Python recipes).
import { Buffer } from "node:buffer";

/** float32 little-endian base64 -> Float32Array. */
export function f32(b64: string): Float32Array {
  const bytes = Buffer.from(b64, "base64");
  return new Float32Array(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  );
}
