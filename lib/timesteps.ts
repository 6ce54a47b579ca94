/**
 * Timestep sub-sequences tau for DDIM (METHOD.md §2, Alg 5) and the full DDPM grid.
 * A grid is a plain descending array of timesteps; the step after the last goes to t' = -1
 * (abar = 1, the clean image).
 * @module
 */

/**
 * Spacing of a sub-sequence, as in diffusers' `timestep_spacing`:
 * - `leading`: t_i = i * floor(T/steps), descending; for T=1000, 100 steps this is the
 *   thesis's grid 990, 980, ..., 0 (also diffusers DDIMScheduler's default).
 * - `trailing`: round(T - i T/steps) - 1: 999, 989, ..., 9.
 * - `linspace`: round(linspace(0, T-1, steps)), descending: 999, ..., 0.
 */
export type Spacing = "leading" | "trailing" | "linspace";

/** The thesis's grid: 100 steps, t = 990, 980, ..., 0 (leading spacing). */
export function thesisGrid(): number[] {
  return timestepGrid(1000, 100, "leading");
}

/** A descending grid of `steps` distinct timesteps in 0..T-1. */
export function timestepGrid(T: number, steps: number, spacing: Spacing = "leading"): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > T) {
    throw new Error(`--steps ${steps} is invalid: use an integer from 1 to T = ${T}`);
  }
  let ts: number[];
  switch (spacing) {
    case "leading": {
      const ratio = Math.floor(T / steps);
      ts = Array.from({ length: steps }, (_, i) => i * ratio);
      break;
    }
    case "trailing": {
      const ratio = T / steps;
      ts = Array.from({ length: steps }, (_, i) => Math.round(T - i * ratio) - 1).reverse();
      break;
    }
    case "linspace":
      ts = Array.from(
        { length: steps },
        (_, i) => Math.round(steps === 1 ? 0 : i * (T - 1) / (steps - 1)),
      );
      break;
    default:
      throw new Error(`unknown spacing '${spacing}'; use leading, trailing or linspace`);
  }
  ts = ts.reverse();
  for (let i = 1; i < ts.length; i++) {
    if (!(ts[i] < ts[i - 1])) throw new Error(`grid is not strictly descending at ${i}: ${ts}`);
  }
  return ts;
}

/** Pairs (t, t') of consecutive grid points, with t' = -1 after the last. */
export function stepPairs(grid: readonly number[]): Array<[number, number]> {
  return grid.map((t, i) => [t, i + 1 < grid.length ? grid[i + 1] : -1]);
}
