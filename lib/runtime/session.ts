/**
 * Thin adapter over ONNX Runtime (onnxruntime-node): load from a path or bytes, pick the CUDA
 * execution provider when it loads and CPU otherwise (and say which ran), discover input/output
 * names and shapes, validate feeds, check outputs for NaN/Inf, and batch any N through a model.
 * @module
 */
// Full npm: specifier so mod.ts also runs from a URL, where deno.json's import map is absent.
// deno-lint-ignore no-import-prefix
import * as ort from "npm:onnxruntime-node@1.30.0";
import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { decodeModel, type ModelProto } from "../onnx/proto.ts";
import { checkLocation, externalDataRefs, withExternalData } from "../onnx/external_data.ts";
import { NonFiniteError } from "../errors.ts";
import { preloadCudaLibraries } from "./cuda_libs.ts";

/** An ONNX Runtime inference session (onnxruntime-node's `InferenceSession`). */
export type InferenceSession = ort.InferenceSession;

/** Which execution provider to use. `auto` tries CUDA, then CPU (reported, never silent). */
export type ProviderChoice = "auto" | "cpu" | "cuda";

/** Options for {@link loadOnnx}. */
export interface LoadOptions {
  /** Execution provider (default "auto"). */
  provider?: ProviderChoice;
  /** Intra-op threads (default: ORT's choice, all cores). */
  intraOpThreads?: number;
  /** Inter-op threads (default 1). */
  interOpThreads?: number;
  /** Graph optimisation level (default "all"). */
  graphOptimizationLevel?: "disabled" | "basic" | "extended" | "all";
  /**
   * Let idle intra-op worker threads spin waiting for work (default true, ORT's default: it
   * shortens back-to-back runs of one session). Turn it off for a model run briefly between the
   * runs of another session, e.g. an energy head between UNet calls: its workers keep spinning
   * into the next UNet run and take the cores from it (bench/NOTES.md, "Side-by-side").
   */
  allowSpinning?: boolean;
  /**
   * What to call the model in errors when it is given as bytes: its path or manifest id (default
   * "<bytes>"). A path given as `src` names itself.
   */
  source?: string;
  /**
   * Folder of the model's external-data files (an ONNX over 2 GB keeps its weights in files
   * beside it, e.g. `<name>.onnx.data`). A path given as `src` uses its own folder.
   */
  externalDataDir?: string;
}

/** Name, element type and shape (numbers or symbolic names) of a model input or output. */
export interface IOInfo {
  /** Input or output name. */
  name: string;
  /** Element type as ONNX Runtime names it, e.g. "float32", "int64" ("non-tensor" otherwise). */
  type: string;
  /** Dimensions: fixed sizes or symbolic names (empty for non-tensor values). */
  shape: ReadonlyArray<number | string>;
}

/** A loaded model: the ORT session plus what the toolkit needs to know about it. */
export interface OnnxModel {
  /** The underlying ONNX Runtime inference session. */
  session: InferenceSession;
  /** The model's inputs, in declaration order. */
  inputs: IOInfo[];
  /** The model's outputs, in declaration order. */
  outputs: IOInfo[];
  /** The provider that actually runs the model. */
  provider: "cpu" | "cuda";
  /** Why CUDA was not used, when `provider` was "auto" and CPU ran. */
  providerNote?: string;
  /** Path or manifest id (`LoadOptions.source`), or "<bytes>". */
  source: string;
  /** Hex sha256 of the model bytes. */
  sha256: string;
}

/** Hex sha256 of bytes. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Reads a model file, with a clear error when it is missing; ONNX external data beside it (torch
 * dynamo's `m.onnx.data`) is read into the bytes (lib/onnx/external_data.ts).
 */
export async function readModelFile(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        `model file not found: '${path}'; pass an existing .onnx path or a model id from ` +
          `weights/manifest.json (run 'deno task weights' to list them)`,
      );
    }
    throw e;
  }
  // torch dynamo's m.onnx.data beside m.onnx: read in, so graphs built from the bytes have it
  const dir = dirname(path);
  return (await withExternalData(bytes, (loc) => Deno.readFile(`${dir}/${loc}`), path)).bytes;
}

function ioInfo(meta: readonly ort.InferenceSession.ValueMetadata[]): IOInfo[] {
  return meta.map((m) =>
    m.isTensor
      ? { name: m.name, type: m.type, shape: m.shape }
      : { name: m.name, type: "non-tensor", shape: [] }
  );
}

const ORT_SEVERITIES = ["verbose", "info", "warning", "error", "fatal"] as const;

/**
 * onnxruntime's log severity for the toolkit's sessions: "error" unless RG_ORT_LOG names
 * another (verbose, info, warning, error, fatal). ORT's warnings are about its own graph
 * rewrites (e.g. "Removing initializer ..." after it fuses a LayerNorm a legacy export spelled
 * out) and would bury the toolkit's messages; set RG_ORT_LOG=warning to see them (e.g. which
 * nodes a CUDA session left on the CPU).
 */
export function ortLogSeverity(): 0 | 1 | 2 | 3 | 4 {
  const want = Deno.env.get("RG_ORT_LOG");
  if (want === undefined || want === "") return 3;
  const i = ORT_SEVERITIES.indexOf(want as typeof ORT_SEVERITIES[number]);
  if (i < 0) {
    throw new Error(
      `RG_ORT_LOG='${want}' is not an onnxruntime log level; use one of ${
        ORT_SEVERITIES.join(", ")
      }`,
    );
  }
  return i as 0 | 1 | 2 | 3 | 4;
}

/** Loads an ONNX model from a path or bytes. */
export async function loadOnnx(
  src: string | Uint8Array,
  opts: LoadOptions = {},
): Promise<OnnxModel> {
  const source = typeof src === "string" ? src : opts.source ?? "<bytes>";
  const bytes = typeof src === "string" ? await readModelFile(src) : src;
  // Validate it is ONNX before handing it to ORT (whose errors are cryptic for non-ONNX bytes).
  const proto = decodeModelHeader(bytes, source);
  const base: ort.InferenceSession.SessionOptions = {
    logSeverityLevel: ortLogSeverity(),
    graphOptimizationLevel: opts.graphOptimizationLevel ?? "all",
    interOpNumThreads: opts.interOpThreads ?? 1,
    executionMode: "sequential",
  };
  const external = await readExternalData(
    proto,
    source,
    opts.externalDataDir ?? (typeof src === "string" ? dirname(src) : undefined),
  );
  if (external.length) base.externalData = external;
  if (opts.intraOpThreads !== undefined) base.intraOpNumThreads = opts.intraOpThreads;
  if (opts.allowSpinning === false) base.extra = { session: { intra_op: { allow_spinning: "0" } } };
  const choice = opts.provider ?? "auto";
  let provider: "cpu" | "cuda" = "cpu";
  let providerNote: string | undefined;
  let session: ort.InferenceSession | undefined;
  // CUDA/cuDNN libraries installed by `deno task cuda-setup` (none listed: nothing to do)
  if (choice !== "cpu") preloadCudaLibraries();
  const cudaMissing = choice === "auto" ? cudaProviderMissing() : undefined;
  if (cudaMissing) {
    providerNote = `CUDA provider not installed (${cudaMissing}); ran on CPU ` +
      `('deno task cuda-setup' installs it)`;
  } else if (choice === "cuda" || choice === "auto") {
    // ORT also logs its own line when the provider fails to load (its logger is configured once
    // per process, before any session option applies); our error below carries the fix.
    try {
      session = await ort.InferenceSession.create(bytes, { ...base, executionProviders: ["cuda"] });
      provider = "cuda";
    } catch (e) {
      const why = (e as Error).message.split("\n")[0];
      if (choice === "cuda") {
        throw new Error(
          `CUDA execution provider did not load for ${source}: ${why}. onnxruntime-node's CUDA ` +
            `libraries must be installed (deno task cuda-setup; --check names what is missing); ` +
            `use --provider cpu to run on the CPU`,
        );
      }
      providerNote = `CUDA provider unavailable (${why}); ran on CPU ` +
        `('deno task cuda-setup --check' names what is missing)`;
    }
  }
  session ??= await ort.InferenceSession.create(bytes, { ...base, executionProviders: ["cpu"] })
    .catch((e) => {
      throw new Error(ortLoadMessage(source, proto, (e as Error).message), { cause: e });
    });
  return {
    session,
    inputs: ioInfo(session.inputMetadata),
    outputs: ioInfo(session.outputMetadata),
    provider,
    providerNote,
    source,
    sha256: sha256Hex(bytes),
  };
}

/**
 * onnxruntime's refusal of a model, with the model's name, its opset and what to do: such a graph
 * breaks the ONNX spec at its own opset (an exporter's bug, e.g. an attribute of a newer version
 * of the op) or uses an op onnxruntime 1.30 lacks.
 */
function ortLoadMessage(source: string, model: ModelProto, why: string): string {
  const opset = (model.opset_import ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
  return `onnxruntime 1.30 cannot load ${source} (opset ${opset?.version ?? "?"}): ` +
    `${why.split("\n")[0].trim()}. The graph does not follow the ONNX spec at its opset (an ` +
    `exporter bug) or needs an op onnxruntime lacks: check it with python -c "import onnx; ` +
    `onnx.checker.check_model(onnx.load('m.onnx'), full_check=True)" and export it again, e.g. ` +
    `torch.onnx.export(..., opset_version=18)`;
}

/**
 * Why onnxruntime-node's CUDA provider cannot load, or undefined when its library is present or
 * its location is unknown (then loading is attempted and ORT's error is reported).
 * (onnxruntime-node looks for libonnxruntime_providers_cuda.so beside its native binding; the npm
 * install script that fetches it is skipped here, see README "GPU".)
 */
export function cudaProviderMissing(): string | undefined {
  let dir: string;
  try {
    // node_modules locally; under DENO_DIR's npm cache the specifier may not resolve to a file
    const index = new URL(import.meta.resolve("npm:onnxruntime-node@1.30.0"));
    if (index.protocol !== "file:") return undefined; // location unknown: let ORT try and say why
    dir = new URL(`../bin/napi-v6/${Deno.build.os}/${archName()}/`, index).pathname;
  } catch {
    return undefined;
  }
  try {
    Deno.statSync(`${dir}libonnxruntime_providers_cuda.so`);
    return undefined;
  } catch {
    return `no libonnxruntime_providers_cuda.so in ${dir}`;
  }
}

function archName(): string {
  return Deno.build.arch === "x86_64" ? "x64" : "arm64";
}

function decodeModelHeader(bytes: Uint8Array, source: string): ModelProto {
  if (bytes.length === 0) throw new Error(`${source} is empty (0 bytes); it is not an ONNX model`);
  return decodeModel(bytes, source);
}

/** The external-data files a model's tensors name, read from `dir` for onnxruntime. */
async function readExternalData(
  model: ModelProto,
  source: string,
  dir: string | undefined,
): Promise<{ path: string; data: Uint8Array }[]> {
  const locations = new Set(
    externalDataRefs(model, source).map((r) => checkLocation(r.location, source)),
  );
  if (!locations.size) return [];
  if (dir === undefined) {
    throw new Error(
      `${source} keeps its weights in external file(s) ${[...locations].join(", ")}: give the ` +
        `model by its path, with those files beside it`,
    );
  }
  return await Promise.all([...locations].map(async (loc) => {
    const path = `${dir}/${loc}`;
    try {
      return { path: loc, data: await Deno.readFile(path) };
    } catch (e) {
      throw new Error(
        `${source} keeps its weights in ${loc}, which cannot be read at ${path} ` +
          `(${(e as Error).message}); keep the .data file beside the .onnx`,
      );
    }
  }));
}

/** A feed: data plus shape. int64 inputs take BigInt64Array. */
export interface Feed {
  /** Flat row-major values; the array type sets the element type (float32, int64, int32). */
  data: Float32Array | BigInt64Array | Int32Array;
  /** Shape; its product must equal `data.length`. */
  dims: readonly number[];
}

const TYPE_OF: Record<string, string> = {
  Float32Array: "float32",
  BigInt64Array: "int64",
  Int32Array: "int32",
};

/** Checks a feed against the model's declared input (name, dtype, rank, fixed dims). */
export function checkFeed(model: OnnxModel, name: string, feed: Feed): void {
  const info = model.inputs.find((i) => i.name === name);
  if (!info) {
    throw new Error(
      `model ${model.source} has no input '${name}'; its inputs are ` +
        model.inputs.map((i) => `${i.name} ${i.type}[${i.shape}]`).join(", "),
    );
  }
  const type = TYPE_OF[feed.data.constructor.name];
  if (type !== info.type) {
    throw new Error(
      `input '${name}' of ${model.source} wants ${info.type}, got ${
        type ?? feed.data.constructor.name
      }`,
    );
  }
  if (info.shape.length > 0 && info.shape.length !== feed.dims.length) {
    throw new Error(
      `input '${name}' of ${model.source} wants rank ${info.shape.length} [${info.shape}], ` +
        `got rank ${feed.dims.length} [${feed.dims}]`,
    );
  }
  info.shape.forEach((d, i) => {
    if (typeof d === "number" && d > 0 && d !== feed.dims[i]) {
      throw new Error(
        `input '${name}' of ${model.source} wants shape [${info.shape}], got [${feed.dims}] ` +
          `(dimension ${i} must be ${d})`,
      );
    }
  });
  const size = feed.dims.reduce((a, b) => a * b, 1);
  if (size !== feed.data.length) {
    throw new Error(
      `input '${name}': shape [${feed.dims}] holds ${size} values, data has ${feed.data.length}`,
    );
  }
}

/** Output tensors of one run, by name. */
export type Outputs = Record<string, { data: Float32Array | BigInt64Array; dims: number[] }>;

/** Runs the model once on validated feeds; throws if a float output holds NaN or Inf. */
export async function runOnnx(model: OnnxModel, feeds: Record<string, Feed>): Promise<Outputs> {
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [name, f] of Object.entries(feeds)) {
    checkFeed(model, name, f);
    ortFeeds[name] = new ort.Tensor(
      TYPE_OF[f.data.constructor.name] as "float32",
      f.data as Float32Array,
      [...f.dims],
    );
  }
  const res = await model.session.run(ortFeeds);
  const out: Outputs = {};
  for (const [name, t] of Object.entries(res)) {
    const data = t.data as Float32Array | BigInt64Array;
    if (data instanceof Float32Array) assertFinite(data, `output '${name}' of ${model.source}`);
    out[name] = { data, dims: [...t.dims] };
  }
  return out;
}

/** Throws a {@link NonFiniteError} naming the first NaN/Inf position and `what` produced it. */
export function assertFinite(data: Float32Array, what: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new NonFiniteError(
        `${what} holds ${data[i]} at flat index ${i}; the model or its input diverged`,
        what,
        data[i],
        i,
      );
    }
  }
}

/** The fixed batch size of a model's first input, or undefined when it is dynamic. */
export function fixedBatch(model: OnnxModel): number | undefined {
  const d = model.inputs[0]?.shape[0];
  return typeof d === "number" && d > 0 ? d : undefined;
}

/**
 * Runs `n` items through the model in chunks of at most `batch` (forced to the model's fixed
 * batch when it has one): every feed is split along dimension 0, outputs concatenated.
 */
export async function runBatched(
  model: OnnxModel,
  feeds: Record<string, Feed>,
  n: number,
  batch: number,
): Promise<Outputs> {
  const step = fixedBatch(model) ?? Math.max(1, batch);
  if (n % step !== 0 && fixedBatch(model) !== undefined) {
    throw new Error(`model ${model.source} has a fixed batch of ${step}; ${n} items do not divide`);
  }
  const parts: Outputs[] = [];
  for (let s = 0; s < n; s += step) {
    const e = Math.min(n, s + step);
    const chunk: Record<string, Feed> = {};
    for (const [name, f] of Object.entries(feeds)) {
      const per = f.data.length / f.dims[0];
      chunk[name] = {
        data: f.data.subarray(s * per, e * per) as Feed["data"],
        dims: [e - s, ...f.dims.slice(1)],
      };
    }
    parts.push(await runOnnx(model, chunk));
  }
  if (parts.length === 1) return parts[0];
  const out: Outputs = {};
  for (const name of Object.keys(parts[0])) {
    const first = parts[0][name];
    const total = parts.reduce((a, p) => a + p[name].data.length, 0);
    const data = first.data instanceof BigInt64Array
      ? new BigInt64Array(total)
      : new Float32Array(total);
    let off = 0;
    for (const p of parts) {
      (data as Float32Array).set(p[name].data as Float32Array, off);
      off += p[name].data.length;
    }
    out[name] = { data, dims: [n, ...first.dims.slice(1)] };
  }
  return out;
}
