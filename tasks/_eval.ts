/**
 * Shared glue of the evaluation tasks (robust-accuracy, noise-accuracy, energy-curve): common
 * flags, loading several classifiers with checks, loading the CIFAR-10 split, and the resolved
 * configuration every result file records (METHOD.md §5).
 * @module
 */
import { CIFAR10_CLASSES, type Cifar10Split, loadCifar10 } from "../lib/data/cifar10.ts";
import type { EnergyClassifier } from "../lib/energy/classifier.ts";
import type { ExternalFile } from "../lib/onnx/external_data.ts";
import { writeFileAtomic } from "../lib/io/png.ts";
import { RNG_ID } from "../lib/random.ts";
import { looksLikePath, weightsBaseFrom } from "../lib/weights.ts";
import { choiceFlag, numberFlag, UsageError, versions } from "./_args.ts";
import { conventionsFromFlags, loadClassifierRef } from "./_models.ts";
import { DEFAULT_CIFAR10 } from "./build_mixture.ts";
import { parseInputSize } from "../lib/energy/resize.ts";

/** The three classifiers of ../shared/models (manifest ids), the default set. */
export const SHARED_CLASSIFIERS = [
  "vnncomp21-resnet2b",
  "vnncomp21-resnet4b",
  "sri-resnet-a",
] as const;

/** Flags every evaluation task takes (parseArgs options). */
export const EVAL_FLAGS = {
  classifier: { type: "string", multiple: true },
  data: { type: "string" },
  split: { type: "string" },
  limit: { type: "string" },
  seed: { type: "string" },
  out: { type: "string" },
  batch: { type: "string" },
  threads: { type: "string" },
  provider: { type: "string" },
  weights: { type: "string" },
  mean: { type: "string" },
  std: { type: "string" },
  range: { type: "string" },
  layout: { type: "string" },
  "input-size": { type: "string" },
  help: { type: "boolean" },
} as const;

/** Usage lines of {@link EVAL_FLAGS}, appended to each task's own. */
export const EVAL_USAGE = `  --classifier <id|path>  a classifier; repeat for several (default: ${
  SHARED_CLASSIFIERS.join(", ")
})
  --data <path>         CIFAR-10 archive or extracted folder (default ${DEFAULT_CIFAR10})
  --split test|train    split to evaluate (default test)
  --limit <n>           first n images of the split (default: all)
  --seed <int>          image i of the split draws its noise from RandomStream(seed + i) (default 0)
  --out <file.json>     result file; the figure goes beside it as <file>.svg
  --batch <n>           images per ONNX Runtime call (default 64)
  --threads <n>         ONNX Runtime intra-op threads (default: all cores)
  --provider auto|cpu|cuda  execution provider (default auto)
  --weights <dir>       weights folder with manifest.json (default weights/)
  --mean/--std r,g,b --range 01|pm1 --layout nchw|nhwc
                        input conventions of classifiers given by path (manifest ids carry theirs)
  --input-size H[,W]    feed the classifiers HxW images: a bilinear resize (align_corners=False, no
                        antialias) of the 32x32 CIFAR-10 images inside each energy head`;

/** The parsed common flags. */
export interface EvalFlags {
  classifier?: string[];
  data?: string;
  split?: string;
  limit?: string;
  seed?: string;
  out?: string;
  batch?: string;
  threads?: string;
  provider?: string;
  weights?: string;
  mean?: string;
  std?: string;
  range?: string;
  layout?: string;
  "input-size"?: string;
}

/** A loaded classifier with what the result file records about it. */
export interface EvalClassifier {
  /** The reference given (manifest id or path): the column name. */
  ref: string;
  /** sha256 of the model file. */
  sha256: string;
  /** Weights in .onnx.data files beside the model, with their sha256s (absent when inline). */
  externalData?: ExternalFile[];
  /** Where the bytes came from. */
  location: string;
  classifier: EnergyClassifier;
}

/** The CIFAR-10 images evaluated, and how they were chosen. */
export interface EvalData {
  split: Cifar10Split;
  config: { path: string; split: "train" | "test"; limit: number | null; count: number };
}

/**
 * Loads every `--classifier` (default {@link SHARED_CLASSIFIERS}) as an energy head; throws a
 * usage error on a repeated reference, a class count other than CIFAR-10's 10, or an input shape
 * other than 3x32x32. Conventions flags apply to classifiers given by path only.
 */
export async function loadEvalClassifiers(f: EvalFlags): Promise<EvalClassifier[]> {
  const refs = f.classifier?.length ? f.classifier : [...SHARED_CLASSIFIERS];
  const dup = refs.find((r, i) => refs.indexOf(r) !== i);
  if (dup !== undefined) throw new UsageError(`--classifier ${dup} is given twice; give it once`);
  const base = weightsBaseFrom(f.weights);
  const conventions = conventionsFromFlags(f);
  const provider = choiceFlag("provider", f.provider, ["auto", "cpu", "cuda"] as const, "auto");
  const batch = numberFlag("batch", f.batch, 64, { int: true, min: 1 });
  const threads = f.threads === undefined
    ? undefined
    : numberFlag("threads", f.threads, 0, { int: true, min: 1 });
  let inputSize: [number, number] | undefined;
  try {
    inputSize = f["input-size"] === undefined ? undefined : parseInputSize(f["input-size"]);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const out: EvalClassifier[] = [];
  for (const ref of refs) {
    const { classifier, resolved } = await loadClassifierRef(ref, base, {
      conventions: looksLikePath(ref) ? conventions : undefined,
      provider,
      batch,
      threads,
      // CIFAR-10 images are 32x32; --input-size resizes them inside the head (lib/energy/resize.ts)
      ...(inputSize ? { imageSize: [32, 32] as const, inputSize, imagesFrom: "CIFAR-10" } : {}),
    });
    if (classifier.numClasses !== CIFAR10_CLASSES.length) {
      await classifier.release();
      throw new UsageError(
        `classifier ${ref} has ${classifier.numClasses} classes; CIFAR-10 has 10: pass a ` +
          `CIFAR-10 classifier`,
      );
    }
    const shape = classifier.info.inputShape.join("x");
    if (shape !== "3x32x32") {
      await classifier.release();
      throw new UsageError(
        `classifier ${ref} takes ${shape} images; CIFAR-10 images are 3x32x32: pass a ` +
          `CIFAR-10 classifier, or --input-size ${
            classifier.info.inputShape.slice(1).join(",")
          } to resize the images inside its energy head`,
      );
    }
    out.push({
      ref,
      sha256: resolved.sha256,
      ...(resolved.externalData ? { externalData: resolved.externalData } : {}),
      location: resolved.location,
      classifier,
    });
  }
  return out;
}

/** Loads the split named by `--data/--split/--limit` (default: the test split, all images). */
export async function loadEvalData(f: EvalFlags): Promise<EvalData> {
  const path = f.data ?? DEFAULT_CIFAR10;
  const split = choiceFlag("split", f.split, ["train", "test"] as const, "test");
  const limit = f.limit === undefined
    ? undefined
    : numberFlag("limit", f.limit, 0, { int: true, min: 1 });
  const data = await loadCifar10(path, split, { limit });
  data.notes?.forEach((n) => console.error(`note: ${n}`));
  return { split: data, config: { path, split, limit: limit ?? null, count: data.count } };
}

/** The `--seed` base: image i uses RandomStream(seed + i). */
export function seedFlag(f: EvalFlags): number {
  return numberFlag("seed", f.seed, 0, { int: true, min: 0, max: 2 ** 32 - 1e6 });
}

/** `--out` (ending in .json) and the figure path beside it. */
export function outPaths(f: EvalFlags, fallback: string): { json: string; svg: string } {
  const json = f.out ?? fallback;
  if (!json.endsWith(".json")) {
    throw new UsageError(`--out '${json}' must end in .json (the figure goes beside it as .svg)`);
  }
  return { json, svg: json.replace(/\.json$/, ".svg") };
}

/** The provenance block every evaluation result records. */
export function provenance(classifiers: EvalClassifier[], data: EvalData, seed: number) {
  return {
    classifiers: classifiers.map((c) => ({
      ref: c.ref,
      sha256: c.sha256,
      ...(c.externalData ? { externalData: c.externalData } : {}),
      location: c.location,
      provider: c.classifier.model.provider,
    })),
    data: data.config,
    seed,
    rng: RNG_ID,
    versions: versions(),
  };
}

/** Writes text to a file atomically. */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(text));
}

/** Releases every classifier's session. */
export async function releaseAll(classifiers: EvalClassifier[]): Promise<void> {
  for (const c of classifiers) await c.classifier.release();
}

/** Diffusion-space ([-1, 1]) floats of images s..s+n-1 of the split: byte / 127.5 - 1. */
export function pm1Chunk(split: Cifar10Split, s: number, n: number): Float32Array {
  const per = 3072;
  const out = new Float32Array(n * per);
  for (let i = 0; i < n * per; i++) out[i] = split.images[s * per + i] / 127.5 - 1;
  return out;
}

/** [0, 1] floats of images s..s+n-1 of the split: byte / 255. */
export function unitChunk(split: Cifar10Split, s: number, n: number): Float32Array {
  const per = 3072;
  const out = new Float32Array(n * per);
  for (let i = 0; i < n * per; i++) out[i] = split.images[s * per + i] / 255;
  return out;
}
