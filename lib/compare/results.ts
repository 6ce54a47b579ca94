/**
 * The results of a method comparison (issue 15): one row per guidance method from its test run
 * (guide run.json and evaluate.json), the Wilson interval of its target accuracy, the Markdown
 * table and the Pareto figure (target accuracy vs FD, marker area proportional to the seconds per
 * image). Pure functions.
 * @module
 */
import { scatterPlotSvg, type ScatterSeries } from "../plot/scatter_svg.ts";

/** One method's row of compare.json. */
export interface CompareRow {
  /** The method's name. */
  method: string;
  /** Its parameters on the test seeds (tuned one included). */
  params: Record<string, number | string>;
  /** The tuned parameter and its chosen value. */
  tuned: { param: string; value: number; validationAccuracy: number | null } | null;
  /** Test images. */
  n: number | null;
  /** Target accuracy of the independent evaluator. */
  targetAccuracy: number | null;
  /** Wilson 95% interval of the target accuracy. */
  interval: [number, number] | null;
  /** Frechet distance in the evaluator's feature space. */
  fd: number | null;
  /** Precision (Kynkaanniemi et al. 2019, k = 3) in the same feature space. */
  precision: number | null;
  /** Recall (Kynkaanniemi et al. 2019, k = 3). */
  recall: number | null;
  /** Network calls per image: denoiser forwards, backward passes through it, classifier runs. */
  calls: { denoiser: number; denoiserVjp: number; classifier: number } | null;
  /** Seconds of sampling per image (guide's own clock, evaluation excluded). */
  secondsPerImage: number | null;
}

/** One validation grid point of tuning.json: its target accuracy and its evaluation. */
export interface TuningPoint {
  /** The method. */
  method: string;
  /** The tuned parameter and its value at this point. */
  param: string;
  /** The value. */
  value: number;
  /** Target accuracy of the independent evaluator on the validation seeds. */
  validationAccuracy: number | null;
  /** Images of the point. */
  n?: number | null;
  /** FD in the evaluator's features, on the point's n images. */
  fd?: number | null;
  /** Precision (k = 3). */
  precision?: number | null;
  /** Recall (k = 3). */
  recall?: number | null;
  /** Seconds of sampling per image. */
  secondsPerImage?: number | null;
}

/**
 * Wilson score interval (Wilson 1927) of a binomial proportion k/n at normal quantile z
 * (1.96: 95%): (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n).
 */
export function wilsonInterval(k: number, n: number, z = 1.96): [number, number] {
  if (!(n > 0) || k < 0 || k > n) throw new Error(`wilsonInterval: k = ${k}, n = ${n} is invalid`);
  const p = k / n, z2 = z * z;
  const centre = p + z2 / (2 * n);
  const half = z * Math.sqrt(p * (1 - p) / n + z2 / (4 * n * n));
  const d = 1 + z2 / n;
  return [Math.max(0, (centre - half) / d), Math.min(1, (centre + half) / d)];
}

const pct = (v: number | null) => (v === null ? "n/a" : `${(100 * v).toFixed(1)}%`);
const fix = (v: number | null, d = 3) => (v === null ? "n/a" : v.toFixed(d));

/** The comparison table in Markdown (one row per method, in the order given). */
export function compareMarkdown(rows: readonly CompareRow[], about: string): string {
  const head = [
    "method",
    "tuned",
    "target acc. (95% CI)",
    "FD",
    "precision",
    "recall",
    "denoiser / VJP / classifier calls per image",
    "s / image",
  ];
  const lines = [
    `# Guidance methods compared`,
    "",
    about,
    "",
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
  ];
  for (const r of rows) {
    const ci = r.interval ? ` (${pct(r.interval[0])}-${pct(r.interval[1])})` : "";
    const tuned = r.tuned
      ? `${r.tuned.param}=${r.tuned.value} (val ${pct(r.tuned.validationAccuracy)})`
      : "-";
    const calls = r.calls
      ? `${fix(r.calls.denoiser, 0)} / ${fix(r.calls.denoiserVjp, 0)} / ${
        fix(r.calls.classifier, 0)
      }`
      : "n/a";
    lines.push(
      `| ${r.method} | ${tuned} | ${pct(r.targetAccuracy)}${ci} | ${fix(r.fd)} | ` +
        `${fix(r.precision)} | ${fix(r.recall)} | ${calls} | ${fix(r.secondsPerImage, 2)} |`,
    );
  }
  return lines.join("\n") + "\n";
}

/**
 * The Pareto figure: target accuracy vs FD, one series per method, marker area proportional to
 * the seconds per image (radius 4..16 px). Undefined when no row has both numbers.
 */
export function paretoSvg(
  rows: readonly CompareRow[],
  title: string,
  fdName: string,
): string | undefined {
  const ok = rows.filter((r) => r.fd !== null && r.targetAccuracy !== null);
  if (ok.length === 0) return undefined;
  const costs = ok.map((r) => r.secondsPerImage ?? 0);
  const maxCost = Math.max(...costs, 1e-9);
  const series: ScatterSeries[] = ok.map((r, i) => ({
    label: `${r.method} (${fix(r.secondsPerImage, 2)} s/img)`,
    color: i,
    points: [{
      x: r.fd!,
      y: r.targetAccuracy!,
      label: r.method,
      r: 4 + 12 * Math.sqrt((r.secondsPerImage ?? 0) / maxCost),
    }],
  }));
  return scatterPlotSvg(series, {
    title,
    xLabel: `${fdName} (lower: closer to the reference images)`,
    yLabel: "target accuracy (independent evaluator)",
    yRange: [0, 1],
    connect: false,
  });
}

/**
 * The validation grid in Markdown: every tuned point with its target accuracy and evaluation at
 * the validation n, and the unguided reference at the same n (FD is biased upwards at small n, so
 * these FDs compare with each other, not with the test table's).
 */
export function validationMarkdown(
  points: readonly TuningPoint[],
  unguided: CompareRow | null,
  seeds: string,
): string {
  const head = ["method", "setting", "target acc.", "FD", "precision", "recall", "s / image"];
  const lines = [
    `## Validation grid (seeds ${seeds} per class)`,
    "",
    unguided
      ? `Unguided at the same n (${unguided.n}): FD ${fix(unguided.fd)}, precision ${
        fix(unguided.precision)
      }, recall ${fix(unguided.recall)}.`
      : "No unguided reference at this n.",
    "",
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
  ];
  for (const q of points) {
    lines.push(
      `| ${q.method} | ${q.param}=${q.value} | ${pct(q.validationAccuracy)} | ${
        fix(q.fd ?? null)
      } | ${fix(q.precision ?? null)} | ${fix(q.recall ?? null)} | ${
        fix(q.secondsPerImage ?? null, 2)
      } |`,
    );
  }
  return lines.join("\n") + "\n";
}

/**
 * The validation grid's figure: per method its grid points (target accuracy vs FD at the
 * validation n) joined in grid order, so methods can be compared at equal FD; the unguided FD at
 * the same n is named in the legend. Undefined when no point has both numbers.
 */
export function validationSvg(
  points: readonly TuningPoint[],
  unguided: CompareRow | null,
  title: string,
  fdName: string,
): string | undefined {
  const methods = [...new Set(points.map((q) => q.method))];
  const series: ScatterSeries[] = [];
  methods.forEach((m, i) => {
    const pts = points.filter((q) =>
      q.method === m && typeof q.fd === "number" && q.validationAccuracy !== null
    );
    if (pts.length === 0) return;
    series.push({
      label: `${m} (${pts[0].param})`,
      color: i,
      points: pts.map((q) => ({
        x: q.fd!,
        y: q.validationAccuracy!,
        label: String(q.value),
        r: 4,
      })),
    });
  });
  if (series.length === 0) return undefined;
  const ref = unguided && unguided.fd !== null ? ` (unguided FD ${fix(unguided.fd, 2)})` : "";
  return scatterPlotSvg(series, {
    title: title + ref,
    xLabel: `${fdName} at the validation n (lower: closer to the reference images)`,
    yLabel: "target accuracy (independent evaluator)",
    yRange: [0, 1],
    connect: true,
  });
}
