/**
 * Loading the models a task names (manifest id or path) with their conventions.
 * @module
 */
import { type EnergyClassifier, loadEnergyClassifier } from "../lib/energy/classifier.ts";
import type { InputConventions } from "../lib/energy/conventions.ts";
import { loadOnnx, type OnnxModel, type ProviderChoice } from "../lib/runtime/session.ts";
import {
  type DenoiserSetup,
  inspectDenoiser,
  type InspectOptions,
  modelFolder,
} from "../lib/models/onnx_denoiser.ts";
import { type ResolvedModel, resolveModel } from "../lib/weights.ts";
import { UsageError } from "../lib/errors.ts";
import { checkClassifierFile, checkModelFile, modelLabel } from "./_preflight.ts";

/** Parses "r,g,b" into numbers, naming the flag on error. */
export function parseTriple(flag: string, raw: string | undefined): number[] | undefined {
  if (raw === undefined) return undefined;
  const v = raw.split(",").map(Number);
  if (v.some((x) => !Number.isFinite(x))) {
    throw new UsageError(
      `--${flag} '${raw}' is invalid: give comma-separated numbers, e.g. 0.4914,0.4822,0.4465`,
    );
  }
  return v;
}

/** Conventions from flags (for raw classifiers given by path). */
export function conventionsFromFlags(
  f: { mean?: string; std?: string; range?: string; layout?: string },
):
  | InputConventions
  | undefined {
  if (
    f.mean === undefined && f.std === undefined && f.range === undefined && f.layout === undefined
  ) return undefined;
  if (f.range !== undefined && f.range !== "01" && f.range !== "pm1") {
    throw new UsageError(`--range '${f.range}' is invalid: use 01 or pm1`);
  }
  if (f.layout !== undefined && f.layout !== "nchw" && f.layout !== "nhwc") {
    throw new UsageError(`--layout '${f.layout}' is invalid: use nchw or nhwc`);
  }
  return {
    mean: parseTriple("mean", f.mean),
    std: parseTriple("std", f.std),
    range: f.range as InputConventions["range"],
    layout: f.layout as InputConventions["layout"],
  };
}

/** A classifier (raw or energy head) resolved and loaded as an {@link EnergyClassifier}. */
export async function loadClassifierRef(
  ref: string,
  base: URL,
  opts: {
    conventions?: InputConventions;
    provider?: ProviderChoice;
    threads?: number;
    batch?: number;
    /** The flag that named the model, for errors (default --classifier). */
    flag?: string;
    /** [h, w] of the run's images, [H, W] to resize them to (--input-size), who makes them. */
    imageSize?: readonly [number, number];
    inputSize?: readonly [number, number];
    imagesFrom?: string;
  } = {},
): Promise<
  { classifier: EnergyClassifier; resolved: ResolvedModel; conventions?: InputConventions }
> {
  const resolved = await resolveModel(ref, { kind: ["classifier", "energy-head"], base });
  const e = resolved.entry;
  const conventions = opts.conventions ??
    (e?.kind === "classifier"
      ? { mean: e.input.mean, std: e.input.std, range: e.input.range, layout: e.input.layout }
      : undefined);
  // an empty/non-ONNX file or a raw classifier without conventions: said with the file and flags
  checkClassifierFile(resolved, opts.flag ?? "--classifier", conventions);
  const label = modelLabel(resolved);
  const classifier = await loadEnergyClassifier(resolved.bytes, {
    conventions,
    provider: opts.provider,
    intraOpThreads: opts.threads,
    batch: opts.batch,
    imageSize: opts.imageSize,
    inputSize: opts.inputSize,
    imagesFrom: opts.imagesFrom,
    // the head runs between denoiser calls: idle spinning workers would slow the next one down
    allowSpinning: false,
    // errors, notes and NaN/Inf reports of its outputs name the file
    source: label,
  }).catch((err) => {
    // images of another size than the classifier's (lib/energy/resize.ts): bad flags, exit 2
    if (/ images but |--input-size/.test((err as Error).message)) {
      throw new UsageError(`${opts.flag ?? "--classifier"} ${(err as Error).message}`);
    }
    throw err;
  });
  return { classifier, resolved, conventions };
}

/**
 * Loads a resolved denoiser and reads the run's image shape from its graph (its output and
 * timestep input are checked), printing the inspection's notes on stderr.
 * @param resolved the denoiser, resolved from `modelRef`
 * @param modelRef what --model named, for errors
 * @param opts the schedule spec and --image-size (declaredShape comes from the manifest entry),
 *   the provider and threads of the session
 * @throws UsageError naming --model when the file or the graph does not fit
 */
export async function loadDenoiserRef(
  resolved: ResolvedModel,
  modelRef: string,
  opts: Pick<InspectOptions, "spec" | "imageSize"> & {
    provider?: ProviderChoice;
    threads?: number;
  },
): Promise<{ model: OnnxModel; setup: DenoiserSetup }> {
  checkModelFile(resolved, "--model");
  const model = await loadOnnx(resolved.bytes, {
    provider: opts.provider,
    intraOpThreads: opts.threads,
    source: modelLabel(resolved),
    externalDataDir: modelFolder(resolved.location),
  });
  const setup = await inspectDenoiser(model, {
    spec: opts.spec,
    declaredShape: resolved.entry?.input.shape,
    imageSize: opts.imageSize,
  }).catch((e) => {
    throw new UsageError(`--model ${modelRef}: ${(e as Error).message}`);
  });
  setup.notes.forEach((n) => console.error(`note: ${n}`));
  return { model, setup };
}
