/**
 * The results of a guidance sweep: one row per grid point from its guide run.json and its
 * evaluate.json, the Markdown table (sweep.md) and the trade-off figure (tradeoff.svg: target
 * accuracy of the independent evaluator vs Frechet distance, METHOD.md §6). Pure functions.
 * @module
 */
import { scatterPlotSvg, type ScatterSeries } from "../plot/scatter_svg.ts";
import type { SweepPoint } from "./grid.ts";

/** One row of sweep.json: a grid point and its metrics (null where not computed). */
export interface SweepRow {
  /** Folder name under runs/. */
  slug: string;
  /** Run folder, relative to the sweep folder. */
  run: string;
  direction: string;
  scale: number;
  schedule: string;
  classifier: string;
  /** Images of the point (classes x seeds). */
  n: number | null;
  /** Share of samples the independent evaluator assigns to the requested class. */
  targetAccuracy: number | null;
  /** The same share by the guiding classifier itself (optimistic: it was steered). */
  guideAccuracy: number | null;
  /** Frechet distance to the reference set in the evaluator's feature space. */
  fd: number | null;
  /** Inception-Score-style score of the evaluator's softmax (null below --splits images). */
  is: number | null;
  isStd: number | null;
  precision: number | null;
  recall: number | null;
  /** Wall seconds of the point: guide (its last attempt) + evaluate. */
  seconds: number | null;
}

/** Names of the metrics as evaluate.json gives them (they name the network computing them). */
export interface SweepMetricNames {
  targetAccuracy: string | null;
  fd: string | null;
  is: string | null;
  precision: string | null;
  recall: string | null;
}

// deno-lint-ignore no-explicit-any
type Json = any;

const numOrNull = (v: unknown): number | null =>
  typeof v === "number" && Number.isFinite(v) ? v : null;

/**
 * A row from a point's parsed run.json (guide) and evaluate.json; `seconds` is the point's
 * measured wall time (or null when unknown).
 */
export function sweepRow(
  point: SweepPoint,
  run: Json,
  evaluate: Json,
  seconds: number | null,
): SweepRow {
  const r = evaluate?.results ?? {};
  return {
    slug: point.slug,
    run: `runs/${point.slug}`,
    direction: point.direction,
    scale: point.scale,
    schedule: point.schedule,
    classifier: point.classifier,
    n: numOrNull(r.n),
    targetAccuracy: numOrNull(r.targetAccuracy?.overall) ??
      numOrNull(run?.results?.targetAccuracy),
    guideAccuracy: numOrNull(run?.results?.guideAccuracy),
    fd: numOrNull(r.fd?.value),
    is: numOrNull(r.is?.mean),
    isStd: numOrNull(r.is?.std),
    precision: numOrNull(r.precision?.value),
    recall: numOrNull(r.recall?.value),
    seconds,
  };
}

/** The metric names of an evaluate.json (the first non-null one wins across points). */
export function metricNames(evaluates: readonly Json[]): SweepMetricNames {
  const pick = (f: (r: Json) => unknown) => {
    for (const e of evaluates) {
      const v = f(e?.results ?? {});
      if (typeof v === "string") return v;
    }
    return null;
  };
  return {
    targetAccuracy: pick((r) => r.targetAccuracy?.name),
    fd: pick((r) => r.fd?.name),
    is: pick((r) => r.is?.name),
    precision: pick((r) => r.precision?.name),
    recall: pick((r) => r.recall?.name),
  };
}

/** A number for a table cell: fixed digits, percent, or "n/a". */
export function cell(v: number | null, kind: "pct" | "num" | "sec"): string {
  if (v === null) return "n/a";
  if (kind === "pct") return `${(100 * v).toFixed(1)}%`;
  if (kind === "sec") return v.toFixed(1);
  return v.toFixed(3);
}

/** Column headers and formatted cells of the sweep table (shared by sweep.md and the report). */
export function sweepTable(
  rows: readonly SweepRow[],
  names: SweepMetricNames,
): { head: string[]; body: string[][] } {
  const head = [
    "direction",
    "scale",
    "schedule",
    "classifier",
    `target acc. (${names.targetAccuracy?.replace(/^targetAccuracy_/, "") ?? "evaluator"})`,
    "guide acc.",
    names.fd ?? "FD",
    names.is ?? "IS",
    "precision",
    "recall",
    "seconds",
  ];
  const body = rows.map((r) => [
    r.direction,
    String(r.scale),
    r.schedule,
    r.classifier,
    cell(r.targetAccuracy, "pct"),
    cell(r.guideAccuracy, "pct"),
    cell(r.fd, "num"),
    r.is === null ? "n/a" : `${r.is.toFixed(3)} ± ${(r.isStd ?? 0).toFixed(3)}`,
    cell(r.precision, "num"),
    cell(r.recall, "num"),
    cell(r.seconds, "sec"),
  ]);
  return { head, body };
}

/** The sweep as a Markdown document: a line of configuration, then the table. */
export function sweepMarkdown(
  rows: readonly SweepRow[],
  names: SweepMetricNames,
  about: string,
): string {
  const { head, body } = sweepTable(rows, names);
  const escCell = (s: string) => s.replace(/\|/g, "\\|");
  const numeric = new Set([1, 4, 5, 6, 7, 8, 9, 10]);
  return [
    `# Guidance sweep`,
    ``,
    about,
    ``,
    `| ${head.map(escCell).join(" | ")} |`,
    `|${head.map((_, i) => numeric.has(i) ? "---:" : "---").join("|")}|`,
    ...body.map((r) => `| ${r.map(escCell).join(" | ")} |`),
    ``,
  ].join("\n");
}

/**
 * Series of the trade-off plot: one per direction (per direction, schedule and classifier when
 * the sweep varies those too), points in increasing scale, labelled "s=<scale>". Points without
 * a target accuracy or an FD are left out.
 */
export function tradeoffSeries(rows: readonly SweepRow[]): ScatterSeries[] {
  const schedules = new Set(rows.map((r) => r.schedule));
  const classifiers = new Set(rows.map((r) => r.classifier));
  const directions = [...new Set(rows.map((r) => r.direction))];
  const groups = new Map<string, SweepRow[]>();
  for (const r of rows) {
    if (r.fd === null || r.targetAccuracy === null) continue;
    const key = [
      r.direction,
      ...(schedules.size > 1 ? [r.schedule] : []),
      ...(classifiers.size > 1 ? [r.classifier] : []),
    ].join(" · ");
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(r);
  }
  const scheduleList = [...schedules];
  // Colour: the direction (the series index once classifiers vary too); dashes: every other
  // schedule.
  return [...groups].map(([label, g], i) => ({
    label,
    color: classifiers.size > 1 ? i : directions.indexOf(g[0].direction),
    dashed: scheduleList.indexOf(g[0].schedule) % 2 === 1,
    points: [...g].sort((a, b) => a.scale - b.scale).map((r) => ({
      x: r.fd!,
      y: r.targetAccuracy!,
      label: `s=${r.scale}`,
    })),
  }));
}

/** The trade-off SVG, or undefined when no point has both a target accuracy and an FD. */
export function tradeoffSvg(
  rows: readonly SweepRow[],
  names: SweepMetricNames,
  title: string,
): string | undefined {
  const series = tradeoffSeries(rows);
  if (series.length === 0) return undefined;
  return scatterPlotSvg(series, {
    title,
    xLabel: `${names.fd ?? "Frechet distance"} (lower: closer to the reference images)`,
    yLabel: `target accuracy (${
      names.targetAccuracy?.replace(/^targetAccuracy_/, "") ?? "evaluator"
    })`,
    yRange: [0, 1],
  });
}
