/**
 * What every guidance method is built from: the same denoiser, classifier and sampler for all
 * (the comparison's point), plus the optional pieces some methods need.
 * @module
 */
import type { Denoiser } from "../../sampler/loop.ts";
import type { EnergySource } from "../directions.ts";
import type { DenoiserPullback } from "../../energy/through_denoiser.ts";
import type { TimedEnergySource } from "../../energy/noise_aware.ts";
import type { GuidanceConfig } from "../guided.ts";
import type { StepGrid } from "./step_grid.ts";
import type { FusedThrough } from "./core.ts";

/** The shared ingredients of a guided run. */
export interface MethodEnv {
  /** The unguided denoiser eps_theta(x_t, t). */
  denoiser: Denoiser;
  /** The classifier as an energy source (diffusion-space images). */
  classifier: EnergySource;
  /** The denoiser's pull-back graph (methods that back-propagate through it). */
  pullback?: DenoiserPullback;
  /**
   * The fused graph denoiser -> classifier with its gradient at x_t (one denoiser forward per
   * guided step instead of the pull-back route's two); used when given, for steps with at most
   * one smoothing draw (core.ts).
   */
  through?: FusedThrough;
  /** A time-conditioned classifier (the `noise-aware` method). */
  timedClassifier?: TimedEnergySource;
  /** Requested class of every image of the run, by position. */
  labels: ArrayLike<number>;
  /** The sampler's grid (methods that move x_t' read t' and eta from it). */
  grid: StepGrid;
  /** The thesis's guidance setting from the guide flags (the `thesis` method), minus its scale. */
  thesis?: Omit<GuidanceConfig, "scale" | "classifier" | "labels">;
}

/** The labels of the images of one call. */
export function labelsOf(env: MethodEnv, items: readonly number[]): number[] {
  return items.map((i) => {
    const c = env.labels[i];
    if (c === undefined) throw new Error(`no class label for image ${i} of the run`);
    return c;
  });
}
