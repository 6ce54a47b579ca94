/**
 * The shared update of the training-free guidance methods, in the form TFG (Ye et al. 2024,
 * "TFG: Unified Training-Free Guidance for Diffusion Models", Alg 1) writes them all:
 *
 *   x0 = x0_hat(x_t)                                             (METHOD.md §2)
 *   Delta_t = rho_t grad_{x_t} log f~(x0_hat(x_t))               mean guidance, through the denoiser
 *   Delta_0 = sum_{j < iters} mu_t grad log f~(x0 + Delta_0)     variance guidance, in x0 space
 *   x_{t'} = S(x_t, x0) + Delta_t / sqrt(alpha_t) + sqrt(abar_t') Delta_0,  alpha_t = abar_t/abar_t'
 *
 * with f~(x) = E_{z ~ N(0, I)} f_y(x + sigma_t z) the Gaussian-smoothed class probability
 * (TFG §3, "implicit dynamics"; `samples` Monte-Carlo draws, sigma = 0 is f itself) and f_y the
 * classifier's p(y|x) (or its joint energy exp(-E(x,y)), §4.6). Guidance wraps the denoiser
 * (lib/guidance/guided.ts): the x_{t'} shift above is handed to the unchanged sampler step as the
 * equivalent eps_hat (see {@link shiftToEps}); UGD's and the classic forms move eps directly.
 * Recurrence (time travel) is the separate loop-level wrapper lib/guidance/recurrence.ts.
 * @module
 */
import type { EnergySource } from "../directions.ts";
import type { DenoiserPullback } from "../../energy/through_denoiser.ts";
import { RandomStream } from "../../random.ts";
import { ddimSigma } from "../../sampler/ddim.ts";

/** What a method's guidance objective is: log p(y|x) (the papers') or -E(x,y) (§4.6). */
export type MethodObjective = "logp" | "joint";

/** log f~ and its gradient at x (diffusion space), per image. */
export interface SmoothedGradient {
  /** grad_x log f~_y(x), [n, C, H, W]. */
  grad: Float32Array;
  /** log f~_y(x) per image (the log-mean of the sampled probabilities). */
  logp: Float64Array;
}

/** Seeds of the auxiliary random draws of a method: one stream per image, step and purpose. */
export function auxSeed(seed: number, stepIndex: number, purpose: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [stepIndex, purpose]) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b) >>> 0;
    h = (h ^ (h >>> 13)) >>> 0;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}

/** Monte-Carlo draws of the smoothing: `samples` when sigma > 0, else one (f itself). */
export function drawCount(sigma: number, samples: number): number {
  return sigma > 0 ? Math.max(1, Math.floor(samples)) : 1;
}

/** (a, b, c) of the energy objective -log f_y: logp is E(x,y) - E(x), joint is E(x,y). */
export function objectiveCoef(objective: MethodObjective): [number, number, number] {
  return objective === "logp" ? [1, -1, 0] : [1, 0, 0];
}

/**
 * The smoothing offsets sigma z_j of {@link smoothedLogProbGrad}, [m][n][per] (undefined for
 * sigma = 0): z from one stream per image (`seeds`, `stepIndex`, `purpose`), so every image's
 * draws are independent of the batch.
 */
export function smoothingOffsets(
  per: number,
  n: number,
  m: number,
  sigma: number,
  seeds: readonly number[],
  stepIndex: number,
  purpose: number,
): Float32Array | undefined {
  if (!(sigma > 0)) return undefined;
  const off = new Float32Array(m * n * per);
  const z = new Float32Array(per);
  for (let i = 0; i < n; i++) {
    const s = new RandomStream(auxSeed(seeds[i], stepIndex, purpose));
    for (let j = 0; j < m; j++) {
      s.fillNormal(z);
      const o = (j * n + i) * per;
      for (let p = 0; p < per; p++) off[o + p] = sigma * z[p];
    }
  }
  return off;
}

/**
 * grad_x log f~_y(x) with f~ the sigma-smoothed f_y (TFG §3): with samples x + sigma z_j,
 * log f~ = log (1/M) sum_j f_y(x + sigma z_j) and its gradient is sum_j w_j grad log f_y(x + sigma z_j),
 * w = softmax_j(log f_y(x + sigma z_j)). sigma = 0 (or M = 1 with sigma = 0) is grad log f_y(x).
 * The draws z_j come from per-image streams (`seeds`, `stepIndex`, `purpose`), so every image's
 * guidance is independent of the batch. log f_y = -E(x,y) + E(x) for `logp`, -E(x,y) for `joint`.
 */
export async function smoothedLogProbGrad(
  clf: EnergySource,
  x: Float32Array,
  n: number,
  y: readonly number[],
  objective: MethodObjective,
  sigma: number,
  samples: number,
  seeds: readonly number[],
  stepIndex: number,
  purpose: number,
): Promise<SmoothedGradient> {
  const per = x.length / n;
  const m = drawCount(sigma, samples);
  const coef = objectiveCoef(objective);
  const off = smoothingOffsets(per, n, m, sigma, seeds, stepIndex, purpose);
  const xs = new Float32Array(m * x.length);
  const ys: number[] = [];
  for (let j = 0; j < m; j++) {
    ys.push(...y);
    for (let i = 0; i < x.length; i++) {
      xs[j * x.length + i] = x[i] + (off ? off[j * x.length + i] : 0);
    }
  }
  const out = await clf.fromDiffusionSpace(xs, m * n, ys, coef);
  const grad = new Float32Array(x.length);
  const logp = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    // log f_y(x + sigma z_j) = -(a E(x,y) + b E(x)) with the objective's coefficients
    const lj = Array.from({ length: m }, (_, j) => {
      const k = j * n + i;
      return -(out.energyXY[k] - (objective === "logp" ? out.energyX[k] : 0));
    });
    const top = Math.max(...lj);
    const w = lj.map((v) => Math.exp(v - top));
    const sw = w.reduce((a, b) => a + b, 0);
    logp[i] = top + Math.log(sw / m);
    for (let j = 0; j < m; j++) {
      const c = w[j] / sw, o = (j * n + i) * per;
      // the head's grad is of the objective a E(x,y) + b E(x) = -log f_y: negate
      for (let p = 0; p < per; p++) grad[i * per + p] -= c * out.grad[o + p];
    }
  }
  return { grad, logp };
}

/**
 * d x_{t'} / d eps of one sampler step t -> t' with x_t fixed (DDIM eq 2.25; DDPM is DDIM with
 * eta = 1 on the full grid, METHOD.md §2): sqrt(1 - abar_t' - sigma^2) - sqrt(abar_t'/abar_t)
 * sqrt(1 - abar_t). Negative for every t' < t.
 */
export function stepEpsCoefficient(abarT: number, abarPrev: number, eta: number): number {
  const sigma = ddimSigma(abarT, abarPrev, eta);
  return Math.sqrt(Math.max(0, 1 - abarPrev - sigma * sigma)) -
    Math.sqrt(abarPrev / abarT) * Math.sqrt(1 - abarT);
}

/**
 * The eps_hat that moves the sampler's x_{t'} by `shift` (the step is affine in eps):
 * eps_hat = eps + shift / (d x_{t'} / d eps). Exact for DDIM and DDPM without x0 clipping (with
 * clipping, pixels whose x0_hat is clipped do not move, as for the thesis's own guidance).
 */
export function shiftToEps(
  eps: Float32Array,
  shift: Float32Array,
  abarT: number,
  abarPrev: number,
  eta: number,
): Float32Array {
  const k = stepEpsCoefficient(abarT, abarPrev, eta);
  const out = new Float32Array(eps.length);
  for (let i = 0; i < eps.length; i++) out[i] = eps[i] + shift[i] / k;
  return out;
}

/** Everything one guided step of the core needs beyond the images. */
export interface CoreStep {
  /** Timestep t of the step and abar_t. */
  t: number;
  /** abar_t. */
  abarT: number;
  /** abar_t' of the step's target (1 for the last step). */
  abarPrev: number;
  /** Labels of the images. */
  y: readonly number[];
  /** Seeds of the images (auxiliary draws). */
  seeds: readonly number[];
  /** 0-based step index. */
  stepIndex: number;
}

/** TFG's hyperparameters at one step (schedules already applied). */
export interface CoreParams {
  /** rho_t: mean guidance through the denoiser (0: none, no backward pass). */
  rho: number;
  /** mu_t: variance guidance step in x0 space (0: none). */
  mu: number;
  /** Number of x0-space iterations (TFG N_iter). */
  iters: number;
  /** sigma_t of the smoothing (0: none). */
  sigma: number;
  /** Monte-Carlo samples of the smoothing (TFG's eps_bsz). */
  samples: number;
  /** Objective of f_y. */
  objective: MethodObjective;
}

/** The two guidance terms of TFG Alg 1 at one step, and what they cost. */
export interface CoreTerms {
  /** eps_theta(x_t, t). */
  eps: Float32Array;
  /** x0_hat(x_t). */
  x0: Float32Array;
  /** grad_{x_t} log f~(x0_hat(x_t)) (zeros when rho = 0). */
  gradXt: Float32Array;
  /** Delta_0 = sum of the mu-steps in x0 space (zeros when mu = 0). */
  delta0: Float32Array;
}

/**
 * The composed graph x_t -> denoiser -> x0_hat (+ offset) -> classifier with its gradient at x_t
 * (lib/energy/through_denoiser.ts's ThroughDenoiser.run): eps, x0_hat and the gradient through
 * the denoiser in one ONNX Runtime call, one denoiser forward instead of two.
 */
export interface FusedThrough {
  /** As ThroughDenoiser.run (coef (a, b, c), no E*, optional x0 offset). */
  run(
    x: Float32Array,
    n: number,
    t: number,
    abar: number,
    y: readonly number[],
    coef: readonly number[],
    eStar: undefined,
    offset?: Float32Array,
  ): Promise<{ eps: Float32Array; x0: Float32Array; grad: Float32Array }>;
}

/**
 * eps, x0_hat and the two guidance terms of TFG Alg 1 at x_t. The gradient through the denoiser
 * (rho != 0) comes from the fused graph `fused` when it is given and the smoothing has at most
 * one draw (eps, x0_hat and the gradient in one call); otherwise from one plain denoiser call
 * `forward`, the classifier at x0_hat and one pull-back J^T grad (the denoiser runs twice). Both
 * routes compute the same quantities (tests/methods_fused_test.ts). The x0-space iterations
 * Delta_0 (mu != 0) call the classifier. The smoothing draws are the same for both terms and all
 * iterations of a step, as in TFG's reference code.
 */
export async function coreTerms(
  x: Float32Array,
  n: number,
  step: CoreStep,
  p: CoreParams,
  forward: (x: Float32Array) => Promise<Float32Array>,
  pullback: DenoiserPullback | undefined,
  clf: EnergySource,
  fused?: FusedThrough,
): Promise<CoreTerms> {
  const smooth = (at: Float32Array) =>
    smoothedLogProbGrad(
      clf,
      at,
      n,
      step.y,
      p.objective,
      p.sigma,
      p.samples,
      step.seeds,
      step.stepIndex,
      1,
    );
  const useFused = p.rho !== 0 && fused !== undefined && drawCount(p.sigma, p.samples) === 1;
  let eps: Float32Array, x0: Float32Array;
  let gradXt: Float32Array = new Float32Array(x.length);
  let g0: Float32Array | undefined;
  if (useFused) {
    const off = smoothingOffsets(x.length / n, n, 1, p.sigma, step.seeds, step.stepIndex, 1);
    const coef = objectiveCoef(p.objective);
    const out = await fused.run(x, n, step.t, step.abarT, step.y, coef, undefined, off);
    eps = out.eps;
    x0 = out.x0;
    // the graph's grad is of a E + b E(x) = -log f_y: negate
    for (let i = 0; i < x.length; i++) gradXt[i] = -out.grad[i];
    if (p.mu !== 0 && p.iters > 0) g0 = (await smooth(x0)).grad;
  } else {
    eps = await forward(x);
    const sa = Math.sqrt(step.abarT), s1a = Math.sqrt(1 - step.abarT);
    x0 = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) x0[i] = (x[i] - s1a * eps[i]) / sa;
    const needX0Grad = p.rho !== 0 || (p.mu !== 0 && p.iters > 0);
    g0 = needX0Grad ? (await smooth(x0)).grad : undefined;
    if (p.rho !== 0) {
      if (!pullback) {
        throw new Error(
          "this method back-propagates through the denoiser (rho != 0) but neither a pull-back " +
            "graph nor a fused graph (with at most one smoothing draw) was given; load one with " +
            "loadDenoiserPullback or loadThroughDenoiser",
        );
      }
      gradXt = (await pullback.pullback(x, n, step.t, step.abarT, g0!)).grad;
    }
  }
  const delta0 = new Float32Array(x.length);
  if (p.mu !== 0) {
    const at = Float32Array.from(x0);
    for (let j = 0; j < p.iters; j++) {
      const g = j === 0 ? g0! : (await smooth(at)).grad;
      for (let i = 0; i < at.length; i++) {
        delta0[i] += p.mu * g[i];
        at[i] = x0[i] + delta0[i];
      }
    }
  }
  return { eps, x0, gradXt, delta0 };
}
