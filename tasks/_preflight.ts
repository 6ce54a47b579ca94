/**
 * Pre-flight checks of a run's models, done BEFORE its output folder is claimed: every model file
 * is a readable ONNX model, a raw classifier comes with its input conventions, and the denoiser's
 * image shape [C,H,W], the guiding classifier's input, the evaluator's input and their class
 * counts fit each other and the requested classes. Errors name both models (path or manifest id)
 * and their shapes, and say the fix; nothing is written, so the corrected rerun starts clean.
 * @module
 */
import { decodeModel, type ModelProto } from "../lib/onnx/proto.ts";
import { readHeadInfo } from "../lib/energy/head.ts";
import type { InputConventions } from "../lib/energy/conventions.ts";
import { type ResolvedModel, resolveModel } from "../lib/weights.ts";
import { UsageError } from "../lib/errors.ts";

/** C, H, W of one image. */
export type Shape3 = readonly [number, number, number];

/** How errors name a model: its manifest id, else its path or URL. */
export function modelLabel(r: Pick<ResolvedModel, "id" | "location">): string {
  return r.id ?? r.location;
}

/**
 * Checks that a model's bytes are a non-empty ONNX model, naming the file (or id) and the flag
 * that gave it; returns the decoded model.
 */
export function checkModelFile(r: ResolvedModel, flag: string): ModelProto {
  const label = modelLabel(r);
  if (r.bytes.length === 0) {
    throw new UsageError(
      `${flag} ${label}: the file is empty (0 bytes), not an ONNX model; re-export or re-copy it`,
    );
  }
  try {
    return decodeModel(r.bytes, `${flag} ${label}`);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The conventions flags of a raw classifier, as the error suggests them. */
export const CONVENTION_FLAGS_HINT =
  "--range 01|pm1 [--mean r,g,b --std r,g,b] [--layout nchw|nhwc]";

/**
 * Checks a classifier file before it is loaded: ONNX, and either an energy head (conventions
 * built in) or a raw classifier given with its conventions (flags). Returns the decoded model.
 */
export function checkClassifierFile(
  r: ResolvedModel,
  flag: string,
  conventions: InputConventions | undefined,
): ModelProto {
  const model = checkModelFile(r, flag);
  const manifestConventions = r.entry?.kind === "classifier";
  if (!readHeadInfo(model) && !conventions && !manifestConventions) {
    throw new UsageError(
      `${flag} ${modelLabel(r)} is a raw classifier: say what its input expects with ` +
        `${CONVENTION_FLAGS_HINT}, e.g. --range 01 --mean 0.4914,0.4822,0.4465 ` +
        `--std 0.2471,0.2435,0.2616 for a classifier trained on CIFAR-10-normalised inputs, ` +
        `or --range 01 alone for one taking [0, 1] pixels; or register it in the manifest ` +
        `(deno task weights --add) or compile a head (deno task energy-head)`,
    );
  }
  return model;
}

/** A model of the run as the checks see it. */
export interface RunModel {
  /** Path or manifest id, as the user gave it. */
  label: string;
  /** C, H, W of its image input. */
  shape: Shape3;
  /** K, for classifiers. */
  numClasses?: number;
}

/** What {@link checkRunModels} checks. */
export interface RunModels {
  /** The denoiser: its image shape is the run's (today from its graph, or the manifest). */
  denoiser: RunModel;
  /** The guiding classifier (guide). */
  classifier?: RunModel;
  /** The independent evaluator. */
  evaluator?: RunModel;
  /** Requested class indices (--class), checked against the classifier's K. */
  classes?: readonly number[];
  /**
   * The classifier resizes the denoiser's images to its own H, W (--input-size): then only the
   * channels must agree. One parameter, so the resize case changes nothing else here.
   */
  resize?: boolean;
  /** The flags that named the models, for the fix (default --classifier, --evaluator). */
  flags?: { classifier?: string; evaluator?: string };
}

const shapeText = (s: Shape3) => s.join("x");

/** Throws a {@link UsageError} naming both models when the run's models do not fit together. */
export function checkRunModels(m: RunModels): void {
  const den = m.denoiser;
  for (
    const [role, flag, clf] of [
      ["classifier", m.flags?.classifier ?? "--classifier", m.classifier],
      ["evaluator", m.flags?.evaluator ?? "--evaluator", m.evaluator],
    ] as const
  ) {
    if (!clf) continue;
    const a = role === "evaluator" ? "an" : "a";
    const [c, h, w] = clf.shape, [dc, dh, dw] = den.shape;
    if (c !== dc) {
      throw new UsageError(
        `the ${role} ${clf.label} takes ${shapeText(clf.shape)} images (${c} channel${
          c === 1 ? "" : "s"
        }), the denoiser ${den.label} makes ${shapeText(den.shape)} (${dc} channels): pass ${a} ` +
          `${role} (${flag}) trained on ${dc}-channel images, or a denoiser (--model) of ` +
          `${c}-channel images`,
      );
    }
    if (!m.resize && (h !== dh || w !== dw)) {
      throw new UsageError(
        `the ${role} ${clf.label} takes ${shapeText(clf.shape)} images, the denoiser ` +
          `${den.label} makes ${
            shapeText(den.shape)
          }: pass ${a} ${role} (${flag}) for ${dh}x${dw} ` +
          `images, a denoiser (--model) of ${h}x${w} images, or let the classifier resize ` +
          `(--input-size ${h},${w})`,
      );
    }
  }
  const clf = m.classifier;
  if (
    clf && m.evaluator && m.evaluator.numClasses !== undefined &&
    clf.numClasses !== undefined && m.evaluator.numClasses !== clf.numClasses
  ) {
    throw new UsageError(
      `the evaluator ${m.evaluator.label} has ${m.evaluator.numClasses} classes, the classifier ` +
        `${clf.label} has ${clf.numClasses}: pass an evaluator (--evaluator) over the same ` +
        `classes, or --evaluator none`,
    );
  }
  if (clf && clf.numClasses !== undefined && m.classes) {
    const bad = m.classes.find((k) => !(Number.isInteger(k) && k >= 0 && k < clf.numClasses!));
    if (bad !== undefined) {
      throw new UsageError(
        `--class ${bad} is out of range: the classifier ${clf.label} has ${clf.numClasses} ` +
          `classes (0..${clf.numClasses - 1})`,
      );
    }
  }
}

/** What a classifier's input expects, as config.json and run.json record it. */
export function classifierInputRecord(info: {
  inputShape: readonly number[];
  range: string;
  layout: string;
  mean: number[] | null;
  std: number[] | null;
}) {
  return {
    shape: [...info.inputShape],
    range: info.range,
    layout: info.layout,
    mean: info.mean,
    std: info.std,
    // a head that resizes the images to the classifier's size (--input-size) sees other pixels
    resize: (info as { resize?: unknown }).resize ?? null,
  };
}

/** Static dims of a graph's runtime inputs (initializers excluded): undefined for symbolic ones. */
function graphInputs(model: ModelProto): { name: string; dims: (number | undefined)[] }[] {
  const init = new Set((model.graph.initializer ?? []).map((t) => t.name));
  return (model.graph.input ?? []).filter((i) => !init.has(i.name)).map((i) => ({
    name: i.name,
    dims: (i.type?.tensor_type?.shape?.dim ?? []).map((d) =>
      typeof d.dim_value === "number" && d.dim_value > 0 ? d.dim_value : undefined
    ),
  }));
}

/**
 * A denoiser's image shape from its graph alone (no ONNX Runtime session): the static C, H, W of
 * its 4-D input; dynamic H, W from `imageSize` (--image-size) or the manifest's shape. Undefined
 * when it cannot be told without running the model (then the task's own load says it).
 */
export function denoiserGraphShape(
  model: ModelProto,
  declared?: readonly number[],
  imageSize?: readonly [number, number],
): Shape3 | undefined {
  const x = graphInputs(model).find((i) => i.dims.length === 4);
  if (!x) return undefined;
  const [, c, h, w] = x.dims;
  const C = c ?? declared?.[0], H = h ?? imageSize?.[0] ?? declared?.[1];
  const W = w ?? imageSize?.[1] ?? declared?.[2];
  return C && H && W ? [C, H, W] : undefined;
}

/**
 * A classifier's input shape [C, H, W] and class count K from its graph alone: an energy head's
 * stored info, else the raw graph's first input (NCHW unless `layout` says nhwc) and its first
 * output's last dimension. Fields it cannot tell are undefined.
 */
export function classifierGraphInfo(
  model: ModelProto,
  layout: "nchw" | "nhwc" = "nchw",
): { shape?: Shape3; numClasses?: number } {
  const head = readHeadInfo(model);
  if (head) return { shape: head.inputShape, numClasses: head.numClasses };
  const x = graphInputs(model).find((i) => i.dims.length === 4);
  const out = model.graph.output?.[0]?.type?.tensor_type?.shape?.dim ?? [];
  const k = out.length ? out[out.length - 1].dim_value : undefined;
  let shape: Shape3 | undefined;
  if (x) {
    const [, a, b, c] = x.dims;
    const chw = layout === "nhwc" ? [c, a, b] : [a, b, c];
    if (chw.every((d) => d !== undefined)) shape = chw as unknown as Shape3;
  }
  return { shape, numClasses: typeof k === "number" && k > 0 ? k : undefined };
}

/** Options of {@link preflightRefs}. */
export interface PreflightRefs {
  /** The denoiser's manifest id or path. */
  model: string;
  /** Guiding classifiers (ids or paths). */
  classifiers: readonly string[];
  /** The flag that named them (default --classifier; sweep: --classifiers). */
  classifierFlag?: string;
  /** The evaluator (id or path), if any. */
  evaluator?: string;
  /** Weights folder of the manifest. */
  base: URL;
  /** Conventions given by flags (for the layout of raw classifiers given by path). */
  conventions?: InputConventions;
  /** The guiding classifiers resize to their own size (--input-size). */
  resize?: boolean;
  /** The evaluator resizes (--evaluator-input-size). */
  evaluatorResize?: boolean;
  /** H, W of a denoiser with a dynamic image size (--image-size). */
  imageSize?: readonly [number, number];
}

/**
 * For tasks that run `guide` (sweep, compare, ...) and claim their own folder first: reads every
 * model named on the command line from its graph (no session) and runs {@link checkRunModels}
 * on each guide/evaluator pair, so a misfit is refused before any folder is claimed.
 */
export async function preflightRefs(p: PreflightRefs): Promise<void> {
  const den = await resolveModel(p.model, { kind: "denoiser", base: p.base });
  const denShape = denoiserGraphShape(
    checkModelFile(den, "--model"),
    den.entry?.input.shape,
    p.imageSize,
  );
  if (!denShape) return;
  const denoiser = { label: modelLabel(den), shape: denShape };
  const info = async (ref: string, flag: string) => {
    const r = await resolveModel(ref, { kind: ["classifier", "energy-head"], base: p.base });
    const g = classifierGraphInfo(
      checkModelFile(r, flag),
      r.entry?.input.layout ?? p.conventions?.layout ?? "nchw",
    );
    return g.shape ? { label: modelLabel(r), shape: g.shape, numClasses: g.numClasses } : undefined;
  };
  const evaluator = p.evaluator === undefined ? undefined : await info(p.evaluator, "--evaluator");
  if (evaluator) {
    checkRunModels({ denoiser, evaluator, resize: p.evaluatorResize });
  }
  for (const ref of p.classifiers) {
    const flags = { classifier: p.classifierFlag ?? "--classifier" };
    const classifier = await info(ref, flags.classifier);
    if (!classifier) continue;
    checkRunModels({ denoiser, classifier, resize: p.resize, flags });
    if (evaluator) {
      // class counts only: the sizes were checked above
      checkRunModels({ denoiser, classifier, evaluator, resize: true, flags });
    }
  }
}
