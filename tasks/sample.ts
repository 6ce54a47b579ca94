/**
 * Task `sample`: unconditional samples from an ONNX denoiser (METHOD.md §2).
 *   deno task sample --model <id|path> --n 16 --steps 100 --eta 0 --sampler ddim|ddpm
 *     --seeds 0-15 --out <dir> [--trajectory]
 * Writes <out>/images/<seed>.png, <out>/grid.png, <out>/run.json (and trajectory grids).
 * @module
 */
import { parseSeeds, RNG_ID } from "../lib/random.ts";
import { scheduleFromSpec, type ScheduleSpec } from "../lib/schedule.ts";
import {
  type ImageShape,
  sample,
  type SamplerConfig,
  type StepEvent,
} from "../lib/sampler/loop.ts";
import type { ProviderChoice } from "../lib/runtime/session.ts";
import { onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import { defaultModel, resolveModel, weightsBaseFrom } from "../lib/weights.ts";
import { progress } from "../lib/progress.ts";
import { writeGrid, writeJsonAtomic } from "../lib/io/outputs.ts";
import { formatSeeds, parseShard, type Shard } from "../lib/shard.ts";
import { batchWriter, planRun, readImages, type RunItem, warnLargeRun } from "./_run_folder.ts";
import { loadDenoiserRef } from "./_models.ts";
import { choiceFlag, numberFlag, parseFlags, UsageError, versions } from "./_args.ts";
import {
  DENOISER_FLAGS_USAGE,
  parseImageSize,
  SAMPLER_FLAGS,
  samplerConfigFromFlags,
  samplerRecord,
  scheduleSpecFor,
  withConventionFlags,
} from "./_sampler_flags.ts";

/** The DDPM schedule of google/ddpm-cifar10-32, used for models without a manifest entry. */
export const DEFAULT_SCHEDULE: ScheduleSpec = {
  type: "linear",
  T: 1000,
  beta_start: 1e-4,
  beta_end: 0.02,
  clip_sample: true,
};

const FLAGS = {
  ...SAMPLER_FLAGS,
  model: { type: "string" },
  n: { type: "string" },
  seeds: { type: "string" },
  out: { type: "string" },
  trajectory: { type: "boolean" },
  "trajectory-steps": { type: "string" },
  shard: { type: "string" },
  provider: { type: "string" },
  threads: { type: "string" },
  weights: { type: "string" },
  help: { type: "boolean" },
} as const;

/** Usage text of `sample`. */
export const SAMPLE_USAGE = `deno task sample [flags]
  --model <id|path>     denoiser (manifest id or .onnx; default: the manifest's default denoiser)
  --n <int>             number of images (default 16; or the number of --seeds)
  --seeds <list>        per-image seeds, e.g. 0-15 or 0-3,10 (default 0..n-1)
  --sampler ddim|ddpm|dpmpp-2m|unipc|heun   (default ddim; ddpm runs all T steps; dpmpp-2m =
                        DPM-Solver++(2M), unipc = UniPC-2 bh2, heun = Karras et al. Heun: fast
                        deterministic ODE solvers, one network call per step, Heun 2 per step - 1)
  --steps <int>         grid steps (default 100 for ddim: t = 990, 980, ..., 0; 20 for dpmpp-2m
                        and unipc; 10 for heun = 19 network calls)
  --eta <num>           DDIM eta (default 0)
  --spacing leading|trailing|linspace|linspace-open|karras   grid (default leading; dpmpp-2m and
                        unipc: linspace-open = diffusers' 999, 949, ..., 50; heun: karras)
  --variance fixed_small|fixed_large    DDPM variance (default fixed_small)
  --clip true|false     clip x0_hat to [-1,1] (default: the model's clip_sample, else true)
  --batch <int>         images per model call (default 16; results do not depend on it)
  --out <dir>           output folder (default out/sample); a rerun with the same flags resumes it
  --shard i/n           make only every n-th image from the i-th (then: deno task merge --out <dir>)
  --trajectory          also write step-by-step grids (x_t and x0_hat)
  --trajectory-steps <int>  columns of those grids: steps shown, evenly spaced (default 10)
  --provider auto|cpu|cuda   execution provider (default auto)
  --threads <int>       ONNX Runtime intra-op threads (default: all cores)
  --weights <dir|url>   weights folder holding manifest.json (default: the repository's)
  --scheduler-config <file>  diffusers scheduler_config.json for a model given by path
                        (default for such models: linear 1e-4..0.02, T = 1000, clip_sample)
${DENOISER_FLAGS_USAGE}`;

/** Parsed and validated configuration of a `sample` run. */
export interface SampleRun {
  modelRef: string;
  config: SamplerConfig;
  out: string;
  trajectory: boolean;
  trajectorySteps: number;
  provider: ProviderChoice;
  threads?: number;
  weights?: string;
  /** Which part of the run this process makes. */
  shard: Shard;
}

/** Runs the `sample` task with command-line `args`. */
export async function sampleTask(args: string[]): Promise<void> {
  const f = parseFlags("sample", args, FLAGS);
  if (f.help) {
    console.log(SAMPLE_USAGE);
    return;
  }
  const base = weightsBaseFrom(f.weights);
  const modelRef = f.model ?? await defaultModel("denoiser", base);
  const resolved = await resolveModel(modelRef, { kind: "denoiser", base });
  const entry = resolved.entry;
  const spec = withConventionFlags(
    await scheduleSpecFor(entry, f["scheduler-config"], DEFAULT_SCHEDULE),
    f,
    entry !== undefined,
  );
  const schedule = scheduleFromSpec(spec);
  const imageSize = parseImageSize(f["image-size"]);
  const provider = choiceFlag("provider", f.provider, ["auto", "cpu", "cuda"] as const, "auto");
  const threads = f.threads === undefined
    ? undefined
    : numberFlag("threads", f.threads, 0, { int: true, min: 1 });
  // the image shape comes from the graph; output channels and timestep input are checked here
  const { model, setup } = await loadDenoiserRef(resolved, modelRef, {
    spec,
    imageSize,
    provider,
    threads,
  });
  const { c, h, w } = setup.shape;
  const shape: ImageShape = { c, h, w };
  let seeds: number[];
  if (f.seeds !== undefined) {
    try {
      seeds = parseSeeds(f.seeds);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (f.n !== undefined && Number(f.n) !== seeds.length) {
      throw new UsageError(
        `--n ${f.n} disagrees with --seeds ${f.seeds} (${seeds.length} seeds); give one of them`,
      );
    }
  } else {
    const n = numberFlag("n", f.n, 16, { int: true, min: 1 });
    seeds = Array.from({ length: n }, (_, i) => i);
  }
  const config = samplerConfigFromFlags(
    f,
    schedule,
    spec,
    shape,
    seeds,
    0,
    setup.output.variance === "learned_range",
  );
  const run: SampleRun = {
    modelRef,
    config,
    out: f.out ?? "out/sample",
    trajectory: f.trajectory ?? false,
    trajectorySteps: numberFlag("trajectory-steps", f["trajectory-steps"], 10, {
      int: true,
      min: 2,
    }),
    provider,
    threads,
    weights: f.weights,
    shard: parseShard(f.shard),
  };
  const denoiser = onnxDenoiser(model, config.batchSize, setup);
  if (model.providerNote) console.error(`note: ${model.providerNote}`);
  const steps = config.steps;
  // --- the run folder: one file per seed; this shard's missing ones are sampled ---
  const items: RunItem[] = seeds.map((seed) => ({ seed, file: `images/${seed}.png` }));
  const identity = {
    task: "sample",
    model: resolved.sha256,
    ...(resolved.externalData ? { modelData: resolved.externalData } : {}),
    ...samplerRecord(config, spec),
    seeds: formatSeeds(seeds),
    shape: [c, h, w],
    rng: RNG_ID,
  };
  warnLargeRun("sample", seeds.length);
  const plan = await planRun(run.out, identity, items, run.shard, shape);
  const todoSeeds = plan.todo.map((p) => seeds[p]);
  const shardText = run.shard.count > 1 ? ` (shard ${run.shard.index}/${run.shard.count})` : "";
  console.error(
    `sample: ${todoSeeds.length} of ${plan.mine.length} images to make${shardText}, ` +
      `${config.sampler} ${steps} steps, model ${modelRef} (${model.provider}), out ${run.out}`,
  );
  const total = Math.ceil(todoSeeds.length / config.batchSize) * steps;
  const tick = progress("sample", total, "steps");
  const traj = run.trajectory && todoSeeds.length
    ? trajectoryRecorder(todoSeeds.length, shape, steps, run.trajectorySteps)
    : undefined;
  let done = 0;
  const t0 = performance.now();
  if (todoSeeds.length) {
    await sample(denoiser, { ...config, seeds: todoSeeds }, {
      onStep: (ev) => {
        tick(++done);
        traj?.record(ev);
      },
      onBatch: batchWriter(run.out, items, plan.todo, shape),
    });
  }
  const seconds = (performance.now() - t0) / 1000;
  if (traj) await traj.write(run.out);
  const record = {
    task: "sample",
    model: {
      ref: modelRef,
      id: resolved.id,
      location: resolved.location,
      sha256: resolved.sha256,
      externalData: resolved.externalData,
    },
    configSha256: plan.configSha256,
    config: {
      ...samplerRecord(config, spec),
      scheduleName: schedule.name,
      seeds: f.seeds ?? `0-${seeds.length - 1}`,
      n: seeds.length,
      batch: config.batchSize,
      shape: [c, h, w],
      output: setup.output,
      timestep: setup.timestep,
      shard: `${run.shard.index}/${run.shard.count}`,
    },
    rng: RNG_ID,
    provider: model.provider,
    providerNote: model.providerNote,
    threads: run.threads ?? "default",
    versions: { ...versions(), "onnxruntime-node": "1.30.0" },
    sampledNow: todoSeeds.length,
    alreadyDone: plan.mine.length - todoSeeds.length,
    remadeDamaged: plan.damaged.length ? plan.damaged.map((d) => d.file) : undefined,
    seconds,
    imagesPerSecond: todoSeeds.length / Math.max(seconds, 1e-9),
    outputs: {
      grid: "grid.png",
      images: "images/<seed>.png",
      trajectory: traj ? "trajectory.png" : undefined,
    },
  };
  if (run.shard.count > 1) {
    await writeJsonAtomic(
      `${run.out}/run.shard-${run.shard.index}-of-${run.shard.count}.json`,
      record,
    );
    console.error(
      `sample: shard ${run.shard.index}/${run.shard.count} done (${todoSeeds.length} new images); ` +
        `when every shard is done: deno task merge --out ${run.out}`,
    );
    return;
  }
  await writeGrid(
    `${run.out}/grid.png`,
    await readImages(run.out, items, shape),
    items.length,
    shape,
    "pm1",
  );
  await writeJsonAtomic(`${run.out}/run.json`, record);
  console.error(
    `sample: wrote ${todoSeeds.length} images to ${run.out} in ${seconds.toFixed(1)}s ` +
      `(${(todoSeeds.length / Math.max(seconds, 1e-9)).toFixed(2)} img/s)` +
      (record.alreadyDone ? `; ${record.alreadyDone} were already there (resumed)` : ""),
  );
}

/** Records x_t and x0_hat of the first (up to 8) images at evenly spaced steps (Fig 4.8). */
function trajectoryRecorder(total: number, shape: ImageShape, steps: number, cols: number) {
  const rows = Math.min(8, total);
  const per = shape.c * shape.h * shape.w;
  const at = new Set(
    Array.from({ length: cols }, (_, i) => Math.round(i * (steps - 1) / (cols - 1))),
  );
  const picks = [...at].sort((a, b) => a - b);
  const xt = new Float32Array(rows * picks.length * per);
  const x0 = new Float32Array(rows * picks.length * per);
  return {
    record(ev: StepEvent) {
      const col = picks.indexOf(ev.stepIndex);
      if (col < 0) return;
      ev.items.forEach((item, k) => {
        if (item >= rows) return;
        const dst = (item * picks.length + col) * per;
        xt.set(ev.x.subarray(k * per, (k + 1) * per), dst);
        x0.set(ev.x0.subarray(k * per, (k + 1) * per), dst);
      });
    },
    async write(out: string) {
      await writeGrid(`${out}/trajectory.png`, xt, rows * picks.length, shape, "pm1", picks.length);
      await writeGrid(
        `${out}/trajectory_x0.png`,
        x0,
        rows * picks.length,
        shape,
        "pm1",
        picks.length,
      );
    },
  };
}
