/**
 * The report section of a method comparison (compare.json, issue 15): configuration, the table
 * of every method (target accuracy with its Wilson interval, FD, precision/recall, network calls
 * and seconds per image), the Pareto figure and the tuning points.
 * @module
 */
import { type CompareRow, paretoSvg, validationSvg } from "../compare/results.ts";
import { keyValues, para, type ReportSection, svgFigure, table } from "./html.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const pct = (v: unknown) => (typeof v === "number" ? `${(100 * v).toFixed(1)}%` : "n/a");
const fix = (v: unknown, d = 3) => (typeof v === "number" ? v.toFixed(d) : "n/a");

/** The section of one compare.json (throws naming the file when it has no rows). */
export function compareSection(json: Json, source: string): ReportSection {
  if (!Array.isArray(json?.rows)) {
    throw new Error(`${source}: compare.json has no 'rows'; rerun 'deno task compare'`);
  }
  const rows: CompareRow[] = json.rows;
  const c = json.config ?? {};
  const parts: string[] = [];
  parts.push(keyValues([
    ["denoiser", String(c.model)],
    ["guiding classifier", String(c.classifier)],
    ["evaluator (independent)", String(c.evaluator)],
    ["methods", (c.methods ?? []).join(", ")],
    ["validation / test seeds (per class)", `${c.valSeeds} / ${c.testSeeds}`],
    ["steps", String(c.steps)],
  ], "Configuration"));
  parts.push(table(
    ["method", "tuned", "target acc.", "95% CI", "FD", "precision", "recall", "calls", "s/img"],
    rows.map((r) => [
      r.method,
      r.tuned ? `${r.tuned.param}=${r.tuned.value}` : "-",
      pct(r.targetAccuracy),
      r.interval ? `${pct(r.interval[0])}-${pct(r.interval[1])}` : "n/a",
      fix(r.fd),
      fix(r.precision),
      fix(r.recall),
      r.calls ? `${r.calls.denoiser}/${r.calls.denoiserVjp}/${r.calls.classifier}` : "n/a",
      fix(r.secondsPerImage, 2),
    ]),
    {
      numeric: [2, 4, 5, 6, 8],
      caption: "Test seeds; calls per image = denoiser forwards / backward passes through the " +
        "denoiser / classifier runs",
    },
  ));
  const svg = paretoSvg(
    rows,
    "Target accuracy vs FD (marker area: seconds per image)",
    json.fdName ?? "FD",
  );
  if (svg) {
    parts.push(svgFigure(
      svg,
      "Up: more samples of the requested class (independent evaluator); left: closer to the " +
        "reference images; larger markers cost more time per image.",
    ));
  } else parts.push(para("No method has both a target accuracy and an FD: no plot.", "notes"));
  if (Array.isArray(json.tuning) && json.tuning.length) {
    const u = json.unguidedValidation;
    parts.push(table(
      ["method", "parameter", "value", "validation target acc.", "FD", "precision", "recall"],
      [
        ...json.tuning.map((t: Json) => [
          t.method,
          t.param,
          String(t.value),
          pct(t.validationAccuracy),
          fix(t.fd),
          fix(t.precision),
          fix(t.recall),
        ]),
        ...(u ? [["unguided", "-", "-", "n/a", fix(u.fd), fix(u.precision), fix(u.recall)]] : []),
      ],
      {
        numeric: [2, 3, 4, 5, 6],
        caption: "Tuning on the validation seeds (FD etc. at the validation n: compare within " +
          "this table, not with the test table)",
      },
    ));
    const vs = validationSvg(
      json.tuning,
      u ?? null,
      "Validation grid: target accuracy vs FD along each method's grid",
      json.fdName ?? "FD",
    );
    if (vs) {
      parts.push(svgFigure(
        vs,
        "Each method's grid points in grid order (labels: the tuned value): at equal FD, the " +
          "higher curve guides better.",
      ));
    }
  }
  return { title: "Guidance methods compared", source, html: parts.join("\n") };
}
