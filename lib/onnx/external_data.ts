/**
 * ONNX external data: tensors whose values live in a file beside the model (`m.onnx.data`), as
 * `torch.onnx.export(model, args, "m.onnx", dynamo=True)` saves every larger initializer and as
 * `onnx.save(..., save_as_external_data=True)` does for models over protobuf's 2 GB. The toolkit
 * builds new graphs from a classifier's bytes (energy head, fused and pull-back graphs), so such
 * a model's values are read back into the ModelProto when it is resolved
 * ({@link inlineExternalData}); only models too large for one protobuf stay external.
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import {
  type AttributeProto,
  decodeModel,
  encodeModel,
  type GraphProto,
  type ModelProto,
  type TensorProto,
} from "./proto.ts";

/** A tensor as decoded, with the external-data fields the toolkit's TensorProto type omits. */
type StoredTensor = TensorProto & {
  external_data?: { key: string; value?: string }[];
  data_location?: number;
};

/** ONNX TensorProto.DataLocation.EXTERNAL. */
const EXTERNAL = 1;

/** The largest model the toolkit inlines: protobuf messages are limited to 2 GiB. */
export const INLINE_LIMIT_BYTES = 2 ** 31 - 1 - (64 << 20);

function graphTensors(g: GraphProto | undefined, out: StoredTensor[]): void {
  if (!g) return;
  out.push(...(g.initializer ?? []));
  const sparse = (g as { sparse_initializer?: { values?: TensorProto; indices?: TensorProto }[] })
    .sparse_initializer ?? [];
  for (const s of sparse) for (const t of [s.values, s.indices]) if (t) out.push(t);
  for (const n of g.node ?? []) for (const a of n.attribute ?? []) attributeTensors(a, out);
}

function attributeTensors(a: AttributeProto, out: StoredTensor[]): void {
  if (a.t) out.push(a.t);
  out.push(...(a.tensors ?? []));
  graphTensors(a.g, out);
  for (const g of a.graphs ?? []) graphTensors(g, out);
}

/** Every tensor of the model (initializers, sparse initializers, attribute tensors, subgraphs). */
function allTensors(model: ModelProto): StoredTensor[] {
  const out: StoredTensor[] = [];
  graphTensors(model.graph, out);
  const fns = (model as { functions?: { node?: GraphProto["node"] }[] }).functions ?? [];
  for (const f of fns) {
    for (const n of f.node ?? []) for (const a of n.attribute ?? []) attributeTensors(a, out);
  }
  return out;
}

function isExternal(t: StoredTensor): boolean {
  return t.data_location === EXTERNAL || (t.external_data?.length ?? 0) > 0;
}

/** Where one external tensor's bytes are: file (relative to the model's folder), offset, length. */
export interface ExternalRef {
  /** Tensor name. */
  name: string;
  /** The `location` key: a path relative to the model file's folder. */
  location: string;
  /** Byte offset in that file (0 when absent). */
  offset: number;
  /** Byte length (undefined: to the end of the file). */
  length?: number;
}

function externalRef(t: StoredTensor, source: string): ExternalRef {
  const kv = new Map((t.external_data ?? []).map((e) => [e.key, e.value ?? ""]));
  const name = t.name ?? "<unnamed tensor>";
  const location = kv.get("location");
  if (!location) {
    throw new Error(
      `${source}: tensor '${name}' is marked as external data but names no location; re-save ` +
        `the model (python -c "import onnx; onnx.save(onnx.load('m.onnx'), 'm_inline.onnx')")`,
    );
  }
  const num = (key: string): number | undefined => {
    const raw = kv.get(key);
    if (raw === undefined || raw === "") return undefined;
    const v = Number(raw);
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new Error(
        `${source}: tensor '${name}' has external-data ${key} '${raw}', not a byte count; the ` +
          `model file is damaged: export or save it again`,
      );
    }
    return v;
  };
  return { name, location, offset: num("offset") ?? 0, length: num("length") };
}

/** The external-data references of a model, in tensor order (empty: all values are inline). */
export function externalDataRefs(model: ModelProto, source = "model"): ExternalRef[] {
  return allTensors(model).filter(isExternal).map((t) => externalRef(t, source));
}

/**
 * Checks that an external-data location stays inside the model's folder (ONNX: "a path
 * relative to the model file"; onnxruntime refuses others too) and returns it.
 */
export function checkLocation(location: string, source: string): string {
  const parts = location.split(/[\\/]/);
  if (location.startsWith("/") || /^[A-Za-z]:/.test(location) || parts.includes("..")) {
    throw new Error(
      `${source} keeps weights in '${location}', outside the model's folder; ONNX external ` +
        `data must be a relative path beside the model: save it again with the .data file next ` +
        `to the .onnx`,
    );
  }
  return location;
}

/**
 * Reads every external tensor's bytes back into the model (copied as they are). `read(location)`
 * returns a whole external file; each file is read once. Throws naming the tensor, the file and
 * the fix when a file is missing or too short.
 * @returns the external files read (empty: the model had none and is unchanged)
 */
export async function inlineExternalData(
  model: ModelProto,
  read: (location: string) => Promise<Uint8Array>,
  source: string,
): Promise<string[]> {
  const tensors = allTensors(model).filter(isExternal);
  if (!tensors.length) return [];
  const files = new Map<string, Promise<Uint8Array>>();
  for (const t of tensors) {
    const ref = externalRef(t, source);
    const loc = checkLocation(ref.location, source);
    if (!files.has(loc)) files.set(loc, read(loc));
    const data = await files.get(loc)!;
    const end = ref.length === undefined ? data.length : ref.offset + ref.length;
    if (ref.offset > data.length || end > data.length) {
      throw new Error(
        `${source}: tensor '${ref.name}' is at bytes ${ref.offset}..${end} of ${loc}, which has ` +
          `${data.length} bytes; the .data file does not belong to this .onnx (or was cut ` +
          `short): copy both files from the same export`,
      );
    }
    t.raw_data = data.slice(ref.offset, end);
    delete t.external_data;
    delete t.data_location;
  }
  return [...files.keys()];
}

/**
 * True when the model bytes still name external data (a model over the inline limit, kept as
 * it is by {@link withExternalData}).
 */
export function hasExternalData(bytes: Uint8Array): boolean {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.indexOf("location") < 0) return false;
  try {
    return externalDataRefs(decodeModel(bytes)).length > 0;
  } catch {
    return false;
  }
}

/**
 * A model file's bytes with its external data read back in by `read(location)` (a reader of
 * files beside the model), so graphs built from the bytes carry the weights. Models without
 * external data, bytes that are not ONNX (left to the checks that name the flag) and models too
 * large for one protobuf ({@link INLINE_LIMIT_BYTES}; a session still loads those from their
 * folder) come back as they are.
 * @param label names the model in errors (a path, or a manifest id and its file)
 * @returns the bytes, and the external files read into them with their sha256 (absent: none)
 */
export async function withExternalData(
  bytes: Uint8Array,
  read: (location: string) => Promise<Uint8Array>,
  label: string,
): Promise<{ bytes: Uint8Array; files?: ExternalFile[] }> {
  // the cheap test first: every external tensor has the key "location" in the file
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.indexOf("location") < 0) return { bytes };
  let model: ModelProto;
  try {
    model = decodeModel(bytes, label);
  } catch {
    return { bytes };
  }
  const refs = externalDataRefs(model, label);
  if (!refs.length) return { bytes };
  const total = refs.reduce((s, r) => s + (r.length ?? 0), bytes.length);
  if (total > INLINE_LIMIT_BYTES) return { bytes };
  const shas = new Map<string, string>();
  const files = await inlineExternalData(model, async (loc) => {
    try {
      const data = await read(loc);
      shas.set(loc, createHash("sha256").update(data).digest("hex"));
      return data;
    } catch (e) {
      throw new Error(
        `${label} keeps its weights in ${loc}, which cannot be read (${(e as Error).message}); ` +
          `keep the .data file beside the .onnx, as the exporter wrote them, or inline it: ` +
          `python -c "import onnx; onnx.save(onnx.load('m.onnx'), 'm_inline.onnx')"`,
      );
    }
  }, label);
  return {
    bytes: encodeModel(model),
    files: files.map((location) => ({ location, sha256: shas.get(location)! })),
  };
}

/** An external-data file read into a model: its location beside the model, and its sha256. */
export interface ExternalFile {
  /** Path relative to the model's folder, as the model names it. */
  location: string;
  /** Hex sha256 of the whole file. */
  sha256: string;
}
