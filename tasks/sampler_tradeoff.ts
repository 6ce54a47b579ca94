/**
 * Task `sampler-tradeoff` (issue 16): guided images (the guide defaults: joint direction,
 * strength 10, sqrt schedule) at budgets of network calls per image for each sampler, each point
 * one `guide` run + one `evaluate` run (METHOD.md §6: evaluator target accuracy, FD,
 * precision/recall), plus DDIM at the top budget on disjoint seeds (the run-to-run FD spread),
 * and the rule that decides whether a fast sampler replaces DDIM-100 as the default.
 *   deno task sampler-tradeoff --seeds 0-49 --out out/sampler-tradeoff
 * Writes <out>/<sampler>-<steps>/ (a guide run folder + evaluate.json per point),
 * <out>/tradeoff.json, tradeoff.md and tradeoff.svg. Resumable like `sweep`.
 * @module
 */
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { writeFileAtomic } from "../lib/io/png.ts";
import { progress } from "../lib/progress.ts";
import { parseSeeds } from "../lib/random.ts";
import { claimRunFolder, fileExists, formatSeeds } from "../lib/shard.ts";
import {
  defaultVerdict,
  tradeoffMarkdown,
  type TradeoffPoint,
  tradeoffPoints,
  type TradeoffRow,
  tradeoffRow,
  tradeoffSvg,
} from "../lib/sweep/sampler_tradeoff.ts";
import { defaultModel, weightsBaseFrom } from "../lib/weights.ts";
import { parseFlags, UsageError, versions } from "./_args.ts";
import { evaluateTask } from "./evaluate.ts";
import { guideTask } from "./guide.ts";
import { passFlags, passThroughOptions, readJson } from "./_grid_run.ts";

/** Guide flags passed unchanged (the strength stays guide's default unless given). */
const GUIDE_PASS = [
  "model",
  "classifier",
  "direction",
  "scale",
  "schedule",
  "clip",
  "batch",
  "provider",
  "threads",
  "weights",
] as const;
/** Evaluate flags passed unchanged. */
const EVALUATE_PASS = [
  "reference",
  "reference-limit",
  "data",
  "cache",
  "provider",
  "threads",
  "weights",
] as const;

/** Defaults: the grid. */
export const TRADEOFF_DEFAULTS = {
  samplers: "ddim,dpmpp-2m,unipc,heun",
  calls: "10,15,20,25,50,100",
  seeds: "0-49",
  out: "out/sampler-tradeoff",
} as const;

/** Usage text of `sampler-tradeoff`. */
export const TRADEOFF_USAGE = `deno task sampler-tradeoff [flags]
  --samplers <list>     samplers (default ${TRADEOFF_DEFAULTS.samplers})
  --calls <list>        network calls per image (default ${TRADEOFF_DEFAULTS.calls}); Heun takes
                        the largest 2 steps - 1 <= calls
  --seeds <list>        per-class seeds (default ${TRADEOFF_DEFAULTS.seeds}: 500 images over the 10 classes)
  --repeat-seeds <list> disjoint seeds of the same count for DDIM at the top budget, the FD
                        run-to-run spread (default: --seeds shifted by 100000)
  --evaluator <id|path> independent classifier (default: the manifest's evaluator)
  --out <dir>           (default ${TRADEOFF_DEFAULTS.out})
  Passed to guide: --model --classifier --direction --scale --schedule --clip --batch
  Passed to evaluate: --reference --reference-limit --data --cache
  --provider --threads --weights   both`;

const FLAGS = {
  samplers: { type: "string" },
  calls: { type: "string" },
  seeds: { type: "string" },
  "repeat-seeds": { type: "string" },
  evaluator: { type: "string" },
  out: { type: "string" },
  ...passThroughOptions(GUIDE_PASS, EVALUATE_PASS),
  help: { type: "boolean" },
} as const;

const SAMPLERS = ["ddim", "ddpm", "dpmpp-2m", "unipc", "heun"];

function seedsOf(flag: string, text: string): number[] {
  try {
    return parseSeeds(text);
  } catch (e) {
    throw new UsageError(`--${flag}: ${(e as Error).message}`);
  }
}

/** Runs `sampler-tradeoff`. */
export async function samplerTradeoffTask(args: string[]): Promise<void> {
  const f = parseFlags("sampler-tradeoff", args, FLAGS);
  if (f.help) {
    console.log(TRADEOFF_USAGE);
    return;
  }
  const t0 = performance.now();
  const samplers = (f.samplers ?? TRADEOFF_DEFAULTS.samplers).split(",").map((s) => s.trim());
  for (const s of samplers) {
    if (!SAMPLERS.includes(s) || s === "ddpm") {
      throw new UsageError(
        `--samplers: '${s}' is not a sampler with a step budget; use any of ddim, dpmpp-2m, unipc, heun`,
      );
    }
  }
  const calls = (f.calls ?? TRADEOFF_DEFAULTS.calls).split(",").map((c) => {
    const v = Number(c);
    if (!Number.isInteger(v) || v < 1 || v > 1000) {
      throw new UsageError(`--calls: '${c}' is not an integer from 1 to 1000`);
    }
    return v;
  });
  const seeds = seedsOf("seeds", f.seeds ?? TRADEOFF_DEFAULTS.seeds);
  const repeat = f["repeat-seeds"] !== undefined
    ? seedsOf("repeat-seeds", f["repeat-seeds"])
    : seeds.map((s) => s + 100000);
  if (repeat.length !== seeds.length || repeat.some((s) => seeds.includes(s))) {
    throw new UsageError(
      `--repeat-seeds must hold as many seeds as --seeds (${seeds.length}), none of them shared`,
    );
  }
  const out = f.out ?? TRADEOFF_DEFAULTS.out;
  const base = weightsBaseFrom(f.weights);
  const evaluator = f.evaluator ?? await defaultModel("evaluator", base);
  const rec = f as Record<string, string | undefined>;
  await claimRunFolder(out, {
    task: "sampler-tradeoff",
    evaluator,
    seeds: formatSeeds(seeds),
    repeatSeeds: formatSeeds(repeat),
    ...Object.fromEntries(
      [...GUIDE_PASS, ...EVALUATE_PASS].filter((k) =>
        !["provider", "threads", "weights", "batch", "cache"].includes(k)
      )
        .map((k) => [k, rec[k] ?? null]),
    ),
  });
  const points = tradeoffPoints(samplers, calls);
  const todo: TradeoffPoint[] = [];
  for (const p of points) if (!(await fileExists(`${out}/${p.slug}/evaluate.json`))) todo.push(p);
  console.error(
    `sampler-tradeoff: ${points.length} points (${samplers.join(", ")} x ${
      calls.join(", ")
    } calls` +
      `${
        samplers.includes("ddim") ? " + DDIM repeat" : ""
      }), ${seeds.length} seeds x 10 classes; ` +
      `${points.length - todo.length} done, ${todo.length} to run -> ${out}`,
  );
  const tick = progress("sampler-tradeoff", todo.length, "points");
  for (const [i, p] of todo.entries()) {
    const dir = `${out}/${p.slug}`;
    console.error(
      `sampler-tradeoff: [${
        i + 1
      }/${todo.length}] ${p.sampler} ${p.steps} steps (${p.calls} calls) -> ${dir}`,
    );
    await guideTask([
      "--class=all",
      `--seeds=${formatSeeds(p.seedSet === "repeat" ? repeat : seeds)}`,
      `--sampler=${p.sampler}`,
      `--steps=${p.steps}`,
      "--evaluator=none", // scored once, below
      `--out=${dir}`,
      ...passFlags(f, GUIDE_PASS),
    ]);
    const partial = `${dir}/evaluate.partial.json`;
    await evaluateTask([
      `--images=${dir}`,
      `--evaluator=${evaluator}`,
      `--out=${partial}`,
      ...passFlags(f, EVALUATE_PASS),
    ]);
    await Deno.rename(partial, `${dir}/evaluate.json`); // marks the point done
    tick(i + 1);
  }
  const rows: TradeoffRow[] = [];
  for (const p of points) {
    rows.push(
      tradeoffRow(
        p,
        await readJson(`${out}/${p.slug}/run.json`),
        await readJson(`${out}/${p.slug}/evaluate.json`),
      ),
    );
  }
  const about =
    `Guided (guide defaults${
      passFlags(f, ["direction", "scale", "schedule"]).map((a) => " " + a).join("")
    }), ` +
    `all 10 classes x seeds ${formatSeeds(seeds)} per point, evaluated by ${evaluator}; ` +
    `s / image is guide's sampling time per image (guidance included, evaluation excluded).`;
  const verdict = defaultVerdict(rows);
  await writeJsonAtomic(`${out}/tradeoff.json`, {
    task: "sampler-tradeoff",
    config: {
      samplers,
      calls,
      seeds: formatSeeds(seeds),
      repeatSeeds: formatSeeds(repeat),
      evaluator,
    },
    rows,
    verdict: {
      text: verdict.text,
      fdSpread: verdict.fdSpread,
      qualifying: verdict.qualifying.map((r) => r.slug),
    },
    versions: { ...versions(), "onnxruntime-node": "1.30.0" },
    seconds: (performance.now() - t0) / 1000,
  });
  const enc = new TextEncoder();
  const md = tradeoffMarkdown(rows, about);
  await writeFileAtomic(`${out}/tradeoff.md`, enc.encode(md));
  const svg = tradeoffSvg(rows, "Guided sampling vs network calls");
  if (svg) await writeFileAtomic(`${out}/tradeoff.svg`, enc.encode(svg));
  console.error(md);
  console.error(
    `sampler-tradeoff: wrote ${out}/tradeoff.json, tradeoff.md${svg ? ", tradeoff.svg" : ""}`,
  );
}
