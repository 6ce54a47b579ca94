/**
 * Task `compare`: the guidance methods against each other in one harness (issue 15): the same
 * denoiser, classifier, sampler, seeds and independent evaluator for every method. Per method,
 * its main strength parameter is tuned on a small grid on validation seeds (guide runs; the
 * highest target accuracy at an FD no worse than unguided picks the value, {@link SELECTION_RULE}), then the chosen setting runs on separate test
 * seeds and is evaluated (target accuracy with a Wilson 95% interval, FD, precision/recall), with
 * its network calls and seconds per image.
 *   deno task compare --methods thesis,dps,tfg [--val-seeds 1000-1004] [--test-seeds 0-49]
 *     [--grid 'dps:zeta=0.3|1|3;tfg:rho=1|3'] [--fixed 'tfg:mu=0.5,recur=2'] [--steps 50]
 *     [--model <id>] [--classifier <id>] [--evaluator <id>] [--out out/compare]
 * Every validation point is evaluated too (FD, precision/recall on its n images), and an
 * unguided reference (`deno task sample`, the same sampler, n distinct seeds: 10000.. for
 * validation, 0.. for test) is run and evaluated at each n, so methods can be compared at equal
 * FD along their grids (pareto_val.svg) and against no guidance at all.
 * Writes <out>/val/<method>-<param>-<value>/ (guide run + evaluate.json), <out>/{val,test}/unguided/
 * (sample run + evaluate.json), <out>/test/<method>/ (guide run + evaluate.json),
 * <out>/compare.json, compare.md, pareto.svg and pareto_val.svg. Resumable like `sweep`: a
 * validation point with a run.json and a test point with an evaluate.json are skipped; guide
 * resumes a point killed mid-run; a changed fixed setting is refused (use a new --out).
 * @module
 */
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { writeFileAtomic } from "../lib/io/png.ts";
import { progress } from "../lib/progress.ts";
import { parseSeeds } from "../lib/random.ts";
import { claimRunFolder, fileExists } from "../lib/shard.ts";
import { METHOD_NAMES, methodDef, resolveMethod } from "../lib/guidance/methods/registry.ts";
import { parseParamText } from "../lib/guidance/methods/params.ts";
import {
  compareMarkdown,
  type CompareRow,
  paretoSvg,
  type TuningPoint,
  validationMarkdown,
  validationSvg,
  wilsonInterval,
} from "../lib/compare/results.ts";
import { defaultModel, weightsBaseFrom } from "../lib/weights.ts";
import { numberFlag, parseFlags, UsageError, versions } from "./_args.ts";
import { evaluateTask } from "./evaluate.ts";
import { guideTask } from "./guide.ts";
import { sampleTask } from "./sample.ts";
import { passFlags, passThroughOptions, readJson } from "./_grid_run.ts";

/** Flags passed to every guide run unchanged (when given). */
const GUIDE_PASS = [
  "class",
  "steps",
  "eta",
  "sampler",
  "spacing",
  "variance",
  "clip",
  "batch",
  "noise-aware",
  "provider",
  "threads",
  "weights",
] as const;

/** Flags passed to the unguided reference's sample runs unchanged (when given). */
const SAMPLE_PASS = [
  "sampler",
  "spacing",
  "variance",
  "clip",
  "batch",
  "provider",
  "threads",
  "weights",
] as const;

/** Flags passed to every evaluate run unchanged (when given). */
const EVALUATE_PASS = [
  "reference",
  "reference-limit",
  "data",
  "cache",
  "k",
  "features",
  "provider",
  "threads",
  "weights",
] as const;

const FLAGS = {
  methods: { type: "string" },
  model: { type: "string" },
  classifier: { type: "string" },
  evaluator: { type: "string" },
  "val-seeds": { type: "string" },
  "test-seeds": { type: "string" },
  grid: { type: "string" },
  fixed: { type: "string" },
  out: { type: "string" },
  ...passThroughOptions(GUIDE_PASS, EVALUATE_PASS),
  help: { type: "boolean" },
} as const;

/** Defaults of `compare`. */
export const COMPARE_DEFAULTS = {
  methods: METHOD_NAMES.join(","),
  valSeeds: "1000-1004",
  testSeeds: "0-49",
  steps: "50",
  out: "out/compare",
} as const;

/** Usage text of `compare`. */
export const COMPARE_USAGE = `deno task compare [flags]
  --methods <list>         methods to compare (default ${COMPARE_DEFAULTS.methods})
  --val-seeds <list>       per-class seeds of the tuning runs (default ${COMPARE_DEFAULTS.valSeeds})
  --test-seeds <list>      per-class seeds of the test runs, disjoint from the validation seeds
                           (default ${COMPARE_DEFAULTS.testSeeds}: 50 per class)
  --grid '<m>:<p>=v|v|v;...'   tuning grid of a method's parameter (default: each method's own,
                           e.g. dps:zeta=0.3|1|3; one value skips tuning)
  --fixed '<m>:k=v,k=v;...'    other parameters of a method, fixed on both seed sets
  --model <id|path> --classifier <id|path> --noise-aware <id|path>   the shared models
                           (defaults: the manifest's denoiser and classifier, cifar10-resnet16-noise-aware)
  --evaluator <id|path>    independent classifier: target accuracy and FD features (default: the
                           manifest's); never the guiding one
  --class --steps (default ${COMPARE_DEFAULTS.steps}) --eta --sampler ddim|ddpm --spacing --variance --clip
  --batch   as in 'deno task guide --help'
  --reference --reference-limit --data --cache --k --features   as in 'deno task evaluate --help'
  --out <dir>              (default ${COMPARE_DEFAULTS.out}): val/, test/, compare.json, compare.md, pareto.svg
  --provider auto|cpu|cuda --threads <n> --weights <dir|url>
  Resume: rerun the same command; finished points are skipped.`;

type Flags = ReturnType<typeof parseCompareFlags>;

function parseCompareFlags(args: string[]) {
  return parseFlags("compare", args, FLAGS);
}

/** Parses "m:k=v,k=v;m2:..." into per-method raw parameter texts. */
function perMethod(flag: string, raw: string | undefined, methods: string[]): Map<string, string> {
  const out = new Map<string, string>();
  if (!raw) return out;
  for (const part of raw.split(";").map((s) => s.trim()).filter(Boolean)) {
    const m = /^([\w-]+):(.+)$/.exec(part);
    if (!m) throw new UsageError(`--${flag} '${part}' is not <method>:<values>`);
    if (!methods.includes(m[1])) {
      throw new UsageError(
        `--${flag} names method '${m[1]}', which is not in --methods (${methods.join(",")})`,
      );
    }
    out.set(m[1], m[2]);
  }
  return out;
}

/** One method's plan: fixed parameters, the tuned parameter and its grid. */
interface MethodPlan {
  method: string;
  fixed: Record<string, string>;
  param: string;
  grid: number[];
}

function planMethods(methods: string[], f: Flags): MethodPlan[] {
  const grids = perMethod("grid", f.grid, methods);
  const fixeds = perMethod("fixed", f.fixed, methods);
  return methods.map((m) => {
    let def;
    try {
      def = methodDef(m);
    } catch (e) {
      throw new UsageError(`--methods: ${(e as Error).message}`);
    }
    let fixed: Record<string, string>;
    try {
      fixed = parseParamText(fixeds.get(m));
    } catch (e) {
      throw new UsageError(`--fixed ${m}: ${(e as Error).message}`);
    }
    let param = def.tune.param, grid = [...def.tune.grid];
    const g = grids.get(m);
    if (g) {
      const mm = /^([A-Za-z_][\w-]*)=(.+)$/.exec(g.trim());
      if (!mm) throw new UsageError(`--grid ${m}:${g} is not <param>=v|v|v`);
      param = mm[1];
      grid = mm[2].split("|").map((v) => Number(v));
      if (grid.some((v) => !Number.isFinite(v))) {
        throw new UsageError(`--grid ${m}:${g}: every value must be a number`);
      }
    }
    if (param in fixed) {
      throw new UsageError(`--fixed ${m} sets '${param}', the parameter --grid tunes; drop one`);
    }
    // validate every combination now, before any model runs
    for (const v of grid) {
      try {
        resolveMethod(m, { ...fixed, [param]: v });
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    }
    return { method: m, fixed, param, grid };
  });
}

/** guide flags of one method setting (thesis's scale is guide's --scale). */
function methodArgs(p: MethodPlan, value: number): string[] {
  if (p.method === "thesis" && p.param === "scale") {
    const rest = Object.entries(p.fixed).map(([k, v]) => `${k}=${v}`).join(",");
    // the thesis's Alg 6 (joint direction at x_t, METHOD.md §4.6), whatever guide's defaults are
    return [
      "--method=thesis",
      "--direction=joint",
      "--point=xt",
      `--scale=${value}`,
      ...(rest ? [`--method-params=${rest}`] : []),
    ];
  }
  const params = { ...p.fixed, [p.param]: String(value) };
  const text = Object.entries(params).map(([k, v]) => `${k}=${v}`).join(",");
  return [`--method=${p.method}`, `--method-params=${text}`];
}

const slug = (p: MethodPlan, v: number) =>
  `${p.method}-${p.param}-${String(v).replace(/[^\w.-]/g, "_")}`;

const numOrNull = (v: unknown): number | null =>
  typeof v === "number" && Number.isFinite(v) ? v : null;

/** Runs `compare`. */
export async function compareTask(args: string[]): Promise<void> {
  const f = parseCompareFlags(args);
  if (f.help) {
    console.log(COMPARE_USAGE);
    return;
  }
  const t0 = performance.now();
  const methods = (f.methods ?? COMPARE_DEFAULTS.methods).split(",").map((s) => s.trim())
    .filter(Boolean);
  if (methods.length === 0) throw new UsageError(`--methods is empty: name at least one method`);
  if (new Set(methods).size !== methods.length) {
    throw new UsageError(`--methods '${f.methods}' names a method twice`);
  }
  const plans = planMethods(methods, f);
  const valText = f["val-seeds"] ?? COMPARE_DEFAULTS.valSeeds;
  const testText = f["test-seeds"] ?? COMPARE_DEFAULTS.testSeeds;
  let valSeeds: number[], testSeeds: number[];
  try {
    valSeeds = parseSeeds(valText);
    testSeeds = parseSeeds(testText);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const shared = valSeeds.filter((s) => testSeeds.includes(s));
  if (shared.length) {
    throw new UsageError(
      `--val-seeds and --test-seeds share seeds (${shared.slice(0, 5).join(",")}...): tuning ` +
        `and testing need separate seeds`,
    );
  }
  const steps = f.steps ?? COMPARE_DEFAULTS.steps;
  numberFlag("steps", steps, 50, { int: true, min: 1 });
  if (f.eta !== undefined) numberFlag("eta", f.eta, 0.5, { min: 0 });
  const out = f.out ?? COMPARE_DEFAULTS.out;
  const base = weightsBaseFrom(f.weights);
  const model = f.model ?? await defaultModel("denoiser", base);
  const classifier = f.classifier ?? await defaultModel("classifier", base);
  const evaluator = f.evaluator ?? await defaultModel("evaluator", base);
  if (evaluator === classifier) {
    throw new UsageError(
      `--evaluator ${evaluator} is the guiding classifier: target accuracy must come from an ` +
        `independent one (METHOD.md §6)`,
    );
  }
  const fixedConfig = {
    task: "compare",
    model,
    classifier,
    evaluator,
    valSeeds: valText,
    testSeeds: testText,
    steps,
    ...Object.fromEntries(
      [...GUIDE_PASS, ...EVALUATE_PASS]
        .filter((k) => !["provider", "threads", "weights", "batch", "cache", "steps"].includes(k))
        .map((k) => [k, (f as Record<string, unknown>)[k] ?? null]),
    ),
  };
  await claimRunFolder(out, fixedConfig);
  const guideFixed = [
    `--model=${model}`,
    `--classifier=${classifier}`,
    `--evaluator=${evaluator}`,
    `--steps=${steps}`,
    ...(f.class === undefined ? ["--class=all"] : []),
    ...passFlags(f, GUIDE_PASS.filter((k) => k !== "steps")),
  ];
  const evaluateFixed = [`--evaluator=${evaluator}`, ...passFlags(f, EVALUATE_PASS)];
  // A run folder's evaluation (its evaluate.json `results`): evaluated once, marked done by one
  // rename of the finished file, read back on every later call and rerun.
  // deno-lint-ignore no-explicit-any
  const evaluateOnce = async (dir: string): Promise<any> => {
    if (!(await fileExists(`${dir}/evaluate.json`))) {
      const partial = `${dir}/evaluate.partial.json`;
      await evaluateTask([...evaluateFixed, "--images", dir, "--out", partial]);
      await Deno.rename(partial, `${dir}/evaluate.json`);
    }
    return (await readJson(`${dir}/evaluate.json`))?.results ?? {};
  };
  // The unguided reference at n images: the same denoiser and sampler (guide's default eta 0.5
  // unless --eta), n distinct seeds from `first`; sampled and evaluated once, then read back.
  const unguidedPoint = async (dir: string, first: number, n: number): Promise<CompareRow> => {
    if (!(await fileExists(`${dir}/evaluate.json`))) {
      console.error(`compare: unguided reference, ${n} images -> ${dir}`);
      await sampleTask([
        `--model=${model}`,
        `--steps=${steps}`,
        ...((f.sampler ?? "ddim") === "ddim" ? [`--eta=${f.eta ?? "0.5"}`] : []),
        `--seeds=${first}-${first + n - 1}`,
        ...passFlags(f, SAMPLE_PASS),
        `--out=${dir}`,
      ]);
    }
    const r = await evaluateOnce(dir);
    return {
      method: "unguided",
      params: {},
      tuned: null,
      n: numOrNull(r.n),
      targetAccuracy: null,
      interval: null,
      fd: numOrNull(r.fd?.value),
      precision: numOrNull(r.precision?.value),
      recall: numOrNull(r.recall?.value),
      calls: null,
      secondsPerImage: secondsPerImage(await readJson(`${dir}/run.json`)),
    };
  };

  // --- tuning on the validation seeds: guide runs, scored by the evaluator's target accuracy ---
  const valPoints = plans.flatMap((p) => p.grid.length > 1 ? p.grid.map((v) => ({ p, v })) : []);
  const valTodo = [];
  for (const q of valPoints) {
    const run = await readJson(`${out}/val/${slug(q.p, q.v)}/run.json`);
    if (numOrNull(run?.results?.targetAccuracy) === null) valTodo.push(q);
  }
  const testTodo = [];
  for (const p of plans) {
    if (!(await fileExists(`${out}/test/${p.method}/evaluate.json`))) testTodo.push(p);
  }
  console.error(
    `compare: ${plans.length} methods; tuning ${valPoints.length} points on seeds ${valText} ` +
      `(${valTodo.length} to run), testing on seeds ${testText} (${testTodo.length} to run) -> ${out}`,
  );
  const tick = progress("compare", valTodo.length + testTodo.length, "runs");
  let done = 0;
  for (const { p, v } of valTodo) {
    const dir = `${out}/val/${slug(p, v)}`;
    console.error(`compare: tune ${p.method} ${p.param}=${v} -> ${dir}`);
    await runGuide([...guideFixed, ...methodArgs(p, v), `--seeds=${valText}`, `--out=${dir}`], p);
    tick(++done);
  }
  // every validation point evaluated (FD etc. at the validation n), and the unguided reference
  // deno-lint-ignore no-explicit-any
  const valResults = new Map<string, any>();
  let valN: number | null = null;
  for (const { p, v } of valPoints) {
    const r = await evaluateOnce(`${out}/val/${slug(p, v)}`);
    valResults.set(slug(p, v), r);
    valN ??= numOrNull(r.n);
  }
  const unguidedVal = valN === null
    ? null
    : await unguidedPoint(`${out}/val/unguided`, 10000, valN);
  const chosen = new Map<string, { value: number; validationAccuracy: number | null }>();
  const tuning: TuningPoint[] = [];
  for (const p of plans) {
    if (p.grid.length === 1) {
      chosen.set(p.method, { value: p.grid[0], validationAccuracy: null });
      continue;
    }
    for (const v of p.grid) {
      const run = await readJson(`${out}/val/${slug(p, v)}/run.json`);
      const ev = valResults.get(slug(p, v));
      const acc = numOrNull(run?.results?.targetAccuracy);
      tuning.push({
        method: p.method,
        param: p.param,
        value: v,
        validationAccuracy: acc,
        n: numOrNull(ev.n),
        fd: numOrNull(ev.fd?.value),
        precision: numOrNull(ev.precision?.value),
        recall: numOrNull(ev.recall?.value),
        secondsPerImage: secondsPerImage(run),
      });
    }
    const mine = tuning.filter((q) => q.method === p.method);
    const pick = selectPoint(mine, unguidedVal?.fd ?? null);
    if (!pick) throw new Error(`compare: no validation run of ${p.method} has a target accuracy`);
    chosen.set(p.method, { value: pick.value, validationAccuracy: pick.validationAccuracy });
  }
  await writeJsonAtomic(`${out}/tuning.json`, {
    task: "compare-tuning",
    rule: SELECTION_RULE,
    points: tuning,
    unguided: unguidedVal,
  });

  // --- the test runs: the chosen setting on the test seeds, then evaluate ---
  for (const p of testTodo) {
    const dir = `${out}/test/${p.method}`;
    const c = chosen.get(p.method)!;
    const point = { method: p.method, param: p.param, value: c.value };
    const pointFile = await readJson(`${dir}/point.json`);
    if (pointFile && pointFile.value !== c.value) {
      throw new UsageError(
        `${dir} was run with ${p.param}=${pointFile.value} but tuning now picks ${c.value} ` +
          `(the validation runs changed); use a new --out`,
      );
    }
    await writeJsonAtomic(`${dir}/point.json`, { task: "compare-point", ...point });
    console.error(`compare: test ${p.method} ${p.param}=${c.value} -> ${dir}`);
    await runGuide([
      ...guideFixed,
      ...methodArgs(p, c.value),
      `--seeds=${testText}`,
      `--out=${dir}`,
    ], p);
    await evaluateOnce(dir);
    tick(++done);
  }

  // --- collect ---
  const testN = numOrNull((await evaluateOnce(`${out}/test/${plans[0].method}`)).n);
  const unguidedTest = testN === null
    ? null
    : await unguidedPoint(`${out}/test/unguided`, 0, testN);
  const rows: CompareRow[] = [];
  let fdName: string | null = null;
  for (const p of plans) {
    const dir = `${out}/test/${p.method}`;
    const run = await readJson(`${dir}/run.json`);
    const ev = await readJson(`${dir}/evaluate.json`);
    const r = ev?.results ?? {};
    fdName ??= typeof r.fd?.name === "string" ? r.fd.name : null;
    const n = numOrNull(r.n);
    const acc = numOrNull(r.targetAccuracy?.overall) ?? numOrNull(run?.results?.targetAccuracy);
    const c = chosen.get(p.method)!;
    const calls = run?.callsPerImage;
    rows.push({
      method: p.method,
      params: { ...resolveMethod(p.method, { ...p.fixed, [p.param]: c.value }).params },
      tuned: p.grid.length > 1 ? { param: p.param, ...c } : null,
      n,
      targetAccuracy: acc,
      interval: acc !== null && n ? wilsonInterval(Math.round(acc * n), n) : null,
      fd: numOrNull(r.fd?.value),
      precision: numOrNull(r.precision?.value),
      recall: numOrNull(r.recall?.value),
      calls: calls && typeof calls.denoiser === "number" ? calls : null,
      secondsPerImage: secondsPerImage(run),
    });
  }
  if (unguidedTest) rows.push(unguidedTest);
  const about =
    `${model} guided by ${classifier} (noise-aware: ${
      f["noise-aware"] ?? "cifar10-resnet16-noise-aware"
    }), evaluated by ${evaluator}; ${steps} ${f.sampler ?? "ddim"} steps` +
    (f.eta ? `, eta ${f.eta}` : "") + `; tuned on seeds ${valText}, tested on seeds ${testText}` +
    ` per class (class ${f.class ?? "all"}). Seconds are this machine's sampling time per image.`;
  const result = {
    task: "compare",
    config: { ...fixedConfig, methods, grids: plans, out },
    rows,
    tuning,
    fdName,
    unguidedValidation: unguidedVal,
    selection: SELECTION_RULE,
    ranNow: { validation: valTodo.length, test: testTodo.length },
    versions: { ...versions(), "onnxruntime-node": "1.30.0" },
    seconds: (performance.now() - t0) / 1000,
  };
  await writeJsonAtomic(`${out}/compare.json`, result);
  const enc = new TextEncoder();
  const md = compareMarkdown(rows, about) +
    (tuning.length ? "\n" + validationMarkdown(tuning, unguidedVal, valText) : "");
  await writeFileAtomic(`${out}/compare.md`, enc.encode(md));
  const svg = paretoSvg(
    rows,
    `Guidance methods: ${model}, ${classifier}` +
      (unguidedTest?.fd != null ? ` (unguided FD ${unguidedTest.fd.toFixed(2)})` : ""),
    fdName ?? "FD",
  );
  if (svg) await writeFileAtomic(`${out}/pareto.svg`, enc.encode(svg));
  const valSvg = validationSvg(
    tuning,
    unguidedVal,
    `Validation grid (seeds ${valText}): ${model}, ${classifier}`,
    fdName ?? "FD",
  );
  if (valSvg) await writeFileAtomic(`${out}/pareto_val.svg`, enc.encode(valSvg));
  console.error(md);
  console.error(
    `compare: wrote ${out}/compare.json, compare.md${svg ? ", pareto.svg" : ""}${
      valSvg ? ", pareto_val.svg" : ""
    }`,
  );
}

/** How tuning picks a method's value (recorded in tuning.json and compare.json). */
export const SELECTION_RULE =
  "among the grid points whose validation FD is at most the unguided reference's at the same n " +
  "(none such: all points), those whose validation target accuracy is within one binomial " +
  "standard error of the best (sqrt(p(1-p)/n), at least 1/n) tie, and the tie with the lowest FD wins";

/** The grid point {@link SELECTION_RULE} picks (undefined when no point has an accuracy). */
export function selectPoint(
  points: readonly TuningPoint[],
  unguidedFd: number | null,
): TuningPoint | undefined {
  const scored = points.filter((q) => q.validationAccuracy !== null);
  const within = unguidedFd === null
    ? []
    : scored.filter((q) => typeof q.fd === "number" && q.fd <= unguidedFd);
  const pool = within.length ? within : scored;
  if (pool.length === 0) return undefined;
  const top = Math.max(...pool.map((q) => q.validationAccuracy!));
  const n = Math.max(1, ...pool.map((q) => q.n ?? 1));
  const se = Math.max(1 / n, Math.sqrt(top * (1 - top) / n));
  const ties = pool.filter((q) => q.validationAccuracy! >= top - se - 1e-12);
  return ties.reduce((a, b) => ((b.fd ?? Infinity) < (a.fd ?? Infinity) ? b : a));
}

/** Seconds of sampling per image of a guide or sample run.json (null when it sampled nothing now). */
// deno-lint-ignore no-explicit-any
function secondsPerImage(run: any): number | null {
  return typeof run?.seconds === "number" && run?.sampledNow > 0
    ? run.seconds / run.sampledNow
    : null;
}

/** One guide run, its errors naming the method. */
async function runGuide(args: string[], p: MethodPlan): Promise<void> {
  try {
    await guideTask(args);
  } catch (e) {
    const msg = `compare: ${p.method} failed: ${(e as Error).message}; finished points are ` +
      `kept, fix the cause and rerun to continue`;
    throw e instanceof UsageError ? new UsageError(msg) : new Error(msg, { cause: e });
  }
}
