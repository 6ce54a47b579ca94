/**
 * The sampler flags shared by `sample` and `guide`, parsed once into a {@link SamplerConfig},
 * and the sampler's description as recorded in config.json / run.json.
 * @module
 */
import type { ImageShape, SamplerConfig } from "../lib/sampler/loop.ts";
import {
  type NoiseSchedule,
  type ScheduleSpec,
  scheduleSpecFromDiffusers,
} from "../lib/schedule.ts";
import type { ManifestEntry } from "../lib/weights.ts";
import type { Spacing } from "../lib/timesteps.ts";
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
} as const;

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
): SamplerConfig {
  const sampler = choiceFlag("sampler", f.sampler, ["ddim", "ddpm"] as const, "ddim");
  const steps = numberFlag("steps", f.steps, sampler === "ddpm" ? schedule.T : 100, {
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
    eta: numberFlag("eta", f.eta, defaultEta, { min: 0 }),
    spacing: choiceFlag(
      "spacing",
      f.spacing,
      ["leading", "trailing", "linspace"] as const,
      "leading",
    ) as Spacing,
    variance: choiceFlag(
      "variance",
      f.variance,
      ["fixed_small", "fixed_large"] as const,
      "fixed_small",
    ),
    clip: choiceFlag("clip", f.clip, ["true", "false"] as const, clipDefault) === "true",
    seeds,
    shape,
    batchSize: numberFlag("batch", f.batch, 16, { int: true, min: 1 }),
  };
}

/** What determines the images besides the model and seeds (for config.json and run.json). */
export function samplerRecord(cfg: SamplerConfig, spec: ScheduleSpec) {
  return {
    sampler: cfg.sampler,
    steps: cfg.steps,
    eta: cfg.eta,
    spacing: cfg.spacing,
    variance: cfg.variance,
    clip: cfg.clip,
    schedule: spec,
  };
}
