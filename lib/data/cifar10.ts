/**
 * CIFAR-10 reader for the official binary layout (`cifar-10-binary.tar.gz`).
 *
 * Each batch file is a sequence of 3073-byte records: 1 label byte (0..9) followed by 3072 pixel
 * bytes laid out as three 32x32 row-major planes (R, then G, then B). The archive holds
 * `cifar-10-batches-bin/data_batch_{1..5}.bin` (train, 10000 records each) and `test_batch.bin`.
 *
 * The gzip layer uses `node:zlib`; the tar layer is a minimal ustar reader implemented here.
 *
 * @module
 */

import { gunzipSync } from "node:zlib";
import { join, resolve } from "node:path";

/** CIFAR-10 class names, indexed by label (the order of `batches.meta.txt`). */
export const CIFAR10_CLASSES = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
] as const;

/** Bytes of pixel data per image: 3 channels x 32 x 32. */
const PIXELS = 3072;
/** Bytes per record in a batch file: 1 label byte + {@link PIXELS}. */
const RECORD = PIXELS + 1;
/** Name of the folder inside the official archive. */
const BATCH_DIR = "cifar-10-batches-bin";
/** Train batch files, concatenated in this order. */
const TRAIN_FILES = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);
/** Test batch file. */
const TEST_FILES = ["test_batch.bin"];
/** Where the project keeps the archive, relative to the repository root. */
const SUGGESTED_PATH = "../shared/data/cifar10/cifar-10-binary.tar.gz";

/** A decoded CIFAR-10 split (or batch). */
export interface Cifar10Split {
  /** `count * 3072` bytes; per record the R, G, B planes (32x32 row-major), as in the file. */
  images: Uint8Array;
  /** `count` labels in 0..9, see {@link CIFAR10_CLASSES}. */
  labels: Uint8Array;
  /** Number of records. */
  count: number;
  /**
   * What a caller should tell the user (loadCifar10): a batch file holding another number of
   * records than the official 10000 (cut short at a record boundary?), a limit above the data.
   */
  notes?: string[];
}

/** Records in each official batch file. */
const OFFICIAL_BATCH_RECORDS = 10000;

/** Decompressed archives by path/size/mtime, so loading train then test gunzips once. */
const archiveCache = new Map<string, Promise<Map<string, Uint8Array>>>();

/**
 * Drops the in-process cache of decompressed archives (about 184 MB for the real archive).
 * Later {@link loadCifar10} calls decompress again.
 */
export function clearCifar10Cache(): void {
  archiveCache.clear();
}

/**
 * Loads a CIFAR-10 split.
 *
 * @param path the `.tar.gz` (or plain `.tar`) archive, an extracted `cifar-10-batches-bin/`
 *   directory, or a directory containing `cifar-10-batches-bin/`.
 * @param split `"train"` (data_batch_1..5 concatenated in order, 50000 records) or `"test"`
 *   (test_batch, 10000 records).
 * @param opts.limit keep only the first `limit` records (a positive integer); a limit above the
 *   split size returns the whole split (said in `notes`). Every batch file that is read is still
 *   fully validated; one with another number of records than 10000 is said in `notes`.
 * @returns the decoded split; the archive is decompressed once per process and path.
 */
export async function loadCifar10(
  path: string,
  split: "train" | "test",
  opts: { limit?: number } = {},
): Promise<Cifar10Split> {
  if (split !== "train" && split !== "test") {
    throw new Error(`loadCifar10: split must be "train" or "test", got ${JSON.stringify(split)}.`);
  }
  const limit = opts.limit ?? Infinity;
  if (limit !== Infinity && (!Number.isInteger(limit) || limit < 1)) {
    throw new Error(
      `loadCifar10: opts.limit must be a positive integer, got ${String(opts.limit)}; ` +
        `omit it to load the whole ${split} split.`,
    );
  }
  const files = split === "train" ? TRAIN_FILES : TEST_FILES;
  const batches = await readBatches(path, files, limit);
  let total = 0;
  const counts = batches.map((b) => validateBatch(b.bytes, b.name));
  for (const c of counts) total += c;
  const count = Math.min(total, limit);
  const notes: string[] = [];
  batches.forEach((b, i) => {
    if (counts[i] !== OFFICIAL_BATCH_RECORDS) {
      notes.push(
        `CIFAR-10 batch ${b.name} holds ${counts[i]} records, an official batch holds ` +
          `${OFFICIAL_BATCH_RECORDS}: the file may be cut short (at a record boundary); ` +
          `re-extract it if this is not a subset made on purpose`,
      );
    }
  });
  if (limit !== Infinity && limit > total) {
    notes.push(
      `limit ${limit} is above the ${total} records of the ${split} split in ${path}; ` +
        `using all ${total}`,
    );
  }
  const images = new Uint8Array(count * PIXELS);
  const labels = new Uint8Array(count);
  let done = 0;
  for (const b of batches) {
    if (done >= count) break;
    done += copyRecords(
      b.bytes,
      Math.min(count - done, b.bytes.length / RECORD),
      images,
      labels,
      done,
    );
  }
  return notes.length ? { images, labels, count, notes } : { images, labels, count };
}

/**
 * Decodes one batch file's bytes (records of 1 label byte + 3072 pixel bytes).
 *
 * @param bytes the whole file content.
 * @param name the file name, used in error messages.
 * @throws if the length is not a positive multiple of 3073 or a label is 10 or more.
 */
export function decodeCifar10Batch(bytes: Uint8Array, name: string): Cifar10Split {
  const count = validateBatch(bytes, name);
  const images = new Uint8Array(count * PIXELS);
  const labels = new Uint8Array(count);
  copyRecords(bytes, count, images, labels, 0);
  return { images, labels, count };
}

/**
 * Converts pixel bytes to floats, element by element.
 *
 * @param range `"pm1"` maps x to `x / 127.5 - 1` (0 → -1, 255 → 1); `"01"` maps x to `x / 255`.
 */
export function imagesToFloat(images: Uint8Array, range: "pm1" | "01"): Float32Array {
  const lut = byteLut(range, "imagesToFloat");
  const out = new Float32Array(images.length);
  for (let i = 0; i < images.length; i++) out[i] = lut[images[i]];
  return out;
}

/**
 * Per-class mean image, in the same float range {@link imagesToFloat} produces.
 *
 * Sums are exact (integer sums in float64), so the result does not depend on record order.
 *
 * @returns `means`: 10 rows of 3072 values (CHW), row k for label k; a class with no records
 *   has a row of NaN, so check `counts` (records per class) when loading with a limit.
 */
export function classMeans(
  split: Cifar10Split,
  range: "pm1" | "01",
): { means: Float64Array; counts: Uint32Array } {
  byteLut(range, "classMeans");
  const { images, labels, count } = split;
  if (
    !Number.isInteger(count) || count < 0 || labels.length !== count ||
    images.length !== count * PIXELS
  ) {
    throw new Error(
      `classMeans: inconsistent split: count=${count}, labels.length=${labels.length}, ` +
        `images.length=${images.length} (expected count*3072=${count * PIXELS}); ` +
        `pass a split from loadCifar10 or decodeCifar10Batch.`,
    );
  }
  const sums = new Float64Array(10 * PIXELS);
  const counts = new Uint32Array(10);
  for (let r = 0; r < count; r++) {
    const label = labels[r];
    if (label >= 10) {
      throw new Error(`classMeans: record ${r} has label ${label}; CIFAR-10 labels are 0..9.`);
    }
    counts[label]++;
    const base = label * PIXELS;
    const off = r * PIXELS;
    for (let j = 0; j < PIXELS; j++) sums[base + j] += images[off + j];
  }
  const means = new Float64Array(10 * PIXELS);
  for (let k = 0; k < 10; k++) {
    const n = counts[k];
    for (let j = 0; j < PIXELS; j++) {
      const s = sums[k * PIXELS + j];
      means[k * PIXELS + j] = n === 0 ? NaN : range === "01" ? s / (255 * n) : s / (127.5 * n) - 1;
    }
  }
  return { means, counts };
}

/** Lookup table byte → float for a range; throws on an unknown range. */
function byteLut(range: string, fn: string): Float32Array {
  if (range !== "pm1" && range !== "01") {
    throw new Error(`${fn}: range must be "pm1" or "01", got ${JSON.stringify(range)}.`);
  }
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = range === "01" ? v / 255 : v / 127.5 - 1;
  return lut;
}

/** Checks a batch's length and labels; returns its record count. */
function validateBatch(bytes: Uint8Array, name: string): number {
  if (bytes.length === 0 || bytes.length % RECORD !== 0) {
    throw new Error(
      `CIFAR-10 batch "${name}" is ${bytes.length} bytes; expected a positive multiple of ` +
        `${RECORD} (1 label byte + 3072 pixel bytes per record; an official batch is ` +
        `${10000 * RECORD} bytes). The file is truncated or not a CIFAR-10 binary batch ` +
        `(CIFAR-100 records are 3074 bytes); re-extract it from cifar-10-binary.tar.gz.`,
    );
  }
  const count = bytes.length / RECORD;
  for (let r = 0; r < count; r++) {
    const label = bytes[r * RECORD];
    if (label >= 10) {
      throw new Error(
        `CIFAR-10 batch "${name}" record ${r} (byte offset ${r * RECORD}) has label ${label}; ` +
          `CIFAR-10 labels are 0..9. The file is corrupt or not a CIFAR-10 binary batch.`,
      );
    }
  }
  return count;
}

/** Copies `n` records from a validated batch into `images`/`labels` at record `dest`. */
function copyRecords(
  bytes: Uint8Array,
  n: number,
  images: Uint8Array,
  labels: Uint8Array,
  dest: number,
): number {
  for (let r = 0; r < n; r++) {
    const off = r * RECORD;
    labels[dest + r] = bytes[off];
    images.set(bytes.subarray(off + 1, off + RECORD), (dest + r) * PIXELS);
  }
  return n;
}

/** Reads the named batch files (in order) from an archive or a directory. */
async function readBatches(
  path: string,
  files: string[],
  limit: number,
): Promise<{ name: string; bytes: Uint8Array }[]> {
  const abs = resolve(path);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(abs);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        `CIFAR-10 path "${path}" does not exist (resolved to ${abs}). Pass the archive, e.g. ` +
          `${SUGGESTED_PATH} (relative to the repository root), or an extracted ` +
          `${BATCH_DIR}/ directory.`,
      );
    }
    throw e;
  }
  if (info.isDirectory) return await readBatchesFromDir(abs, files, limit);
  const key = `${abs}\0${info.size}\0${info.mtime?.getTime() ?? 0}`;
  let pending = archiveCache.get(key);
  if (!pending) {
    pending = readArchive(abs);
    archiveCache.set(key, pending);
    pending.catch(() => archiveCache.delete(key));
  }
  const entries = await pending;
  return files.map((name) => ({ name: `${name} in ${abs}`, bytes: findEntry(entries, name, abs) }));
}

/** Reads batch files from `dir/cifar-10-batches-bin/` or `dir/`, stopping once `limit` is met. */
async function readBatchesFromDir(
  dir: string,
  files: string[],
  limit: number,
): Promise<{ name: string; bytes: Uint8Array }[]> {
  const inner = join(dir, BATCH_DIR);
  const base = await isDirectory(inner) ? inner : dir;
  const out: { name: string; bytes: Uint8Array }[] = [];
  let records = 0;
  for (const name of files) {
    if (records >= limit) break;
    const file = join(base, name);
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new Error(
          `CIFAR-10 directory ${base} has no ${name} (looked for ${file}). Expected the ` +
            `${BATCH_DIR}/ folder extracted from cifar-10-binary.tar.gz, holding ` +
            `${[...TRAIN_FILES, ...TEST_FILES].join(", ")}.`,
        );
      }
      throw e;
    }
    out.push({ name: file, bytes });
    records += Math.floor(bytes.length / RECORD);
  }
  return out;
}

/** True when `path` exists and is a directory. */
async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Looks up `cifar-10-batches-bin/<name>` in tar entries, falling back to a basename match. */
function findEntry(entries: Map<string, Uint8Array>, name: string, archive: string): Uint8Array {
  const exact = entries.get(`${BATCH_DIR}/${name}`);
  if (exact) return exact;
  for (const [path, bytes] of entries) {
    if (path === name || path.endsWith(`/${name}`)) return bytes;
  }
  const held = [...entries.keys()];
  const shown = held.slice(0, 12).join(", ") + (held.length > 12 ? ", ..." : "");
  throw new Error(
    `CIFAR-10 archive ${archive} has no ${BATCH_DIR}/${name}; it holds ${held.length} ` +
      `file(s): [${shown}]. Expected the binary-version archive cifar-10-binary.tar.gz (the ` +
      `python version cifar-10-python.tar.gz is a different format).`,
  );
}

/** Reads a `.tar.gz` or `.tar` file into a map of regular-file entries by path. */
async function readArchive(abs: string): Promise<Map<string, Uint8Array>> {
  const raw = await Deno.readFile(abs);
  let tar: Uint8Array;
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      const out = gunzipSync(raw);
      tar = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } catch (e) {
      throw new Error(
        `CIFAR-10 archive ${abs} (${raw.length} bytes) is damaged gzip data: ` +
          `${e instanceof Error ? e.message : String(e)}. Re-download cifar-10-binary.tar.gz.`,
      );
    }
    if (!isTarHeader(tar, 0)) {
      throw new Error(
        `CIFAR-10 archive ${abs} is gzip-compressed but its content is not a tar archive ` +
          `(no valid tar header at offset 0). Pass cifar-10-binary.tar.gz or an extracted ` +
          `${BATCH_DIR}/ directory.`,
      );
    }
  } else if (isTarHeader(raw, 0)) {
    tar = raw;
  } else {
    const head = [...raw.subarray(0, 4)].map((b) => "0x" + b.toString(16).padStart(2, "0"));
    throw new Error(
      `CIFAR-10 path ${abs} (${raw.length} bytes, first bytes ${head.join(" ")}) is neither ` +
        `gzip (starts 0x1f 0x8b) nor a tar archive. Pass cifar-10-binary.tar.gz or an extracted ` +
        `${BATCH_DIR}/ directory; to decode a single .bin batch use decodeCifar10Batch.`,
    );
  }
  return readTar(tar, abs);
}

/** True when the 512-byte block at `offset` has a valid tar header checksum. */
function isTarHeader(bytes: Uint8Array, offset: number): boolean {
  if (bytes.length - offset < 512) return false;
  const stored = parseOctal(bytes.subarray(offset + 148, offset + 156));
  if (stored === undefined) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) {
    sum += i >= 148 && i < 156 ? 0x20 : bytes[offset + i];
  }
  return sum === stored;
}

/** Parses a NUL/space-terminated octal field; undefined if it holds no digits or bad ones. */
function parseOctal(field: Uint8Array): number | undefined {
  let value = 0;
  let digits = 0;
  for (const c of field) {
    if (c === 0 || (c === 0x20 && digits > 0)) break;
    if (c === 0x20) continue;
    if (c < 0x30 || c > 0x37) return undefined;
    value = value * 8 + (c - 0x30);
    digits++;
  }
  return digits > 0 ? value : undefined;
}

/** Parses a tar size field: octal, or GNU base-256 when the high bit of the first byte is set. */
function parseSize(field: Uint8Array): number | undefined {
  if (field[0] & 0x80) {
    let value = field[0] & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i];
    return value;
  }
  return parseOctal(field);
}

/** Decodes a NUL-terminated string field. */
function cString(field: Uint8Array): string {
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}

/** Strips a leading `./` and trailing `/` from an entry path. */
function normalizeEntryPath(path: string): string {
  return path.replace(/^(\.\/)+/, "").replace(/\/+$/, "");
}

/**
 * Minimal ustar reader: returns regular files (type '0' or NUL) as subarrays of `tar`.
 * Honours the ustar `prefix` field, pax `path` records (type 'x') and GNU long names (type 'L');
 * skips directories, links and other entry types.
 */
function readTar(tar: Uint8Array, archive: string): Map<string, Uint8Array> {
  const entries = new Map<string, Uint8Array>();
  let offset = 0;
  let nextName: string | undefined;
  while (offset + 512 <= tar.length) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break; // end-of-archive marker
    if (!isTarHeader(tar, offset)) {
      throw new Error(
        `CIFAR-10 archive ${archive}: corrupt tar header at byte ${offset} (checksum mismatch). ` +
          `Re-download cifar-10-binary.tar.gz.`,
      );
    }
    let name = cString(header.subarray(0, 100));
    const prefix = cString(header.subarray(345, 500));
    const isUstar = cString(header.subarray(257, 262)) === "ustar";
    if (isUstar && prefix) name = `${prefix}/${name}`;
    const size = parseSize(header.subarray(124, 136)) ?? 0;
    const type = String.fromCharCode(header[156]);
    const start = offset + 512;
    if (start + size > tar.length) {
      throw new Error(
        `CIFAR-10 archive ${archive} is truncated: tar entry "${name}" at byte ${offset} ` +
          `declares ${size} bytes but only ${tar.length - start} remain. ` +
          `Re-download cifar-10-binary.tar.gz.`,
      );
    }
    const data = tar.subarray(start, start + size);
    if (type === "x") {
      nextName = paxPath(data) ?? nextName;
    } else if (type === "L") {
      nextName = cString(data);
    } else {
      if (type === "0" || type === "\0") {
        entries.set(normalizeEntryPath(nextName ?? name), data);
      }
      nextName = undefined;
    }
    offset = start + Math.ceil(size / 512) * 512;
  }
  if (offset < tar.length && offset + 512 > tar.length && tar.subarray(offset).some((b) => b)) {
    throw new Error(
      `CIFAR-10 archive ${archive} is truncated: ${tar.length - offset} stray bytes after the ` +
        `last tar entry at byte ${offset} (a header needs 512). Re-download cifar-10-binary.tar.gz.`,
    );
  }
  return entries;
}

/** Extracts the `path` record from pax extended-header data ("<len> key=value\n" records). */
function paxPath(data: Uint8Array): string | undefined {
  const text = new TextDecoder().decode(data);
  let path: string | undefined;
  for (const line of text.split("\n")) {
    const m = /^\d+ path=(.*)$/.exec(line);
    if (m) path = m[1];
  }
  return path;
}
