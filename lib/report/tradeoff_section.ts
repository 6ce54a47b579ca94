/**
 * The report section of a sampler trade-off (tradeoff.json, issue 16): configuration, the table
 * of every (sampler, network calls) point, the figure (target accuracy and FD against calls) and
 * the default-change verdict.
 * @module
 */
import { type TradeoffRow, tradeoffSvg } from "../sweep/sampler_tradeoff.ts";
import { keyValues, para, type ReportSection, svgFigure, table } from "./html.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const pct = (v: number | null) => (v == null ? "n/a" : `${(100 * v).toFixed(1)}%`);
const fix = (v: number | null, d = 3) => (v == null ? "n/a" : v.toFixed(d));

/** The section of one tradeoff.json (throws naming the file when it has no rows). */
export function samplerTradeoffSection(json: Json, source: string): ReportSection {
  if (!Array.isArray(json?.rows)) {
    throw new Error(`${source}: tradeoff.json has no 'rows'; rerun 'deno task sampler-tradeoff'`);
  }
  const rows: TradeoffRow[] = json.rows;
  const c = json.config ?? {};
  const parts: string[] = [];
  parts.push(keyValues([
    ["samplers", (c.samplers ?? []).join(", ")],
    ["network calls per image", (c.calls ?? []).join(", ")],
    ["seeds per class (repeat)", `${c.seeds} (${c.repeatSeeds})`],
    ["evaluator (independent)", String(c.evaluator)],
  ], "Configuration"));
  parts.push(table(
    [
      "sampler",
      "steps",
      "calls",
      "seeds",
      "n",
      "target acc.",
      "FD",
      "precision",
      "recall",
      "s/img",
    ],
    rows.map((r) => [
      r.sampler,
      String(r.steps),
      String(r.calls),
      r.seedSet,
      String(r.n ?? "n/a"),
      pct(r.targetAccuracy),
      fix(r.fd, 2),
      fix(r.precision),
      fix(r.recall),
      fix(r.secondsPerImage),
    ]),
    { numeric: [1, 2, 4, 5, 6, 7, 8, 9], caption: "Guided images per (sampler, network calls)" },
  ));
  const svg = tradeoffSvg(rows, "Guided sampling vs network calls");
  if (svg) {
    parts.push(svgFigure(
      svg,
      "Target accuracy (independent evaluator) and Frechet distance against network calls per " +
        "image, one line per sampler.",
    ));
  }
  if (json.verdict?.text) parts.push(para(`Verdict: ${json.verdict.text}.`));
  return { title: "Sampler trade-off", source, html: parts.join("\n") };
}
