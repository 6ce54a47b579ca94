/**
 * Projected gradient descent (ascent on the loss) adversarial attacks, L2 and L-inf, for the
 * robust-accuracy table (METHOD.md §5 item 1, thesis Table 4.1). Conventions follow Madry et
 * al. (2018) and the MadryLab `robustness` library the thesis's classifiers come from:
 *
 * - images and eps are in [0, 1] pixel units (eps = 0.5 L2 means 0.5 on [0, 1] pixels);
 * - the loss is the cross-entropy -log p(y|x) = E(x,y) - E(x) (eq 2.38), its gradient taken in
 *   [0, 1] pixel space (head coefficients (1, -1, 0));
 * - 20 steps of size 2.5 eps / 20 by default ({@link madryStepSize});
 * - L2 step x + a g / |g|_2, L-inf step x + a sign(g); after every step the perturbation is
 *   projected onto the eps ball around the clean image and the image clipped to [0, 1];
 * - the returned image is the iterate with the largest loss among all evaluated iterates
 *   (the start included): `robustness`'s `use_best=True`.
 *
 * One difference, documented: the L2 random start is uniform in the eps ball (direction
 * Gaussian, radius eps u^(1/D)); `robustness` starts on the sphere. In D = 3072 dimensions the
 * radius of a uniform draw is above 0.998 eps with probability 1 - 2e-3, so the two agree in
 * practice.
 *
 * Everything here is pure over typed arrays, images row-major [n, D], except {@link pgdAttack},
 * which awaits a {@link LossGradient} (e.g. {@link crossEntropyGradient} of an energy head).
 * @module
 */
import type { EnergyClassifier } from "../energy/classifier.ts";
import { OBJECTIVES } from "../energy/classifier.ts";
import { RandomStream } from "../random.ts";

/** The threat model's norm. */
export type ThreatNorm = "l2" | "linf";

/** Settings of one PGD attack. */
export interface PgdConfig {
  /** Norm of the eps ball. */
  norm: ThreatNorm;
  /** Radius of the ball in [0, 1] pixel units (>= 0). */
  eps: number;
  /** Gradient steps (>= 0); 0 evaluates the start only. */
  steps: number;
  /** Step size a (> 0 unless steps = 0 or eps = 0). */
  stepSize: number;
  /** Start from a uniform draw in the ball (needs `seeds`) instead of the clean image. */
  randomStart: boolean;
}

/** Loss (to be maximised), logits and d loss / d x of n images x in [0, 1], [n, D]. */
export interface LossAndGradient {
  /** [n, K]. */
  logits: Float32Array;
  /** [n]. */
  loss: Float32Array;
  /** d loss_i / d x_i, [n, D]. */
  grad: Float32Array;
}

/** Evaluates a per-image loss and its input gradient. */
export type LossGradient = (
  x01: Float32Array,
  n: number,
  y: Int32Array,
) => Promise<LossAndGradient>;

/** What {@link pgdAttack} returns. */
export interface PgdResult {
  /** The largest-loss iterate of each image, [n, D] in [0, 1]. */
  adversarial: Float32Array;
  /** Logits at `adversarial`, [n, K]. */
  logits: Float32Array;
  /** Loss at `adversarial`, [n]. */
  loss: Float32Array;
  /** 1 where every evaluated iterate was classified as y (a stricter robustness count). */
  correctEveryIterate: Uint8Array;
  /** Loss-gradient evaluations made (steps + 1). */
  evaluations: number;
}

/** Madry/`robustness` default step size: ratio * eps / steps (ratio 2.5, Table 4.1 setup). */
export function madryStepSize(eps: number, steps: number, ratio = 2.5): number {
  return steps > 0 ? ratio * eps / steps : 0;
}

/**
 * The cross-entropy loss -log p(y|x) = E(x,y) - E(x) of an energy head (eq 2.38, head
 * coefficients (1, -1, 0)) with its gradient with respect to x in [0, 1].
 */
export function crossEntropyGradient(
  classifier: Pick<EnergyClassifier, "energies">,
): LossGradient {
  return async (x01, n, y) => {
    const o = await classifier.energies(x01, n, y, OBJECTIVES.crossEntropy);
    const loss = new Float32Array(n);
    for (let i = 0; i < n; i++) loss[i] = o.energyXY[i] - o.energyX[i];
    return { logits: o.logits, loss, grad: o.grad };
  };
}

/** Index of the largest value of row i of a [n, K] array (the first one on ties). */
export function argmaxRow(logits: Float32Array, i: number, K: number): number {
  let best = 0, v = logits[i * K];
  for (let k = 1; k < K; k++) {
    if (logits[i * K + k] > v) v = logits[i * K + (best = k)];
  }
  return best;
}

/** L2 ascent step in place: x_i += size * g_i / (|g_i|_2 + 1e-10) (`robustness` L2Step.step). */
export function stepL2(
  x: Float32Array,
  grad: Float32Array,
  n: number,
  D: number,
  size: number,
): void {
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = i * D; d < (i + 1) * D; d++) s += grad[d] * grad[d];
    const f = size / (Math.sqrt(s) + 1e-10);
    for (let d = i * D; d < (i + 1) * D; d++) x[d] += f * grad[d];
  }
}

/** L-inf ascent step in place: x += size * sign(g) (`robustness` LinfStep.step). */
export function stepLinf(x: Float32Array, grad: Float32Array, size: number): void {
  for (let j = 0; j < x.length; j++) x[j] += size * Math.sign(grad[j]);
}

/**
 * Projection in place onto the L2 ball of radius eps around x0, then onto [0, 1]
 * (`robustness` L2Step.project: renorm then clamp). Clipping moves each pixel towards x0, so
 * the result stays in the ball (up to float32 rounding, a few ulp).
 */
export function projectL2(
  x: Float32Array,
  x0: Float32Array,
  n: number,
  D: number,
  eps: number,
): void {
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = i * D; d < (i + 1) * D; d++) s += (x[d] - x0[d]) ** 2;
    const norm = Math.sqrt(s);
    const f = norm > eps ? eps / norm : 1;
    for (let d = i * D; d < (i + 1) * D; d++) {
      x[d] = clip01(x0[d] + f * (x[d] - x0[d]));
    }
  }
}

/** Projection in place onto the L-inf ball of radius eps around x0, then onto [0, 1]. */
export function projectLinf(x: Float32Array, x0: Float32Array, eps: number): void {
  for (let j = 0; j < x.length; j++) {
    const d = Math.min(eps, Math.max(-eps, x[j] - x0[j]));
    x[j] = clip01(x0[j] + d);
  }
}

/**
 * A random start: x0 plus a draw uniform in the eps ball of image i from `RandomStream(seeds[i])`,
 * clipped to [0, 1]. L2: Gaussian direction, radius eps u^(1/D) (uniform in the ball); L-inf:
 * each pixel uniform in [-eps, eps]. Returns a new array.
 */
export function randomStart(
  x0: Float32Array,
  n: number,
  D: number,
  norm: ThreatNorm,
  eps: number,
  seeds: readonly number[],
): Float32Array {
  if (seeds.length !== n) {
    throw new Error(`randomStart: ${seeds.length} seeds for n=${n} images; pass one per image`);
  }
  const x = new Float32Array(n * D);
  const z = new Float64Array(D);
  for (let i = 0; i < n; i++) {
    const rng = new RandomStream(seeds[i]);
    if (norm === "l2") {
      let s = 0;
      for (let d = 0; d < D; d++) s += (z[d] = rng.normal()) ** 2;
      const r = eps * rng.uniform() ** (1 / D);
      const f = s > 0 ? r / Math.sqrt(s) : 0;
      for (let d = 0; d < D; d++) x[i * D + d] = clip01(x0[i * D + d] + f * z[d]);
    } else {
      for (let d = 0; d < D; d++) {
        x[i * D + d] = clip01(x0[i * D + d] + eps * (2 * rng.uniform() - 1));
      }
    }
  }
  return x;
}

/**
 * PGD (Madry et al. 2018) maximising `lossGrad`'s loss within the eps ball around x0, as the
 * `robustness` library's attacker with use_best: evaluates the start, then `steps` times takes
 * a step ({@link stepL2} / {@link stepLinf}) and projects ({@link projectL2} /
 * {@link projectLinf}), evaluating each new iterate; returns the largest-loss iterate per image.
 * `x0` ([n, D]) must lie in [0, 1]; `seeds` (one per image) seed the random start.
 */
export async function pgdAttack(
  lossGrad: LossGradient,
  x0: Float32Array,
  n: number,
  y: Int32Array,
  cfg: PgdConfig,
  seeds?: readonly number[],
): Promise<PgdResult> {
  checkConfig(cfg);
  if (!Number.isInteger(n) || n < 1 || x0.length % n !== 0) {
    throw new Error(`pgdAttack: x0 has ${x0.length} values, not a multiple of n=${n}`);
  }
  if (y.length !== n) throw new Error(`pgdAttack: ${y.length} labels for n=${n} images`);
  const D = x0.length / n;
  for (let j = 0; j < x0.length; j++) {
    if (!(x0[j] >= 0 && x0[j] <= 1)) {
      throw new Error(
        `pgdAttack: x0[${j}] = ${x0[j]} is outside [0, 1]; attacks work in [0, 1] pixel space`,
      );
    }
  }
  if (cfg.randomStart && !seeds) {
    throw new Error("pgdAttack: randomStart needs seeds (one per image)");
  }
  const x = cfg.randomStart
    ? randomStart(x0, n, D, cfg.norm, cfg.eps, seeds!)
    : Float32Array.from(x0);
  let best: PgdResult | undefined;
  for (let it = 0; it <= cfg.steps; it++) {
    const o = await lossGrad(x, n, y);
    const K = o.logits.length / n;
    if (!best) {
      best = {
        adversarial: Float32Array.from(x),
        logits: Float32Array.from(o.logits),
        loss: Float32Array.from(o.loss),
        correctEveryIterate: new Uint8Array(n).fill(1),
        evaluations: 0,
      };
    }
    best.evaluations++;
    for (let i = 0; i < n; i++) {
      if (argmaxRow(o.logits, i, K) !== y[i]) best.correctEveryIterate[i] = 0;
      if (it > 0 && o.loss[i] > best.loss[i]) {
        best.loss[i] = o.loss[i];
        best.adversarial.set(x.subarray(i * D, (i + 1) * D), i * D);
        best.logits.set(o.logits.subarray(i * K, (i + 1) * K), i * K);
      }
    }
    if (it === cfg.steps) break;
    if (cfg.norm === "l2") {
      stepL2(x, o.grad, n, D, cfg.stepSize);
      projectL2(x, x0, n, D, cfg.eps);
    } else {
      stepLinf(x, o.grad, cfg.stepSize);
      projectLinf(x, x0, cfg.eps);
    }
  }
  return best!;
}

function checkConfig(cfg: PgdConfig): void {
  if (cfg.norm !== "l2" && cfg.norm !== "linf") {
    throw new Error(`PGD norm '${cfg.norm}' is invalid: use l2 or linf`);
  }
  if (!(cfg.eps >= 0) || !Number.isFinite(cfg.eps)) {
    throw new Error(`PGD eps ${cfg.eps} is invalid: use a finite radius >= 0 ([0, 1] pixels)`);
  }
  if (!Number.isInteger(cfg.steps) || cfg.steps < 0) {
    throw new Error(`PGD steps ${cfg.steps} is invalid: use an integer >= 0`);
  }
  if (!(cfg.stepSize >= 0) || !Number.isFinite(cfg.stepSize)) {
    throw new Error(`PGD step size ${cfg.stepSize} is invalid: use a finite number >= 0`);
  }
}

function clip01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}
