/**
 * The classifier zoo's table (issue 13): per fixture of tests/fixtures/zoo, its family,
 * exporter, opset, the classifier's node count, the energy head's node count and op histogram,
 * the worst relative error of the head against the fixture's float64 autograd references
 * (logits, energies, the three objectives' input gradients), and the time per image of the
 * forward-only head and the full head at batch B (default 64), through the adapter (what
 * guidance pays; the median of --reps calls), with their ratio, and the same ratio of kernel
 * times on one thread (the sum over nodes of each node's fastest run under ONNX Runtime's
 * profiler: robust on a busy machine, where wall-clock ratios are not). Prints a markdown table; --json FILE also writes the rows.
 *
 *   deno run -A tools/zoo_table.ts [--batch 64] [--reps 5] [--threads N] [--only NAME,...]
 *     [--top 8] [--json out/zoo_table.json]
 *
 * Timings are only meaningful on a quiet machine (nothing else running); run it alone.
 * @module
 */
import * as ort from "onnxruntime-node";
import { parseArgs } from "node:util";
import { compileEnergyHead } from "../lib/energy/head.ts";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { decodeModel, encodeModel } from "../lib/onnx/proto.ts";
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
  /** Kernel time per image (see kernelMs), forward-only head and full head, and the ratio. */
  forwardKernelMsPerImage: number;
  headKernelMsPerImage: number;
  kernelRatio: number;
}

/** Median wall-clock milliseconds per call of `fn` over `reps` calls after one warm-up call. */
async function timeIt(fn: () => Promise<unknown>, reps: number): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/**
 * Kernel milliseconds per run of the head graph in `bytes` on one thread: ONNX Runtime's
 * profiler times every node in each of `reps` runs, and the minimum over runs is summed over
 * nodes. Contention from other processes only ever adds time to a kernel, so the minimum
 * estimates a quiet machine's kernel time even on a busy one (session overhead excluded).
 */
async function kernelMs(
  bytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
  reps: number,
): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "zoo_table_" });
  try {
    const session = await ort.InferenceSession.create(bytes, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      enableProfiling: true,
      profileFilePrefix: `${dir}/p`,
    });
    for (let i = 0; i <= reps; i++) await session.run(feeds);
    session.endProfiling();
    await session.release();
    const file = [...Deno.readDirSync(dir)].find((e) => e.name.endsWith(".json"));
    if (!file) throw new Error(`no ONNX Runtime profile was written to ${dir}`);
    const events: Array<{ cat: string; name: string; dur: number }> = JSON.parse(
      await Deno.readTextFile(`${dir}/${file.name}`),
    );
    const min = new Map<string, number>();
    for (const e of events) {
      if (e.cat !== "Node" || !e.name.endsWith("_kernel_time")) continue;
      min.set(e.name, Math.min(min.get(e.name) ?? Infinity, e.dur));
    }
    return [...min.values()].reduce((a, v) => a + v, 0) / 1000;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
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
  const xT = new ort.Tensor("float32", x, [n, ...head.info.inputShape]);
  const yT = new ort.Tensor("int64", BigInt64Array.from(y.map(BigInt)), [n]);
  const fwdKernel = await kernelMs(fwdBytes, { x: xT, y: yT }, opts.reps);
  const headKernel = await kernelMs(encodeModel(headModel), {
    x: xT,
    y: yT,
    coef: new ort.Tensor("float32", coef, [n, 3]),
    e_star: new ort.Tensor("float32", new Float32Array(n), [n]),
  }, opts.reps);
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
    forwardMsPerImage: forwardMs / n,
    headMsPerImage: headMs / n,
    ratio: headMs / forwardMs,
    forwardKernelMsPerImage: fwdKernel / n,
    headKernelMsPerImage: headKernel / n,
    kernelRatio: headKernel / fwdKernel,
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
      `worst rel err | fwd ms/img | head ms/img | head/fwd (batch ${batch}) | kernel head/fwd (1 thread) |`,
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
        `${r.ratio.toFixed(2)} | ${r.kernelRatio.toFixed(2)} |`,
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
