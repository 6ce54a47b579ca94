/**
 * The cost of a gradient through the denoiser (issue 15, item 1): time and peak memory of one
 * guided step at batch 16 on the default DDPM with the default classifier, per way of computing
 * the guidance, each in its own process (peak RSS = the process's VmHWM):
 *   unguided   one denoiser forward
 *   thesis     denoiser forward + energy head at x_t (Alg 6)
 *   fused      one graph: denoiser forward + classifier at x0_hat + backward through both
 *   pullback   denoiser forward + energy head at x0_hat + the denoiser's pull-back graph (what
 *              the methods in lib/guidance/methods run)
 *   deno run -A bench/through_denoiser_cost.ts [--reps 5] [--batch 16] [--threads 2]
 * Prints one JSON line per mode and a summary; timings are medians over reps after one warm-up.
 * @module
 */
import { parseArgs } from "node:util";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { loadDenoiserPullback, loadThroughDenoiser } from "../lib/energy/through_denoiser.ts";
import { loadOnnx, readModelFile } from "../lib/runtime/session.ts";
import { onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import { RandomStream } from "../lib/random.ts";
import { linearSchedule } from "../lib/schedule.ts";

const MODES = ["unguided", "thesis", "fused", "pullback"] as const;
const ROOT = new URL("../", import.meta.url);
const DEN = new URL("weights/denoisers/ddpm-cifar10-small.onnx", ROOT).pathname;
const CLF = new URL("weights/classifiers/cifar10-resnet16-l2-0.5.onnx", ROOT).pathname;

const { values } = parseArgs({
  options: {
    mode: { type: "string" },
    reps: { type: "string", default: "5" },
    batch: { type: "string", default: "16" },
    threads: { type: "string" },
  },
});
const reps = Number(values.reps), n = Number(values.batch);
const threads = values.threads === undefined ? undefined : Number(values.threads);

function peakRssMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function measure(mode: string): Promise<void> {
  const per = 3 * 32 * 32, t = 500;
  const abar = linearSchedule().alphasCumprod[t];
  const x = new Float32Array(n * per);
  new RandomStream(0).fillNormal(x);
  const y = Array.from({ length: n }, (_, i) => i % 10);
  const den = await readModelFile(DEN), clf = await readModelFile(CLF);
  let step: () => Promise<unknown>;
  const ctx = {
    n,
    shape: { c: 3, h: 32, w: 32 },
    seeds: y,
    items: y,
    stepIndex: 0,
    steps: 1,
    schedule: linearSchedule(),
  };
  const model = await loadOnnx(den, { provider: "cpu", intraOpThreads: threads });
  const eps = onnxDenoiser(model, n);
  if (mode === "unguided") {
    step = () => eps(x, t, ctx);
  } else if (mode === "thesis") {
    const head = await loadEnergyClassifier(clf, { conventions: {}, intraOpThreads: threads });
    step = async () => {
      await eps(x, t, ctx);
      return await head.fromDiffusionSpace(x, n, y, [1, 0, 0]);
    };
  } else if (mode === "fused") {
    const g = await loadThroughDenoiser(den, clf, {
      conventions: {},
      batch: n,
      intraOpThreads: threads,
    });
    step = () => g.run(x, n, t, abar, y, [1, -1, 0]);
  } else {
    const head = await loadEnergyClassifier(clf, { conventions: {}, intraOpThreads: threads });
    const pb = await loadDenoiserPullback(den, { batch: n, intraOpThreads: threads });
    step = async () => {
      const e = await eps(x, t, ctx);
      const x0 = new Float32Array(e.length);
      const sa = Math.sqrt(abar), s1a = Math.sqrt(1 - abar);
      for (let i = 0; i < x0.length; i++) x0[i] = (x[i] - s1a * e[i]) / sa;
      const o = await head.fromDiffusionSpace(x0, n, y, [1, -1, 0]);
      return await pb.pullback(x, n, t, abar, o.grad);
    };
  }
  await step(); // warm-up
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await step();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  console.log(JSON.stringify({
    mode,
    batch: n,
    reps,
    msPerStep: ms[Math.floor(ms.length / 2)],
    msMin: ms[0],
    peakRssMiB: peakRssMiB(),
  }));
}

if (values.mode) {
  await measure(values.mode);
} else {
  const rows = [];
  for (const mode of MODES) {
    const args = ["run", "-A", new URL(import.meta.url).pathname, "--mode", mode];
    args.push("--reps", String(reps), "--batch", String(n));
    if (threads !== undefined) args.push("--threads", String(threads));
    const out = await new Deno.Command(Deno.execPath(), { args, stderr: "inherit" }).output();
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop()!;
    console.log(line);
    rows.push(JSON.parse(line));
  }
  const base = rows.find((r) => r.mode === "thesis")!;
  for (const r of rows) {
    console.log(
      `${r.mode.padEnd(9)} ${r.msPerStep.toFixed(0).padStart(6)} ms/step (x${
        (r.msPerStep / base.msPerStep).toFixed(2)
      } the thesis step), peak RSS ${r.peakRssMiB.toFixed(0)} MiB`,
    );
  }
}
