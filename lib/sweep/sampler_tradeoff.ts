/**
 * The sampler trade-off (issue 16): guided images at a budget of network calls per image for
 * each sampler, scored by the independent evaluator (METHOD.md §6). Pure functions: the points
 * to run, a row from a guide run.json + evaluate.json, the Markdown table, the figure, and the
 * rule that decides whether a fast sampler may replace DDIM-100 as the default.
 * @module
 */
import { linePlotSvg, type LineSeries } from "../plot/line_svg.ts";

/** One (sampler, calls) point of the trade-off. */
export interface TradeoffPoint {
  /** Sampler name as `--sampler` takes it. */
  sampler: string;
  /** Grid steps (`--steps`). */
  steps: number;
  /** Network calls per image those steps cost (Heun: 2 steps - 1). */
  calls: number;
  /** Folder name under the trade-off folder. */
  slug: string;
  /** Which seed set: "main", or "repeat" (DDIM-100 on disjoint seeds: the run-to-run spread). */
  seedSet: "main" | "repeat";
}

/** Steps a sampler takes for a budget of network calls (Heun: the largest 2s - 1 <= calls). */
export function stepsForCalls(sampler: string, calls: number): number {
  return sampler === "heun" ? Math.max(1, Math.floor((calls + 1) / 2)) : calls;
}

/** The grid: every sampler at every budget, plus DDIM at the largest budget on repeat seeds. */
export function tradeoffPoints(
  samplers: readonly string[],
  calls: readonly number[],
): TradeoffPoint[] {
  const pts: TradeoffPoint[] = [];
  for (const sampler of samplers) {
    for (const c of calls) {
      const steps = stepsForCalls(sampler, c);
      const real = sampler === "heun" ? 2 * steps - 1 : steps;
      pts.push({ sampler, steps, calls: real, slug: `${sampler}-${steps}`, seedSet: "main" });
    }
  }
  if (samplers.includes("ddim")) {
    const top = Math.max(...calls);
    pts.push({
      sampler: "ddim",
      steps: top,
      calls: top,
      slug: `ddim-${top}-repeat`,
      seedSet: "repeat",
    });
  }
  // the same (sampler, steps) from two budgets (Heun rounding) runs once
  return pts.filter((p, i) => pts.findIndex((q) => q.slug === p.slug) === i);
}

/** One row of tradeoff.json. */
export interface TradeoffRow extends TradeoffPoint {
  /** Images scored. */
  n: number | null;
  /** Share the independent evaluator assigns to the requested class. */
  targetAccuracy: number | null;
  /** Frechet distance in the evaluator's feature space. */
  fd: number | null;
  /** Precision and recall (k-NN manifolds in the same features). */
  precision: number | null;
  recall: number | null;
  /** Guide seconds per image (the sampling, guidance included; evaluation excluded). */
  secondsPerImage: number | null;
}

const num = (v: unknown): number | null => typeof v === "number" && Number.isFinite(v) ? v : null;

/** A row from a point's guide run.json and evaluate.json (parsed). */
// deno-lint-ignore no-explicit-any
export function tradeoffRow(p: TradeoffPoint, run: any, evaluate: any): TradeoffRow {
  const r = evaluate?.results ?? {};
  const ips = num(run?.imagesPerSecond);
  return {
    ...p,
    n: num(r.n),
    targetAccuracy: num(r.targetAccuracy?.overall) ?? num(run?.results?.targetAccuracy),
    fd: num(r.fd?.value),
    precision: num(r.precision?.value),
    recall: num(r.recall?.value),
    secondsPerImage: ips && ips > 0 ? 1 / ips : null,
  };
}

/** The default-change rule of issue 16, evaluated on measured rows. */
export interface DefaultVerdict {
  /** DDIM at the top budget (the current default). */
  baseline: TradeoffRow | undefined;
  /** |FD(main seeds) - FD(repeat seeds)| of the baseline: the run-to-run spread. */
  fdSpread: number | null;
  /** Fast-sampler rows at <= 20 calls meeting the rule, best (fewest calls, then FD) first. */
  qualifying: TradeoffRow[];
  /** One sentence. */
  text: string;
}

/**
 * A fast sampler at <= `maxCalls` calls may become the default when its target accuracy is
 * within `accPoints` percentage points of DDIM at the top budget and its FD within the measured
 * run-to-run spread of that baseline (two disjoint seed sets).
 */
export function defaultVerdict(
  rows: readonly TradeoffRow[],
  maxCalls = 20,
  accPoints = 2,
): DefaultVerdict {
  const main = rows.filter((r) => r.seedSet === "main");
  const top = Math.max(...main.filter((r) => r.sampler === "ddim").map((r) => r.calls));
  const baseline = main.find((r) => r.sampler === "ddim" && r.calls === top);
  const repeat = rows.find((r) => r.seedSet === "repeat");
  const fdSpread = baseline?.fd != null && repeat?.fd != null
    ? Math.abs(baseline.fd - repeat.fd)
    : null;
  if (!baseline || baseline.targetAccuracy == null || baseline.fd == null || fdSpread == null) {
    return {
      baseline,
      fdSpread,
      qualifying: [],
      text: "no verdict: the DDIM baseline or its repeat has no accuracy/FD",
    };
  }
  const qualifying = main
    .filter((r) =>
      r.sampler !== "ddim" && r.calls <= maxCalls && r.targetAccuracy != null && r.fd != null
    )
    .filter((r) =>
      Math.abs(r.targetAccuracy! - baseline.targetAccuracy!) * 100 <= accPoints &&
      Math.abs(r.fd! - baseline.fd!) <= fdSpread
    )
    .sort((a, b) => a.calls - b.calls || a.fd! - b.fd!);
  const base =
    `DDIM-${baseline.calls}: target accuracy ${(baseline.targetAccuracy * 100).toFixed(1)}%, ` +
    `FD ${baseline.fd.toFixed(2)} (run-to-run spread ${fdSpread.toFixed(2)})`;
  const text = qualifying.length
    ? `${base}; ${qualifying[0].sampler} at ${
      qualifying[0].calls
    } calls matches it (accuracy within ` +
      `${accPoints} points, FD within the spread): it qualifies as the new default`
    : `${base}; no fast sampler at <= ${maxCalls} calls is within ${accPoints} points of its accuracy ` +
      `and within the spread of its FD: the default stays DDIM-${baseline.calls}`;
  return { baseline, fdSpread, qualifying, text };
}

const pct = (v: number | null) => v == null ? "-" : `${(v * 100).toFixed(1)}%`;
const fix = (v: number | null, d = 2) => v == null ? "-" : v.toFixed(d);

/** The Markdown table (one row per point) and the verdict. */
export function tradeoffMarkdown(rows: readonly TradeoffRow[], about: string): string {
  const v = defaultVerdict(rows);
  const lines = [
    `# Sampler trade-off`,
    ``,
    about,
    ``,
    `| sampler | steps | network calls | seeds | n | target accuracy | FD | precision | recall | s / image |`,
    `| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |`,
    ...rows.map((r) =>
      `| ${r.sampler} | ${r.steps} | ${r.calls} | ${r.seedSet} | ${r.n ?? "-"} | ${
        pct(r.targetAccuracy)
      } | ` +
      `${fix(r.fd)} | ${fix(r.precision, 3)} | ${fix(r.recall, 3)} | ${fix(r.secondsPerImage, 3)} |`
    ),
    ``,
    `Verdict: ${v.text}.`,
  ];
  return lines.join("\n") + "\n";
}

/** Two panels side by side as one SVG: target accuracy and FD against network calls. */
export function tradeoffSvg(rows: readonly TradeoffRow[], title: string): string | undefined {
  const main = rows.filter((r) => r.seedSet === "main");
  const samplers = [...new Set(main.map((r) => r.sampler))];
  const series = (key: "targetAccuracy" | "fd"): LineSeries[] =>
    samplers.map((s, i) => {
      const pts = main.filter((r) => r.sampler === s && r[key] != null).sort((a, b) =>
        a.calls - b.calls
      );
      return { label: s, x: pts.map((r) => r.calls), y: pts.map((r) => r[key]!), color: i };
    }).filter((s) => s.x.length > 0);
  const acc = series("targetAccuracy"), fd = series("fd");
  if (!acc.length && !fd.length) return undefined;
  const panels = [
    acc.length
      ? linePlotSvg(acc, {
        title: `${title}: target accuracy`,
        xLabel: "network calls per image",
        yLabel: "target accuracy",
      })
      : "",
    fd.length
      ? linePlotSvg(fd, {
        title: `${title}: FD`,
        xLabel: "network calls per image",
        yLabel: "Frechet distance",
      })
      : "",
  ].filter(Boolean);
  // stack the panels: each is a complete <svg> with its own size; nest them in one document
  const sizes = panels.map((p) => {
    const w = Number(/width="(\d+(?:\.\d+)?)"/.exec(p)?.[1] ?? 640);
    const h = Number(/height="(\d+(?:\.\d+)?)"/.exec(p)?.[1] ?? 400);
    return { w, h };
  });
  const W = Math.max(...sizes.map((s) => s.w)), H = sizes.reduce((a, s) => a + s.h, 0);
  let y = 0;
  const body = panels.map((p, i) => {
    const out = p.replace(/^<svg /, `<svg y="${y}" `);
    y += sizes[i].h;
    return out;
  }).join("\n");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">\n${body}\n</svg>\n`;
}
