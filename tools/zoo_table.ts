/**
 * The classifier zoo's table (issue 13): per fixture of tests/fixtures/zoo, its family,
 * exporter, opset, the classifier's node count, the energy head's node count and op histogram,
 * the worst relative error of the head against the fixture's float64 autograd references
 * (logits, energies, the three objectives' input gradients), and the time per image of the
 * forward-only head and the full head at batch B (default 64), through the adapter (what
 * guidance pays; the median of --reps calls), with their ratio. Prints a markdown table; --json FILE also writes the rows.
 *
 *   deno run -A tools/zoo_table.ts [--batch 64] [--reps 5] [--threads N] [--only NAME,...]
 *     [--top 8] [--json out/zoo_table.json]
 *
 * Timings are only meaningful on a quiet machine (nothing else running); run it alone.
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { compileEnergyHead } from "../lib/energy/head.ts";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { decodeModel } from "../lib/onnx/proto.ts";
import { RandomStream } from "../lib/random.ts";
import { readZooFixture, zooErrors, zooLoadOptions, zooNames } from "../tests/_zoo.ts";

/** One row of the table. */
interface ZooRow {
  name: string;
  family: string;
  exporter: string;
  opset: number;
  classifierNodes: number;
  headNodes: number;
  headOps: Record<string, number>;
  worstRelError: number;
  worstOf: string;
  batch: number;
  forwardMsPerImage: number;
  headMsPerImage: number;
  ratio: number;
  forwardCpuMsPerImage: number;
  headCpuMsPerImage: number;
  cpuRatio: number;
}

/**
 * Median wall-clock milliseconds per call of `fn` over `reps` calls after one warm-up call, and
 * the process CPU milliseconds per call (user + system over all reps / reps): on a busy
 * machine the CPU time of a single-threaded run (--threads 1) still estimates the quiet
 * machine's wall time, which the wall clock does not.
 */
async function timeIt(
  fn: () => Promise<unknown>,
  reps: number,
): Promise<{ wall: number; cpu: number }> {
  await fn();
  const times: number[] = [];
  const c0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  const c = process.cpuUsage(c0);
  times.sort((a, b) => a - b);
  return { wall: times[Math.floor(times.length / 2)], cpu: (c.user + c.system) / 1000 / reps };
}

function histogram(ops: readonly string[]): Record<string, number> {
  const h: Record<string, number> = {};
  for (const op of ops) h[op] = (h[op] ?? 0) + 1;
  return Object.fromEntries(
    Object.entries(h).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)),
  );
}

async function measure(
  name: string,
  opts: { batch: number; reps: number; threads?: number },
): Promise<ZooRow> {
  const { fx, bytes } = await readZooFixture(name);
  const load = { ...zooLoadOptions(fx), intraOpThreads: opts.threads, onNote: () => {} };
  const head = await loadEnergyClassifier(bytes, load);
  const errors = await zooErrors(head, fx);
  const [worstOf, worstRelError] = Object.entries(errors).sort((a, b) => b[1] - a[1])[0];
  const { conventions: _c, ...rest } = load;
  const fwdBytes = compileEnergyHead(bytes, {
    ...fx.conventions,
    gradient: false,
    ...(fx.resize_from
      ? { imageSize: [fx.x_shape[2], fx.x_shape[3]] as const, inputSize: fx.input_size }
      : {}),
  });
  const fwd = await loadEnergyClassifier(fwdBytes, { ...rest, imageSize: undefined });
  const headModel = decodeModel(
    compileEnergyHead(bytes, {
      ...fx.conventions,
      ...(fx.resize_from
        ? { imageSize: [fx.x_shape[2], fx.x_shape[3]] as const, inputSize: fx.input_size }
        : {}),
    }),
  );
  const n = opts.batch;
  const rng = new RandomStream(0);
  const x = new Float32Array(n * head.imageSize).map(() => rng.uniform());
  const y = Array.from({ length: n }, (_, i) => i % head.numClasses);
  const coef = new Float32Array(n * 3).fill(1);
  const forwardMs = await timeIt(() => fwd.forward(x, n, y), opts.reps);
  const headMs = await timeIt(() => head.energies(x, n, y, coef, 0), opts.reps);
  await head.release();
  await fwd.release();
  return {
    name,
    family: fx.family,
    exporter: fx.exporter,
    opset: fx.opset,
    classifierNodes: fx.node_count,
    headNodes: headModel.graph.node.length,
    headOps: histogram(headModel.graph.node.map((m) => m.op_type)),
    worstRelError,
    worstOf,
    batch: n,
    forwardMsPerImage: forwardMs.wall / n,
    headMsPerImage: headMs.wall / n,
    ratio: headMs.wall / forwardMs.wall,
    forwardCpuMsPerImage: forwardMs.cpu / n,
    headCpuMsPerImage: headMs.cpu / n,
    cpuRatio: headMs.cpu / forwardMs.cpu,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      batch: { type: "string", default: "64" },
      reps: { type: "string", default: "5" },
      threads: { type: "string" },
      only: { type: "string" },
      top: { type: "string", default: "8" },
      json: { type: "string" },
    },
    strict: true,
  });
  const batch = Number(values.batch), reps = Number(values.reps), top = Number(values.top);
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  for (const [k, v] of Object.entries({ batch, reps, top, threads: threads ?? 1 })) {
    if (!Number.isInteger(v) || v < 1) {
      throw new Error(`--${k} '${v}' is invalid: use a positive integer`);
    }
  }
  const all = zooNames();
  const only = values.only?.split(",").map((s) => s.trim()).filter((s) => s);
  const unknown = (only ?? []).filter((n) => !all.includes(n));
  if (unknown.length > 0) {
    throw new Error(
      `--only: no zoo fixture named ${unknown.join(", ")}; the fixtures are ${all.join(", ")}`,
    );
  }
  const names = only ?? all;
  const rows: ZooRow[] = [];
  const t0 = performance.now();
  console.log(
    `| fixture | family | exporter | opset | nodes | head nodes | head ops (top ${top}) | ` +
      `worst rel err | fwd ms/img | head ms/img | head/fwd (batch ${batch}) | CPU head/fwd |`,
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const [i, name] of names.entries()) {
    const r = await measure(name, { batch, reps, threads });
    rows.push(r);
    const ops = Object.entries(r.headOps).slice(0, top).map(([op, c]) => `${op} ${c}`).join(", ");
    console.log(
      `| ${r.name} | ${r.family} | ${r.exporter} | ${r.opset} | ${r.classifierNodes} | ` +
        `${r.headNodes} | ${ops} | ${r.worstRelError.toExponential(1)} (${r.worstOf}) | ` +
        `${r.forwardMsPerImage.toFixed(3)} | ${r.headMsPerImage.toFixed(3)} | ` +
        `${r.ratio.toFixed(2)} | ${r.cpuRatio.toFixed(2)} |`,
    );
    const s = (performance.now() - t0) / 1000, rate = (i + 1) / s;
    console.error(
      `zoo_table: ${i + 1}/${names.length} (${rate.toFixed(2)}/s, ETA ${
        ((names.length - i - 1) / rate).toFixed(0)
      } s)`,
    );
  }
  if (values.json) await writeJsonAtomic(values.json, { batch, reps, threads, rows });
}
