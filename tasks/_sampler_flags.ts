/**
 * The sampler flags shared by `sample` and `guide`, parsed once into a {@link SamplerConfig},
 * and the sampler's description as recorded in config.json / run.json.
 * @module
 */
import type { ImageShape, SamplerConfig } from "../lib/sampler/loop.ts";
import { isSolver, networkCalls } from "../lib/sampler/solver_loop.ts";
import {
  type NoiseSchedule,
  type ScheduleSpec,
  scheduleSpecFromDiffusers,
} from "../lib/schedule.ts";
import type { ManifestEntry } from "../lib/weights.ts";
import { type Spacing, SPACINGS } from "../lib/timesteps.ts";
import { choiceFlag, numberFlag, UsageError } from "./_args.ts";

/** parseArgs option specs of the sampler flags. */
export const SAMPLER_FLAGS = {
  sampler: { type: "string" },
  steps: { type: "string" },
  eta: { type: "string" },
  spacing: { type: "string" },
  variance: { type: "string" },
  clip: { type: "string" },
  batch: { type: "string" },
  "scheduler-config": { type: "string" },
  "image-size": { type: "string" },
  prediction: { type: "string" },
  timestep: { type: "string" },
} as const;

/** Usage lines of the denoiser-convention flags (for models given by path). */
export const DENOISER_FLAGS_USAGE =
  `  --image-size HxW       image size of a denoiser whose ONNX input has a dynamic H/W
  --prediction epsilon|v_prediction|sample   what a model given by path predicts (default: its
                        --scheduler-config's prediction_type, else epsilon)
  --timestep index|rescaled|continuous   timestep value it was trained on: t, t*1000/T
                        (improved-diffusion rescale_timesteps), or (t+1)/T (default index)
  --variance learned    DDPM with the model's learned variance (the default for 2C-channel models)`;

/** --image-size "64x64" or "64" as [H, W]. */
export function parseImageSize(raw: string | undefined): [number, number] | undefined {
  if (raw === undefined) return undefined;
  const m = /^(\d+)(?:x(\d+))?$/.exec(raw.trim());
  const h = m ? Number(m[1]) : NaN, w = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || !(h >= 1 && w >= 1)) {
    throw new UsageError(`--image-size '${raw}' is invalid: write HxW or one number, e.g. 64x64`);
  }
  return [h, w];
}

/**
 * --prediction and --timestep over a model's schedule spec. They describe models given by path;
 * a manifest model's entry already declares both, so giving them there is refused.
 */
export function withConventionFlags(
  spec: ScheduleSpec,
  f: { prediction?: string; timestep?: string },
  fromManifest: boolean,
): ScheduleSpec {
  if (f.prediction === undefined && f.timestep === undefined) return spec;
  if (fromManifest) {
    throw new UsageError(
      `--prediction/--timestep are for models given by path; this manifest model declares ` +
        `them in its entry's schedule (prediction_type, timestep)`,
    );
  }
  const prediction = f.prediction === undefined ? spec.prediction_type : choiceFlag(
    "prediction",
    f.prediction,
    ["epsilon", "v_prediction", "sample"] as const,
    "epsilon",
  );
  const timestep = f.timestep === undefined ? spec.timestep : choiceFlag(
    "timestep",
    f.timestep,
    ["index", "rescaled", "continuous"] as const,
    "index",
  );
  return { ...spec, prediction_type: prediction, timestep };
}

/**
 * The noise schedule of a denoiser: its manifest entry's, else a diffusers scheduler_config.json
 * given with --scheduler-config, else `fallback` (google/ddpm-cifar10-32's).
 */
export async function scheduleSpecFor(
  entry: ManifestEntry | undefined,
  schedulerConfig: string | undefined,
  fallback: ScheduleSpec,
): Promise<ScheduleSpec> {
  if (schedulerConfig !== undefined) {
    if (entry?.schedule) {
      throw new UsageError(
        `--scheduler-config is for models given by path; this manifest model has its schedule`,
      );
    }
    let cfg: Record<string, unknown>;
    try {
      cfg = JSON.parse(await Deno.readTextFile(schedulerConfig));
    } catch (e) {
      throw new UsageError(
        `--scheduler-config ${schedulerConfig} cannot be read as JSON (${(e as Error).message})`,
      );
    }
    try {
      return scheduleSpecFromDiffusers(cfg);
    } catch (e) {
      throw new UsageError(`--scheduler-config ${schedulerConfig}: ${(e as Error).message}`);
    }
  }
  return entry?.schedule ?? fallback;
}

/**
 * Default --steps per sampler (DDPM: all T). The fast solvers default to the step counts their
 * papers report near-converged for guided sampling: 20 (Heun: 10 steps = 19 network calls).
 */
export const DEFAULT_STEPS: Record<string, number | undefined> = {
  ddim: 100,
  "dpmpp-2m": 20,
  unipc: 20,
  heun: 10,
};

/**
 * Default --spacing per sampler: the thesis's leading grid for DDIM/DDPM, diffusers' multistep
 * `linspace` for DPM-Solver++ and UniPC, Karras sigmas for Heun.
 */
export const DEFAULT_SPACING: Record<SamplerConfig["sampler"], Spacing> = {
  ddim: "leading",
  ddpm: "leading",
  "dpmpp-2m": "linspace-open",
  unipc: "linspace-open",
  heun: "karras",
};

/** Raw values of the sampler flags. */
export type SamplerFlagValues = { [K in keyof typeof SAMPLER_FLAGS]?: string };

/**
 * Validates the sampler flags into a config. `defaultEta` differs per task (sample: 0,
 * guide: 0.5); x0 clipping defaults to the model's clip_sample.
 */
export function samplerConfigFromFlags(
  f: SamplerFlagValues,
  schedule: NoiseSchedule,
  spec: ScheduleSpec,
  shape: ImageShape,
  seeds: number[],
  defaultEta: number,
  learnedVariance = false,
): SamplerConfig {
  const sampler = choiceFlag(
    "sampler",
    f.sampler,
    ["ddim", "ddpm", "dpmpp-2m", "unipc", "heun"] as const,
    "ddim",
  );
  const solver = isSolver(sampler);
  if (solver && (f.eta !== undefined || f.variance !== undefined)) {
    throw new UsageError(
      `--sampler ${sampler} is a deterministic ODE solver: --eta and --variance do not apply ` +
        `(drop them, or use --sampler ddim / ddpm)`,
    );
  }
  const steps = numberFlag("steps", f.steps, DEFAULT_STEPS[sampler] ?? schedule.T, {
    int: true,
    min: 1,
    max: schedule.T,
  });
  if (sampler === "ddpm" && steps !== schedule.T) {
    throw new UsageError(
      `the DDPM sampler runs all ${schedule.T} steps, not --steps ${steps}; ` +
        `drop --steps, or use --sampler ddim --eta 1 for a stochastic sub-grid`,
    );
  }
  const clipDefault = (spec.clip_sample ?? true) ? "true" : "false";
  return {
    sampler,
    schedule,
    steps,
    // the ODE solvers are deterministic: eta is 0 for them (run.json says so), --eta is refused
    eta: solver ? 0 : numberFlag("eta", f.eta, defaultEta, { min: 0 }),
    spacing: choiceFlag("spacing", f.spacing, SPACINGS, DEFAULT_SPACING[sampler]),
    variance: varianceFlag(f.variance, learnedVariance),
    clip: choiceFlag("clip", f.clip, ["true", "false"] as const, clipDefault) === "true",
    seeds,
    shape,
    batchSize: numberFlag("batch", f.batch, 16, { int: true, min: 1 }),
  };
}

/** --variance: fixed_small|fixed_large, or learned (default) for a learned-variance model. */
function varianceFlag(raw: string | undefined, learned: boolean) {
  const v = choiceFlag(
    "variance",
    raw,
    ["fixed_small", "fixed_large", "learned"] as const,
    learned ? "learned" : "fixed_small",
  );
  if (v === "learned" && !learned) {
    throw new UsageError(
      `--variance learned needs a model that outputs its variance (2C channels, variance_type ` +
        `learned_range); this one does not: use fixed_small or fixed_large`,
    );
  }
  return v;
}

/** What determines the images besides the model and seeds (for config.json and run.json). */
export function samplerRecord(cfg: SamplerConfig, spec: ScheduleSpec) {
  return {
    sampler: cfg.sampler,
    steps: cfg.steps,
    networkCalls: networkCalls(cfg.sampler, cfg.sampler === "ddpm" ? cfg.schedule.T : cfg.steps),
    eta: cfg.eta,
    spacing: cfg.spacing,
    variance: cfg.variance,
    clip: cfg.clip,
    schedule: spec,
  };
}
