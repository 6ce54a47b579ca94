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
import type { ResolvedModel } from "../lib/weights.ts";
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
}

const shapeText = (s: Shape3) => s.join("x");

/** Throws a {@link UsageError} naming both models when the run's models do not fit together. */
export function checkRunModels(m: RunModels): void {
  const den = m.denoiser;
  for (
    const [role, flag, clf] of [
      ["classifier", "--classifier", m.classifier],
      ["evaluator", "--evaluator", m.evaluator],
    ] as const
  ) {
    if (!clf) continue;
    const [c, h, w] = clf.shape, [dc, dh, dw] = den.shape;
    if (c !== dc) {
      throw new UsageError(
        `the ${role} ${clf.label} takes ${shapeText(clf.shape)} images (${c} channel${
          c === 1 ? "" : "s"
        }), the denoiser ${den.label} makes ${shapeText(den.shape)} (${dc} channels): pass a ` +
          `${role} (${flag}) trained on ${dc}-channel images, or a denoiser (--model) of ` +
          `${c}-channel images`,
      );
    }
    if (!m.resize && (h !== dh || w !== dw)) {
      throw new UsageError(
        `the ${role} ${clf.label} takes ${shapeText(clf.shape)} images, the denoiser ` +
          `${den.label} makes ${shapeText(den.shape)}: pass a ${role} (${flag}) for ${dh}x${dw} ` +
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
