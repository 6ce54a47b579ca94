/**
 * Task `build-mixture`: fits the exact-denoiser Gaussian mixture to CIFAR-10 (one isotropic
 * component per class: mean = class-mean image, variance = the class's mean squared deviation
 * from it, weight = class frequency, all in [-1, 1]) and writes it as an ONNX denoiser with its
 * manifest entry. Deterministic: the same data gives the same bytes and sha256.
 *   deno task build-mixture [--data ../shared/data/cifar10/cifar-10-binary.tar.gz]
 *     [--out weights/mixture_cifar10.onnx] [--id mixture-cifar10]
 * @module
 */
import { loadCifar10 } from "../lib/data/cifar10.ts";
import {
  buildMixtureDenoiser,
  type GaussianMixture,
  gaussianMixture,
} from "../lib/models/mixture.ts";
import { scheduleFromSpec } from "../lib/schedule.ts";
import { sha256Hex } from "../lib/runtime/session.ts";
import { writeFileAtomic } from "../lib/io/png.ts";
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import type { Manifest } from "../lib/weights.ts";
import { parseFlags } from "./_args.ts";
import { DEFAULT_SCHEDULE } from "./sample.ts";

/** Default location of the shared CIFAR-10 archive, relative to the repository root. */
export const DEFAULT_CIFAR10 = "../shared/data/cifar10/cifar-10-binary.tar.gz";

/** Fits one isotropic Gaussian per class to uint8 CHW images (pixel space [-1, 1]). */
export function fitClassMixture(
  images: Uint8Array,
  labels: Uint8Array,
  classes = 10,
): GaussianMixture {
  const n = labels.length, dim = images.length / n;
  const sums = new Float64Array(classes * dim);
  const sq = new Float64Array(classes);
  const counts = new Float64Array(classes);
  for (let i = 0; i < n; i++) {
    const k = labels[i];
    counts[k]++;
    for (let p = 0; p < dim; p++) {
      const v = images[i * dim + p] / 127.5 - 1;
      sums[k * dim + p] += v;
      sq[k] += v * v;
    }
  }
  const variances = new Float64Array(classes);
  for (let k = 0; k < classes; k++) {
    if (counts[k] === 0) throw new Error(`class ${k} has no images; cannot fit its component`);
    let mm = 0;
    for (let p = 0; p < dim; p++) {
      sums[k * dim + p] /= counts[k];
      mm += sums[k * dim + p] ** 2;
    }
    // mean squared deviation from the class mean: E|x|^2 / D - |mu|^2 / D
    variances[k] = (sq[k] / counts[k] - mm) / dim;
  }
  return gaussianMixture(sums, Array.from(counts, (c) => c / n), variances);
}

/** Usage text of `build-mixture`. */
export const BUILD_MIXTURE_USAGE = `deno task build-mixture [flags]
  fits the exact Gaussian-mixture denoiser to CIFAR-10's train split (deterministic) and writes
  it as an ONNX denoiser with its manifest entry
  --data <cifar10>     CIFAR-10 archive or folder (default ${DEFAULT_CIFAR10})
  --out <file.onnx>    (default weights/mixture_cifar10.onnx)
  --id <id>            manifest id (default mixture-cifar10)
  --manifest <file>    manifest to update (default weights/manifest.json)`;

/** Runs the `build-mixture` task. */
export async function buildMixtureTask(args: string[]): Promise<void> {
  const f = parseFlags("build-mixture", args, {
    data: { type: "string" },
    out: { type: "string" },
    id: { type: "string" },
    manifest: { type: "string" },
    help: { type: "boolean" },
  });
  if (f.help) {
    console.log(BUILD_MIXTURE_USAGE);
    return;
  }
  const data = f.data ?? DEFAULT_CIFAR10;
  const out = f.out ?? "weights/mixture_cifar10.onnx";
  const id = f.id ?? "mixture-cifar10";
  const manifestPath = f.manifest ?? "weights/manifest.json";
  const train = await loadCifar10(data, "train");
  train.notes?.forEach((n) => console.error(`note: ${n}`));
  const mix = fitClassMixture(train.images, train.labels);
  const bytes = buildMixtureDenoiser(mix, scheduleFromSpec(DEFAULT_SCHEDULE), {
    c: 3,
    h: 32,
    w: 32,
  });
  await writeFileAtomic(out, bytes);
  const sha256 = sha256Hex(bytes);
  const manifest = JSON.parse(await Deno.readTextFile(manifestPath)) as Manifest;
  const weightsDir = manifestPath.replace(/manifest\.json$/, "");
  manifest.models[id] = {
    file: out.startsWith(weightsDir) ? out.slice(weightsDir.length) : out,
    sha256,
    kind: "denoiser",
    input: { range: "pm1", layout: "nchw", shape: [3, 32, 32] },
    schedule: DEFAULT_SCHEDULE,
    source: `tasks/build_mixture.ts on the CIFAR-10 train split (${train.count} images) of ${data}`,
    description: "Exact denoiser of a 10-component isotropic Gaussian mixture fitted to CIFAR-10 " +
      "(one component per class: class-mean image, per-class variance " +
      Array.from(mix.variances, (v) => v.toFixed(4)).join("/") + "). Not a learned model: " +
      "its samples are class means plus white noise.",
  };
  manifest.defaults.denoiser ??= id;
  await writeJsonAtomic(manifestPath, manifest);
  console.error(
    `build-mixture: wrote ${out} (${bytes.length} bytes, sha256 ${sha256}); ` +
      `manifest entry '${id}' updated`,
  );
}
