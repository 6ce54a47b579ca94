/**
 * Energy head cost vs the forward pass on the real classifiers in ../shared/models, bare ONNX
 * Runtime CPU session runs, measured interleaved in one process (fwd, head, fwd, head, ...) so
 * that load from other processes on a shared machine hits both alike; prints medians and the
 * head/forward ratio per model.
 *
 *   deno run -A tools/head_speed.ts [--batch 64] [--reps 20] [--models a,b] [--threads N]
 *     [--save DIR]     also write each model's heads to DIR/<model>.{fwd,head}.onnx
 *     [--compare DIR[,DIR...]]  also time each DIR/<model>.head.onnx (heads saved by other
 *                      versions of the code) interleaved with the current one: an A/B of code
 *                      changes; their gradients are checked against the current head's
 *     [--profile DIR]  run ORT's profiler over the timed head runs and print the time per op
 *                      type (and the top nodes); the JSON traces are left in DIR
 * @module
 */
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { CIFAR10_NORMALISATION } from "../lib/energy/conventions.ts";
import { compileEnergyHead } from "../lib/energy/head.ts";
import { RandomStream } from "../lib/random.ts";

const ALL = ["vnncomp21_resnet2b", "vnncomp21_resnet4b", "sri_resnet_a"];

const { values } = parseArgs({
  args: Deno.args,
  options: {
    batch: { type: "string", default: "64" },
    reps: { type: "string", default: "20" },
    models: { type: "string", default: ALL.join(",") },
    threads: { type: "string" },
    save: { type: "string" },
    compare: { type: "string" },
    profile: { type: "string" },
  },
  strict: true,
});
const N = Number(values.batch), reps = Number(values.reps);

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function session(bytes: Uint8Array, profile?: string): Promise<ort.InferenceSession> {
  const opts: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: "all",
    interOpNumThreads: 1,
    executionMode: "sequential",
    executionProviders: ["cpu"],
  };
  if (values.threads) opts.intraOpNumThreads = Number(values.threads);
  if (profile) {
    opts.enableProfiling = true;
    opts.profileFilePrefix = profile;
  }
  return await ort.InferenceSession.create(bytes, opts);
}

/**
 * Milliseconds per op type (and per node) in a profile trace: each node's median kernel time
 * over the runs (robust to preemption by other processes), summed.
 */
async function summarise(file: string): Promise<void> {
  const events = JSON.parse(await Deno.readTextFile(file)) as Array<{
    cat: string;
    name: string;
    dur: number;
    args?: { op_name?: string };
  }>;
  const perNode = new Map<string, number[]>();
  for (const e of events) {
    if (e.cat !== "Node" || !e.name.endsWith("_kernel_time")) continue;
    const node = `${e.args?.op_name ?? "?"} ${e.name.replace(/_kernel_time$/, "")}`;
    perNode.set(node, [...(perNode.get(node) ?? []), e.dur]);
  }
  const byNode = new Map([...perNode].map(([k, v]) => [k, median(v)]));
  const byOp = new Map<string, number>();
  let total = 0;
  for (const [node, us] of byNode) {
    const op = node.split(" ")[0];
    byOp.set(op, (byOp.get(op) ?? 0) + us);
    total += us;
  }
  const ms = (us: number) => (us / 1000).toFixed(3).padStart(7);
  console.log(`    kernel time (sum of per-node medians) ${ms(total)} ms/run; by op type:`);
  for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1])) {
    if (us / total < 0.005) continue;
    console.log(`      ${op.padEnd(24)} ${ms(us)} ms  ${(100 * us / total).toFixed(1)}%`);
  }
  console.log(`    top nodes:`);
  for (const [node, us] of [...byNode].sort((a, b) => b[1] - a[1]).slice(0, 12)) {
    console.log(`      ${node.padEnd(60)} ${ms(us)} ms`);
  }
}

for (const name of values.models.split(",")) {
  const bytes = await Deno.readFile(new URL(`../../shared/models/${name}.onnx`, import.meta.url));
  const fwdBytes = compileEnergyHead(bytes, { ...CIFAR10_NORMALISATION, gradient: false });
  const headBytes = compileEnergyHead(bytes, CIFAR10_NORMALISATION);
  if (values.save) {
    await Deno.mkdir(values.save, { recursive: true });
    await Deno.writeFile(`${values.save}/${name}.fwd.onnx`, fwdBytes);
    await Deno.writeFile(`${values.save}/${name}.head.onnx`, headBytes);
  }
  const fwd = await session(fwdBytes);
  const head = await session(headBytes);
  const dirs = values.compare ? values.compare.split(",") : [];
  const others = await Promise.all(
    dirs.map(async (d) => await session(await Deno.readFile(`${d}/${name}.head.onnx`))),
  );

  const rng = new RandomStream(1);
  const x = new Float32Array(N * 3 * 32 * 32).map(() => rng.uniform());
  const xT = new ort.Tensor("float32", x, [N, 3, 32, 32]);
  const yT = new ort.Tensor("int64", BigInt64Array.from({ length: N }, (_, i) => BigInt(i % 10)), [
    N,
  ]);
  const headFeeds = {
    x: xT,
    y: yT,
    coef: new ort.Tensor("float32", new Float32Array(N * 3).fill(1), [N, 3]),
    e_star: new ort.Tensor("float32", new Float32Array(N), [N]),
  };
  const runs: Array<[string, () => Promise<unknown>]> = [
    ["fwd", () => fwd.run({ x: xT, y: yT })],
    ["head", () => head.run(headFeeds)],
    ...others.map((o, i) => [dirs[i], () => o.run(headFeeds)] as [string, () => Promise<unknown>]),
  ];
  // Heads saved by other versions must compute the same gradient (an A/B of equivalent graphs).
  const ga = (await head.run(headFeeds)).grad.data as Float32Array;
  for (const [i, o] of others.entries()) {
    const gb = (await o.run(headFeeds)).grad.data as Float32Array;
    let num = 0, den = 0;
    for (let j = 0; j < ga.length; j++) {
      num = Math.max(num, Math.abs(ga[j] - gb[j]));
      den = Math.max(den, Math.abs(gb[j]));
    }
    console.log(
      `${name}: grad max|diff| / max|grad| vs ${dirs[i]}: ${(num / den).toExponential(2)}`,
    );
  }
  for (let i = 0; i < 3; i++) for (const [, f] of runs) await f();
  const times = runs.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) {
    for (const [k, [, f]] of runs.entries()) {
      const t0 = performance.now();
      await f();
      times[k].push(performance.now() - t0);
    }
  }
  const med = times.map(median), min = times.map((t) => Math.min(...t));
  console.log(
    `${name} batch ${N}: median ` +
      runs.map(([k], i) => `${k} ${med[i].toFixed(2)} ms`).join(", ") +
      `; head/fwd ${(med[1] / med[0]).toFixed(2)} (min ${(min[1] / min[0]).toFixed(2)})` +
      dirs.map((d, i) =>
        `; ${d}/fwd ${(med[i + 2] / med[0]).toFixed(2)} (min ${(min[i + 2] / min[0]).toFixed(2)})`
      ).join(""),
  );

  if (values.profile) {
    await Deno.mkdir(values.profile, { recursive: true });
    for (const [what, b] of [["fwd", fwdBytes], ["head", headBytes]] as const) {
      const s = await session(b, `${values.profile}/${name}.${what}`);
      const feeds = what === "fwd" ? { x: xT, y: yT } : headFeeds;
      for (let r = 0; r < reps; r++) await s.run(feeds);
      s.endProfiling();
      await s.release();
      const files = [...Deno.readDirSync(values.profile)]
        .filter((e) => e.name.startsWith(`${name}.${what}`) && e.name.endsWith(".json"))
        .map((e) => `${values.profile}/${e.name}`)
        .sort((a, b) => Deno.statSync(b).mtime!.getTime() - Deno.statSync(a).mtime!.getTime());
      console.log(`  ${what} profile (${files[0]}):`);
      await summarise(files[0]);
    }
  }
}
