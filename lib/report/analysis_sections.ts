/**
 * Report sections of the classifier analyses (METHOD.md §5): energy-stats (items 6, Fig 4.12),
 * robust-accuracy (item 1, Table 4.1), noise-accuracy (items 3-4, Fig 4.5/4.6) and energy-curve
 * (item 5, Fig 4.9), read from the JSON those tasks write. Plots are redrawn from the numbers
 * with lib/plot/line_svg.ts. Each throws, naming the missing field, on a file of another shape.
 * @module
 */
import { linePlotSvg } from "../plot/line_svg.ts";
import { jsonDetails, keyValues, type ReportSection, svgFigure, table } from "./html.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const pct = (v: unknown, d = 1) => typeof v === "number" ? `${(100 * v).toFixed(d)}%` : "n/a";
const fix = (v: unknown, d = 3) => typeof v === "number" ? v.toFixed(d) : "n/a";
const text = (v: unknown): string =>
  v === undefined || v === null ? "n/a" : typeof v === "object" ? JSON.stringify(v) : String(v);

function need(json: Json, fields: string[], what: string): void {
  for (const f of fields) {
    let v = json;
    for (const k of f.split(".")) v = v?.[k];
    if (v === undefined) throw new Error(`${what} has no '${f}'`);
  }
}

/** Where the images came from, from the `config.data` provenance block. */
function dataText(c: Json): string {
  const d = c?.data;
  if (!d) return "n/a";
  return `${text(d.count ?? d.limit)} ${text(d.split)} images`;
}

/** The section of an energy-stats JSON (class-wise E(x) and E(x,y) on a CIFAR-10 split). */
export function energyStatsSection(json: Json, source: string): ReportSection {
  need(json, ["classes", "eStar"], "energy-stats JSON");
  const cls: Json[] = json.classes;
  const parts = [
    keyValues([
      ["classifier", text(json.classifier?.ref)],
      ["split / images", `${text(json.split)} / ${text(json.count)}`],
      ["accuracy", pct(json.accuracy, 2)],
    ], "Configuration"),
    table(
      ["class", "images", "E(x) mean ± std (= Estar_y)", "E(x,y) mean ± std", "accuracy"],
      cls.map((c) => [
        text(c.name),
        text(c.count),
        `${fix(c.energyX?.mean)} ± ${fix(c.energyX?.std)}`,
        `${fix(c.energyXY?.mean)} ± ${fix(c.energyXY?.std)}`,
        pct(c.accuracy),
      ]),
      { numeric: [1, 2, 3, 4], caption: "Class-wise energies" },
    ),
  ];
  const x = cls.map((_, i) => i);
  parts.push(svgFigure(
    linePlotSvg([
      { label: "E(x) mean", x, y: cls.map((c) => c.energyX.mean), color: 0 },
      {
        label: "E(x) mean + std",
        x,
        y: cls.map((c) => c.energyX.mean + c.energyX.std),
        color: 0,
        dashed: true,
      },
      {
        label: "E(x) mean - std",
        x,
        y: cls.map((c) => c.energyX.mean - c.energyX.std),
        color: 0,
        dashed: true,
      },
      { label: "E(x,y) mean", x, y: cls.map((c) => c.energyXY.mean), color: 1 },
    ], {
      title: `Class-wise energies, ${text(json.classifier?.ref)} (${text(json.split)})`,
      xLabel: "class index",
      yLabel: "energy",
      markers: true,
    }),
    `x: ${cls.map((c, i) => `${i} ${c.name}`).join(", ")}. Estar_y (the per-class mean of E(x)) ` +
      `is what dual guidance pulls E(x) towards (§4.8).`,
  ));
  return {
    title: `Energy statistics: ${text(json.classifier?.ref)} on ${text(json.split)}`,
    source,
    html: parts.join("\n"),
  };
}

/** The section of a robust-accuracy JSON (accuracy under PGD vs eps_test, per classifier). */
export function robustAccuracySection(json: Json, source: string): ReportSection {
  need(
    json,
    ["table.columns", "table.epsLabels", "table.accuracy", "table.eps"],
    "robust-accuracy",
  );
  const t = json.table, c = json.config ?? {};
  const norm = c.norm === "linf" ? "L-inf" : "L2";
  const se = (ref: string, e: number) =>
    (json.cells ?? []).find((x: Json) => x.classifier === ref && x.eps === e)?.se;
  const parts = [
    keyValues([
      [
        "threat model",
        `${norm} PGD, ${text(c.steps)} steps, step ${text(c.stepRatio)} eps / steps`,
      ],
      ["random start", text(c.randomStart)],
      ["images", dataText(c)],
      ["selection", text(c.selection)],
    ], "Configuration"),
    table(
      [`eps_test (${norm})`, ...t.columns],
      t.epsLabels.map((l: string, e: number) => [
        l,
        ...t.columns.map((ref: string, j: number) => {
          const s = se(ref, t.eps[e]);
          return `${pct(t.accuracy[e][j], 2)}${typeof s === "number" ? ` ± ${pct(s, 2)}` : ""}`;
        }),
      ]),
      {
        numeric: t.columns.map((_: string, j: number) => j + 1),
        caption: "Robust accuracy (± binomial standard error), Table 4.1 layout",
      },
    ),
    svgFigure(
      linePlotSvg(
        t.columns.map((ref: string, j: number) => ({
          label: ref,
          x: t.eps,
          y: t.accuracy.map((row: number[]) => row[j]),
        })),
        {
          title: `Robust accuracy, ${norm} PGD-${text(c.steps)}`,
          xLabel: `eps_test (${norm}, [0, 1] pixel units)`,
          yLabel: "accuracy",
          yRange: [0, 1],
          hlines: [{ y: 0.1, label: "chance" }],
        },
      ),
      "Accuracy at the largest-loss PGD iterate vs the attack radius.",
    ),
    jsonDetails("Resolved configuration", c),
  ];
  const rs = c.randomStart ? ", random start" : "";
  return {
    title: `Robust accuracy (${norm} PGD-${text(c.steps)}${rs}, ${dataText(c)})`,
    source,
    html: parts.join("\n"),
  };
}

/** The section of a noise-accuracy JSON (accuracy vs t on noised or darkened test images). */
export function noiseAccuracySection(json: Json, source: string): ReportSection {
  need(json, ["grid", "curves"], "noise-accuracy JSON");
  const c = json.config ?? {};
  const ts: number[] = json.grid.map((g: Json) => g.t);
  const curves: Json[] = json.curves;
  const darkness = c.mode === "darkness";
  const what = darkness ? `darkened (${text(c.view)})` : "forward-noised";
  const last = ts.length - 1;
  const parts = [
    keyValues([
      ["classifier input", text(c.fed)],
      ["images", dataText(c)],
      ["t grid", `0..${text(c.tMax)} step ${text(c.tStep)}`],
      ["chance rule", text(c.chance)],
    ], "Configuration"),
    table(
      ["classifier", "clean", `t=${ts[0]}`, `t=${ts[last]}`, "at chance from t", "mode at last t"],
      curves.map((cv) => [
        text(cv.classifier),
        pct(cv.cleanAccuracy),
        pct(cv.accuracy?.[0]),
        pct(cv.accuracy?.[last]),
        cv.chanceT === null || cv.chanceT === undefined ? "never" : String(cv.chanceT),
        cv.mostPredicted?.[last]
          ? `${cv.mostPredicted[last].name} (${pct(cv.mostPredicted[last].share)})`
          : "n/a",
      ]),
      { numeric: [1, 2, 3, 4], caption: "Accuracy" },
    ),
    svgFigure(
      linePlotSvg(
        curves.map((cv) => ({
          label: `${cv.classifier} (chance at t=${cv.chanceT ?? "never"})`,
          x: ts,
          y: cv.accuracy,
        })),
        {
          title: `Accuracy on ${what} images`,
          xLabel: "timestep t",
          yLabel: "accuracy",
          yRange: [0, 1],
          hlines: typeof json.chanceThreshold === "number"
            ? [{ y: json.chanceThreshold, label: "chance + 2 SE" }]
            : [],
        },
      ),
      darkness ? "Thesis Fig 4.6: accuracy on sqrt(abar_t) x0, no noise." : "Thesis Fig 4.5: " +
        "accuracy on x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.",
    ),
    jsonDetails("Resolved configuration", c),
  ];
  return {
    title: `Accuracy on ${what} images${c.clip ? ", clipped" : ""} (${dataText(c)})`,
    source,
    html: parts.join("\n"),
  };
}

/** The section of an energy-curve JSON (mean E(x_t, y) and E(x_t) vs t). */
export function energyCurveSection(json: Json, source: string): ReportSection {
  need(json, ["curves"], "energy-curve JSON");
  const c = json.config ?? {};
  const curves: Json[] = json.curves;
  const lastT = (cv: Json) => cv.points?.[cv.points.length - 1];
  const parts = [
    keyValues([
      ["classifier input", text(c.fed)],
      ["energies", text(c.energies)],
      ["images", dataText(c)],
    ], "Configuration"),
    table(
      [
        "classifier",
        "clean E(x,y)",
        "clean E(x)",
        "t",
        "E(x,y) at t",
        "E(x) at t",
        "accuracy at t",
      ],
      curves.map((cv) => [
        text(cv.classifier),
        fix(cv.clean?.energyXY?.mean),
        fix(cv.clean?.energyX?.mean),
        text(lastT(cv)?.t),
        fix(lastT(cv)?.energyXY?.mean),
        fix(lastT(cv)?.energyX?.mean),
        pct(lastT(cv)?.accuracy),
      ]),
      { numeric: [1, 2, 3, 4, 5, 6], caption: "Mean energies (clean, and at the last t)" },
    ),
    svgFigure(
      linePlotSvg(
        curves.flatMap((cv, i) => [
          {
            label: `${cv.classifier} E(x,y)`,
            x: cv.points.map((p: Json) => p.t),
            y: cv.points.map((p: Json) => p.energyXY.mean),
            color: i,
          },
          {
            label: `${cv.classifier} E(x)`,
            x: cv.points.map((p: Json) => p.t),
            y: cv.points.map((p: Json) => p.energyX.mean),
            color: i,
            dashed: true,
          },
        ]),
        { title: "Mean energies on forward-noised images", xLabel: "timestep t", yLabel: "energy" },
      ),
      "Thesis Fig 4.9: E(x,y) solid, E(x) dashed, y the true label.",
    ),
    jsonDetails("Resolved configuration", c),
  ];
  return {
    title: `Energies vs t on forward-noised images (${dataText(c)})`,
    source,
    html: parts.join("\n"),
  };
}
