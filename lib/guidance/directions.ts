/**
 * Guidance directions (METHOD.md §4): ascent directions g for class y, computed from an energy
 * source's gradients in diffusion space [-1, 1]. The caller applies the scale (guided-diffusion's
 * `cond_fn` convention: directions are unscaled).
 * @module
 */
import type { CoefficientsArg, EnergyOutputs } from "../energy/classifier.ts";

/** What guidance needs of a classifier: energies and gradients at diffusion-space images. */
export interface EnergySource {
  /** Number of classes K. */
  readonly numClasses: number;
  /** Logits, energies and the `coef`-weighted objective's gradient for `n` images x in [-1, 1]. */
  fromDiffusionSpace(
    x: Float32Array,
    n: number,
    y: Int32Array | readonly number[],
    coef: CoefficientsArg,
    eStar?: number | Float32Array | readonly number[],
  ): Promise<EnergyOutputs>;
}

/** A guidance direction and its parameters. */
export type DirectionSpec =
  /** grad log p(y|x) = grad E(x) - grad E(x,y) (Alg 6). */
  | { kind: "logp" }
  /** -grad E(x,y): the class-conditional energy only (§4.6). */
  | { kind: "joint" }
  /** -grad [E(x,y) + lambda |Estar_y - E(x)|] (§4.8, eq 4.5-4.6); eStar per class. */
  | { kind: "dual"; lambda: number; eStar: readonly number[] }
  /**
   * §4.9, Alg 8: `steps` normalised energy-descent steps of size gamma from x_t,
   * x <- x - gamma grad E(x,y) / |grad E(x,y)|, then -grad E(x_n, y). `literal` uses the update
   * as printed, x <- (1 + gamma) x - gamma grad/|grad| (see directionPgd).
   */
  | { kind: "pgd"; steps: number; gamma: number; literal: boolean };

/** §4.3 accumulation: sum of the direction over n points x_{i+1} = x_i + alpha g(x_i). */
export interface Accumulate {
  /** Number of points summed (1 or less: no accumulation). */
  n: number;
  /** Step size alpha between points. */
  alpha: number;
}

/** A direction and the energies at the evaluation point (the first point). */
export interface DirectionResult {
  /** The ascent direction, [n, C, H, W] in diffusion space (unscaled). */
  g: Float32Array;
  /** E(x,y) per image, [n]. */
  energyXY: Float32Array;
  /** E(x) per image, [n]. */
  energyX: Float32Array;
  /** Classifier logits, [n, K]. */
  logits: Float32Array;
}

const JOINT: CoefficientsArg = [1, 0, 0];
const CROSS_ENTROPY: CoefficientsArg = [1, -1, 0];

function negate(grad: Float32Array): Float32Array {
  const g = new Float32Array(grad.length);
  for (let i = 0; i < g.length; i++) g[i] = -grad[i];
  return g;
}

/** Per-image L2 norms of a [n, per] array. */
export function imageNorms(v: Float32Array, n: number): Float64Array {
  const per = v.length / n;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let p = i * per; p < (i + 1) * per; p++) s += v[p] * v[p];
    out[i] = Math.sqrt(s);
  }
  return out;
}

/**
 * PGD direction (§4.9, Alg 8). Readable form: x <- x - gamma grad/|grad| (normalised energy
 * descent, per image), then g = -grad E(x_n, y). `literal`: x <- (1 + gamma) x - gamma grad/|grad|
 * as printed in the thesis. The thesis also scores with "grad log E", which is undefined when
 * E(x,y) = -f_y(x) <= 0 (the usual case for the target class); both forms score with
 * -grad E(x_n, y).
 */
export async function directionPgd(
  spec: Extract<DirectionSpec, { kind: "pgd" }>,
  clf: EnergySource,
  x: Float32Array,
  n: number,
  y: readonly number[],
): Promise<DirectionResult> {
  const per = x.length / n;
  const xi = Float32Array.from(x);
  let first: EnergyOutputs | undefined;
  for (let k = 0; k < spec.steps; k++) {
    const out = await clf.fromDiffusionSpace(xi, n, y, JOINT);
    first ??= copyEnergies(out);
    const norms = imageNorms(out.grad, n);
    for (let i = 0; i < n; i++) {
      if (norms[i] === 0) continue;
      const c = spec.gamma / norms[i];
      for (let p = i * per; p < (i + 1) * per; p++) {
        xi[p] = (spec.literal ? (1 + spec.gamma) * xi[p] : xi[p]) - c * out.grad[p];
      }
    }
  }
  const end = await clf.fromDiffusionSpace(xi, n, y, JOINT);
  const at = first ?? end;
  return { g: negate(end.grad), energyXY: at.energyXY, energyX: at.energyX, logits: at.logits };
}

function copyEnergies(o: EnergyOutputs): EnergyOutputs {
  return {
    logits: Float32Array.from(o.logits),
    energyXY: Float32Array.from(o.energyXY),
    energyX: Float32Array.from(o.energyX),
    grad: o.grad,
  };
}

/** The direction at x for labels y (one point; see {@link guidanceDirection} for accumulation). */
export async function baseDirection(
  spec: DirectionSpec,
  clf: EnergySource,
  x: Float32Array,
  n: number,
  y: readonly number[],
): Promise<DirectionResult> {
  switch (spec.kind) {
    case "logp": {
      const o = await clf.fromDiffusionSpace(x, n, y, CROSS_ENTROPY); // objective -log p(y|x)
      return { g: negate(o.grad), energyXY: o.energyXY, energyX: o.energyX, logits: o.logits };
    }
    case "joint": {
      const o = await clf.fromDiffusionSpace(x, n, y, JOINT);
      return { g: negate(o.grad), energyXY: o.energyXY, energyX: o.energyX, logits: o.logits };
    }
    case "dual": {
      const eStar = y.map((c) => spec.eStar[c]);
      const o = await clf.fromDiffusionSpace(x, n, y, [1, 0, spec.lambda], eStar);
      return { g: negate(o.grad), energyXY: o.energyXY, energyX: o.energyX, logits: o.logits };
    }
    case "pgd":
      return await directionPgd(spec, clf, x, n, y);
  }
}

/**
 * The guidance direction with optional accumulation (§4.3): g = sum_{i<n} g(x_i),
 * x_0 = x, x_{i+1} = x_i + alpha g(x_i). Energies are those at x.
 */
export async function guidanceDirection(
  spec: DirectionSpec,
  acc: Accumulate | undefined,
  clf: EnergySource,
  x: Float32Array,
  n: number,
  y: readonly number[],
): Promise<DirectionResult> {
  const first = await baseDirection(spec, clf, x, n, y);
  if (!acc || acc.n <= 1) return first;
  const sum = Float32Array.from(first.g);
  const xi = Float32Array.from(x);
  let g = first.g;
  for (let i = 1; i < acc.n; i++) {
    for (let p = 0; p < xi.length; p++) xi[p] += acc.alpha * g[p];
    g = (await baseDirection(spec, clf, xi, n, y)).g;
    for (let p = 0; p < sum.length; p++) sum[p] += g[p];
  }
  return { ...first, g: sum };
}

/** Parses a direction name with its parameters from task flags. */
export function directionFromFlags(
  kind: string,
  opts: {
    lambda?: number;
    eStar?: readonly number[];
    pgdSteps?: number;
    gamma?: number;
    literal?: boolean;
  },
): DirectionSpec {
  switch (kind) {
    case "logp":
    case "joint":
      return { kind };
    case "dual":
      if (!opts.eStar) {
        throw new Error(
          "--direction dual needs class-wise energy statistics (Estar_y): pass --stats <energy-stats.json> " +
            "written by 'deno task energy-stats' for this classifier",
        );
      }
      return { kind, lambda: opts.lambda ?? 0.15, eStar: opts.eStar };
    case "pgd":
      return {
        kind,
        steps: opts.pgdSteps ?? 5,
        gamma: opts.gamma ?? 0.1,
        literal: opts.literal ?? false,
      };
    default:
      throw new Error(`--direction '${kind}' is invalid: use one of logp, joint, dual, pgd`);
  }
}
