/**
 * Task `evaluate`: sample-quality metrics of a set of images against a reference set
 * (METHOD.md §6): Frechet distance of feature Gaussians, Inception-Score-style score of the
 * evaluator's softmax, improved precision/recall (k = 3), and the target accuracy of an
 * independent evaluator classifier, overall and per class; the evaluator's predicted-class
 * histogram of the images (labelled or not).
 *   deno task evaluate --images <folder|guide run|test|train> [--reference test|train|<folder>]
 *     [--features <id|path>] [--features-output <value>] [--evaluator <id|path>] [--limit n]
 *     [--out <file.json>]
 * Metric names say which network computed them ("FD_sri-resnet-a-penultimate", never "FID":
 * no Inception weights are available here). Reference features are cached under .cache/metrics.
 * @module
 */
import { basename } from "node:path";
import { tallyPredictions } from "../lib/eval/accuracy.ts";
import type { InputConventions } from "../lib/energy/conventions.ts";
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import {
  type ExtractedFeatures,
  extractFeatures,
  type FeatureNetwork,
  loadFeatureNetwork,
} from "../lib/metrics/feature_model.ts";
import { frechetDistance } from "../lib/metrics/frechet.ts";
import { inceptionScore } from "../lib/metrics/inception_score.ts";
import { precisionRecall } from "../lib/metrics/precision_recall.ts";
import {
  readCachedReference,
  referenceCacheName,
  type ReferenceFeatures,
  type ReferenceKey,
  writeCachedReference,
} from "../lib/metrics/reference_cache.ts";
import { MomentAccumulator } from "../lib/metrics/statistics.ts";
import { targetAccuracy } from "../lib/metrics/target_accuracy.ts";
import { progress } from "../lib/progress.ts";
import { defaultModel, type ResolvedModel, resolveModel, weightsBaseFrom } from "../lib/weights.ts";
import { choiceFlag, numberFlag, parseFlags, UsageError, versions } from "./_args.ts";
import { conventionsFromFlags } from "./_models.ts";
import { describeSet, isDirectory, readSet, type SetSource } from "./_image_sets.ts";
import { DEFAULT_CIFAR10 } from "./build_mixture.ts";
import { parseInputSize, type ResizeOptions } from "../lib/energy/resize.ts";
import { readLabelsFile, readManifestLabels, resolveClassNames } from "../lib/labels.ts";

const FLAGS = {
  images: { type: "string" },
  reference: { type: "string" },
  data: { type: "string" },
  features: { type: "string" },
  "features-output": { type: "string" },
  evaluator: { type: "string" },
  limit: { type: "string" },
  "reference-limit": { type: "string" },
  k: { type: "string" },
  splits: { type: "string" },
  batch: { type: "string" },
  out: { type: "string" },
  cache: { type: "string" },
  "no-cache": { type: "boolean" },
  mean: { type: "string" },
  std: { type: "string" },
  range: { type: "string" },
  layout: { type: "string" },
  "input-size": { type: "string" },
  labels: { type: "string" },
  provider: { type: "string" },
  threads: { type: "string" },
  weights: { type: "string" },
  help: { type: "boolean" },
} as const;

/** Where reference features are cached unless `--cache` says otherwise. */
export const DEFAULT_CACHE = ".cache/metrics";

/** Usage text of `evaluate`. */
export const EVALUATE_USAGE = `deno task evaluate --images <set> [flags]
  --images <set>           the images to score: a folder of PNGs (recursively; images/<class>/<seed>.png
                           gives labels), a guide/sample run folder (reads its images/ and run.json),
                           or test|train (CIFAR-10 split, true labels)
  --reference <set>        what to compare with: test (default), train, or a folder of PNGs
  --data <path>            CIFAR-10 archive (default ${DEFAULT_CIFAR10})
  --features <id|path>     feature network for FD and precision/recall (default: the evaluator);
                           any single-input ONNX classifier or feature model
  --features-output <name> value to use as features (a graph output or any intermediate value;
                           default: the input of the final Gemm/MatMul, "penultimate")
  --evaluator <id|path>    classifier for target accuracy and the IS-style score (default: the
                           manifest's evaluator); never the classifier that guided the images
  --limit <n>              first n images (files interleaved across class folders) (default: all)
  --reference-limit <n>    first n reference images (default: all of the split or folder)
  --k <n>                  precision/recall neighbourhood size (default 3)
  --splits <n>             IS splits (default 10)
  --out <file.json>        result file (default: <run folder>/evaluate.json, or out/evaluate.json)
  --cache <dir> --no-cache reference feature cache (default ${DEFAULT_CACHE})
  --batch <n> --provider auto|cpu|cuda --threads <n> --weights <dir|url>
  --mean r,g,b --std r,g,b --range 01|pm1 --layout nchw|nhwc   conventions of models given by path
  --input-size H[,W]       feed the networks HxW images: a bilinear resize (align_corners=False, no
                           antialias) of the images inside the network; without it a network of
                           another size than the images is refused
  --labels <file>          the evaluator's class names, one per line (default: the manifest's)`;

/** A network that computes logits and features, and what it is. */
interface LoadedNetwork {
  net: FeatureNetwork;
  resolved: ResolvedModel;
  ref: string;
  /** Manifest id, or the file name without .onnx. */
  name: string;
  conventions: InputConventions;
}

/** Runs `evaluate`. */
export async function evaluateTask(args: string[]): Promise<void> {
  const f = parseFlags("evaluate", args, FLAGS);
  if (f.help) {
    console.log(EVALUATE_USAGE);
    return;
  }
  const t0 = performance.now();
  // --- validate flags before loading anything ---
  if (f.images === undefined) {
    throw new UsageError(
      `evaluate: --images is required: a folder of PNGs, a guide run folder, or test|train`,
    );
  }
  const base = weightsBaseFrom(f.weights);
  const provider = choiceFlag("provider", f.provider, ["auto", "cpu", "cuda"] as const, "auto");
  const threads = f.threads === undefined
    ? undefined
    : numberFlag("threads", f.threads, 0, { int: true, min: 1 });
  const limit = f.limit === undefined
    ? undefined
    : numberFlag("limit", f.limit, 0, { int: true, min: 1 });
  const referenceLimit = f["reference-limit"] === undefined
    ? undefined
    : numberFlag("reference-limit", f["reference-limit"], 0, { int: true, min: 1 });
  const k = numberFlag("k", f.k, 3, { int: true, min: 1 });
  const splits = numberFlag("splits", f.splits, 10, { int: true, min: 1 });
  const batch = numberFlag("batch", f.batch, 100, { int: true, min: 1 });
  const referenceSpec = f.reference ?? "test";
  const data = f.data ?? DEFAULT_CIFAR10;
  const cacheDir = f["no-cache"] ? undefined : f.cache ?? DEFAULT_CACHE;
  const flagConventions = conventionsFromFlags(f);
  let inputSize: [number, number] | undefined;
  try {
    inputSize = f["input-size"] === undefined ? undefined : parseInputSize(f["input-size"]);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const labelsFile = await readLabelsFile(f.labels).catch((e) => {
    throw new UsageError((e as Error).message);
  });
  const runFolder = await isDirectory(f.images) ? f.images : undefined;
  const out = f.out ?? (runFolder ? `${runFolder}/evaluate.json` : "out/evaluate.json");
  if (!out.endsWith(".json")) throw new UsageError(`--out '${out}' must end in .json`);

  // --- the image sets, described (files listed, nothing decoded) so bad paths fail first ---
  const source = await describeSet(f.images, { data, limit, what: "--images" });
  const referenceSource = await describeSet(referenceSpec, {
    data,
    limit: referenceLimit,
    what: "--reference",
  });

  // --- networks: the evaluator, and the feature network (the same one unless told) ---
  const evaluatorRef = f.evaluator ?? await defaultModel("evaluator", base);
  const featuresRef = f.features ?? evaluatorRef;
  const sameNetwork = featuresRef === evaluatorRef;
  // --input-size: the networks take the images' own size and resize them inside (lib/energy/resize.ts)
  const sizes = inputSize
    ? { imageSize: await setImageSize(source), inputSize, imagesFrom: `--images ${f.images}` }
    : {};
  const evaluator = await loadNetwork(evaluatorRef, base, {
    conventions: flagConventions,
    features: sameNetwork ? f["features-output"] : undefined,
    provider,
    threads,
    ...sizes,
  });
  const features = sameNetwork ? evaluator : await loadNetwork(featuresRef, base, {
    conventions: flagConventions,
    features: f["features-output"],
    provider,
    threads,
    ...sizes,
  });
  const shape = features.net.info.inputShape;
  if (evaluator.net.info.inputShape.join("x") !== shape.join("x")) {
    throw new UsageError(
      `--evaluator ${evaluatorRef} takes ${evaluator.net.info.inputShape.join("x")} images but ` +
        `--features ${featuresRef} takes ${shape.join("x")}; use networks with the same input size`,
    );
  }
  const classNames = await classNamesOf(evaluator, base, labelsFile);
  const featureName = `${features.name}-${features.net.info.layer}`;
  const names = {
    fd: `FD_${featureName}`,
    is: `IS_${evaluator.name}`,
    precision: `precision_${featureName}_k${k}`,
    recall: `recall_${featureName}_k${k}`,
    accuracy: `targetAccuracy_${evaluator.name}`,
  };
  if (evaluator.net.model.providerNote) console.error(`note: ${evaluator.net.model.providerNote}`);

  // --- the images ---
  const tRead = performance.now();
  const set = {
    ...await readSet(source, { data, shape, classNames, what: "--images", spec: f.images }),
    description: source.description,
  };
  const readSeconds = (performance.now() - tRead) / 1000;
  console.error(
    `evaluate: ${set.count} images from ${f.images}` +
      (set.labels ? ` (labelled, ${new Set(set.labels).size} classes)` : " (no labels)") +
      `, features ${featureName}, evaluator ${evaluator.name}`,
  );
  const tFeat = performance.now();
  const fake = await runNetwork(features, set, batch, "features");
  const logits = sameNetwork ? fake : await runNetwork(evaluator, set, batch, "evaluator");
  const featureSeconds = (performance.now() - tFeat) / 1000;

  // --- the reference, from the cache when it holds it ---
  const tRef = performance.now();
  const ref = await referenceFeatures(referenceSource, {
    spec: referenceSpec,
    data,
    shape,
    network: features,
    batch,
    cacheDir,
  });
  const referenceSeconds = (performance.now() - tRef) / 1000;
  if (ref.entry.stats.dim !== fake.dim) {
    throw new Error(
      `cached reference features have dim ${ref.entry.stats.dim}, the network gives ${fake.dim}; ` +
        `delete ${ref.cachePath} and rerun`,
    );
  }

  // --- metrics ---
  const tMetrics = performance.now();
  const notes: string[] = [];
  const acc = new MomentAccumulator(fake.dim);
  acc.add(fake.features);
  const fd = set.count >= 2 ? frechetDistance(acc.statistics(), ref.entry.stats) : undefined;
  if (!fd) notes.push(`FD needs at least 2 images, got ${set.count}`);
  const is = set.count >= splits
    ? inceptionScore(logits.logits, set.count, logits.numClasses, { splits })
    : undefined;
  if (!is) notes.push(`IS needs at least --splits ${splits} images, got ${set.count}`);
  let pr;
  if (set.count > k && ref.entry.stats.n > k) {
    const tick = progress("precision/recall", 2 * (set.count + ref.entry.stats.n), "rows");
    const real = ref.entry;
    pr = precisionRecall(real.features, real.stats.n, fake.features, set.count, fake.dim, {
      k,
      onProgress: tick,
    });
  } else {
    notes.push(`precision/recall with k = ${k} need more than ${k} images in each set`);
  }
  const accuracy = set.labels
    ? targetAccuracy(logits.logits, set.labels, logits.numClasses)
    : undefined;
  if (!accuracy) {
    notes.push(
      "no labels: target accuracy needs images in images/<class>/ folders (a guide run) or a " +
        "CIFAR-10 split",
    );
  }
  if (ref.description.kind === "cifar10") {
    notes.push(
      "the reference is the project's CIFAR-10 copy (decoded from JPEG, quality ~75; " +
        "../shared/README.md), not pixel-exact CIFAR-10",
    );
  }
  // the evaluator's predicted class of every image (unguided samples: is every class made?)
  const predicted = new Float64Array(logits.numClasses);
  tallyPredictions(logits.logits, set.count, logits.numClasses, predicted);
  const metricSeconds = (performance.now() - tMetrics) / 1000;

  const perClass = (values: (number | null)[]) =>
    Object.fromEntries(classNames.map((name, i) => [name, values[i]]));
  const result = {
    task: "evaluate",
    images: { spec: f.images, n: set.count, labelled: set.labels !== null, ...set.description },
    reference: {
      spec: referenceSpec,
      n: ref.entry.stats.n,
      ...ref.description,
      cache: ref.cachePath ?? null,
      cacheHit: ref.hit,
    },
    features: networkRecord(features, fake.dim),
    evaluator: { ...networkRecord(evaluator, undefined), classes: classNames },
    results: {
      n: set.count,
      fd: fd
        ? {
          name: names.fd,
          value: fd.value,
          meanTerm: fd.meanTerm,
          covarianceTerm: fd.covarianceTerm,
          rank: fd.rank1,
        }
        : null,
      is: is
        ? { name: names.is, mean: is.mean, std: is.std, splits, shuffleSeed: is.shuffleSeed }
        : null,
      precision: pr ? { name: names.precision, value: pr.precision, k } : null,
      recall: pr ? { name: names.recall, value: pr.recall, k } : null,
      predictedClasses: {
        name: `classHistogram_${evaluator.name}`,
        counts: Object.fromEntries(
          Array.from(predicted, (c, i) => [classNames[i] ?? String(i), c]),
        ),
      },
      targetAccuracy: accuracy
        ? {
          name: names.accuracy,
          overall: accuracy.overall,
          perClass: Object.fromEntries(
            classNames.flatMap((name, i) =>
              accuracy.counts[i] ? [[name, accuracy.perClass[i]]] : []
            ),
          ),
          counts: Object.fromEntries(
            classNames.flatMap((name, i) => accuracy.counts[i] ? [[name, accuracy.counts[i]]] : []),
          ),
          confusion: Object.fromEntries(
            classNames.flatMap((name, i) =>
              accuracy.counts[i] ? [[name, perClass(accuracy.confusion[i])]] : []
            ),
          ),
        }
        : null,
    },
    summary: {
      n: set.count,
      [names.fd]: fd?.value ?? null,
      [names.is]: is?.mean ?? null,
      [`${names.is}_std`]: is?.std ?? null,
      [names.precision]: pr?.precision ?? null,
      [names.recall]: pr?.recall ?? null,
      [names.accuracy]: accuracy?.overall ?? null,
    },
    notes,
    config: {
      images: f.images,
      reference: referenceSpec,
      data,
      features: featuresRef,
      featuresOutput: f["features-output"] ?? null,
      evaluator: evaluatorRef,
      limit: limit ?? null,
      referenceLimit: referenceLimit ?? null,
      k,
      splits,
      batch,
      cache: cacheDir ?? null,
      pixels: "PNG/CIFAR bytes / 255, no resizing",
    },
    provider: features.net.model.provider,
    providerNote: features.net.model.providerNote,
    versions: { ...versions(), "onnxruntime-node": "1.30.0" },
    seconds: {
      readImages: readSeconds,
      imageFeatures: featureSeconds,
      reference: referenceSeconds,
      metrics: metricSeconds,
      total: (performance.now() - t0) / 1000,
    },
  };
  await writeJsonAtomic(out, result);
  for (const n of new Set([evaluator, features])) await n.net.model.session.release();
  const fmt = (v: number | null | undefined, d = 3) => v == null ? "n/a" : v.toFixed(d);
  console.error(
    `evaluate: ${names.fd} ${fmt(fd?.value)}, ${names.is} ${fmt(is?.mean)} ± ${fmt(is?.std)}, ` +
      `precision ${fmt(pr?.precision)}, recall ${fmt(pr?.recall)}, target accuracy ` +
      `${accuracy ? (accuracy.overall * 100).toFixed(1) + "%" : "n/a"} (n = ${set.count}); ` +
      `wrote ${out} in ${result.seconds.total.toFixed(1)}s`,
  );
}

/** Resolves a manifest id or path and builds its feature network. */
async function loadNetwork(
  ref: string,
  base: URL,
  opts: {
    conventions?: InputConventions;
    features?: string;
    provider: "auto" | "cpu" | "cuda";
    threads?: number;
  } & ResizeOptions,
): Promise<LoadedNetwork> {
  const resolved = await resolveModel(ref, { kind: ["classifier", "feature"], base });
  const e = resolved.entry;
  let conventions: InputConventions;
  if (e) {
    conventions = {
      mean: e.input.mean,
      std: e.input.std,
      range: e.input.range,
      layout: e.input.layout,
    };
  } else if (opts.conventions) {
    conventions = opts.conventions;
  } else {
    throw new UsageError(
      `${ref} is given by path, so its input conventions are unknown; pass them ` +
        `(--mean r,g,b --std r,g,b --range 01|pm1 --layout nchw|nhwc; --range 01 alone for ` +
        `[0, 1] NCHW input without normalisation) or add the model to weights/manifest.json`,
    );
  }
  let net: FeatureNetwork;
  try {
    net = await loadFeatureNetwork(resolved.bytes, {
      ...conventions,
      features: opts.features,
      source: ref,
      provider: opts.provider,
      intraOpThreads: opts.threads,
      imageSize: opts.imageSize,
      inputSize: opts.inputSize,
      imagesFrom: opts.imagesFrom,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const name = resolved.id ?? basename(ref).replace(/\.onnx$/i, "");
  return { net, resolved, ref, name, conventions };
}

/** Class names of the evaluator: --labels, the manifest's, CIFAR-10's when marked, else class<i>. */
async function classNamesOf(
  n: LoadedNetwork,
  base: URL,
  labelsFile?: { path: string; text: string },
): Promise<string[]> {
  try {
    return resolveClassNames(n.net.info.numClasses, {
      labelsFile,
      manifestLabels: labelsFile ? undefined : await readManifestLabels(n.resolved.entry, base),
      classes: n.resolved.entry?.classes,
      dataset: n.resolved.entry?.dataset,
      model: n.ref,
    }).names;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** [h, w] of a set's images: CIFAR-10's 32x32, or the first PNG's header (nothing decoded). */
async function setImageSize(src: SetSource): Promise<[number, number]> {
  if (src.kind === "cifar10") return [32, 32];
  const first = src.entries[0];
  if (!first) throw new UsageError(`--images ${src.root} holds no PNG images`);
  const path = `${src.root}/${first.path}`;
  const file = await Deno.open(path);
  try {
    const head = new Uint8Array(24);
    await file.read(head);
    const v = new DataView(head.buffer);
    // PNG signature, then the IHDR chunk: width and height, big-endian, at bytes 16 and 20
    if (v.getUint32(0) !== 0x89504e47 || v.getUint32(12) !== 0x49484452) {
      throw new UsageError(`${path} is not a PNG file`);
    }
    return [v.getUint32(20), v.getUint32(16)];
  } finally {
    file.close();
  }
}

/** What the result file records about a network. */
function networkRecord(n: LoadedNetwork, dim: number | undefined) {
  return {
    ref: n.ref,
    id: n.resolved.id ?? null,
    sha256: n.resolved.sha256,
    ...(n.resolved.externalData ? { externalData: n.resolved.externalData } : {}),
    layer: n.net.info.layer,
    value: n.net.info.featureValue,
    ...(dim === undefined ? {} : { dim }),
    conventions: n.conventions,
    ...(n.net.info.resize ? { resize: n.net.info.resize } : {}),
  };
}

/** Features and logits of a set, with progress. */
async function runNetwork(
  n: LoadedNetwork,
  set: { images: Uint8Array; count: number },
  batch: number,
  label: string,
): Promise<ExtractedFeatures> {
  const tick = progress(`${label} ${n.name}`, set.count, "img");
  return await extractFeatures(n.net, set.images, set.count, { batch, onProgress: tick });
}

/** The reference features from the cache, or computed (and cached). */
async function referenceFeatures(
  src: SetSource,
  opts: {
    spec: string;
    data: string;
    shape: [number, number, number];
    network: LoadedNetwork;
    batch: number;
    cacheDir?: string;
  },
): Promise<{
  entry: ReferenceFeatures;
  description: Record<string, unknown>;
  cachePath?: string;
  hit: boolean;
}> {
  const n = opts.network;
  const key: ReferenceKey = {
    features: {
      sha256: n.resolved.sha256,
      // weights in .onnx.data files: a changed .data file must not reuse cached features
      ...(n.resolved.externalData ? { externalData: n.resolved.externalData } : {}),
      layer: n.net.info.layer,
      value: n.net.info.featureValue,
      conventions: n.conventions,
      // images resized inside the network (--input-size) give other features
      ...(n.net.info.resize ? { resize: n.net.info.resize } : {}),
    },
    reference: src.description,
    n: src.count,
  };
  const cachePath = opts.cacheDir ? `${opts.cacheDir}/${referenceCacheName(key)}` : undefined;
  if (opts.cacheDir) {
    const hit = await readCachedReference(opts.cacheDir, key);
    if (hit) return { entry: hit, description: src.description, cachePath, hit: true };
  }
  const set = await readSet(src, {
    data: opts.data,
    shape: opts.shape,
    what: "--reference",
    spec: opts.spec,
  });
  const out = await runNetwork(n, set, opts.batch, "reference");
  const acc = new MomentAccumulator(out.dim);
  acc.add(out.features);
  const entry: ReferenceFeatures = { key, stats: acc.statistics(), features: out.features };
  // A non-standard archive can hold fewer images than its split's size: key it by what was read.
  if (set.count !== src.count) return { entry, description: src.description, hit: false };
  if (opts.cacheDir) await writeCachedReference(opts.cacheDir, entry);
  return { entry, description: src.description, cachePath, hit: false };
}
