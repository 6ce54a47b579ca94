/**
 * `guide --method`: the flags of the guidance methods (lib/guidance/methods) and the one place
 * that builds a method's guided denoiser from the loaded models (the pull-back graph through the
 * denoiser and the time-conditioned classifier are loaded only when the method needs them).
 * @module
 */
import type { Denoiser, SamplerConfig } from "../lib/sampler/loop.ts";
import type { EnergySource } from "../lib/guidance/directions.ts";
import { loadDenoiserPullback, loadThroughDenoiser } from "../lib/energy/through_denoiser.ts";
import { readHeadInfo } from "../lib/energy/head.ts";
import type { InputConventions } from "../lib/energy/conventions.ts";
import type { ResizeOptions } from "../lib/energy/resize.ts";
import { drawCount } from "../lib/guidance/methods/core.ts";
import { decodeModel } from "../lib/onnx/proto.ts";
import { hasExternalData } from "../lib/onnx/external_data.ts";
import { loadNoiseAwareClassifier } from "../lib/energy/noise_aware.ts";
import {
  buildMethod,
  METHOD_NAMES,
  METHODS,
  type ResolvedMethod,
  resolveMethod,
} from "../lib/guidance/methods/registry.ts";
import { describeParams, parseParamText } from "../lib/guidance/methods/params.ts";
import { stepGridFor } from "../lib/guidance/methods/step_grid.ts";
import {
  type CallCounts,
  countingPullback,
  countingSource,
  countingThrough,
} from "../lib/guidance/methods/counting.ts";
import type { DenoiserSetup } from "../lib/models/onnx_denoiser.ts";
import type { ProviderChoice } from "../lib/runtime/session.ts";
import { resolveModel } from "../lib/weights.ts";
import { UsageError } from "./_args.ts";

/** The method flags (merged into guide's). */
export const METHOD_FLAGS = {
  method: { type: "string" },
  "method-params": { type: "string" },
  "noise-aware": { type: "string" },
} as const;

/** Usage lines of the method flags. */
export const METHOD_USAGE = `  --method <name>          guidance method (default thesis): ${
  METHOD_NAMES.join(", ")
}
                           (deno task guide --help lists each method's parameters)
  --method-params k=v,...  the method's own parameters (thesis: its scale is --scale)
  --noise-aware <id|path>  time-conditioned classifier (x_t, t) of --method noise-aware
                           (default cifar10-resnet16-noise-aware)`;

/** The parameter list of every method, for `--help`. */
export function methodsHelp(): string {
  return Object.values(METHODS).map((m) =>
    `  ${m.name}: ${m.cite}\n` + describeParams(m.params).map((l) => `      ${l}`).join("\n")
  ).join("\n");
}

/** The method of the flags (validated before any model runs). */
export function methodFromFlags(
  f: { method?: string; "method-params"?: string },
): ResolvedMethod {
  try {
    return resolveMethod(f.method ?? "thesis", parseParamText(f["method-params"]));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** What a non-thesis method's denoiser is built from. */
export interface MethodModels {
  /** The resolved method. */
  method: ResolvedMethod;
  /** The unguided denoiser, already counting its calls in `counts` (guide counts for every method). */
  denoiser: Denoiser;
  /** The denoiser's ONNX bytes (for the pull-back graph) and its setup. */
  denoiserBytes: Uint8Array;
  /** The denoiser's parameterisation and timestep convention. */
  setup: DenoiserSetup;
  /** The guiding classifier. */
  classifier: EnergySource;
  /**
   * The classifier's ONNX bytes and how its head was built (conventions, --input-size), for the
   * fused graph denoiser -> classifier; without them (or for a precompiled energy head) the
   * methods through the denoiser take the pull-back route.
   */
  classifierGraph?: {
    bytes: Uint8Array;
    label: string;
    conventions?: InputConventions;
  } & ResizeOptions;
  /** The sampler configuration of the run. */
  config: SamplerConfig;
  /** Requested class of every image of the run. */
  labels: readonly number[];
  /** --noise-aware (default: the manifest id cifar10-resnet16-noise-aware). */
  noiseAwareRef?: string;
  /** The weights folder. */
  base: URL;
  /** Execution provider. */
  provider: ProviderChoice;
  /** Counts of network calls, filled as the run goes. */
  counts: CallCounts;
}

/** The guided denoiser of a method other than `thesis` (which guide builds itself). */
export async function methodDenoiser(m: MethodModels): Promise<Denoiser> {
  const def = m.method.def;
  let grid;
  try {
    grid = stepGridFor(m.config, def.name);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  let pullback, through;
  if (def.throughDenoiser(m.method.params)) {
    if (hasExternalData(m.denoiserBytes)) {
      // lib/weights.ts inlines external data up to 2 GB; the graphs below are built from values
      throw new UsageError(
        `--method ${def.name} differentiates through the denoiser, whose weights stay in ` +
          `external data (over 2 GB: one ONNX protobuf cannot hold them), and the composed ` +
          `graphs are built from the weights' values; use --method thesis (the default) or mpgd, ` +
          `which never differentiate through the denoiser, or export it in float16 under 2 GB`,
      );
    }
    if (m.setup.timestep !== "index") {
      throw new UsageError(
        `--method ${def.name} back-propagates through the denoiser, whose graphs feed the ` +
          `integer timestep; this model takes '${m.setup.timestep}' timesteps: not supported`,
      );
    }
    const prediction = m.setup.output.prediction;
    const learnedVariance = m.setup.output.variance === "learned_range";
    // The fused graph (one denoiser forward per guided step) needs the raw classifier and a
    // denoiser whose output is eps alone (a learned variance goes to the sampler through the
    // plain call); TFG with several smoothing draws needs the pull-back (lib/guidance/methods/core.ts).
    const g = m.classifierGraph;
    const rawClassifier = g !== undefined &&
      readHeadInfo(decodeModel(g.bytes, g.label)) === undefined;
    const p = m.method.params;
    const sigma = Number(p.sigma ?? 0);
    const manyDraws = drawCount(sigma, Number(p.samples ?? 1)) > 1;
    // The fused graph is an optimisation: where the two models cannot be composed into one graph
    // (lib/autodiff/opset.ts raises the older one to the other's opset, up to 26, and refuses what
    // it cannot carry over exactly), the pull-back route, which never composes them, serves.
    let unfused: string | undefined;
    if (rawClassifier && !learnedVariance) {
      try {
        const fused = await loadThroughDenoiser(m.denoiserBytes, g!.bytes, {
          prediction,
          conventions: g!.conventions,
          imageSize: g!.imageSize,
          inputSize: g!.inputSize,
          imagesFrom: g!.imagesFrom,
          offsetInput: sigma > 0,
          provider: m.provider,
          batch: m.config.batchSize,
          denoiserSource: "the denoiser",
          classifierSource: g!.label,
        });
        through = countingThrough(fused, m.counts);
      } catch (e) {
        unfused = `the fused graph cannot be built: ${(e as Error).message}`;
      }
    }
    if (!through || manyDraws) {
      pullback = countingPullback(
        await loadDenoiserPullback(m.denoiserBytes, {
          prediction,
          learnedVariance,
          provider: m.provider,
          batch: m.config.batchSize,
        }),
        m.counts,
      );
    }
    console.error(
      `guide: --method ${def.name} takes the gradient through the denoiser by ${
        through
          ? `one fused graph (denoiser -> classifier)${
            manyDraws ? " and, for several smoothing draws, the pull-back graph" : ""
          }`
          : `the pull-back graph (${
            unfused ?? (learnedVariance ? "learned-variance denoiser" : "precompiled energy head")
          })`
      }`,
    );
  }
  let timedClassifier;
  if (def.name === "noise-aware") {
    const ref = m.noiseAwareRef ?? "cifar10-resnet16-noise-aware";
    const r = await resolveModel(ref, { kind: "classifier", base: m.base });
    const range = r.entry?.input.range === "01" ? "01" : "pm1";
    const clf = await loadNoiseAwareClassifier(r.bytes, {
      range,
      provider: m.provider,
      source: ref,
    });
    const counts = m.counts;
    timedClassifier = {
      numClasses: clf.numClasses,
      fromDiffusionSpaceAt: (...a: Parameters<typeof clf.fromDiffusionSpaceAt>) => {
        counts.classifier += a[1];
        return clf.fromDiffusionSpaceAt(...a);
      },
    };
  }
  return buildMethod({
    denoiser: m.denoiser,
    classifier: countingSource(m.classifier, m.counts),
    pullback,
    through,
    timedClassifier,
    labels: m.labels,
    grid,
  }, m.method);
}
