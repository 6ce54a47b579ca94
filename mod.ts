/**
 * robust-guidance: class-conditional image generation from an unconditional diffusion model,
 * guided by an off-the-shelf robust classifier read as an energy-based model
 * (see ../shared/docs/METHOD.md). Runs every network through ONNX Runtime.
 *
 * As a library:
 * @example
 * ```ts
 * import { linearSchedule, loadOnnx, onnxDenoiser, sample } from "./mod.ts";
 * const model = await loadOnnx("weights/mixture_cifar10.onnx", { provider: "cpu" });
 * const images = await sample(onnxDenoiser(model), {
 *   sampler: "ddim", schedule: linearSchedule(), steps: 100, eta: 0, spacing: "leading",
 *   clip: true, variance: "fixed_small", seeds: [0, 1, 2, 3], shape: { c: 3, h: 32, w: 32 },
 *   batchSize: 4,
 * });
 * ```
 *
 * Guided (class-conditional) sampling, the thesis's Alg 6 around any sampler:
 * @example
 * ```ts
 * import { guided, linearSchedule, loadEnergyClassifier, loadOnnx, onnxDenoiser, sample } from "./mod.ts";
 * const classifier = await loadEnergyClassifier("../shared/models/vnncomp21_resnet4b.onnx", {
 *   conventions: { mean: [0.4914, 0.4822, 0.4465], std: [0.2471, 0.2435, 0.2616] },
 * });
 * const denoiser = onnxDenoiser(await loadOnnx("weights/mixture_cifar10.onnx"));
 * const seeds = [0, 1, 2, 3];
 * const images = await sample(guided(denoiser, {
 *   classifier, direction: { kind: "joint" }, scale: 10,
 *   strength: { spec: { kind: "sqrt" }, activation: 0 },
 *   labels: [3, 3, 3, 3], point: "xt", form: "eps",
 * }), {
 *   sampler: "ddim", schedule: linearSchedule(), steps: 100, eta: 0.5, spacing: "leading",
 *   clip: true, variance: "fixed_small", seeds, shape: { c: 3, h: 32, w: 32 }, batchSize: 4,
 * });
 * ```
 *
 * As a command line: `npx deno run -A mod.ts <task> [flags]` in a checkout after `npm ci`
 * (`npx deno task <task>` is the same), or remotely `deno run -A <url>/mod.ts <task>`.
 * `--help` on each task lists its flags. The tasks ({@link TASK_NAMES}):
 * - sampling: `sample` (unconditional DDIM/DDPM/fast solvers), `guide` (classifier-guided,
 *   Alg 6), `merge` (joins the shards of a sharded run), `strength-plot` (w(t) schedules)
 * - classifiers as energy models: `energy-head` (compile a head), `energy-stats` (Estar_y of
 *   dual guidance), `energy-curve`, `robust-accuracy`, `noise-accuracy`
 * - evaluation and experiments: `evaluate` (target accuracy, IS, FD, precision/recall),
 *   `sweep` (guide x evaluate over a grid), `compare` (guidance methods in one harness),
 *   `sampler-tradeoff` (fast samplers: steps vs quality), `report` (self-contained HTML)
 * - models and set-up: `weights` (manifest, missing models, `--add`), `build-mixture` (the exact
 *   mixture denoiser), `cuda-setup` (onnxruntime-node's CUDA provider)
 * @module
 */

export {
  abarAt,
  cosineSchedule,
  learnedLogBounds,
  learnedLogVariance,
  linearSchedule,
  type NoiseSchedule,
  posteriorVariance,
  scaledLinearSchedule,
  scheduleFromBetas,
  scheduleFromSpec,
  type ScheduleSpec,
  scheduleSpecFromDiffusers,
  type TimestepConvention,
  timestepValue,
  type VarianceKind,
} from "./lib/schedule.ts";
export {
  karrasGrid,
  karrasSigmas,
  type Spacing,
  SPACINGS,
  stepPairs,
  thesisGrid,
  timestepGrid,
} from "./lib/timesteps.ts";
export { ddimSigma, ddimStep, type DdimStepInput } from "./lib/sampler/ddim.ts";
export { ddpmCoefficients, ddpmStep, type DdpmStepInput } from "./lib/sampler/ddpm.ts";
export { dpmpp2mOrder, dpmpp2mStep, type DpmppStepInput } from "./lib/sampler/dpmpp_2m.ts";
export {
  unipcCorrect,
  type UnipcCorrectInput,
  type UnipcHistory,
  unipcOrder,
  unipcPredict,
  type UnipcPredictInput,
} from "./lib/sampler/unipc.ts";
export {
  heunCorrect,
  type HeunCorrectInput,
  heunEuler,
  type HeunEulerInput,
} from "./lib/sampler/heun.ts";
export {
  type FloatArray,
  type VpPoint,
  vpPoint,
  x0FromEps,
} from "./lib/sampler/data_prediction.ts";
export {
  isSolver,
  networkCalls,
  solveBatch,
  type SolverBatch,
  type SolverKind,
} from "./lib/sampler/solver_loop.ts";
export {
  type BatchEvent,
  type DenoiseContext,
  type Denoiser,
  gridFor,
  type ImageShape,
  sample,
  type SampleHooks,
  type SamplerConfig,
  type SamplerKind,
  type StepEvent,
} from "./lib/sampler/loop.ts";
export { noiseFor, parseSeeds, RandomStream, RNG_ID } from "./lib/random.ts";
export {
  type Feed,
  fixedBatch,
  type InferenceSession,
  type IOInfo,
  loadOnnx,
  type LoadOptions,
  type OnnxModel,
  type Outputs,
  type ProviderChoice,
  runBatched,
  runOnnx,
} from "./lib/runtime/session.ts";
export {
  type DenoiserIO,
  denoiserIO,
  type DenoiserSetup,
  inspectDenoiser,
  type InspectOptions,
  modelFolder,
  type Network,
  networkDenoiser,
  onnxDenoiser,
} from "./lib/models/onnx_denoiser.ts";
export {
  type Converted,
  convertOutput,
  networkOutput,
  outputChannels,
  type OutputSpec,
  PREDICTION_TYPES,
  type PredictionType,
  type VarianceType,
} from "./lib/models/parameterisation.ts";
export {
  buildMixtureDenoiser,
  type GaussianMixture,
  gaussianMixture,
  mixtureEps,
  mixtureResponsibilities,
} from "./lib/models/mixture.ts";
export {
  type AttributeProto,
  decodeModel,
  type DimProto,
  encodeModel,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type OperatorSetIdProto,
  type StringStringEntryProto,
  type TensorProto,
  type TypeProto,
  type ValueInfoProto,
} from "./lib/onnx/proto.ts";
export {
  type AttrValue,
  type Dim,
  float,
  type FloatAttr,
  GraphBuilder,
  type NodeOptions,
} from "./lib/onnx/builder.ts";
export { type TensorData } from "./lib/onnx/tensor.ts";
export {
  externalDataRefs,
  type ExternalFile,
  type ExternalRef,
  inlineExternalData,
  withExternalData,
} from "./lib/onnx/external_data.ts";
export {
  type InputConvention,
  loadManifest,
  type Manifest,
  type ManifestEntry,
  type ResolvedModel,
  resolveModel,
} from "./lib/weights.ts";
export { CIFAR10_CLASSES, type Cifar10Split, loadCifar10 } from "./lib/data/cifar10.ts";
export { qSample } from "./lib/forward.ts";
export {
  buildEnergyHead,
  type CompiledHead,
  compileEnergyHead,
  type EnergyHeadOptions,
  HEAD_NAMES,
  HEAD_VERSION,
  type HeadInfo,
  readHeadInfo,
} from "./lib/energy/head.ts";
export { type ResizeOptions, type ResizeSpec } from "./lib/energy/resize.ts";
export { type LogitsTrace } from "./lib/energy/logits.ts";
export { type BatchRewrite } from "./lib/energy/dynamic_batch.ts";
export {
  type Coefficients,
  type CoefficientsArg,
  EnergyClassifier,
  type EnergyOutputs,
  type ForwardOutputs,
  loadEnergyClassifier,
  type LoadEnergyClassifierOptions,
  OBJECTIVES,
} from "./lib/energy/classifier.ts";
export {
  CIFAR10_NORMALISATION,
  type InputConventions,
  toClassifierInput,
} from "./lib/energy/conventions.ts";
export { appendVjp } from "./lib/autodiff/vjp.ts";
export {
  type Accumulate,
  baseDirection,
  type DirectionResult,
  type DirectionSpec,
  type EnergySource,
  guidanceDirection,
} from "./lib/guidance/directions.ts";
export {
  type GuidanceConfig,
  type GuidanceForm,
  type GuidancePoint,
  type GuidanceStepInfo,
  guided,
} from "./lib/guidance/guided.ts";
export {
  DEFAULT_STRENGTH,
  formatStrength,
  guidanceFactor,
  parseStrength,
  type StrengthSchedule,
  type StrengthSpec,
  strengthWeight,
} from "./lib/guidance/strength.ts";
export { buildMixtureClassifier } from "./lib/models/mixture.ts";
export {
  buildDenoiserPullback,
  buildThroughDenoiser,
  type DenoiserPullback,
  loadDenoiserPullback,
  loadThroughDenoiser,
  type LoadThroughOptions,
  OnnxDenoiserPullback,
  PULLBACK_NAMES,
  type PullbackOutputs,
  THROUGH_NAMES,
  ThroughDenoiser,
  type ThroughDenoiserOptions,
  type ThroughInfo,
  type ThroughOutputs,
  type ThroughPrediction,
} from "./lib/energy/through_denoiser.ts";
export {
  buildNoiseAwareHead,
  loadNoiseAwareClassifier,
  NoiseAwareClassifier,
  type TimedEnergySource,
} from "./lib/energy/noise_aware.ts";
export { inlineModel, prefixGraph } from "./lib/onnx/compose.ts";
export {
  buildMethod,
  METHOD_NAMES,
  methodDef,
  METHODS,
  type ResolvedMethod,
  resolveMethod,
} from "./lib/guidance/methods/registry.ts";
export type { MethodDef } from "./lib/guidance/methods/method.ts";
export type { MethodEnv } from "./lib/guidance/methods/env.ts";
export type { FusedThrough } from "./lib/guidance/methods/core.ts";
export type { ParamSpec, ParamValues } from "./lib/guidance/methods/params.ts";
export { type StepGrid, stepGridFor } from "./lib/guidance/methods/step_grid.ts";
export {
  type CallCounts,
  countingDenoiser,
  countingPullback,
  countingSource,
  newCallCounts,
} from "./lib/guidance/methods/counting.ts";
export { type RecurrenceSpec, recurrent } from "./lib/guidance/recurrence.ts";
export { type CompareRow, wilsonInterval } from "./lib/compare/results.ts";
export { UsageError } from "./lib/errors.ts";

import { UsageError } from "./lib/errors.ts";

/** Task name -> loader of its entry point (imported lazily so one task's deps don't load all). */
const TASKS: Record<string, () => Promise<(args: string[]) => Promise<void>>> = {
  "sample": async () => (await import("./tasks/sample.ts")).sampleTask,
  "build-mixture": async () => (await import("./tasks/build_mixture.ts")).buildMixtureTask,
  "guide": async () => (await import("./tasks/guide.ts")).guideTask,
  "energy-stats": async () => (await import("./tasks/energy_stats.ts")).energyStatsTask,
  "energy-head": async () => (await import("./tasks/energy_head.ts")).energyHeadTask,
  "strength-plot": async () => (await import("./tasks/strength_plot.ts")).strengthPlotTask,
  "merge": async () => (await import("./tasks/merge.ts")).mergeTask,
  "weights": async () => (await import("./tasks/weights.ts")).weightsTask,
  "evaluate": async () => (await import("./tasks/evaluate.ts")).evaluateTask,
  "robust-accuracy": async () => (await import("./tasks/robust_accuracy.ts")).robustAccuracyTask,
  "noise-accuracy": async () => (await import("./tasks/noise_accuracy.ts")).noiseAccuracyTask,
  "energy-curve": async () => (await import("./tasks/energy_curve.ts")).energyCurveTask,
  "sweep": async () => (await import("./tasks/sweep.ts")).sweepTask,
  "compare": async () => (await import("./tasks/compare.ts")).compareTask,
  "report": async () => (await import("./tasks/report.ts")).reportTask,
  "cuda-setup": async () => (await import("./tasks/cuda_setup.ts")).cudaSetupTask,
  "sampler-tradeoff": async () => (await import("./tasks/sampler_tradeoff.ts")).samplerTradeoffTask,
};

/** The tasks of the command line (`deno run -A mod.ts <task>`), in the order `--help` lists them. */
export const TASK_NAMES: readonly string[] = Object.keys(TASKS);

/** Runs a task by name with its arguments; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "help") {
    console.log(
      `usage: deno run -A mod.ts <task> [flags]\ntasks: ${Object.keys(TASKS).join(", ")}`,
    );
    return name ? 0 : 2;
  }
  const load = TASKS[name];
  if (!load) {
    console.error(`unknown task '${name}'; tasks: ${Object.keys(TASKS).join(", ")}`);
    return 2;
  }
  try {
    await (await load())(rest);
    return Deno.exitCode; // 0 unless the task set it (cuda-setup --check: 1 when CUDA is missing)
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    if (Deno.env.get("RG_DEBUG")) console.error((e as Error).stack);
    return e instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
