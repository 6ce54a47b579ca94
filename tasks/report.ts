/**
 * Task `report`: one self-contained HTML file (inline CSS and SVG, PNG grids as base64 data:
 * URIs, no scripts, nothing fetched) from the JSON results of the other tasks:
 *   deno task report --in out/sweep-demo --in out/analyses --out out/report.html
 * Inputs are files or folders; folders are searched (4 levels deep) for sweep.json (a sweep, with
 * its points' grids), tradeoff.json (a sampler trade-off), run.json (a guide or sample run, with grid.png, trajectory.png and
 * evaluate.json beside it), evaluate.json, energy-stats, robust-accuracy, noise-accuracy and
 * energy-curve results. Anything else is skipped with a note in the report.
 * @module
 */
import { parseArgs } from "node:util";
import { basename, dirname, join, resolve } from "node:path";
import { writeFileAtomic } from "../lib/io/png.ts";
import { page, type ReportSection } from "../lib/report/html.ts";
import { compareSection } from "../lib/report/compare_section.ts";
import { samplerTradeoffSection } from "../lib/report/tradeoff_section.ts";
import {
  evaluateSection,
  type RunAssets,
  runSection,
  sweepSection,
} from "../lib/report/run_sections.ts";
import {
  energyCurveSection,
  energyStatsSection,
  noiseAccuracySection,
  robustAccuracySection,
} from "../lib/report/analysis_sections.ts";
import { UsageError, versions } from "./_args.ts";

const FLAGS = {
  in: { type: "string", multiple: true },
  out: { type: "string" },
  title: { type: "string" },
  help: { type: "boolean" },
} as const;

/** Usage text of `report`. */
export const REPORT_USAGE = `deno task report --in <file|folder> [--in ...] [--out out/report.html]
  --in <path>        a result JSON or a folder to search (repeatable; paths after the flags also
                     count): sweep.json, guide/sample run.json (grid.png, trajectory.png and
                     evaluate.json beside it are included), evaluate.json, energy-stats JSON,
                     robust-accuracy / noise-accuracy / energy-curve JSON, tradeoff.json
                     (deno task sampler-tradeoff)
  --out <file.html>  the report (default out/report.html): one self-contained file
  --title <text>     page title (default "robust-guidance report")`;

/** The kinds of result file the report renders. */
export type InputKind =
  | "sweep"
  | "compare"
  | "sampler-tradeoff"
  | "run"
  | "evaluate"
  | "energy-stats"
  | "robust-accuracy"
  | "noise-accuracy"
  | "energy-curve";

// deno-lint-ignore no-explicit-any
type Json = any;

/** A result file found among the inputs. */
export interface ReportInput {
  kind: InputKind;
  /** The JSON file. */
  path: string;
  json: Json;
}

/**
 * What a parsed JSON file is: a kind the report renders, "ignore" (files that belong to another
 * one: a run folder's config.json, a sweep point's point.json), or undefined (unknown).
 */
export function classifyJson(json: Json): InputKind | "ignore" | undefined {
  if (!json || typeof json !== "object" || Array.isArray(json)) return undefined;
  switch (json.task) {
    case "sweep":
      return Array.isArray(json.rows) ? "sweep" : "ignore"; // the sweep folder's config.json
    case "guide":
    case "sample":
      // run.json records the model as an object; the folder's config.json as a sha256 string.
      return json.model && typeof json.model === "object" && json.config ? "run" : "ignore";
    case "sweep-point":
    case "compare-point":
    case "compare-tuning":
      return "ignore";
    case "compare":
      return Array.isArray(json.rows) ? "compare" : "ignore"; // its folder's config.json
    case "sampler-tradeoff":
      return Array.isArray(json.rows) ? "sampler-tradeoff" : "ignore"; // or its config.json
    case "evaluate":
    case "energy-stats":
    case "robust-accuracy":
    case "noise-accuracy":
    case "energy-curve":
      return json.task;
    default:
      return undefined;
  }
}

async function stat(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch {
    return undefined;
  }
}

async function readBytes(path: string): Promise<Uint8Array | undefined> {
  return (await stat(path))?.isFile ? await Deno.readFile(path) : undefined;
}

async function readJsonFile(path: string): Promise<Json> {
  return JSON.parse(await Deno.readTextFile(path));
}

/** Finds the result files under the given paths, in order, each once; notes what it skips. */
export async function collectInputs(
  paths: readonly string[],
): Promise<{ inputs: ReportInput[]; notes: string[] }> {
  const inputs: ReportInput[] = [];
  const notes: string[] = [];
  const seen = new Set<string>();
  const add = async (file: string, explicit: boolean): Promise<void> => {
    const key = resolve(file);
    if (seen.has(key)) return;
    seen.add(key);
    let json: Json;
    try {
      json = await readJsonFile(file);
    } catch (e) {
      notes.push(`skipped ${file}: not readable as JSON (${(e as Error).message})`);
      return;
    }
    const kind = classifyJson(json);
    if (kind === "ignore") {
      if (explicit) notes.push(`skipped ${file}: a run's configuration file, not a result`);
      return;
    }
    if (kind === undefined) {
      notes.push(
        `skipped ${file}: not a result this report knows (task '${String(json?.task ?? "none")}')`,
      );
      return;
    }
    inputs.push({ kind, path: file, json });
  };
  const walk = async (dir: string, depth: number, explicit: boolean): Promise<void> => {
    // A sweep folder or a run folder is one section: its own files are not searched further.
    for (const name of ["sweep.json", "compare.json", "tradeoff.json", "run.json"]) {
      if ((await stat(join(dir, name)))?.isFile) {
        const before = inputs.length;
        await add(join(dir, name), true);
        if (inputs.length > before) return;
      }
    }
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(dir)) entries.push(e);
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    const before = inputs.length;
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isFile && e.name.endsWith(".json") && !e.name.includes(".partial.")) {
        await add(p, false);
      } else if (e.isDirectory && depth > 0 && !e.name.startsWith(".") && e.name !== "images") {
        await walk(p, depth - 1, false);
      }
    }
    if (explicit && inputs.length === before) {
      notes.push(`${dir}: no result JSON found (searched 4 levels deep)`);
    }
  };
  for (const p of paths) {
    const info = await stat(p);
    if (!info) {
      throw new UsageError(`--in ${p} does not exist; pass a result JSON file or a folder`);
    }
    if (info.isDirectory) await walk(p, 4, true);
    else await add(p, true);
  }
  return { inputs, notes };
}

/** A JSON file beside a result, or undefined (with a note when it exists but is broken). */
async function optionalJson(path: string, notes: string[]): Promise<Json> {
  if (!(await stat(path))?.isFile) return undefined;
  try {
    return await readJsonFile(path);
  } catch (e) {
    notes.push(`${path}: not readable as JSON (${(e as Error).message}); left out`);
    return undefined;
  }
}

/** Files of a run folder: grid.png, trajectory(_x0).png, evaluate.json, run.json. */
async function runAssets(dir: string, notes: string[]): Promise<RunAssets> {
  return {
    evaluate: await optionalJson(join(dir, "evaluate.json"), notes),
    run: await optionalJson(join(dir, "run.json"), notes),
    grid: await readBytes(join(dir, "grid.png")),
    trajectory: await readBytes(join(dir, "trajectory.png")),
    trajectoryX0: await readBytes(join(dir, "trajectory_x0.png")),
  };
}

/** The report section of one input (reading the images beside it). */
async function sectionOf(input: ReportInput, notes: string[]): Promise<ReportSection> {
  const { json, path } = input;
  switch (input.kind) {
    case "sweep": {
      const points = new Map<string, RunAssets>();
      for (const row of json.rows ?? []) {
        if (typeof row?.slug !== "string") continue;
        const runDir = join(dirname(path), typeof row.run === "string" ? row.run : row.slug);
        points.set(row.slug, await runAssets(runDir, notes));
      }
      return sweepSection(json, path, points);
    }
    case "compare":
      return compareSection(json, path);
    case "sampler-tradeoff":
      return samplerTradeoffSection(json, path);
    case "run":
      return runSection(json, path, await runAssets(dirname(path), notes));
    case "evaluate":
      return evaluateSection(json, path);
    case "energy-stats":
      return energyStatsSection(json, path);
    case "robust-accuracy":
      return robustAccuracySection(json, path);
    case "noise-accuracy":
      return noiseAccuracySection(json, path);
    case "energy-curve":
      return energyCurveSection(json, path);
  }
}

/** Builds the report's HTML from input paths; returns it with the notes it carries. */
export async function buildReport(
  paths: readonly string[],
  title = "robust-guidance report",
): Promise<{ html: string; sections: ReportSection[]; notes: string[] }> {
  const { inputs, notes } = await collectInputs(paths);
  // A run's evaluate.json is shown inside the run's section, not again on its own.
  const runDirs = new Set(
    inputs.filter((i) => i.kind === "run").map((i) => resolve(dirname(i.path))),
  );
  const sections: ReportSection[] = [];
  for (const input of inputs) {
    if (
      input.kind === "evaluate" && basename(input.path) === "evaluate.json" &&
      runDirs.has(resolve(dirname(input.path)))
    ) continue;
    try {
      sections.push(await sectionOf(input, notes));
    } catch (e) {
      notes.push(`skipped ${input.path} (${input.kind}): ${(e as Error).message}`);
    }
  }
  const present = new Set(inputs.map((i) => i.kind));
  const absent = (["robust-accuracy", "noise-accuracy", "energy-curve", "energy-stats"] as const)
    .filter((k) => !present.has(k));
  if (absent.length) {
    notes.push(
      `not among the inputs: ${absent.join(", ")} (pass their JSON, e.g. ` +
        `'deno task ${absent[0]}' writes out/${absent[0]}/..., to add a section)`,
    );
  }
  const intro = [
    `Generated ${new Date().toISOString()} by 'deno task report' (Deno ${versions().deno}) ` +
    `from ${paths.join(", ")}: ${sections.length} sections.`,
    "Self-contained: styles, plots and images are inside this file; nothing is fetched.",
  ];
  return { html: page(title, intro, notes, sections), sections, notes };
}

/** Runs `report`. */
export async function reportTask(args: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: FLAGS, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(
      `report: ${(e as Error).message}. Known flags: ${
        Object.keys(FLAGS).map((k) => "--" + k).join(" ")
      }`,
    );
  }
  const f = parsed.values;
  if (f.help) {
    console.log(REPORT_USAGE);
    return;
  }
  const paths = [...(f.in ?? []), ...parsed.positionals];
  if (paths.length === 0) {
    throw new UsageError(
      `report: --in is required: a result JSON or a folder (e.g. --in out/sweep --in out/analyses)`,
    );
  }
  const out = f.out ?? "out/report.html";
  if (!/\.html?$/i.test(out)) throw new UsageError(`--out '${out}' must end in .html`);
  const { html, sections, notes } = await buildReport(paths, f.title);
  await writeFileAtomic(out, new TextEncoder().encode(html));
  for (const n of notes) console.error(`report: note: ${n}`);
  console.error(
    `report: wrote ${out} (${(html.length / 1024).toFixed(0)} KiB, ${sections.length} sections: ` +
      `${sections.map((s) => s.title).join("; ")})`,
  );
}
