/**
 * What a clean-image classifier is shown in the noise experiments (METHOD.md §5 items 3-5,
 * thesis Fig 4.5, 4.6, 4.9): test images x0 in the diffusion space [-1, 1], forward-noised or
 * darkened there, then mapped back to the classifier's [0, 1] by (v + 1) / 2.
 *
 * - noise (Fig 4.5, 4.9): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (eq 2.11); the classifier
 *   sees (x_t + 1) / 2, NOT clipped to [0, 1] unless `clip` is set (at t = 999 about 32% of the
 *   values lie outside [0, 1]);
 * - darkness "pm1" (Fig 4.6, the same map without noise): (sqrt(abar_t) x0 + 1) / 2, a contrast
 *   fade towards mid-grey 0.5;
 * - darkness "01" (the literal reading): sqrt(abar_t) x01 with x01 = (x0 + 1) / 2, a fade to
 *   black.
 *
 * Timesteps: the figures' axes run t = 0, 10, ..., 1000 while a T = 1000 schedule has indices
 * 0..999, so t maps to index min(t, T - 1): t = 1000 is index 999 (abar ~ 4e-5), and t = 0 is
 * index 0 (abar_0 = 1 - beta_0 = 0.9999, noise std 0.01 in [-1, 1]), not the clean image (tasks
 * report the clean accuracy separately).
 * @module
 */
import type { NoiseSchedule } from "../schedule.ts";

/** One point of a curve's t grid. */
export interface CurvePoint {
  /** The t of the figure's axis (0..T). */
  t: number;
  /** The schedule index used, min(t, T - 1). */
  index: number;
  /** abar at `index`. */
  abar: number;
}

/**
 * The grid t = 0, step, 2 step, ..., up to tMax (inclusive when a multiple of step), each with
 * its schedule index min(t, T - 1) and abar. Throws unless 0 < step and 0 <= tMax <= T.
 */
export function curveGrid(schedule: NoiseSchedule, tMax: number, step: number): CurvePoint[] {
  if (!Number.isInteger(step) || step < 1) {
    throw new Error(`t step ${step} is invalid: use a positive integer`);
  }
  if (!Number.isInteger(tMax) || tMax < 0 || tMax > schedule.T) {
    throw new Error(`t max ${tMax} is invalid: use an integer in [0, ${schedule.T}]`);
  }
  const out: CurvePoint[] = [];
  for (let t = 0; t <= tMax; t += step) {
    const index = Math.min(t, schedule.T - 1);
    out.push({ t, index, abar: schedule.alphasCumprod[index] });
  }
  return out;
}

/** How {@link classifierView} transforms x0. */
export type ViewKind = "noise" | "darken-pm1" | "darken-01";

/**
 * Writes into `out` (length of x0) the [0, 1]-space classifier input for diffusion-space
 * images x0 in [-1, 1] at noise level abar (see the module doc): noise needs `eps` (standard
 * normals, same length as x0). Values are clipped to [0, 1] only when `clip` is true.
 */
export function classifierView(
  kind: ViewKind,
  x0: Float32Array,
  abar: number,
  out: Float32Array,
  opts: { eps?: Float32Array; clip?: boolean } = {},
): Float32Array {
  if (out.length !== x0.length) {
    throw new Error(`classifierView: out has ${out.length} values, x0 has ${x0.length}`);
  }
  if (!(abar > 0 && abar <= 1)) throw new Error(`classifierView: abar ${abar} is not in (0, 1]`);
  const a = Math.sqrt(abar);
  if (kind === "noise") {
    const eps = opts.eps;
    if (!eps || eps.length !== x0.length) {
      throw new Error(
        `classifierView: noise needs eps with ${x0.length} values, got ${eps?.length ?? "none"}`,
      );
    }
    const b = Math.sqrt(1 - abar);
    for (let i = 0; i < x0.length; i++) out[i] = (a * x0[i] + b * eps[i] + 1) * 0.5; // eq 2.11
  } else if (kind === "darken-pm1") {
    for (let i = 0; i < x0.length; i++) out[i] = (a * x0[i] + 1) * 0.5;
  } else if (kind === "darken-01") {
    for (let i = 0; i < x0.length; i++) out[i] = a * (x0[i] + 1) * 0.5;
  } else {
    throw new Error(`classifierView: unknown kind '${kind}'; use noise, darken-pm1 or darken-01`);
  }
  if (opts.clip) { for (let i = 0; i < out.length; i++) out[i] = Math.min(1, Math.max(0, out[i])); }
  return out;
}
