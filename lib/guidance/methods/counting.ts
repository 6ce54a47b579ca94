/**
 * Counting network evaluations per image: wrappers around a denoiser, an energy source and a
 * denoiser pull-back that add the images of every call to a {@link CallCounts}. The comparison
 * task reports them as each method's cost beside its seconds per image.
 * @module
 */
import type { Denoiser } from "../../sampler/loop.ts";
import type { EnergySource } from "../directions.ts";
import type { DenoiserPullback } from "../../energy/through_denoiser.ts";
import type { FusedThrough } from "./core.ts";

/** Counts of network evaluations, summed over images (a call on n images adds n). */
export interface CallCounts {
  /** Forward passes of the denoiser. */
  denoiser: number;
  /**
   * Backward passes through the denoiser (on the pull-back route each runs the denoiser's forward
   * once more; the fused graph's do not).
   */
  denoiserVjp: number;
  /** Classifier evaluations with their input gradient (one energy-head run each). */
  classifier: number;
}

/** A fresh zero {@link CallCounts}. */
export function newCallCounts(): CallCounts {
  return { denoiser: 0, denoiserVjp: 0, classifier: 0 };
}

/** The denoiser, counting its calls in `counts.denoiser`. */
export function countingDenoiser(d: Denoiser, counts: CallCounts): Denoiser {
  return (x, t, ctx) => {
    counts.denoiser += ctx.n;
    return d(x, t, ctx);
  };
}

/** The energy source, counting its images in `counts.classifier`. */
export function countingSource<S extends EnergySource>(s: S, counts: CallCounts): EnergySource {
  return {
    numClasses: s.numClasses,
    fromDiffusionSpace: (x, n, y, coef, eStar) => {
      counts.classifier += n;
      return s.fromDiffusionSpace(x, n, y, coef, eStar);
    },
  };
}

/** The pull-back, counting its images in `counts.denoiserVjp`. */
export function countingPullback(p: DenoiserPullback, counts: CallCounts): DenoiserPullback {
  return {
    pullback: (x, n, t, abar, cot) => {
      counts.denoiserVjp += n;
      return p.pullback(x, n, t, abar, cot);
    },
  };
}

/**
 * The fused graph, counting each image as one denoiser forward, one backward pass through the
 * denoiser and one classifier evaluation (what the pull-back route counts, with one forward less).
 */
export function countingThrough(f: FusedThrough, counts: CallCounts): FusedThrough {
  return {
    run: (x, n, ...rest) => {
      counts.denoiser += n;
      counts.denoiserVjp += n;
      counts.classifier += n;
      return f.run(x, n, ...rest);
    },
  };
}
