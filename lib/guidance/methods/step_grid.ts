/**
 * The sampler's step grid as the guidance methods see it: the next grid point of every step
 * (methods that move x_{t'} need abar_t'), the step's eta, and TFG's normalised schedules.
 * @module
 */
import { gridFor, type SamplerConfig } from "../../sampler/loop.ts";
import { abarAt, type NoiseSchedule } from "../../schedule.ts";
import { stepPairs } from "../../timesteps.ts";

/** The step grid of a run: (t, t') per step, the inner-step eta, clipping. */
export interface StepGrid {
  /** (t, t') of every step; t' = -1 is the clean image. */
  pairs: Array<[number, number]>;
  /** DDIM eta of the steps (1 for DDPM, METHOD.md §2). */
  eta: number;
  /** x0 clipping of the sampler. */
  clip: boolean;
  /** The schedule. */
  schedule: NoiseSchedule;
}

/**
 * The grid of a DDIM or DDPM run. Methods that shift x_{t'} convert the shift into eps_hat with
 * the step's exact coefficient, which the one-step samplers have; the multistep solvers do not,
 * so they are refused with a clear error.
 */
export function stepGridFor(cfg: SamplerConfig, method: string): StepGrid {
  if (cfg.sampler !== "ddim" && cfg.sampler !== "ddpm") {
    throw new Error(
      `--method ${method} moves x_t' of each step, which needs a one-step sampler; use ` +
        `--sampler ddim or ddpm (got ${cfg.sampler})`,
    );
  }
  return {
    pairs: stepPairs(gridFor(cfg)),
    eta: cfg.sampler === "ddpm" ? 1 : cfg.eta,
    clip: cfg.clip,
    schedule: cfg.schedule,
  };
}

/** The step's target t' (throws when the step index is outside the grid). */
export function nextT(grid: StepGrid, stepIndex: number): number {
  const p = grid.pairs[stepIndex];
  if (!p) throw new Error(`step ${stepIndex} is outside the run's ${grid.pairs.length} steps`);
  return p[1];
}

/** TFG's schedule shapes (TFG §4, reference code `get_rho`/`get_mu`/`get_std`). */
export type TfgScheduleKind = "increase" | "decrease" | "constant";

/**
 * TFG's rho_t / mu_t schedule at every step, normalised to mean 1 over the run's steps:
 * increase = alpha_t = abar_t/abar_t', decrease = 1 - alpha_t, constant = 1, each times
 * steps / sum. Multiply by rho (or mu).
 */
export function tfgWeights(grid: StepGrid, kind: TfgScheduleKind): number[] {
  const raw = grid.pairs.map(([t, tp]) => {
    const alpha = abarAt(grid.schedule, t) / abarAt(grid.schedule, tp);
    return kind === "increase" ? alpha : kind === "decrease" ? 1 - alpha : 1;
  });
  const sum = raw.reduce((a, b) => a + b, 0);
  return raw.map((v) => v * raw.length / sum);
}

/** TFG's sigma_t: constant sigma, or sigma sqrt(1 - abar_t) ("decrease"). */
export function tfgSigma(grid: StepGrid, stepIndex: number, sigma: number, kind: string): number {
  if (kind === "constant") return sigma;
  const t = grid.pairs[stepIndex][0];
  return sigma * Math.sqrt(1 - abarAt(grid.schedule, t));
}
