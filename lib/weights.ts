/**
 * The weights manifest (weights/manifest.json) and model resolution: a task's `--model` is a
 * manifest id or a path. Manifest files are read from the local weights folder, or fetched
 * relative to the module URL when mod.ts runs remotely; `--weights <dir>` overrides both.
 * Every manifest model is checked against its sha256 before use.
 * @module
 */
import type { ScheduleSpec } from "./schedule.ts";
import { sha256Hex } from "./runtime/session.ts";
import { type ExternalFile, withExternalData } from "./onnx/external_data.ts";

/** Input convention of a model. */
export interface InputConvention {
  /** Pixel range the model expects: [-1, 1] ("pm1") or [0, 1] ("01"). */
  range: "pm1" | "01";
  /** Memory layout of the image input: channels first ("nchw") or last ("nhwc"). */
  layout: "nchw" | "nhwc";
  /** C, H, W. */
  shape: [number, number, number];
  /** Per-channel normalisation applied inside the model input path: (x - mean) / std. */
  mean?: number[];
  /** Per-channel standard deviations of that normalisation. */
  std?: number[];
}

/** One model of the manifest. */
export interface ManifestEntry {
  /** Path relative to the weights folder (external models: e.g. ../../shared/models/x.onnx). */
  file: string;
  /** Hex sha256 of the file, checked before use. */
  sha256: string;
  /** Role of the model. */
  kind: "denoiser" | "classifier" | "energy-head" | "feature";
  /** What the model's image input expects. */
  input: InputConvention;
  /** Noise schedule of a denoiser. */
  schedule?: ScheduleSpec;
  /** Where the model comes from: recipe, paper, checkpoint. */
  source: string;
  /** Free-text description. */
  description?: string;
  /** Class names, for classifiers (one per logit, in order; lib/labels.ts). */
  classes?: string[];
  /** The label set a classifier was trained on; "cifar10" gives a 10-class model CIFAR-10's names. */
  dataset?: string;
  /** Class names as a text file, one per line (relative to the weights folder): for large K. */
  labels?: string;
  /** Class-wise energy statistics (energy-stats JSON, relative to the weights folder), for `dual`. */
  stats?: string;
  /** Random-weight models for tests and benchmarks only. */
  testing?: boolean;
  /** Not committed: the file lives outside the repository (e.g. ../shared/models). */
  external?: boolean;
  /** Model card (markdown, relative to the weights folder): data, recipe, time, measured numbers. */
  card?: string;
}

/** weights/manifest.json. */
export interface Manifest {
  /** Manifest format version (always 1). */
  version: 1;
  /** Model ids used when a task is given none. */
  defaults: { denoiser?: string; classifier?: string; evaluator?: string };
  /** Models by id. */
  models: Record<string, ManifestEntry>;
}

/** The default weights folder: ../weights/ next to lib/ (a file: or http(s): URL). */
export function defaultWeightsBase(): URL {
  return new URL("../weights/", import.meta.url);
}

/** A weights folder given on the command line, as a URL. */
export function weightsBaseFrom(dir?: string): URL {
  if (!dir) return defaultWeightsBase();
  if (/^https?:\/\//.test(dir)) return new URL(dir.endsWith("/") ? dir : dir + "/");
  const abs = dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`;
  return new URL(`file://${abs.endsWith("/") ? abs : abs + "/"}`);
}

async function readUrl(url: URL): Promise<Uint8Array> {
  if (url.protocol === "file:") return await Deno.readFile(url);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status} ${res.statusText}`);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * `r` completed with the model's bytes, any ONNX external data (paths relative to the model at
 * `url`) read in; `label` names the model in errors.
 */
async function withDataBeside(
  r: Omit<ResolvedModel, "bytes" | "externalData">,
  bytes: Uint8Array,
  url: URL,
  label: string,
): Promise<ResolvedModel> {
  const beside = (loc: string) =>
    readUrl(new URL(loc.split(/[\\/]/).map(encodeURIComponent).join("/"), url));
  const full = await withExternalData(bytes, beside, label);
  return { ...r, bytes: full.bytes, ...(full.files ? { externalData: full.files } : {}) };
}

/** Reads and validates the manifest under `base`. */
export async function loadManifest(base: URL = defaultWeightsBase()): Promise<Manifest> {
  const url = new URL("manifest.json", base);
  let text: string;
  try {
    text = new TextDecoder().decode(await readUrl(url));
  } catch (e) {
    throw new Error(
      `cannot read the weights manifest at ${url}: ${(e as Error).message}; ` +
        `pass --weights <dir> pointing at a folder with manifest.json`,
    );
  }
  const where = url.protocol === "file:" ? url.pathname : url.href;
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (e) {
    throw new Error(
      `the weights manifest ${where} is not valid JSON (${(e as Error).message}); restore it ` +
        `(git checkout weights/manifest.json) or pass --weights <dir> with a valid manifest.json`,
    );
  }
  if (m?.version !== 1 || typeof m.models !== "object" || m.models === null) {
    throw new Error(
      `${where} is not a version-1 weights manifest (it needs "version": 1 and a "models" ` +
        `object); pass --weights <dir> with a valid manifest.json`,
    );
  }
  return m;
}

/** A resolved model: bytes plus what is known about it. */
export interface ResolvedModel {
  /** Manifest id, when resolved by id. */
  id?: string;
  /** Its manifest entry, when resolved by id. */
  entry?: ManifestEntry;
  /** Where the bytes came from (path or URL). */
  location: string;
  /** The model's bytes: the file's, with any external data read back in (see `externalData`). */
  bytes: Uint8Array;
  /** Hex sha256 of the model file as stored (the .onnx; for manifest models, checked). */
  sha256: string;
  /**
   * External-data files beside the model that were read into `bytes`, with their sha256 (absent:
   * none); a run's identity includes them, as the .onnx file's sha256 does not cover them.
   */
  externalData?: ExternalFile[];
}

/** True when `ref` looks like a file path or URL rather than a manifest id. */
export function looksLikePath(ref: string): boolean {
  return ref.includes("/") || ref.endsWith(".onnx") || /^https?:/.test(ref);
}

/**
 * Resolves `ref` (a manifest id or a path/URL) to model bytes. For ids, checks the kind when
 * `kind` is given and verifies sha256.
 */
export async function resolveModel(
  ref: string,
  opts: { kind?: ManifestEntry["kind"] | ManifestEntry["kind"][]; base?: URL } = {},
): Promise<ResolvedModel> {
  const base = opts.base ?? defaultWeightsBase();
  if (looksLikePath(ref)) {
    const url = /^https?:/.test(ref)
      ? new URL(ref)
      : new URL(`file://${ref.startsWith("/") ? ref : `${Deno.cwd()}/${ref}`}`);
    let bytes: Uint8Array;
    try {
      bytes = await readUrl(url);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new Error(
          `model file not found: '${ref}'; pass an existing .onnx path or a manifest id (${
            Object.keys((await loadManifest(base).catch(() => ({ models: {} }))).models).join(", ")
          })`,
        );
      }
      throw e;
    }
    return await withDataBeside({ location: ref, sha256: sha256Hex(bytes) }, bytes, url, ref);
  }
  const manifest = await loadManifest(base);
  const entry = manifest.models[ref];
  if (!entry) {
    throw new Error(
      `unknown model id '${ref}'; known ids: ${Object.keys(manifest.models).join(", ")} ` +
        `(or pass a path to an .onnx file)`,
    );
  }
  const kinds = opts.kind === undefined ? undefined : [opts.kind].flat();
  if (kinds && !kinds.includes(entry.kind)) {
    throw new Error(
      `model '${ref}' is a ${entry.kind}, but a ${kinds.join(" or ")} is needed here`,
    );
  }
  const url = new URL(entry.file, base);
  let bytes: Uint8Array;
  try {
    bytes = await readUrl(url);
  } catch (e) {
    throw new Error(
      `model '${ref}' is listed in the manifest but ${url} cannot be read ` +
        `(${(e as Error).message}); ${
          entry.external
            ? "it lives outside the repository (" + entry.source + ")"
            : "restore it from git or re-run its recipe"
        }`,
    );
  }
  const sha = sha256Hex(bytes);
  if (sha !== entry.sha256) {
    throw new Error(
      `model '${ref}' at ${url} has sha256 ${sha}, the manifest says ${entry.sha256}; ` +
        `the file is corrupt or stale: restore it or re-run its recipe (${entry.source})`,
    );
  }
  return await withDataBeside(
    { id: ref, entry, location: url.href, sha256: sha },
    bytes,
    url,
    `model '${ref}' (${url.protocol === "file:" ? url.pathname : url.href})`,
  );
}

/** The manifest's default model id of a role, or a clear error. */
export async function defaultModel(
  role: keyof Manifest["defaults"],
  base: URL = defaultWeightsBase(),
): Promise<string> {
  const id = (await loadManifest(base)).defaults?.[role];
  if (!id) throw new Error(`weights/manifest.json names no default ${role}; pass one explicitly`);
  return id;
}
