/**
 * Report sections of sampling results: a sweep (sweep.json with its points' grids), a guide or
 * sample run folder (run.json, grid.png, trajectory.png, evaluate.json beside it) and an
 * evaluate.json on its own. Each takes parsed JSON plus the image bytes the caller read, and
 * throws (naming the missing field) on a file of another shape.
 * @module
 */
import { CIFAR10_CLASSES } from "../data/cifar10.ts";
import {
  cell,
  metricNames,
  type SweepMetricNames,
  type SweepRow,
  sweepTable,
  tradeoffSvg,
} from "../sweep/results.ts";
import {
  jsonDetails,
  keyValues,
  list,
  para,
  pngFigure,
  type ReportSection,
  svgFigure,
  table,
} from "./html.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

/** Images and files found beside a sweep point or a run. */
export interface RunAssets {
  /** grid.png bytes. */
  grid?: Uint8Array;
  /** trajectory.png bytes. */
  trajectory?: Uint8Array;
  /** trajectory_x0.png bytes (sample --trajectory: x0_hat along the steps). */
  trajectoryX0?: Uint8Array;
  /** The evaluate.json beside the run. */
  evaluate?: Json;
  /** The run.json of a sweep point (its class list labels the grid rows). */
  run?: Json;
}

const pct = (v: unknown) => typeof v === "number" ? `${(100 * v).toFixed(1)}%` : "n/a";
const fix = (v: unknown, d = 3) => typeof v === "number" ? v.toFixed(d) : "n/a";
const text = (v: unknown): string =>
  v === undefined || v === null ? "n/a" : typeof v === "object" ? JSON.stringify(v) : String(v);

/** Flags recorded as an object, written as a command line: "--steps 5 --eta 0.5". */
function flagsText(flags: Json): string {
  if (!flags || typeof flags !== "object") return "(defaults)";
  const parts = Object.entries(flags).map(([k, v]) => `--${k} ${v}`);
  return parts.length ? parts.join(" ") : "(defaults)";
}

function need(json: Json, path: string, what: string): void {
  let v = json;
  for (const k of path.split(".")) v = v?.[k];
  if (v === undefined) throw new Error(`${what} has no '${path}'`);
}

/** Direction with its parameters, e.g. "dual (lambda 0.15)". */
function directionText(d: Json): string {
  if (!d || typeof d !== "object") return text(d);
  const extra = Object.entries(d).filter(([k, v]) => k !== "kind" && !Array.isArray(v));
  return extra.length ? `${d.kind} (${extra.map(([k, v]) => `${k} ${v}`).join(", ")})` : d.kind;
}

/** The evaluate.json metrics as key/value pairs. */
function evaluatePairs(ev: Json): [string, string][] {
  const r = ev.results ?? {};
  return [
    ["images", text(r.n)],
    ["reference", `${text(ev.reference?.spec)} (${text(ev.reference?.n)} images)`],
    [r.targetAccuracy?.name ?? "target accuracy", pct(r.targetAccuracy?.overall)],
    [r.fd?.name ?? "FD", fix(r.fd?.value)],
    [r.is?.name ?? "IS", r.is ? `${fix(r.is.mean)} ± ${fix(r.is.std)}` : "n/a"],
    [r.precision?.name ?? "precision", fix(r.precision?.value)],
    [r.recall?.name ?? "recall", fix(r.recall?.value)],
  ];
}

/** Per-class target accuracy of an evaluate.json as a table, or "" without labels. */
function perClassTable(ev: Json, caption: string): string {
  const t = ev?.results?.targetAccuracy;
  if (!t?.perClass) return "";
  const names = Object.keys(t.perClass);
  return table(
    ["class", "images", "target accuracy"],
    names.map((n) => [n, text(t.counts?.[n]), pct(t.perClass[n])]),
    { numeric: [1, 2], caption },
  );
}

/** The section of a sweep.json; `points` maps a row's slug to its run folder's files. */
export function sweepSection(
  json: Json,
  source: string,
  points: ReadonlyMap<string, RunAssets>,
): ReportSection {
  need(json, "rows", "sweep.json");
  need(json, "config", "sweep.json");
  const rows: SweepRow[] = json.rows;
  const c = json.config;
  const names: SweepMetricNames = json.metrics ??
    metricNames(rows.map((r) => points.get(r.slug)?.evaluate));
  const parts: string[] = [];
  parts.push(keyValues([
    ["denoiser", text(c.model)],
    ["guiding classifiers", (c.classifiers ?? []).join(", ")],
    ["evaluator (independent)", text(c.evaluator)],
    ["directions", (c.directions ?? []).join(", ")],
    ["scales", (c.scales ?? []).join(", ")],
    ["strength schedules", (c.schedules ?? []).join("; ")],
    ["seeds / classes", `${text(c.seeds)} / ${text(c.class)}`],
    ["guide flags", flagsText(c.guide)],
    ["evaluate flags", flagsText(c.evaluate)],
    [
      "points",
      `${rows.length} (${text(json.ranNow)} run in the last call, ${text(json.skipped)} ` +
      `resumed)`,
    ],
  ], "Configuration"));
  parts.push(list(json.notes ?? [], "notes"));
  const t = sweepTable(rows, names);
  parts.push(table(t.head, t.body, {
    numeric: [1, 4, 5, 6, 7, 8, 9, 10],
    caption: "Results per grid point",
  }));
  const svg = tradeoffSvg(rows, names, "Target accuracy vs Frechet distance");
  if (svg) {
    parts.push(svgFigure(
      svg,
      "Trade-off: up is more samples of the requested class (independent evaluator), left is " +
        "closer to the reference images in the evaluator's feature space. One line per " +
        "direction, points labelled by scale.",
    ));
  } else {
    parts.push(para("No point has both a target accuracy and an FD: no trade-off plot.", "notes"));
  }
  // Per-class target accuracy: one row per point, one column per class.
  const evs = rows.map((r) => points.get(r.slug)?.evaluate?.results?.targetAccuracy?.perClass);
  const classes = [...new Set(evs.flatMap((p) => p ? Object.keys(p) : []))];
  if (classes.length) {
    parts.push(table(
      ["point", ...classes],
      rows.map((r, i) => [
        `${r.direction} s=${r.scale} ${r.schedule}`,
        ...classes.map((k) => pct(evs[i]?.[k])),
      ]),
      { numeric: classes.map((_, i) => i + 1), caption: "Target accuracy per class" },
    ));
  }
  const grids = rows.filter((r) => points.get(r.slug)?.grid);
  if (grids.length) {
    const scale = grids.length <= 4 ? 2 : 1;
    const classes = grids.map((r) => points.get(r.slug)?.run?.config?.classes)
      .find(Array.isArray) as string[] | undefined;
    parts.push(`<h3>Sample grids</h3>`);
    parts.push(para(
      `One row per class (${classes ? classes.join(", ") : text(c.class)}), one column per ` +
        `seed (${text(c.seeds)}); every row starts from the same noise.`,
      "muted",
    ));
    parts.push(
      `<div class="gallery">${
        grids.map((r) =>
          pngFigure(
            points.get(r.slug)!.grid!,
            `${r.direction} · s=${r.scale} · ${r.schedule} · ${r.classifier}: target ` +
              `${cell(r.targetAccuracy, "pct")}, ${names.fd ?? "FD"} ${cell(r.fd, "num")}`,
            scale,
          )
        ).join("\n")
      }</div>`,
    );
  }
  const missing = rows.filter((r) => !points.get(r.slug)?.grid).map((r) => r.slug);
  if (missing.length) {
    parts.push(para(`No grid.png for ${missing.join(", ")}.`, "notes"));
  }
  parts.push(jsonDetails("Resolved configuration (sweep.json config)", c));
  return { title: `Sweep: ${rows.length} guidance settings`, source, html: parts.join("\n") };
}

/** The section of a guide or sample run folder (its run.json and the files beside it). */
export function runSection(json: Json, source: string, assets: RunAssets): ReportSection {
  need(json, "config", `run.json (task ${json.task})`);
  const c = json.config, r = json.results ?? {};
  const parts: string[] = [];
  const guide = json.task === "guide";
  const pairs: [string, string][] = [
    ["denoiser", text(json.model?.ref ?? json.model?.id)],
    ...(guide
      ? [
        ["guiding classifier", text(json.classifier?.ref)],
        ["evaluator", text(json.evaluator)],
        ["direction", directionText(c.direction)],
        ["scale", text(c.scale)],
        ["strength schedule", `${text(c.strength)}, activation ${text(c.activation)}`],
        ["guidance point / form", `${text(c.point)} / ${text(c.form)}`],
        ["classes", (c.classes ?? []).join(", ")],
      ] as [string, string][]
      : []),
    [
      "sampler",
      `${text(c.sampler)}, ${text(c.steps)} steps, eta ${text(c.eta)}, ${text(c.spacing)} spacing`,
    ],
    ["seeds", text(c.seeds)],
    ["provider / seconds", `${text(json.provider)} / ${fix(json.seconds, 1)}`],
  ];
  parts.push(keyValues(pairs, "Configuration"));
  if (guide) {
    parts.push(keyValues([
      [`target accuracy (${text(json.evaluator)})`, pct(r.targetAccuracy)],
      ["guide accuracy (the guiding classifier)", pct(r.guideAccuracy)],
      ["mean guidance gradient norm", fix(r.meanGuidanceGradNorm)],
    ], "Results"));
    const classes: string[] = c.classes ?? [];
    const guidePer = (k: string, i: number) => {
      const row = r.guideHistogram?.[k];
      if (!Array.isArray(row)) return "n/a";
      const total = row.reduce((a: number, b: number) => a + b, 0);
      // The histogram row is indexed by class index: find this class's by its name.
      return total ? pct(row[indexOfClass(k, i)] / total) : "n/a";
    };
    parts.push(table(
      ["class", "target accuracy", "guide accuracy", "mean E(x)", "mean E(x,y)", "Estar_y"],
      classes.map((k, i) => [
        k,
        pct(r.targetAccuracyPerClass?.[k]),
        guidePer(k, i),
        fix(r.meanEnergyX?.[k]),
        fix(r.meanEnergyXY?.[k]),
        fix(r.eStar?.[k]),
      ]),
      { numeric: [1, 2, 3, 4, 5], caption: "Per class (energies of the guiding classifier)" },
    ));
  }
  if (assets.evaluate) {
    parts.push(keyValues(evaluatePairs(assets.evaluate), "evaluate.json beside the run"));
  }
  if (assets.grid) {
    parts.push(pngFigure(
      assets.grid,
      guide
        ? `grid.png: one row per class (${(c.classes ?? []).join(", ")}), columns seeds ` +
          `${text(c.seeds)}`
        : `grid.png: seeds ${text(c.seeds)}`,
      2,
    ));
  } else parts.push(para("No grid.png beside run.json.", "notes"));
  if (assets.trajectory) {
    parts.push(pngFigure(
      assets.trajectory,
      "trajectory.png: x_t along the sampling steps (left to right), one image per row",
      2,
    ));
  }
  if (assets.trajectoryX0) {
    parts.push(pngFigure(
      assets.trajectoryX0,
      "trajectory_x0.png: the predicted clean image x0_hat along the sampling steps",
      2,
    ));
  }
  parts.push(jsonDetails("Resolved configuration (run.json config)", c));
  const title = guide
    ? `Guide run: ${directionText(c.direction)}, s=${text(c.scale)}, ${text(c.strength)}`
    : `Sample run: ${text(json.model?.ref)}, ${text(c.sampler)} ${text(c.steps)} steps`;
  return { title, source, html: parts.join("\n") };
}

const CIFAR10: readonly string[] = CIFAR10_CLASSES;

/** A class's index in the histogram rows: its CIFAR-10 index, else its position. */
function indexOfClass(name: string, position: number): number {
  const k = CIFAR10.indexOf(name);
  return k >= 0 ? k : position;
}

/** The section of an evaluate.json on its own. */
export function evaluateSection(json: Json, source: string): ReportSection {
  need(json, "results", "evaluate.json");
  const parts = [
    keyValues(evaluatePairs(json), "Metrics"),
    perClassTable(json, "Target accuracy per class"),
    list(json.notes ?? [], "notes"),
    jsonDetails("Resolved configuration (evaluate.json config)", json.config),
  ];
  return {
    title: `Evaluation: ${text(json.images?.spec)} (${text(json.results?.n)} images)`,
    source,
    html: parts.join("\n"),
  };
}
