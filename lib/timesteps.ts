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
 * - `linspace-open`: round(linspace(0, T-1, steps + 1)) without its last point 0, descending:
 *   999, 949, ..., 50 for 20 steps. This is the `linspace` of diffusers' multistep solvers
 *   (DPMSolverMultistepScheduler, UniPCMultistepScheduler); the solver then steps to the clean
 *   image (abar = 1, `final_sigmas_type="zero"`).
 * - `karras`: Karras et al. 2022 eq 5 (rho = 7) between the schedule's smallest and largest
 *   sigma, each point rounded to the nearest timestep in log sigma (diffusers' `_sigma_to_t`
 *   rounded, as UniPCMultistepScheduler does with `use_karras_sigmas`), so that a discrete-time
 *   model is only asked for its own timesteps (EDM's `round_sigma` for discrete models). Needs
 *   the schedule: see {@link karrasGrid}.
 */
export type Spacing = "leading" | "trailing" | "linspace" | "linspace-open" | "karras";

/** Every spacing, for flag validation. */
export const SPACINGS: readonly Spacing[] = [
  "leading",
  "trailing",
  "linspace",
  "linspace-open",
  "karras",
];

/** The thesis's grid: 100 steps, t = 990, 980, ..., 0 (leading spacing). */
export function thesisGrid(): number[] {
  return timestepGrid(1000, 100, "leading");
}

/**
 * A descending grid of `steps` distinct timesteps in 0..T-1. `karras` needs the schedule's
 * abar (`alphasCumprod`); the other spacings depend on T alone.
 */
export function timestepGrid(
  T: number,
  steps: number,
  spacing: Spacing = "leading",
  alphasCumprod?: ArrayLike<number>,
): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > T) {
    throw new Error(`--steps ${steps} is invalid: use an integer from 1 to T = ${T}`);
  }
  let ts: number[];
  switch (spacing) {
    case "linspace-open": {
      const step = (T - 1) / steps; // numpy linspace: i * step, then round half to even
      ts = Array.from({ length: steps }, (_, i) => roundHalfEven((i + 1) * step));
      break;
    }
    case "karras": {
      if (!alphasCumprod || alphasCumprod.length !== T) {
        throw new Error("the karras spacing needs the schedule's alphasCumprod (length T)");
      }
      return karrasGrid(alphasCumprod, steps);
    }
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
  return checkDescending(ts, spacing, steps);
}

/** numpy's round: halves go to the even neighbour. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function checkDescending(ts: number[], spacing: Spacing, steps: number): number[] {
  for (let i = 1; i < ts.length; i++) {
    if (!(ts[i] < ts[i - 1])) {
      const near = ts.slice(Math.max(0, i - 3), i + 2).join(", ");
      throw new Error(
        `--spacing ${spacing} with --steps ${steps} repeats timestep ${ts[i]} (grid ${near}, ` +
          `...): use fewer steps or another spacing`,
      );
    }
  }
  return ts;
}

/** sigma_t = sqrt((1 - abar_t) / abar_t), the noise level of x_t / sqrt(abar_t) (VE form). */
export function sigmaOfAbar(abar: number): number {
  return Math.sqrt((1 - abar) / abar);
}

/**
 * Karras et al. 2022 eq 5: sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho,
 * i = 0..n-1 (descending; diffusers' `_convert_to_karras`).
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7): number[] {
  const lo = sigmaMin ** (1 / rho), hi = sigmaMax ** (1 / rho);
  return Array.from(
    { length: n },
    (_, i) => (hi + (n === 1 ? 0 : i / (n - 1)) * (lo - hi)) ** rho,
  );
}

/**
 * The fractional timestep of a sigma: linear interpolation of log sigma between the two
 * neighbouring timesteps (diffusers' `_sigma_to_t`), clamped to 0..T-1.
 */
export function sigmaToTimestep(sigma: number, alphasCumprod: ArrayLike<number>): number {
  const T = alphasCumprod.length;
  const ls = Math.log(Math.max(sigma, 1e-10));
  const logSigma = (t: number) => Math.log(sigmaOfAbar(alphasCumprod[t]));
  // log sigma_t increases with t: find the last t with log sigma_t <= ls.
  let low = 0;
  while (low < T - 2 && logSigma(low + 1) <= ls) low++;
  const a = logSigma(low), b = logSigma(low + 1);
  const w = Math.min(1, Math.max(0, (a - ls) / (a - b)));
  return low + w;
}

/**
 * The Karras grid (Karras et al. 2022 eq 5, rho = 7) from sigma_{T-1} down to sigma_0 of the
 * schedule, each point rounded to the nearest timestep (see {@link Spacing} `karras`).
 */
export function karrasGrid(alphasCumprod: ArrayLike<number>, steps: number, rho = 7): number[] {
  const T = alphasCumprod.length;
  const sigmas = karrasSigmas(
    sigmaOfAbar(alphasCumprod[0]),
    sigmaOfAbar(alphasCumprod[T - 1]),
    steps,
    rho,
  );
  const ts = sigmas.map((s) => roundHalfEven(sigmaToTimestep(s, alphasCumprod)));
  return checkDescending(ts, "karras", steps);
}

/** Pairs (t, t') of consecutive grid points, with t' = -1 after the last. */
export function stepPairs(grid: readonly number[]): Array<[number, number]> {
  return grid.map((t, i) => [t, i + 1 < grid.length ? grid[i + 1] : -1]);
}
