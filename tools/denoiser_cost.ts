/**
 * Cost of one guided DDIM step (METHOD.md Alg 6) beyond 32x32: time per step and peak RSS, with
 * a full-size denoiser and classifier (random weights are fine: cost does not depend on them).
 *
 *   deno run -A tools/denoiser_cost.ts --denoiser /tmp/adm_verify/adm_imagenet256.onnx \
 *     --classifier /tmp/robustness_imagenet/robustness_imagenet_resnet50_256.onnx \
 *     --batch 4 --steps 4 --out runs/cost_256.json
 *
 * The ONNX files come from weights/recipes/verify_adm.py --full --keep (ADM ImageNet 64x64 and
 * 256x256 configurations) and verify_robustness_imagenet.py (MadryLab ImageNet ResNet-50 at
 * 64/224/256). The denoiser is opened by path, so weights over 2 GB in an external `.data` file
 * load (ONNX Runtime reads it beside the model). Each step is the UNet forward, the output
 * conversion, and the classifier's energy head (forward + input gradient) at x_t, then the DDIM
 * update. The first step (session warm-up) is reported separately; the rest give the median.
 * Peak RSS is the process's VmHWM from /proc/self/status (all of Deno, ORT and both models).
 * --unet-batch n runs the UNet on n images at a time inside the guided batch (less activation
 * memory, same results; without it the toolkit's default applies: the whole batch, at most
 * MAX_PIXELS_PER_RUN pixels per run, i.e. one 256x256 image); --arena off disables ORT's CPU memory arena for the UNet session.
 * --scale 0 times the unguided step (the classifier is not run). Prints one JSON row; writes it
 * to --out when given.
 * @module
 */
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { directionFromFlags } from "../lib/guidance/directions.ts";
import { guided } from "../lib/guidance/guided.ts";
import { parseStrength } from "../lib/guidance/strength.ts";
import { inspectDenoiser, onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import type { OnnxModel } from "../lib/runtime/session.ts";
import { sample } from "../lib/sampler/loop.ts";
import { scheduleFromSpec, type ScheduleSpec } from "../lib/schedule.ts";

const { values: f } = parseArgs({
  options: {
    denoiser: { type: "string" },
    classifier: { type: "string" },
    batch: { type: "string", default: "4" },
    steps: { type: "string", default: "4" },
    threads: { type: "string" },
    schedule: { type: "string", default: "linear" },
    T: { type: "string", default: "1000" },
    timestep: { type: "string", default: "index" },
    scale: { type: "string", default: "10" },
    "unet-batch": { type: "string" },
    arena: { type: "string", default: "on" },
    out: { type: "string" },
  },
});
if (!f.denoiser || !f.classifier) {
  console.error(
    "usage: tools/denoiser_cost.ts --denoiser <onnx> --classifier <onnx> [--batch 4] [--steps 4]",
  );
  Deno.exit(2);
}

function vm(key: "VmHWM" | "VmRSS"): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : NaN;
}

const threads = f.threads === undefined ? undefined : Number(f.threads);
const batch = Number(f.batch), steps = Number(f.steps);
// images per UNet run inside a guided batch (default: all of it); fewer bounds the activations
const unetBatch = f["unet-batch"] === undefined ? batch : Number(f["unet-batch"]);
const opts: ort.InferenceSession.SessionOptions = {
  graphOptimizationLevel: "all",
  executionMode: "sequential",
  interOpNumThreads: 1,
  executionProviders: ["cpu"],
  enableCpuMemArena: f.arena !== "off",
  ...(threads ? { intraOpNumThreads: threads } : {}),
};
const t0 = performance.now();
const session = await ort.InferenceSession.create(f.denoiser, opts);
const io = (meta: readonly ort.InferenceSession.ValueMetadata[]) =>
  meta.map((
    m,
  ) => (m.isTensor
    ? { name: m.name, type: m.type, shape: m.shape }
    : { name: m.name, type: "non-tensor", shape: [] })
  );
const model: OnnxModel = {
  session,
  inputs: io(session.inputMetadata),
  outputs: io(session.outputMetadata),
  provider: "cpu",
  source: f.denoiser,
  sha256: "",
};
const spec: ScheduleSpec = {
  type: f.schedule as ScheduleSpec["type"],
  T: Number(f.T),
  timestep: f.timestep as ScheduleSpec["timestep"],
  clip_sample: true,
};
const setup = await inspectDenoiser(model, { spec });
const { c, h, w } = setup.shape;
const loadDenoiserS = (performance.now() - t0) / 1000;
const classifier = await loadEnergyClassifier(await Deno.readFile(f.classifier), {
  conventions: {
    range: "01",
    layout: "nchw",
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
  },
  intraOpThreads: threads,
  batch,
  allowSpinning: false,
});
const labels = Array.from({ length: batch }, (_, i) => i % classifier.numClasses);
// an explicit --unet-batch is taken as given (no pixel cap: to measure what the cap avoids)
const den = guided(onnxDenoiser(model, unetBatch, setup, f["unet-batch"] ? Infinity : undefined), {
  classifier,
  direction: directionFromFlags("joint", {}),
  scale: Number(f.scale),
  strength: { spec: parseStrength("sqrt"), activation: 0 },
  labels,
  point: "xt",
  form: "eps",
});
const schedule = scheduleFromSpec(spec);
const times: number[] = [];
let last = performance.now();
console.error(
  `cost: ${f.denoiser} [${c},${h},${w}] (${setup.output.prediction}, ${setup.output.variance}) + ` +
    `${f.classifier}, batch ${batch}, ${steps} guided DDIM steps`,
);
await sample(den, {
  sampler: "ddim",
  schedule,
  steps,
  eta: 0,
  spacing: "leading",
  clip: true,
  variance: "fixed_small",
  seeds: labels.map((_, i) => i),
  shape: { c, h, w },
  batchSize: batch,
}, {
  onStep: (ev) => {
    const now = performance.now();
    times.push((now - last) / 1000);
    last = now;
    console.error(
      `  step ${ev.stepIndex + 1}/${ev.steps}: ${times.at(-1)!.toFixed(2)} s, RSS ${
        (vm("VmRSS") / 2 ** 30).toFixed(2)
      } GiB`,
    );
  },
});
const rest = times.slice(1).sort((a, b) => a - b);
const median = rest.length ? rest[Math.floor(rest.length / 2)] : times[0];
const row = {
  denoiser: f.denoiser,
  classifier: f.classifier,
  shape: [c, h, w],
  output: setup.output,
  batch,
  unetBatch,
  arena: f.arena,
  steps,
  scale: Number(f.scale),
  threads: threads ?? "default",
  cpus: navigator.hardwareConcurrency,
  loadavg: Deno.loadavg(),
  loadDenoiserSeconds: loadDenoiserS,
  firstStepSeconds: times[0],
  secondsPerGuidedStep: median,
  secondsPerGuidedStepPerImage: median / batch,
  projectedImagesPerSecond100Steps: batch / (100 * median),
  peakRssGiB: vm("VmHWM") / 2 ** 30,
};
console.log(JSON.stringify(row));
if (f.out) await Deno.writeTextFile(f.out, JSON.stringify(row, null, 1) + "\n");
