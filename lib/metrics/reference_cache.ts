/**
 * Cached reference features: the features of a reference image set (CIFAR-10 test, say) and
 * their statistics, stored once per (feature network, reference data, n) so later evaluations
 * skip the reference pass. The key names the feature network by the sha256 of its bytes, its
 * layer and input conventions, and the data by a description that changes when the data does
 * (archive path, size and mtime; or a folder's file list with sizes and mtimes).
 *
 * File layout (little-endian): "RGRF", u32 format version, u32 header length L, L bytes of JSON
 * header (the key, n, dim; padded with spaces so the arrays start on an 8-byte boundary), then
 * float64 mean [dim], float64 covariance [dim, dim], float32 features [n, dim]. Precision/recall
 * needs the features themselves, not only the statistics.
 * @module
 */
import { join } from "node:path";
import { writeFileAtomic } from "../io/png.ts";
import { sha256Hex } from "../runtime/session.ts";
import type { FeatureStatistics } from "./statistics.ts";

const MAGIC = "RGRF";
/** Version of the cache file layout; bump it when the layout or the meaning of a key changes. */
export const REFERENCE_CACHE_VERSION = 1;

/** What identifies a reference feature set. Any JSON value; compared exactly. */
export interface ReferenceKey {
  /** The feature network: sha256 of its source bytes, layer, input conventions. */
  features: Record<string, unknown>;
  /** The reference data, described so that it changes when the data does. */
  reference: Record<string, unknown>;
  /** Number of reference images. */
  n: number;
}

/** A reference set's features and statistics. */
export interface ReferenceFeatures {
  /** What they are the features of. */
  key: ReferenceKey;
  /** Mean and covariance of the features. */
  stats: FeatureStatistics;
  /** [n, dim] row-major. */
  features: Float32Array;
}

/** File name of a key's cache entry: `reference-<first 20 hex of sha256(key JSON)>.bin`. */
export function referenceCacheName(key: ReferenceKey): string {
  const text = canonicalJson({ version: REFERENCE_CACHE_VERSION, ...key });
  return `reference-${sha256Hex(new TextEncoder().encode(text)).slice(0, 20)}.bin`;
}

/** Encodes an entry in the layout of the module doc. */
export function encodeReferenceFeatures(entry: ReferenceFeatures): Uint8Array {
  const { stats, features, key } = entry;
  const d = stats.dim;
  if (features.length !== stats.n * d || key.n !== stats.n) {
    throw new Error(
      `encodeReferenceFeatures: ${features.length} feature values, n = ${stats.n} (key n = ` +
        `${key.n}), dim = ${d}; they must agree`,
    );
  }
  let header = new TextEncoder().encode(
    canonicalJson({ version: REFERENCE_CACHE_VERSION, key, n: stats.n, dim: d }),
  );
  const pad = (8 - ((12 + header.length) % 8)) % 8;
  header = Uint8Array.from([...header, ...new Array(pad).fill(0x20)]);
  const start = 12 + header.length;
  const total = start + 8 * (d + d * d) + 4 * features.length;
  const out = new Uint8Array(total);
  out.set(new TextEncoder().encode(MAGIC), 0);
  const view = new DataView(out.buffer);
  view.setUint32(4, REFERENCE_CACHE_VERSION, true);
  view.setUint32(8, header.length, true);
  out.set(header, 12);
  new Float64Array(out.buffer, start, d).set(stats.mean);
  new Float64Array(out.buffer, start + 8 * d, d * d).set(stats.cov);
  new Float32Array(out.buffer, start + 8 * (d + d * d), features.length).set(features);
  return out;
}

/**
 * Decodes an entry written by {@link encodeReferenceFeatures}.
 * @throws naming `source` when the bytes are not a cache file of this version.
 */
export function decodeReferenceFeatures(bytes: Uint8Array, source: string): ReferenceFeatures {
  const bad = (why: string) =>
    new Error(`${source} is not a usable reference cache file (${why}); delete it to rebuild`);
  if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 4)) !== MAGIC) {
    throw bad("no RGRF header");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version !== REFERENCE_CACHE_VERSION) throw bad(`format version ${version}`);
  const hlen = view.getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + hlen))) as {
    key: ReferenceKey;
    n: number;
    dim: number;
  };
  const { n, dim: d } = header;
  const start = 12 + hlen;
  const need = start + 8 * (d + d * d) + 4 * n * d;
  if (bytes.length !== need) throw bad(`${bytes.length} bytes, expected ${need}`);
  const copy = bytes.slice(start); // aligned copy
  const mean = new Float64Array(copy.buffer, 0, d).slice();
  const cov = new Float64Array(copy.buffer, 8 * d, d * d).slice();
  const features = new Float32Array(copy.buffer, 8 * (d + d * d), n * d).slice();
  return { key: header.key, stats: { n, dim: d, mean, cov }, features };
}

/**
 * The cached entry for `key` in folder `dir`, or undefined when there is none (or the file's
 * key differs, e.g. a hash-prefix collision).
 */
export async function readCachedReference(
  dir: string,
  key: ReferenceKey,
): Promise<ReferenceFeatures | undefined> {
  const path = join(dir, referenceCacheName(key));
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const entry = decodeReferenceFeatures(bytes, path);
  return canonicalJson(entry.key) === canonicalJson(key) ? entry : undefined;
}

/** Writes `entry` into folder `dir` (atomically); returns the file's path. */
export async function writeCachedReference(
  dir: string,
  entry: ReferenceFeatures,
): Promise<string> {
  const path = join(dir, referenceCacheName(entry.key));
  await writeFileAtomic(path, encodeReferenceFeatures(entry));
  return path;
}

/** JSON with object keys sorted at every level, so equal values give equal text. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
        : v,
  );
}
