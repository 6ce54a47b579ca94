/**
 * Side-by-side benchmark, project (onnxruntime-node) vs PyTorch eager, in ONE run on one machine
 * (`deno task bench-compare`). The PyTorch side is bench/pytorch_reference.py, started as a
 * subprocess and driven over stdin/stdout; both sides use the same intra-op thread count and the
 * same weights (verified once before timing), and every timed case alternates project and
 * PyTorch repetitions (order rotated every round, an idle gap of --gap ms, default 60, before
 * each run: ORT's idle intra-op workers spin for ~30 ms after a run, libgomp's for a few ms, and
 * would otherwise eat into the other side's run), so load from other processes on a shared
 * machine hits both alike. A turn of a case faster than --warm-below ms (default 300) is one
 * untimed run then one timed run, so that the timed run is a steady-state one, as in a sampling
 * loop, not the first after the idle gap. Results are medians; ratio = PyTorch / project (> 1: the
 * project is faster).
 *
 * Cases, at batch 1, 16, 64:
 *   (a) step     one unguided DDIM step: UNet forward + the DDIM update (onnxDenoiser + ddimStep)
 *   (b) guided   one guided step: UNet forward + classifier forward and input gradient of the
 *                joint energy (energy head, fromDiffusionSpace(x, n, y, [1, 0, 0])) via guided(),
 *                + the DDIM update
 *   (c) sample   a whole guided DDIM sample (sample(guided(...)), 100 steps) with the TINY UNet
 *                (the full-size one at batch 64 would take minutes a sample)
 *   (d) sample20 a whole 20-call guided sample: the project's DPM-Solver++(2M) (sample(guided(...)),
 *                --sampler dpmpp-2m) vs PyTorch + diffusers' DPMSolverMultistepScheduler with
 *                autograd classifier gradients; every model, the full-size one at batch <= 16
 * Every row also times a second PyTorch reference, torch.compile (inductor on CPU, dynamic=False,
 * compiled in the warm-up; first-call seconds in the JSON), interleaved with the other two:
 * `pytorchCompiledMs`, `ratioCompiled` = compiled PyTorch / project. --no-compiled skips it.
 *   clf          classifier forward only vs the energy head (forward + input gradient)
 * UNets: the tiny random UNet (weights/testing/tiny_unet.onnx) and the full-size
 * google/ddpm-cifar10-32 architecture with random weights (exported on first use to
 * .cache/bench/, ~143 MB, never into git). Classifier: ../shared/models/vnncomp21_resnet4b.onnx
 * with the CIFAR-10 normalisation. GFLOP/s of the UNet forward use PyTorch's FlopCounterMode
 * count (2 FLOPs per MAC) for both sides, against the fp32 peak measured in the same run
 * (a square MatMul in ORT and in torch).
 *
 *   deno run -A bench/compare.ts [--threads 2] [--batches 1,16,64] [--models tiny,full]
 *     [--cases step,guided,sample,sample20,clf] [--budget 20] [--no-compiled] [--min-reps 5] [--max-reps 25]
 *     [--sample-steps 100] [--scale 1] [--options] [--quick] [--out out/bench-compare.json]
 *   --options   also time ORT session-option variants of the UNet forward (interleaved)
 *   --quick     a smoke run: batches 1,16, budget 3 s, 3 reps, 10 sample steps
 *   --no-head-variant  skip the guided rows (b*, c*) whose energy head is loaded with
 *               allowSpinning false (loadEnergyClassifier's default), timed beside a spinning one
 * @module
 */
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { loadOnnx, type OnnxModel } from "../lib/runtime/session.ts";
import { onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import { ddimStep } from "../lib/sampler/ddim.ts";
import {
  type DenoiseContext,
  type Denoiser,
  sample,
  type SamplerConfig,
} from "../lib/sampler/loop.ts";
import { abarAt, linearSchedule } from "../lib/schedule.ts";
import { stepPairs, timestepGrid } from "../lib/timesteps.ts";
import { RandomStream } from "../lib/random.ts";
import { type EnergyClassifier, loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { CIFAR10_NORMALISATION } from "../lib/energy/conventions.ts";
import { compileEnergyHead } from "../lib/energy/head.ts";
import { type GuidanceConfig, guided } from "../lib/guidance/guided.ts";
import { DEFAULT_STRENGTH } from "../lib/guidance/strength.ts";
import { encodeModel } from "../lib/onnx/proto.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const USAGE = `deno task bench-compare [flags]   (project vs PyTorch eager, same weights, one run)
  --threads 2 --batches 1,16,64 --models tiny,full --cases step,guided,sample,sample20,clf
  --no-compiled        skip the torch.compile (inductor) PyTorch reference of every row
  --budget 20 --min-reps 5 --max-reps 25 --sample-steps 100 --scale 1 --gap 60 --warm-below 300
  --full-onnx <file> --classifier <file> --python <venv python> --matmul-size 2048
  --out out/bench-compare.json
  --options            also time ORT session-option variants of the UNet forward
  --options-only       only those
  --quick              smoke run: batches 1,16, budget 3 s, 3 reps, 10 sample steps
  --no-head-variant    skip the guided rows with a non-spinning energy head
  (details: the comment at the top of bench/compare.ts; results: bench/NOTES.md)`;
if (Deno.args.includes("--help")) {
  console.log(USAGE);
  Deno.exit(0);
}
let parsed;
try {
  parsed = parseArgs({
    args: Deno.args,
    options: benchOptions(),
    strict: true,
  });
} catch (e) {
  console.error(`error: bench-compare: ${(e as Error).message}\n${USAGE}`);
  Deno.exit(2);
}
const { values: opt } = parsed;
/** parseArgs options of bench-compare (a function: hoisted above the parse). */
function benchOptions() {
  return {
    threads: { type: "string", default: "2" },
    batches: { type: "string", default: "1,16,64" },
    models: { type: "string", default: "tiny,full" },
    cases: { type: "string", default: "step,guided,sample,sample20,clf" },
    "no-compiled": { type: "boolean", default: false },
    budget: { type: "string", default: "20" },
    "min-reps": { type: "string", default: "5" },
    "max-reps": { type: "string", default: "25" },
    "sample-steps": { type: "string", default: "100" },
    scale: { type: "string", default: "1" },
    gap: { type: "string", default: "60" },
    "warm-below": { type: "string", default: "300" },
    "full-onnx": { type: "string", default: `${ROOT}.cache/bench/ddpm_cifar10_32_random.onnx` },
    classifier: { type: "string", default: `${ROOT}../shared/models/vnncomp21_resnet4b.onnx` },
    python: { type: "string", default: `${ROOT}.venv/bin/python` },
    "matmul-size": { type: "string", default: "2048" },
    out: { type: "string", default: `${ROOT}out/bench-compare.json` },
    options: { type: "boolean", default: false },
    "options-only": { type: "boolean", default: false },
    quick: { type: "boolean", default: false },
    "no-head-variant": { type: "boolean", default: false },
  } as const;
}
const THREADS = Number(opt.threads);
const QUICK = opt.quick;
const BATCHES = (QUICK && opt.batches === "1,16,64" ? "1,16" : opt.batches).split(",").map(Number);
const MODELS = opt.models.split(",") as Array<"tiny" | "full">;
const CASES = new Set(opt["options-only"] ? [] : opt.cases.split(","));
const BUDGET_MS = 1000 * (QUICK ? 3 : Number(opt.budget));
const MIN_REPS = QUICK ? 3 : Number(opt["min-reps"]);
const MAX_REPS = QUICK ? 3 : Number(opt["max-reps"]);
const SAMPLE_STEPS = QUICK ? 10 : Number(opt["sample-steps"]);
const COMPILED = !opt["no-compiled"];
/** Network calls of the fast guided sample (case d): DPM-Solver++(2M), the dpmpp-2m default. */
const FAST_STEPS = 20;
const SCALE = Number(opt.scale);
const GAP_MS = Number(opt.gap);
const WARM_BELOW_MS = Number(opt["warm-below"]);
const SHAPE = { c: 3, h: 32, w: 32 };
const PER = 3 * 32 * 32;
const T_STEP = 500, T_PREV = 490; // one step of the 100-step leading grid
const schedule = linearSchedule();
const ABAR_T = abarAt(schedule, T_STEP), ABAR_PREV = abarAt(schedule, T_PREV);

// ---------------------------------------------------------------------------------------------
// helpers

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}
function relL2(a: Float32Array, ref: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
}
async function sh(cmd: string, args: string[]): Promise<string> {
  try {
    const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output();
    return new TextDecoder().decode(o.stdout).trim();
  } catch {
    return "";
  }
}
const loadavg = async () =>
  (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");

// ---------------------------------------------------------------------------------------------
// the PyTorch side

type Json = Record<string, unknown>;
class PyRef {
  private buf = "";
  private reader: ReadableStreamDefaultReader<string>;
  private writer: WritableStreamDefaultWriter<Uint8Array>;
  private enc = new TextEncoder();

  private constructor(private proc: Deno.ChildProcess) {
    this.reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.writer = proc.stdin.getWriter();
  }

  static async start(threads: number): Promise<PyRef> {
    const proc = new Deno.Command(opt.python, {
      args: [
        `${ROOT}bench/pytorch_reference.py`,
        "--serve",
        "--threads",
        String(threads),
        "--classifier",
        opt.classifier,
        "--mean",
        JSON.stringify(CIFAR10_NORMALISATION.mean),
        "--std",
        JSON.stringify(CIFAR10_NORMALISATION.std),
      ],
      env: { OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const py = new PyRef(proc);
    const hello = await py.line();
    if (!JSON.parse(hello).ready) throw new Error(`pytorch_reference.py did not start: ${hello}`);
    return py;
  }

  private async line(): Promise<string> {
    while (!this.buf.includes("\n")) {
      const { value, done } = await this.reader.read();
      if (done) throw new Error("pytorch_reference.py exited (see its stderr above)");
      this.buf += value;
    }
    const i = this.buf.indexOf("\n");
    const l = this.buf.slice(0, i);
    this.buf = this.buf.slice(i + 1);
    return l;
  }

  async call(cmd: Json): Promise<Json> {
    await this.writer.write(this.enc.encode(JSON.stringify(cmd) + "\n"));
    const res = JSON.parse(await this.line());
    if (!res.ok) throw new Error(`pytorch_reference.py ${cmd.cmd}: ${res.error}`);
    return res;
  }

  async close(): Promise<void> {
    await this.writer.write(this.enc.encode(`{"cmd":"quit"}\n`));
    await this.writer.close();
    await this.proc.status;
  }
}

// ---------------------------------------------------------------------------------------------
// setup

const machine = {
  nproc: Number(await sh("nproc", [])),
  model: (await sh("lscpu", [])).split("\n").find((l) => l.startsWith("Model name"))
    ?.split(":")[1].trim() ?? "?",
  cpuinfoModel: (await Deno.readTextFile("/proc/cpuinfo")).split("\n")
    .find((l) => l.startsWith("model name"))?.split(":")[1].trim() ?? "?",
  avx512: (await Deno.readTextFile("/proc/cpuinfo")).includes(" avx512f"),
  loadavgStart: await loadavg(),
};
console.log(
  `machine: ${machine.nproc} CPUs, ${machine.model} (${machine.cpuinfoModel}), ` +
    `avx512 ${machine.avx512}; load average ${machine.loadavgStart}; threads ${THREADS} both sides`,
);

if (MODELS.includes("full")) {
  try {
    await Deno.stat(opt["full-onnx"]);
  } catch {
    console.log(`exporting the full-size UNet to ${opt["full-onnx"]} (random weights, seed 0)`);
    await Deno.mkdir(opt["full-onnx"].replace(/\/[^/]*$/, ""), { recursive: true });
    const r = await new Deno.Command(opt.python, {
      args: [`${ROOT}bench/pytorch_reference.py`, "--export-full", opt["full-onnx"]],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!r.success) throw new Error("export of the full-size UNet failed");
  }
}

const tmp = await Deno.makeTempDir({ prefix: "bench-compare-" });
const py = await PyRef.start(THREADS);
const pyInfo = await py.call({ cmd: "info" });
console.log(
  `PyTorch ${pyInfo.torch}, ${pyInfo.threads} threads (interop ${pyInfo.interop_threads})`,
);

const unetPath = { tiny: `${ROOT}weights/testing/tiny_unet.onnx`, full: opt["full-onnx"] };
const unets: Partial<Record<"tiny" | "full", OnnxModel>> = {};
for (const m of MODELS) {
  unets[m] = await loadOnnx(unetPath[m], { provider: "cpu", intraOpThreads: THREADS });
  await py.call({ cmd: "load", model: m });
}
const clfBytes = await Deno.readFile(opt.classifier);
// the head with ORT's idle workers spinning (ORT's own default; loadEnergyClassifier's was this
// until the measurement below)
const head = await loadEnergyClassifier(clfBytes, {
  conventions: CIFAR10_NORMALISATION,
  provider: "cpu",
  intraOpThreads: THREADS,
  allowSpinning: true,
});
// the same head on a session whose idle workers do not spin (allowSpinning false: the default of
// loadEnergyClassifier and what the tasks use; see bench/NOTES.md)
const headNoSpin = opt["no-head-variant"] ? undefined : await loadEnergyClassifier(clfBytes, {
  conventions: CIFAR10_NORMALISATION,
  provider: "cpu",
  intraOpThreads: THREADS,
  allowSpinning: false,
});
const fwdHead = await loadEnergyClassifier(
  compileEnergyHead(clfBytes, { ...CIFAR10_NORMALISATION, gradient: false }),
  { provider: "cpu", intraOpThreads: THREADS, allowSpinning: true },
);

/** Input images for batch n (x in [-1, 1]-ish: N(0, 1), like x_T), written for the PyTorch side. */
const inputs = new Map<number, { x: Float32Array; path: string; y: number[] }>();
async function input(n: number) {
  if (!inputs.has(n)) {
    const x = new Float32Array(n * PER);
    for (let i = 0; i < n; i++) new RandomStream(i).fillNormal(x.subarray(i * PER, (i + 1) * PER));
    const path = `${tmp}/x_${n}.f32`;
    await Deno.writeFile(path, new Uint8Array(x.buffer));
    inputs.set(n, { x, path, y: Array.from({ length: n }, (_, i) => i % 10) });
  }
  return inputs.get(n)!;
}
async function pyOutput(cmd: Json): Promise<Float32Array> {
  const path = `${tmp}/out.f32`;
  await py.call({ ...cmd, cmd: "save", out: path });
  const b = await Deno.readFile(path);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}
function ctxFor(n: number, stepIndex = 50, steps = 100): DenoiseContext {
  const seeds = Array.from({ length: n }, (_, i) => i);
  return { n, shape: SHAPE, seeds, items: seeds, stepIndex, steps, schedule };
}
function guidance(labels: number[], classifier: EnergyClassifier = head): GuidanceConfig {
  return {
    classifier,
    direction: { kind: "joint" },
    scale: SCALE,
    strength: DEFAULT_STRENGTH, // w(t) = sqrt(1 - abar_t), from the first step
    labels,
    point: "xt",
    form: "eps",
  };
}

// ---------------------------------------------------------------------------------------------
// interleaved timing

interface Timing {
  proj: number[];
  py: number[];
  /** torch.compile'd PyTorch (when COMPILED). */
  pyc?: number[];
  projFwd?: number[];
  pyFwd?: number[];
}
interface ProjRun {
  out: Float32Array;
  fwdMs?: number;
}

/**
 * Warm-up, then `reps` rounds of one run of each project variant and one PyTorch run, the order
 * rotating every round, with an idle gap before each run. One {@link Timing} per variant (the
 * PyTorch times are shared).
 */
async function interleave(
  projs: Array<() => Promise<ProjRun>>,
  pyCmd: Json,
  minReps = MIN_REPS,
): Promise<Array<Timing & { projOut: Float32Array }>> {
  const last: ProjRun[] = [];
  let projEst = 0;
  for (const [k, proj] of projs.entries()) {
    await proj();
    const w0 = performance.now();
    last[k] = await proj();
    projEst += performance.now() - w0;
  }
  await py.call({ ...pyCmd, cmd: "time", reps: 1 });
  const pyEst = (await py.call({ ...pyCmd, cmd: "time", reps: 1 })).ms as number[];
  const compiled = COMPILED && pyCmd.op !== "matmul";
  if (compiled) {
    // the first calls compile (inductor): untimed, in the warm-up
    await py.call({ ...pyCmd, cmd: "time", reps: 1, compiled: true });
    await py.call({ ...pyCmd, cmd: "time", reps: 1, compiled: true });
  }
  // Short runs: each turn starts with one untimed run, so that the timed one finds the threads
  // awake and the caches warm, as in a sampling loop (the idle gap lets them park)
  const warm = projEst / projs.length + pyEst[0] < WARM_BELOW_MS ? 1 : 0;
  const reps = Math.max(
    minReps,
    Math.min(MAX_REPS, Math.ceil(BUDGET_MS / ((1 + warm) * (projEst + pyEst[0])))),
  );
  const t: Timing[] = projs.map(() => ({ proj: [], py: [], projFwd: [], pyFwd: [] }));
  const py0: number[] = [], pyFwd: number[] = [], pyc: number[] = [];
  const runs = [
    ...projs.map((proj, k) => async () => {
      if (warm) await proj();
      const t0 = performance.now();
      last[k] = await proj();
      t[k].proj.push(performance.now() - t0);
      if (last[k].fwdMs !== undefined) t[k].projFwd!.push(last[k].fwdMs!);
    }),
    async () => {
      const r = await py.call({ ...pyCmd, cmd: "time", reps: 1, warm });
      py0.push((r.ms as number[])[0]);
      if ((r.fwd_ms as number[]).length) pyFwd.push((r.fwd_ms as number[])[0]);
    },
    ...(compiled
      ? [async () => {
        const r = await py.call({ ...pyCmd, cmd: "time", reps: 1, warm, compiled: true });
        pyc.push((r.ms as number[])[0]);
      }]
      : []),
  ];
  for (let r = 0; r < reps; r++) {
    for (let k = 0; k < runs.length; k++) {
      await sleep(GAP_MS);
      await runs[(k + r) % runs.length]();
    }
  }
  return t.map((tk, k) => ({
    proj: tk.proj,
    py: py0,
    ...(pyc.length ? { pyc } : {}),
    ...(tk.projFwd!.length && pyFwd.length ? { projFwd: tk.projFwd, pyFwd } : {}),
    projOut: last[k].out,
  }));
}

// ---------------------------------------------------------------------------------------------
// peak: a square fp32 MatMul in ORT and in torch

const MM = Number(opt["matmul-size"]);
const mmModel = encodeModel({
  ir_version: 8,
  opset_import: [{ domain: "", version: 17 }],
  producer_name: "bench/compare.ts",
  graph: {
    name: "matmul",
    node: [{ op_type: "MatMul", input: ["a", "b"], output: ["c"] }],
    input: ["a", "b"].map((name) => ({
      name,
      type: {
        tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: MM }, { dim_value: MM }] } },
      },
    })),
    output: [{
      name: "c",
      type: {
        tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: MM }, { dim_value: MM }] } },
      },
    }],
  },
});
const mmSession = await ort.InferenceSession.create(mmModel, {
  intraOpNumThreads: THREADS,
  interOpNumThreads: 1,
  graphOptimizationLevel: "all",
  executionProviders: ["cpu"],
});
const mmRng = new RandomStream(0);
const mmA = new ort.Tensor("float32", mmRng.fillNormal(new Float32Array(MM * MM)), [MM, MM]);
const mmB = new ort.Tensor("float32", mmRng.fillNormal(new Float32Array(MM * MM)), [MM, MM]);
await py.call({ cmd: "matmul_setup", size: MM });
const mmFlops = 2 * MM ** 3;
const [peakT] = await interleave(
  [async () => {
    const r = await mmSession.run({ a: mmA, b: mmB });
    return { out: r.c.data as Float32Array };
  }],
  { op: "matmul" },
  10,
);
const peak = {
  size: MM,
  flops: mmFlops,
  ortMs: median(peakT.proj),
  torchMs: median(peakT.py),
  ortGflops: mmFlops / median(peakT.proj) / 1e6,
  torchGflops: mmFlops / median(peakT.py) / 1e6,
  ortBestGflops: mmFlops / Math.min(...peakT.proj) / 1e6,
  torchBestGflops: mmFlops / Math.min(...peakT.py) / 1e6,
  gflops: 0,
};
// the measured peak: the best MatMul run of either library (the UNet rows are medians)
peak.gflops = Math.max(peak.ortBestGflops, peak.torchBestGflops);
console.log(
  `fp32 MatMul ${MM}^3, median: ORT ${peak.ortGflops.toFixed(0)} GFLOP/s, torch ` +
    `${peak.torchGflops.toFixed(0)} GFLOP/s (best runs ${peak.ortBestGflops.toFixed(0)} / ` +
    `${peak.torchBestGflops.toFixed(0)}); peak (best run) = ${peak.gflops.toFixed(0)} GFLOP/s`,
);
await mmSession.release();

// ---------------------------------------------------------------------------------------------
// FLOPs and verification

const flops: Record<string, { perImage: number; byOp: Record<string, number> }> = {};
for (const m of MODELS) {
  const r = await py.call({ cmd: "flops", model: m, n: 2 });
  flops[m] = { perImage: (r.flops as number) / 2, byOp: r.by_op as Record<string, number> };
  console.log(
    `${m} UNet forward: ${(flops[m].perImage / 1e9).toFixed(3)} GFLOP per image (FlopCounterMode)`,
  );
}

const verify: Json = {};
{
  const n = 4;
  const { x, path, y } = await input(n);
  for (const m of MODELS) {
    const eps = await onnxDenoiser(unets[m]!)(x, T_STEP, ctxFor(n));
    const ref = await pyOutput({ op: "unet", model: m, n, x: path, t: T_STEP, fresh: true });
    verify[`${m}_eps`] = { batch: n, maxAbsDiff: maxAbsDiff(eps, ref), maxAbsEps: maxAbs(ref) };
  }
  const g = (await head.fromDiffusionSpace(x, n, y, [1, 0, 0])).grad;
  const gRef = await pyOutput({ op: "clf_grad", n, x: path, y, fresh: true });
  const logits = (await fwdHead.forward(x.map((v) => (v + 1) / 2), n, y)).logits;
  const lRef = await pyOutput({ op: "clf_fwd", n, x: path, fresh: true });
  const p64 = await py.call({ cmd: "clf_parity64", n, x: path });
  verify.classifier = {
    batch: n,
    gradRelL2: relL2(g, gRef),
    gradMaxAbsDiff: maxAbsDiff(g, gRef),
    gradMaxAbs: maxAbs(gRef),
    logitsMaxAbsDiff: maxAbsDiff(logits, lRef),
    torchFloat32VsParityFloat64Logits: p64.max_abs,
  };
}
console.log(`verification (before timing): ${JSON.stringify(verify)}`);
for (const m of MODELS) {
  const v = verify[`${m}_eps`] as { maxAbsDiff: number };
  if (!(v.maxAbsDiff < 1e-3)) {
    throw new Error(`${m} UNet: ORT and PyTorch eps differ by ${v.maxAbsDiff}`);
  }
}
if (!((verify.classifier as { gradRelL2: number }).gradRelL2 < 1e-3)) {
  throw new Error(`classifier gradients differ: ${JSON.stringify(verify.classifier)}`);
}

// ---------------------------------------------------------------------------------------------
// the cases

interface Row {
  case: string;
  variant?: string;
  model: string;
  batch: number;
  reps: number;
  projectMs: number;
  pytorchMs: number;
  ratio: number;
  /** torch.compile (inductor) PyTorch, median ms, and its ratio to the project (> 1: project faster). */
  pytorchCompiledMs?: number;
  ratioCompiled?: number;
  projectMinMs: number;
  pytorchMinMs: number;
  steps?: number;
  projectFwdMs?: number;
  pytorchFwdMs?: number;
  projectGflops?: number;
  pytorchGflops?: number;
  outputMaxAbsDiff?: number;
  outputRelL2?: number;
  /** clf grad rows: energy head time / classifier forward time (medians), each side. */
  headOverForward?: { project: number; pytorch: number };
  note?: string;
}
const rows: Row[] = [];
function addRow(c: string, model: string, n: number, t: Timing, extra: Partial<Row> = {}): Row {
  const row: Row = {
    case: c,
    variant: extra.variant,
    model,
    batch: n,
    reps: t.proj.length,
    projectMs: median(t.proj),
    pytorchMs: median(t.py),
    ratio: median(t.py) / median(t.proj),
    projectMinMs: Math.min(...t.proj),
    pytorchMinMs: Math.min(...t.py),
    ...(t.pyc
      ? { pytorchCompiledMs: median(t.pyc), ratioCompiled: median(t.pyc) / median(t.proj) }
      : {}),
    ...extra,
  };
  if (t.projFwd && t.pyFwd) {
    row.projectFwdMs = median(t.projFwd);
    row.pytorchFwdMs = median(t.pyFwd);
    const f = flops[model].perImage * n;
    row.projectGflops = f / row.projectFwdMs / 1e6;
    row.pytorchGflops = f / row.pytorchFwdMs / 1e6;
  }
  rows.push(row);
  const g = row.projectGflops !== undefined
    ? `  fwd ${row.projectFwdMs!.toFixed(1)}/${row.pytorchFwdMs!.toFixed(1)} ms, ` +
      `${row.projectGflops.toFixed(0)}/${row.pytorchGflops!.toFixed(0)} GFLOP/s`
    : "";
  console.log(
    `${(c + (row.variant ? "*" : "")).padEnd(9)} ${model.padEnd(10)} b${
      String(n).padEnd(3)
    } project ${row.projectMs.toFixed(1).padStart(8)} ms  PyTorch ${
      row.pytorchMs.toFixed(1).padStart(8)
    } ms  ratio ${row.ratio.toFixed(2)}${
      row.ratioCompiled === undefined
        ? ""
        : `  compiled ${row.pytorchCompiledMs!.toFixed(1)} ms ratio ${row.ratioCompiled.toFixed(2)}`
    } ` +
      `(${row.reps} reps)${g}  out diff ${row.outputMaxAbsDiff?.toExponential(1) ?? "-"}`,
  );
  return row;
}

const NOSPIN = "energy head allowSpinning false (loadEnergyClassifier default)";
for (const n of BATCHES) {
  const { x, path, y } = await input(n);
  const ctx = ctxFor(n);
  const stepArgs = { abarT: ABAR_T, abarPrev: ABAR_PREV, eta: 0, clip: true };
  const common = { n, x: path, y, t: T_STEP, ...stepArgs, scale: SCALE };
  const out = new Float32Array(n * PER), x0 = new Float32Array(n * PER);
  // the guided variants: the library's head, and (unless --no-head-variant) the same head on a
  // session whose idle workers do not spin (LoadOptions.allowSpinning false)
  const heads: Array<[string, EnergyClassifier]> = [
    ["", head],
    ...(headNoSpin ? [[NOSPIN, headNoSpin] as [string, EnergyClassifier]] : []),
  ];
  for (const m of MODELS) {
    const den = onnxDenoiser(unets[m]!, 64);
    if (CASES.has("step")) {
      const [t] = await interleave([async () => {
        const t0 = performance.now();
        const eps = await den(x, T_STEP, ctx);
        const fwdMs = performance.now() - t0;
        const r = ddimStep({ x, eps, ...stepArgs, out, x0Out: x0 });
        return { out: Float32Array.from(r.x), fwdMs };
      }], { ...common, op: "step", model: m, key: "step" });
      const ref = await pyOutput({ ...common, op: "step", model: m, key: "step" });
      addRow("a step", m, n, t, { outputMaxAbsDiff: maxAbsDiff(t.projOut, ref) });
    }
    if (CASES.has("guided")) {
      const ts = await interleave(
        heads.map(([, h]) => {
          const gden = guided(den, guidance(y, h));
          return async () => {
            const eps = await gden(x, T_STEP, ctx);
            const r = ddimStep({ x, eps, ...stepArgs, out, x0Out: x0 });
            return { out: Float32Array.from(r.x) };
          };
        }),
        { ...common, op: "guided", model: m, key: "guided" },
      );
      const ref = await pyOutput({ ...common, op: "guided", model: m, key: "guided" });
      ts.forEach((t, k) =>
        addRow("b guided", m, n, t, {
          outputMaxAbsDiff: maxAbsDiff(t.projOut, ref),
          variant: heads[k][0] || undefined,
        })
      );
    }
  }
  if (CASES.has("sample") && MODELS.includes("tiny")) {
    const grid = timestepGrid(schedule.T, SAMPLE_STEPS, "leading");
    const pairs = stepPairs(grid);
    const abars = pairs.map(([t, tp]) => [abarAt(schedule, t), abarAt(schedule, tp)]);
    const cfg: SamplerConfig = {
      sampler: "ddim",
      schedule,
      steps: SAMPLE_STEPS,
      eta: 0,
      spacing: "leading",
      clip: true,
      variance: "fixed_small",
      seeds: Array.from({ length: n }, (_, i) => i),
      shape: SHAPE,
      batchSize: n,
    };
    // x_T: each image's own stream, as sample() draws it (the input of batch n is exactly that)
    const ts = await interleave(
      heads.map(([, h]) => {
        const gden: Denoiser = guided(onnxDenoiser(unets.tiny!, 64), guidance(y, h));
        return async () => ({ out: await sample(gden, cfg) });
      }),
      { ...common, op: "sample", model: "tiny", pairs, abars, key: "sample" },
      3,
    );
    const ref = await pyOutput({
      op: "sample",
      model: "tiny",
      n,
      x: path,
      y,
      pairs,
      abars,
      scale: SCALE,
      key: "sample",
    });
    ts.forEach((t, k) =>
      addRow("c sample", "tiny", n, t, {
        steps: SAMPLE_STEPS,
        outputMaxAbsDiff: maxAbsDiff(t.projOut, ref),
        outputRelL2: relL2(t.projOut, ref),
        variant: heads[k][0] || undefined,
        note: `whole ${SAMPLE_STEPS}-step guided DDIM sample with the tiny UNet`,
      })
    );
  }
  if (CASES.has("sample20")) {
    for (const m of MODELS.filter((m) => m === "tiny" || n <= 16)) {
      const cfg: SamplerConfig = {
        sampler: "dpmpp-2m",
        schedule,
        steps: FAST_STEPS,
        eta: 0,
        spacing: "linspace-open",
        clip: true,
        variance: "fixed_small",
        seeds: Array.from({ length: n }, (_, i) => i),
        shape: SHAPE,
        batchSize: n,
      };
      const pyCmd = { n, x: path, y, scale: SCALE, op: "sample_dpm", model: m, steps: FAST_STEPS };
      const ts = await interleave(
        heads.slice(0, 1).map(([, h]) => {
          const gden: Denoiser = guided(onnxDenoiser(unets[m]!, 64), guidance(y, h));
          return async () => ({ out: await sample(gden, cfg) });
        }),
        { ...pyCmd, key: "sample_dpm" },
        3,
      );
      const ref = await pyOutput({ ...pyCmd, key: "sample_dpm" });
      addRow("d sample20", m, n, ts[0], {
        steps: FAST_STEPS,
        outputMaxAbsDiff: maxAbsDiff(ts[0].projOut, ref),
        outputRelL2: relL2(ts[0].projOut, ref),
        note: `whole ${FAST_STEPS}-call guided DPM-Solver++(2M) sample vs diffusers ` +
          `DPMSolverMultistepScheduler + autograd`,
      });
    }
  }
  if (CASES.has("clf")) {
    const x01 = new Float32Array(n * PER);
    const [tf] = await interleave([async () => {
      for (let i = 0; i < x01.length; i++) x01[i] = (x[i] + 1) * 0.5;
      return { out: Float32Array.from((await fwdHead.forward(x01, n, y)).logits) };
    }], { ...common, op: "clf_fwd", key: "clf_fwd" });
    const lRef = await pyOutput({ ...common, op: "clf_fwd", key: "clf_fwd" });
    addRow("clf fwd", "resnet4b", n, tf, { outputMaxAbsDiff: maxAbsDiff(tf.projOut, lRef) });
    const [tg] = await interleave([async () => {
      return { out: Float32Array.from((await head.fromDiffusionSpace(x, n, y, [1, 0, 0])).grad) };
    }], { ...common, op: "clf_grad", key: "clf_grad" });
    const gRef = await pyOutput({ ...common, op: "clf_grad", key: "clf_grad" });
    addRow("clf grad", "resnet4b", n, tg, {
      outputMaxAbsDiff: maxAbsDiff(tg.projOut, gRef),
      outputRelL2: relL2(tg.projOut, gRef),
      headOverForward: {
        project: median(tg.proj) / median(tf.proj),
        pytorch: median(tg.py) / median(tf.py),
      },
      note:
        `energy head / classifier forward: project ${
          (median(tg.proj) / median(tf.proj)).toFixed(2)
        }, ` +
        `PyTorch ${(median(tg.py) / median(tf.py)).toFixed(2)}`,
    });
  }
  await py.call({ cmd: "drop" });
}

// ---------------------------------------------------------------------------------------------
// ORT session-option variants of the UNet forward (interleaved among themselves)

interface OptionRow {
  model: string;
  batch: number;
  variant: string;
  ms: number;
  vsDefault: number;
}
const optionRows: OptionRow[] = [];
if (opt.options || opt["options-only"]) {
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: "all",
    interOpNumThreads: 1,
    intraOpNumThreads: THREADS,
    executionMode: "sequential",
    executionProviders: ["cpu"],
  };
  const variants: Record<string, ort.InferenceSession.SessionOptions> = {
    "default (all, arena, mem pattern)": base,
    "extended": { ...base, graphOptimizationLevel: "extended" },
    "basic": { ...base, graphOptimizationLevel: "basic" },
    "no cpu arena": { ...base, enableCpuMemArena: false },
    "no mem pattern": { ...base, enableMemPattern: false },
    "no spinning": { ...base, extra: { session: { intra_op: { allow_spinning: "0" } } } },
    [`threads ${THREADS === 1 ? 2 : 1}`]: { ...base, intraOpNumThreads: THREADS === 1 ? 2 : 1 },
  };
  for (const m of MODELS) {
    const bytes = await Deno.readFile(unetPath[m]);
    const sessions = await Promise.all(
      Object.values(variants).map((o) => ort.InferenceSession.create(bytes, o)),
    );
    const names = Object.keys(variants);
    for (const n of BATCHES) {
      const { x } = await input(n);
      const feeds = {
        x: new ort.Tensor("float32", x, [n, 3, 32, 32]),
        t: new ort.Tensor("int64", new BigInt64Array(n).fill(BigInt(T_STEP)), [n]),
      };
      // + the default session writing into a preallocated output tensor
      const pre = new ort.Tensor("float32", new Float32Array(n * PER), [n, 3, 32, 32]);
      const runs: Array<[string, () => Promise<unknown>]> = [
        ...names.map((k, i) =>
          [k, () => sessions[i].run(feeds)] as [string, () => Promise<unknown>]
        ),
        ["default + preallocated output", () => sessions[0].run(feeds, { eps: pre })],
      ];
      for (const [, f] of runs) await f();
      const est = performance.now();
      for (const [, f] of runs) await f();
      const per = (performance.now() - est) / runs.length;
      const warm = per < WARM_BELOW_MS; // as in interleave(): an untimed run starts each turn
      const reps = Math.max(
        MIN_REPS,
        Math.min(MAX_REPS, Math.ceil(1.5 * BUDGET_MS / ((warm ? 2 : 1) * per * runs.length))),
      );
      const times = runs.map(() => [] as number[]);
      for (let r = 0; r < reps; r++) {
        for (let k = 0; k < runs.length; k++) {
          const j = (k + r) % runs.length; // rotate the order every round
          await sleep(GAP_MS);
          if (warm) await runs[j][1]();
          const t0 = performance.now();
          await runs[j][1]();
          times[j].push(performance.now() - t0);
        }
      }
      const d = median(times[0]);
      for (const [j, [name]] of runs.entries()) {
        const ms = median(times[j]);
        optionRows.push({ model: m, batch: n, variant: name, ms, vsDefault: d / ms });
        console.log(
          `options ${m.padEnd(5)} b${String(n).padEnd(3)} ${name.padEnd(34)} ${
            ms.toFixed(2).padStart(9)
          } ms` +
            `  speed vs default ${(d / ms).toFixed(3)} (${reps} reps)`,
        );
      }
    }
    await Promise.all(sessions.map((s) => s.release()));
  }
}

// ---------------------------------------------------------------------------------------------
// report

const compileInfo = COMPILED ? (await py.call({ cmd: "compile_info" })).compile_s : undefined;
await py.close();
await Deno.remove(tmp, { recursive: true });
const loadEnd = await loadavg();
const fmt = (v: number | undefined, d = 1) => v === undefined ? "-" : v.toFixed(d);
const lines = [
  `| case | model | batch | project ms | PyTorch ms | ratio PT/proj | torch.compile ms | ratio compiled/proj | UNet fwd GFLOP/s project (% peak) | PyTorch (% peak) | reps |`,
  `|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|`,
  ...rows.map((r) =>
    `| ${r.case}${r.variant ? ` (${r.variant})` : ""} | ${r.model} | ${r.batch} | ${
      fmt(r.projectMs)
    } | ${fmt(r.pytorchMs)} | ${r.ratio.toFixed(2)} | ${fmt(r.pytorchCompiledMs)} | ${
      r.ratioCompiled === undefined ? "-" : r.ratioCompiled.toFixed(2)
    } | ${
      r.projectGflops === undefined
        ? "-"
        : `${r.projectGflops.toFixed(0)} (${(100 * r.projectGflops / peak.gflops).toFixed(0)}%)`
    } | ${
      r.pytorchGflops === undefined
        ? "-"
        : `${r.pytorchGflops.toFixed(0)} (${(100 * r.pytorchGflops / peak.gflops).toFixed(0)}%)`
    } | ${r.reps} |`
  ),
];
console.log(`\n${lines.join("\n")}`);
for (const r of rows.filter((r) => r.note && !r.variant)) {
  console.log(`  ${r.case} b${r.batch}: ${r.note}`);
}
console.log(`load average: start ${machine.loadavgStart}, end ${loadEnd}`);

const report = {
  command: `deno task bench-compare ${Deno.args.join(" ")}`.trim(),
  date: new Date().toISOString(),
  machine: { ...machine, loadavgEnd: loadEnd },
  threads: THREADS,
  versions: {
    deno: Deno.version.deno,
    onnxruntimeNode: "1.30.0",
    torch: pyInfo.torch,
    python: pyInfo.python,
    torchParallelInfo: pyInfo.parallel_info,
  },
  method: "medians of interleaved repetitions (project variants and PyTorch in turn, order " +
    `rotated each round, ${GAP_MS} ms idle gap before each turn; a turn of a case faster than ` +
    `${WARM_BELOW_MS} ms is one untimed then one timed run); ratio = PyTorch median / project ` +
    "median; GFLOP/s = " +
    "FlopCounterMode FLOPs of the UNet forward (2 per MAC, same count both sides) / median forward time",
  settings: {
    batches: BATCHES,
    models: MODELS,
    stepT: [T_STEP, T_PREV],
    sampleSteps: SAMPLE_STEPS,
    scale: SCALE,
    budgetMs: BUDGET_MS,
    minReps: MIN_REPS,
    maxReps: MAX_REPS,
  },
  peak,
  flops,
  verify,
  /** torch.compile first-call seconds per (module, batch, grad mode): the compile cost. */
  compileSeconds: compileInfo,
  rows,
  options: optionRows,
};
await Deno.mkdir(opt.out.replace(/\/[^/]*$/, ""), { recursive: true });
await Deno.writeTextFile(opt.out, JSON.stringify(report, null, 2) + "\n");
console.log(`wrote ${opt.out}`);
