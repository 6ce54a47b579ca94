/**
 * Task `guide`: class-conditional samples from an unconditional denoiser guided by a classifier's
 * energies (METHOD.md §4, Alg 6).
 *   deno task guide --model <denoiser> --classifier <head or classifier> --class <name|index|all>
 *     --direction logp|joint|dual|pgd --scale s --schedule <spec> --steps 100 --eta 0.5
 *     --seeds 0-63 --out <dir> [--evaluator <classifier>] [--trajectory]
 * Writes <out>/images/<class>/<seed>.png, <out>/grid.png (one row per class), per-class grids,
 * <out>/run.json (with the evaluator's target accuracy: the manifest's evaluator by default).
 * @module
 */
import { type Accumulate, directionFromFlags } from "../lib/guidance/directions.ts";
import { type GuidanceStepInfo, guided } from "../lib/guidance/guided.ts";
import { formatStrength, parseStrength, type StrengthSchedule } from "../lib/guidance/strength.ts";
import { onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import { progress } from "../lib/progress.ts";
import { parseSeeds, RNG_ID } from "../lib/random.ts";
import { sample } from "../lib/sampler/loop.ts";
import { targetAccuracy } from "../lib/metrics/target_accuracy.ts";
import { scheduleFromSpec } from "../lib/schedule.ts";
import { defaultModel, loadManifest, resolveModel, weightsBaseFrom } from "../lib/weights.ts";
import { writeGrid, writeJsonAtomic } from "../lib/io/outputs.ts";
import { formatSeeds, parseShard } from "../lib/shard.ts";
import { parseInputSize } from "../lib/energy/resize.ts";
import {
  parseClassArg,
  readLabelsFile,
  readManifestLabels,
  resolveClassNames,
} from "../lib/labels.ts";
import {
  batchWriter,
  planRun,
  previousRunJson,
  readImages,
  type RunItem,
  warnLargeRun,
} from "./_run_folder.ts";
import { choiceFlag, numberFlag, parseFlags, scaleFlag, UsageError, versions } from "./_args.ts";
import {
  DENOISER_FLAGS_USAGE,
  parseImageSize,
  SAMPLER_FLAGS,
  samplerConfigFromFlags,
  samplerRecord,
  scheduleSpecFor,
  withConventionFlags,
} from "./_sampler_flags.ts";
import { conventionsFromFlags, loadClassifierRef, loadDenoiserRef } from "./_models.ts";
import { checkRunModels, classifierInputRecord, modelLabel } from "./_preflight.ts";
import { readEnergyStats } from "./energy_stats.ts";
import {
  METHOD_FLAGS,
  METHOD_USAGE,
  methodDenoiser,
  methodFromFlags,
  methodsHelp,
} from "./_methods.ts";
import {
  countingDenoiser,
  countingSource,
  newCallCounts,
} from "../lib/guidance/methods/counting.ts";
import { DEFAULT_SCHEDULE } from "./sample.ts";

const FLAGS = {
  ...SAMPLER_FLAGS,
  ...METHOD_FLAGS,
  model: { type: "string" },
  classifier: { type: "string" },
  class: { type: "string" },
  direction: { type: "string" },
  scale: { type: "string" },
  schedule: { type: "string" },
  activation: { type: "string" },
  lambda: { type: "string" },
  stats: { type: "string" },
  "pgd-steps": { type: "string" },
  "pgd-gamma": { type: "string" },
  "pgd-literal": { type: "boolean" },
  accumulate: { type: "string" },
  point: { type: "string" },
  form: { type: "string" },
  "clip-grad": { type: "string" },
  seeds: { type: "string" },
  out: { type: "string" },
  evaluator: { type: "string" },
  trajectory: { type: "boolean" },
  shard: { type: "string" },
  mean: { type: "string" },
  std: { type: "string" },
  range: { type: "string" },
  layout: { type: "string" },
  "input-size": { type: "string" },
  "evaluator-input-size": { type: "string" },
  labels: { type: "string" },
  provider: { type: "string" },
  threads: { type: "string" },
  weights: { type: "string" },
  help: { type: "boolean" },
} as const;

/**
 * guide's default guidance setting, chosen by measurement with the default models (issue 17
 * item 4; bench/NOTES.md "The default guidance setting"): among directions joint/logp/dual,
 * scales 3-400, schedules sqrt/power:2, eta 0/0.5/1 and the point x_t or x0_hat, swept on
 * validation seeds 1000-1009 (100 images a point), the log p(y|x) direction evaluated at x0_hat
 * (METHOD.md §4.6 with the MPGD-style point) at s = 100 had the highest target accuracy of the
 * independent evaluator (100%) at an FD far below unguided, keeping unguided precision and recall;
 * the thesis's own joint direction at x_t collapses each class to one image from s = 30 on.
 * `--direction joint --point xt --scale 10` is the thesis's Alg 6 as before.
 */
export const GUIDE_DEFAULTS = {
  direction: "logp",
  scale: 100,
  point: "x0",
  schedule: "sqrt",
} as const;

/** Usage text of `guide`. */
export const GUIDE_USAGE = `deno task guide [flags]
  --model <id|path>        denoiser (default: the manifest's default denoiser)
  --classifier <id|path>   guiding classifier or energy head (default: the manifest's default classifier)
  --class <name|index|all> requested class (default all: one row of the grid per class)
  --direction logp|joint|dual|pgd   guidance direction (default ${GUIDE_DEFAULTS.direction}, §4.6)
  --scale <s>              strength s (default ${GUIDE_DEFAULTS.scale}, measured for the default models with the
                           default direction and point; the thesis's joint at x_t wants ~10)
${METHOD_USAGE}
  --schedule <spec>        w(t): sqrt | power:p | sigmoid:y0,t0,k | two-phase:s1,s2[,switch] | linear | constant
  --activation <f>         guidance off for the first fraction f of the steps (default 0; §4.3)
  --lambda <l> --stats <energy-stats.json>   dual guidance (§4.8; default lambda 0.15)
  --pgd-steps <n> --pgd-gamma <g> [--pgd-literal]   pgd guidance (§4.9, Alg 8; default 5, 0.1)
  --accumulate <n,alpha>   sum the direction over n points (§4.3)
  --point xt|x0            where the classifier looks: x_t (thesis, Alg 6) or x0_hat (MPGD-style;
                           default ${GUIDE_DEFAULTS.point})
  --form eps|mean-shift    Alg 6 eps shift, or Dhariwal-Nichol mean shift (--sampler ddpm)
  --clip-grad <c>          per-image max L2 norm of the direction
  --sampler ddim|ddpm|dpmpp-2m|unipc|heun --steps 100 --eta 0.5 --spacing leading --clip true|false
                           (dpmpp-2m / unipc default to 20 steps, heun to 10 = 19 network calls;
                           see 'deno task sample --help')
  --seeds <list>           per-image seeds, the same for every class (default 0-7)
  --evaluator <id|path|none>  independent classifier: target accuracy of the samples
                           (default: the manifest's evaluator; none: skip)
  --trajectory             step grids of the first class's images (Fig 4.8)
  --out <dir> --batch <n> --provider auto|cpu|cuda --threads <n> --weights <dir|url>
  --shard i/n              make every n-th image from the i-th; a rerun resumes; then: deno task merge
  --mean r,g,b --std r,g,b --range 01|pm1 --layout nchw|nhwc   conventions of a raw classifier path
  --input-size H[,W]       feed the classifier HxW images: a bilinear resize (align_corners=False,
                           no antialias) of the denoiser's images inside the energy head; without it
                           a classifier of another size than the denoiser's images is refused
  --evaluator-input-size H[,W]   the same for the evaluator
  --labels <file>          class names, one per line (K lines; default: the manifest's, else class<i>)
  --scheduler-config <file>  diffusers scheduler_config.json for a denoiser given by path
${DENOISER_FLAGS_USAGE}`;

/** Parses --class into class indices: `all`, indices and names (lib/labels.ts). */
export function parseClasses(raw: string | undefined, names: readonly string[]): number[] {
  try {
    return parseClassArg(raw, names);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function parseAccumulate(raw: string | undefined): Accumulate | undefined {
  if (raw === undefined) return undefined;
  const m = /^(\d+),([0-9.eE+-]+)$/.exec(raw.trim());
  if (!m || !(Number(m[1]) >= 1) || !Number.isFinite(Number(m[2]))) {
    throw new UsageError(`--accumulate '${raw}' is invalid: write n,alpha, e.g. 3,0.05`);
  }
  return { n: Number(m[1]), alpha: Number(m[2]) };
}

/** Runs `guide`. */
export async function guideTask(args: string[]): Promise<void> {
  const f = parseFlags("guide", args, FLAGS);
  if (f.help) {
    console.log(
      `${GUIDE_USAGE}\nMethods (--method) and their parameters (--method-params):\n${methodsHelp()}`,
    );
    return;
  }
  const base = weightsBaseFrom(f.weights);
  const provider = choiceFlag("provider", f.provider, ["auto", "cpu", "cuda"] as const, "auto");
  const threads = f.threads === undefined
    ? undefined
    : numberFlag("threads", f.threads, 0, { int: true, min: 1 });
  // --- validate everything before any model runs ---
  const strength: StrengthSchedule = {
    spec: parseStrength(f.schedule ?? GUIDE_DEFAULTS.schedule),
    activation: numberFlag("activation", f.activation, 0, { min: 0, max: 1 }),
  };
  const scale = scaleFlag(f.scale, GUIDE_DEFAULTS.scale);
  const method = methodFromFlags(f); // issue 15: thesis (default) or a rival method
  const rival = method.def.name !== "thesis";
  let seeds: number[];
  try {
    seeds = parseSeeds(f.seeds ?? "0-7");
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const accumulate = parseAccumulate(f.accumulate);
  const point = choiceFlag("point", f.point, ["xt", "x0"] as const, GUIDE_DEFAULTS.point);
  const form = choiceFlag("form", f.form, ["eps", "mean-shift"] as const, "eps");
  if (form === "mean-shift" && (f.sampler ?? "ddim") !== "ddpm") {
    throw new UsageError(
      `--form mean-shift shifts the DDPM posterior mean; use it with --sampler ddpm`,
    );
  }
  const clipGradNorm = f["clip-grad"] === undefined
    ? undefined
    : numberFlag("clip-grad", f["clip-grad"], 0, { min: 1e-12 });
  const modelRef = f.model ?? await defaultModel("denoiser", base);
  const clfRef = f.classifier ?? await defaultModel("classifier", base);
  const resolved = await resolveModel(modelRef, { kind: "denoiser", base });
  const spec = withConventionFlags(
    await scheduleSpecFor(resolved.entry, f["scheduler-config"], DEFAULT_SCHEDULE),
    f,
    resolved.entry !== undefined,
  );
  const schedule = scheduleFromSpec(spec);
  const imageSize = parseImageSize(f["image-size"]);
  const [inputSize, evaluatorInputSize] = (["input-size", "evaluator-input-size"] as const).map(
    (flag) => {
      try {
        return f[flag] === undefined ? undefined : parseInputSize(f[flag], `--${flag}`);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    },
  );
  const labelsFile = await readLabelsFile(f.labels).catch((e) => {
    throw new UsageError((e as Error).message);
  });
  // the image shape comes from the denoiser's graph; its output and timestep input are checked
  const { model, setup } = await loadDenoiserRef(resolved, modelRef, {
    spec,
    imageSize,
    provider,
    threads,
  });
  const { c, h, w } = setup.shape;
  const imagesFrom = `the denoiser ${modelLabel(resolved)}`;
  // --input-size: a head for the denoiser's images that resizes them; without it a classifier
  // of another size is refused below (checkRunModels), naming both models and their shapes
  const clfResize = inputSize ? { imageSize: [h, w] as const, inputSize, imagesFrom } : {};
  const { classifier, resolved: clfResolved, conventions: clfConventions } =
    await loadClassifierRef(clfRef, base, {
      conventions: conventionsFromFlags(f),
      provider,
      threads,
      ...clfResize,
    });
  let names: string[];
  try {
    names = resolveClassNames(classifier.numClasses, {
      labelsFile,
      manifestLabels: labelsFile ? undefined : await readManifestLabels(clfResolved.entry, base),
      classes: clfResolved.entry?.classes,
      dataset: clfResolved.entry?.dataset,
      model: modelLabel(clfResolved),
    }).names;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const classes = parseClasses(f.class, names);
  const kind = f.direction ?? GUIDE_DEFAULTS.direction;
  let eStar: number[] | undefined;
  const statsPath = f.stats ??
    (clfResolved.entry?.stats ? new URL(clfResolved.entry.stats, base).pathname : undefined);
  if (statsPath !== undefined) {
    eStar = (await readEnergyStats(statsPath, classifier.numClasses)).eStar;
  }
  let direction;
  try {
    direction = directionFromFlags(kind, {
      lambda: f.lambda === undefined ? undefined : numberFlag("lambda", f.lambda, 0.15, { min: 0 }),
      eStar,
      pgdSteps: f["pgd-steps"] === undefined
        ? undefined
        : numberFlag("pgd-steps", f["pgd-steps"], 5, { int: true, min: 0 }),
      gamma: f["pgd-gamma"] === undefined
        ? undefined
        : numberFlag("pgd-gamma", f["pgd-gamma"], 0.1, { min: 0 }),
      literal: f["pgd-literal"],
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  // the manifest's evaluator by default (never the guide itself); --evaluator none skips it. Models
  // given by path need no manifest, so an unreadable one means no default evaluator, not an error.
  const manifestEvaluator = f.evaluator === undefined
    ? (await loadManifest(base).catch(() => undefined))?.defaults.evaluator
    : undefined;
  const evaluatorRef = f.evaluator === "none"
    ? undefined
    : f.evaluator ?? (manifestEvaluator !== clfRef ? manifestEvaluator : undefined);
  const evaluatorLoaded = evaluatorRef === undefined
    ? undefined
    : await loadClassifierRef(evaluatorRef, base, {
      provider,
      threads,
      flag: "--evaluator",
      ...(evaluatorInputSize
        ? { imageSize: [h, w] as const, inputSize: evaluatorInputSize, imagesFrom }
        : {}),
    });
  const evaluator = evaluatorLoaded?.classifier;
  if (evaluator && evaluator.numClasses !== classifier.numClasses) {
    throw new UsageError(
      `--evaluator ${evaluatorRef} has ${evaluator.numClasses} classes, the guide has ${classifier.numClasses}`,
    );
  }
  // --- the run: every class gets the same seeds, so rows share their starting noise ---
  const labels = classes.flatMap((k) => seeds.map(() => k));
  const runSeeds = classes.flatMap(() => seeds);
  const config = samplerConfigFromFlags(
    f,
    schedule,
    spec,
    { c, h, w },
    runSeeds,
    0.5,
    setup.output.variance === "learned_range",
  );
  if (form === "mean-shift" && config.variance === "learned") {
    throw new UsageError(
      `--form mean-shift scales the shift by a fixed DDPM variance; with this learned-variance ` +
        `model pass --variance fixed_small (or fixed_large), or use --form eps`,
    );
  }
  const out = f.out ?? "out/guide";
  const shard = parseShard(f.shard);
  // every model against the run and the others, before the folder is claimed
  checkRunModels({
    denoiser: { label: modelLabel(resolved), shape: [c, h, w] },
    classifier: {
      label: modelLabel(clfResolved),
      shape: classifier.info.inputShape,
      numClasses: classifier.numClasses,
    },
    evaluator: evaluatorLoaded && {
      label: modelLabel(evaluatorLoaded.resolved),
      shape: evaluatorLoaded.classifier.info.inputShape,
      numClasses: evaluatorLoaded.classifier.numClasses,
    },
    classes,
  });
  warnLargeRun("guide", runSeeds.length);
  if (model.providerNote) console.error(`note: ${model.providerNote}`);
  const { sampler, steps } = config;
  // --- the run folder: images/<class>/<seed>.png; this shard's missing ones are sampled ---
  const items: RunItem[] = labels.map((k, i) => ({
    seed: runSeeds[i],
    file: `images/${names[k]}/${runSeeds[i]}.png`,
  }));
  // What determines the images (besides model, classifier and seeds): recorded in config.json
  // (a folder holding another setting is refused) and in run.json.
  const setting = {
    classes: classes.map((k) => names[k]),
    direction,
    accumulate,
    scale,
    strength: formatStrength(strength.spec),
    activation: strength.activation,
    point,
    form,
    clipGradNorm,
    ...(rival ? { method: method.def.name, methodParams: method.params } : {}),
    ...samplerRecord(config, spec),
  };
  const classifierInput = classifierInputRecord(classifier.info);
  const identity = {
    task: "guide",
    model: resolved.sha256,
    classifier: clfResolved.sha256,
    // weights in .onnx.data files beside the models: not covered by the .onnx sha256s
    ...(resolved.externalData ? { modelData: resolved.externalData } : {}),
    ...(clfResolved.externalData ? { classifierData: clfResolved.externalData } : {}),
    classifierInput,
    seeds: formatSeeds(seeds),
    ...setting,
    shape: [c, h, w],
    rng: RNG_ID,
  };
  const plan = await planRun(out, identity, items, shard, { c, h, w });
  const todoLabels = plan.todo.map((p) => labels[p]);
  const gradNormSum = { sum: 0, count: 0 };
  const calls = newCallCounts();
  const unguided = countingDenoiser(onnxDenoiser(model, config.batchSize, setup), calls);
  const den = rival
    ? await methodDenoiser({
      method,
      denoiser: unguided,
      denoiserBytes: resolved.bytes,
      setup,
      classifier,
      classifierGraph: {
        bytes: clfResolved.bytes,
        label: modelLabel(clfResolved),
        conventions: clfConventions,
        ...clfResize,
      },
      config,
      labels: todoLabels,
      noiseAwareRef: f["noise-aware"],
      base,
      provider,
      counts: calls,
    })
    : guided(unguided, {
      classifier: countingSource(classifier, calls),
      direction,
      accumulate,
      scale,
      strength,
      labels: todoLabels,
      point,
      form,
      clipGradNorm,
      onStep: (info: GuidanceStepInfo) => {
        info.gradNorm.forEach((g) => (gradNormSum.sum += g, gradNormSum.count++));
      },
    });
  const shardText = shard.count > 1 ? ` (shard ${shard.index}/${shard.count})` : "";
  console.error(
    `guide: ${plan.todo.length} of ${plan.mine.length} images to make${shardText} ` +
      `(${classes.length} classes x ${seeds.length} seeds), ${
        rival
          ? `method ${method.def.name} ${JSON.stringify(method.params)}`
          : `${direction.kind} s=${scale} ${formatStrength(strength.spec)}`
      }, ${sampler} ${steps} steps, model ${modelRef}, classifier ${clfRef}`,
  );
  const tick = progress("guide", Math.ceil(plan.todo.length / config.batchSize) * steps, "steps");
  let done = 0;
  const per = c * h * w;
  const trajRows = Math.min(8, plan.todo.length), trajCols = 10;
  const trajPick = Array.from(
    { length: trajCols },
    (_, i) => Math.round(i * (steps - 1) / (trajCols - 1)),
  );
  const traj = f.trajectory && trajRows ? new Float32Array(trajRows * trajCols * per) : undefined;
  const t0 = performance.now();
  if (plan.todo.length) {
    await sample(den, { ...config, seeds: plan.todo.map((p) => runSeeds[p]) }, {
      onStep: (ev) => {
        tick(++done);
        const col = trajPick.indexOf(ev.stepIndex);
        if (!traj || col < 0) return;
        ev.items.forEach((item, k) => {
          if (item < trajRows) {
            traj.set(ev.x.subarray(k * per, (k + 1) * per), (item * trajCols + col) * per);
          }
        });
      },
      onBatch: batchWriter(out, items, plan.todo, { c, h, w }),
    });
  }
  const seconds = (performance.now() - t0) / 1000;
  if (traj) {
    await writeGrid(
      `${out}/trajectory.png`,
      traj,
      trajRows * trajCols,
      { c, h, w },
      "pm1",
      trajCols,
    );
  }
  if (shard.count > 1) {
    await writeJsonAtomic(`${out}/run.shard-${shard.index}-of-${shard.count}.json`, {
      task: "guide",
      shard: `${shard.index}/${shard.count}`,
      configSha256: plan.configSha256,
      sampledNow: plan.todo.length,
      alreadyDone: plan.mine.length - plan.todo.length,
      seconds,
      provider: model.provider,
      versions: versions(),
    });
    console.error(
      `guide: shard ${shard.index}/${shard.count} done (${plan.todo.length} new images); ` +
        `when every shard is done: deno task merge --out ${out}`,
    );
    return;
  }
  // --- evaluation on the images as written (read back from the files) ---
  const images = await readImages(out, items, { c, h, w });
  const written = Float32Array.from(images, (v) => (v + 1) / 2);
  const finalEnergies = await classifier.forward(written, labels.length, labels);
  const histo = (h: number[][]) => Object.fromEntries(classes.map((k) => [names[k], h[k]]));
  const meanBy = (arr: Float32Array) =>
    classes.map((k) => {
      let s = 0, m = 0;
      labels.forEach((l, i) => l === k && (s += arr[i], m++));
      return s / m;
    });
  const evaluation = evaluator
    ? targetAccuracy(
      (await evaluator.forward(written, labels.length, labels)).logits,
      labels,
      evaluator.numClasses,
    )
    : undefined;
  const guideScore = targetAccuracy(finalEnergies.logits, labels, classifier.numClasses);
  // a rerun that made nothing and skips the evaluator keeps the evaluator's results of the
  // images (the folder key guarantees they are the same images)
  const kept = !evaluation && plan.todo.length === 0
    ? keptEvaluation(await previousRunJson(out))
    : undefined;
  if (kept) {
    console.error(`guide: no image made now; kept the evaluator's results of ${out}/run.json`);
  }
  // --- grids ---
  for (const [ci, k] of classes.entries()) {
    const slice = images.subarray(ci * seeds.length * per, (ci + 1) * seeds.length * per);
    await writeGrid(`${out}/grid_${names[k]}.png`, slice, seeds.length, { c, h, w }, "pm1");
  }
  await writeGrid(`${out}/grid.png`, images, labels.length, { c, h, w }, "pm1", seeds.length);
  const result = {
    task: "guide",
    model: {
      ref: modelRef,
      id: resolved.id,
      sha256: resolved.sha256,
      externalData: resolved.externalData,
    },
    classifier: {
      ref: clfRef,
      id: clfResolved.id,
      sha256: clfResolved.sha256,
      externalData: clfResolved.externalData,
      input: classifierInput,
    },
    evaluator: evaluatorRef ?? kept?.evaluator,
    evaluatorModel: evaluatorLoaded
      ? {
        ref: evaluatorRef,
        id: evaluatorLoaded.resolved.id,
        sha256: evaluatorLoaded.resolved.sha256,
        externalData: evaluatorLoaded.resolved.externalData,
        input: classifierInputRecord(evaluatorLoaded.classifier.info),
      }
      : kept?.evaluatorModel,
    config: {
      ...setting,
      scheduleName: schedule.name,
      shape: [c, h, w],
      output: setup.output,
      timestep: setup.timestep,
      seeds: f.seeds ?? "0-7",
      batch: config.batchSize,
    },
    results: {
      targetAccuracy: evaluation?.overall ?? kept?.results.targetAccuracy,
      targetAccuracyPerClass: evaluation
        ? Object.fromEntries(classes.map((k) => [names[k], evaluation.perClass[k]]))
        : kept?.results.targetAccuracyPerClass,
      evaluatorHistogram: evaluation
        ? histo(evaluation.confusion)
        : kept?.results.evaluatorHistogram,
      guideAccuracy: guideScore.overall,
      guideHistogram: histo(guideScore.confusion),
      meanEnergyX: Object.fromEntries(
        classes.map((k, i) => [names[k], meanBy(finalEnergies.energyX)[i]]),
      ),
      meanEnergyXY: Object.fromEntries(
        classes.map((k, i) => [names[k], meanBy(finalEnergies.energyXY)[i]]),
      ),
      stats: statsPath,
      eStar: eStar ? Object.fromEntries(classes.map((k) => [names[k], eStar![k]])) : undefined,
      meanGuidanceGradNorm: gradNormSum.count ? gradNormSum.sum / gradNormSum.count : 0,
    },
    rng: RNG_ID,
    provider: model.provider,
    providerNote: model.providerNote,
    versions: { ...versions(), "onnxruntime-node": "1.30.0" },
    seconds,
    sampledNow: plan.todo.length,
    alreadyDone: plan.mine.length - plan.todo.length,
    imagesPerSecond: plan.todo.length / Math.max(seconds, 1e-9),
    // network calls per image made now (issue 15: each method's cost)
    callsPerImage: plan.todo.length
      ? Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, v / plan.todo.length]))
      : undefined,
  };
  await writeJsonAtomic(`${out}/run.json`, result);
  const acc = evaluation
    ? `, target accuracy ${(evaluation.overall * 100).toFixed(1)}% (${evaluatorRef})`
    : "";
  console.error(
    `guide: ${labels.length} images in ${out} (${plan.todo.length} made now in ${
      seconds.toFixed(1)
    }s)` +
      `; the guide itself assigns ${
        (result.results.guideAccuracy * 100).toFixed(1)
      }% to the requested class${acc}`,
  );
}

/** The evaluator part of a previous run.json, when it has one. */
// deno-lint-ignore no-explicit-any
function keptEvaluation(previous: any) {
  if (typeof previous?.results?.targetAccuracy !== "number") return undefined;
  return {
    evaluator: previous.evaluator as string | undefined,
    evaluatorModel: previous.evaluatorModel as Record<string, unknown> | undefined,
    results: {
      targetAccuracy: previous.results.targetAccuracy as number,
      targetAccuracyPerClass: previous.results.targetAccuracyPerClass as
        | Record<string, number>
        | undefined,
      evaluatorHistogram: previous.results.evaluatorHistogram as
        | Record<string, number[]>
        | undefined,
    },
  };
}
