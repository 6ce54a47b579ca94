/**
 * The loop shared by noise-accuracy and energy-curve (METHOD.md §5 items 3-5): every test image,
 * at every t of a grid, shown to every classifier through {@link classifierView}. Image i draws
 * one standard-normal eps from RandomStream(seed + i) and reuses it at every t (common random
 * numbers: the curves are smooth in t, each x_t still has the exact marginal of eq 2.11).
 * @module
 */
import type { ForwardOutputs } from "../lib/energy/classifier.ts";
import { classifierView, type CurvePoint, type ViewKind } from "../lib/eval/noised_views.ts";
import { progress } from "../lib/progress.ts";
import { RandomStream } from "../lib/random.ts";
import type { EvalClassifier, EvalData } from "./_eval.ts";
import { pm1Chunk } from "./_eval.ts";

/** Receives one chunk's outputs: classifier index, grid index (-1: the clean image), labels. */
export type SweepVisitor = (
  classifier: number,
  point: number,
  out: ForwardOutputs,
  y: Int32Array,
  n: number,
) => void;

/**
 * Runs every classifier on the clean images ((x0 + 1) / 2, point -1) and on the view of `kind`
 * at every grid point, in chunks of 256 images, reporting progress with ETA on stderr.
 */
export async function sweepGrid(
  label: string,
  classifiers: EvalClassifier[],
  data: EvalData,
  grid: CurvePoint[],
  kind: ViewKind,
  opts: { seed: number; clip: boolean },
  visit: SweepVisitor,
): Promise<void> {
  const count = data.split.count, chunk = 256, per = 3072;
  const tick = progress(label, count * (grid.length + 1), "image-timesteps");
  const x01 = new Float32Array(chunk * per);
  for (let s = 0; s < count; s += chunk) {
    const n = Math.min(chunk, count - s);
    const x0 = pm1Chunk(data.split, s, n);
    const y = Int32Array.from(data.split.labels.subarray(s, s + n));
    let eps: Float32Array | undefined;
    if (kind === "noise") {
      eps = new Float32Array(n * per);
      for (let i = 0; i < n; i++) {
        new RandomStream(opts.seed + s + i).fillNormal(eps.subarray(i * per, (i + 1) * per));
      }
    }
    const view = x01.subarray(0, n * per);
    for (let p = -1; p < grid.length; p++) {
      if (p < 0) { for (let i = 0; i < n * per; i++) view[i] = (x0[i] + 1) * 0.5; }
      else classifierView(kind, x0, grid[p].abar, view, { eps, clip: opts.clip });
      for (let c = 0; c < classifiers.length; c++) {
        visit(c, p, await classifiers[c].classifier.forward(view, n, y), y, n);
      }
      tick(s * (grid.length + 1) + n * (p + 2));
    }
  }
}
