/**
 * Guidance strength schedules w(t) and activation (METHOD.md §4, thesis §4.3, §4.5, §4.7,
 * eq 4.4, Fig 4.10/4.11/4.17). A schedule is a plain value ({@link StrengthSpec}); the
 * functions here are pure. Classifier-guided DDIM (Alg 6) uses
 *
 *     eps_hat = eps_theta(x_t, t) - factor * g(x_t),   factor = guidanceFactor(...)
 *
 * where, for the weight kinds, factor = s * w(t) (Alg 6 default w(t) = sqrt(1 - abar_t)).
 *
 * Two kinds of schedule:
 * - **weight kinds** (`sqrt`, `power`, `sigmoid`, `linear`, `constant`) return a weight w(t)
 *   that multiplies the user's scale s;
 * - **`two-phase`** returns an absolute STRENGTH (§4.5: 30 for the first half of the steps,
 *   11 after). It replaces s * w(t) entirely: the user's scale is ignored for it (and so is
 *   the sqrt(1 - abar_t) default weight), as in the thesis, whose 30 and 11 are absolute.
 * @module
 */
import { UsageError } from "../errors.ts";
import { abarAt, type NoiseSchedule } from "../schedule.ts";

/** A strength schedule w(t), as a plain value (METHOD.md §4 table). */
export type StrengthSpec =
  | { kind: "sqrt" }
  | { kind: "power"; p: number }
  | { kind: "sigmoid"; y0: number; t0: number; k: number }
  | {
    kind: "two-phase";
    s1: number;
    s2: number;
    /** Fraction of the steps run at strength s1, in (0, 1); default 0.5. */
    switchAt: number;
  }
  | { kind: "linear" }
  | { kind: "constant" };

/** The name of a strength schedule kind. */
export type StrengthKind = StrengthSpec["kind"];

/** A strength schedule together with its activation (§4.3). */
export interface StrengthSchedule {
  /** The weight (or, for two-phase, strength) schedule. */
  spec: StrengthSpec;
  /**
   * Fraction of the first sampling steps with guidance OFF, in [0, 1] (§4.3: 0.2-0.3 works).
   * 0 guides every step; 1 guides none.
   */
  activation: number;
}

/** The default schedule of Alg 6: w(t) = sqrt(1 - abar_t), guidance from the first step. */
export const DEFAULT_STRENGTH: StrengthSchedule = { spec: { kind: "sqrt" }, activation: 0 };

/** Every schedule the thesis shows (METHOD.md §4 table), as CLI strings. */
export const THESIS_STRENGTHS: readonly string[] = [
  "sqrt",
  "power:0.5",
  "power:2",
  "power:8",
  "sigmoid:0.1,650,0.01",
  "sigmoid:0.05,500,0.02",
  "two-phase:30,11",
  "linear",
];

/** Default fraction of the steps at strength s1 in `two-phase` (§4.5: the first half). */
export const DEFAULT_SWITCH_AT = 0.5;

const VALID_FORMS = "valid forms: sqrt | power:p (p > 0, e.g. power:2) | " +
  "sigmoid:y0,t0,k (eq 4.4; y0 in [0,1], t0 in [0,T], k > 0, e.g. sigmoid:0.1,650,0.01) | " +
  "two-phase:s1,s2[,switch] (absolute strengths >= 0, switch fraction in (0,1), " +
  "default 0.5, e.g. two-phase:30,11) | linear | constant";

/** A decimal number, as written by String(number) or a person (no hex, no Infinity). */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * Parses a compact strength schedule string: `sqrt`, `power:p`, `sigmoid:y0,t0,k`,
 * `two-phase:s1,s2[,switch]`, `linear` or `constant`. `T` (default 1000) bounds the sigmoid
 * midpoint t0. Throws a UsageError naming the string, the problem and the valid forms.
 * @example
 * ```ts
 * parseStrength("sigmoid:0.1,650,0.01"); // { kind: "sigmoid", y0: 0.1, t0: 650, k: 0.01 }
 * ```
 */
export function parseStrength(text: string, T = 1000): StrengthSpec {
  const fail = (what: string): never => {
    throw new UsageError(`strength schedule '${text}' is invalid: ${what}; ${VALID_FORMS}`);
  };
  const trimmed = text.trim();
  if (trimmed === "") fail("it is empty");
  const colon = trimmed.indexOf(":");
  const name = colon < 0 ? trimmed : trimmed.slice(0, colon);
  const rest = colon < 0 ? undefined : trimmed.slice(colon + 1);
  const numbers = (names: string[], optional = 0): number[] => {
    if (rest === undefined) fail(`${name} takes ${names.join(",")} after a colon`);
    const parts = rest!.split(",").map((p) => p.trim());
    if (parts.length < names.length - optional || parts.length > names.length) {
      const count = optional ? `${names.length - optional} or ${names.length}` : names.length;
      fail(`${name} takes ${count} numbers ${names.join(",")}, got ${parts.length}`);
    }
    return parts.map((p, i) => {
      const v = Number(p);
      if (!DECIMAL.test(p) || !Number.isFinite(v)) {
        fail(`${names[i]} = '${p}' is not a finite decimal number`);
      }
      return v;
    });
  };
  const noParams = (): void => {
    if (rest !== undefined) fail(`${name} takes no parameters, got ':${rest}'`);
  };
  switch (name) {
    case "sqrt":
    case "linear":
    case "constant":
      noParams();
      return { kind: name };
    case "power": {
      const [p] = numbers(["p"]);
      if (!(p > 0)) fail(`p = ${p} must be > 0`);
      return { kind: "power", p };
    }
    case "sigmoid": {
      const [y0, t0, k] = numbers(["y0", "t0", "k"]);
      if (!(y0 >= 0 && y0 <= 1)) fail(`y0 = ${y0} must be in [0, 1]`);
      if (!(t0 >= 0 && t0 <= T)) fail(`t0 = ${t0} must be in [0, T = ${T}]`);
      if (!(k > 0)) fail(`k = ${k} must be > 0`);
      return { kind: "sigmoid", y0, t0, k };
    }
    case "two-phase": {
      const [s1, s2, switchAt = DEFAULT_SWITCH_AT] = numbers(["s1", "s2", "switch"], 1);
      if (!(s1 >= 0)) fail(`s1 = ${s1} must be >= 0`);
      if (!(s2 >= 0)) fail(`s2 = ${s2} must be >= 0`);
      if (!(switchAt > 0 && switchAt < 1)) fail(`switch = ${switchAt} must be in (0, 1)`);
      return { kind: "two-phase", s1, s2, switchAt };
    }
    default:
      return fail(`unknown kind '${name}'`);
  }
}

/**
 * Formats a schedule as the compact string {@link parseStrength} reads (for run.json);
 * `parseStrength(formatStrength(s))` deep-equals `s`. The two-phase switch is written only
 * when it differs from the default 0.5.
 */
export function formatStrength(spec: StrengthSpec): string {
  switch (spec.kind) {
    case "sqrt":
    case "linear":
    case "constant":
      return spec.kind;
    case "power":
      return `power:${spec.p}`;
    case "sigmoid":
      return `sigmoid:${spec.y0},${spec.t0},${spec.k}`;
    case "two-phase":
      return spec.switchAt === DEFAULT_SWITCH_AT
        ? `two-phase:${spec.s1},${spec.s2}`
        : `two-phase:${spec.s1},${spec.s2},${spec.switchAt}`;
  }
}

/** Sigmoid weight (1 - y0) / (1 + exp(-k (t - t0))) + y0: y0 at t -> -inf, 1 at +inf. */
export function sigmoidWeight(t: number, y0: number, t0: number, k: number): number {
  return (1 - y0) / (1 + Math.exp(-k * (t - t0))) + y0; // eq 4.4
}

/**
 * How many of the first `steps` steps a `fraction` in [0, 1] covers: the step indices i with
 * i < fraction * steps, i.e. ceil(fraction * steps), with a 1e-9 tolerance so that
 * 0.7 * 10 = 7.000000000000001 counts as 7 steps, not 8. Used for activation and two-phase.
 */
export function fractionToSteps(fraction: number, steps: number): number {
  const x = fraction * steps;
  const r = Math.round(x);
  return Math.abs(x - r) <= 1e-9 * Math.max(1, x) ? r : Math.ceil(x);
}

function checkStep(stepIndex: number, steps: number): void {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new Error(`steps = ${steps} is invalid: use a positive integer (the grid length)`);
  }
  if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= steps) {
    throw new Error(
      `stepIndex = ${stepIndex} is invalid: use an integer in 0..${steps - 1} ` +
        `(0 is the first, noisiest step)`,
    );
  }
}

/**
 * w(t) of a schedule at timestep `t` (step `stepIndex` of `steps`, 0 = first/noisiest):
 * - `sqrt`: sqrt(1 - abar_t) (Alg 6 default);
 * - `power:p`: (1 - abar_t)^p (§4.7, Fig 4.10); `power:0.5` equals `sqrt`;
 * - `sigmoid:y0,t0,k`: (1 - y0) / (1 + exp(-k (t - t0))) + y0 (eq 4.4, Fig 4.11);
 * - `linear`: t / (T - 1), "linear in t" (Fig 4.17): 1 at t = T-1 (pure noise) falling to 0 at
 *   t = 0 (clean image), like the other weights, strongest early in sampling;
 * - `constant`: 1;
 * - `two-phase`: the absolute strength s1 for stepIndex < switchAt * steps, s2 after (§4.5).
 *   This is a strength, not a weight: see {@link guidanceFactor}.
 *
 * `sqrt` and `power` need t to be an integer timestep of `schedule`; `sigmoid` and `linear`
 * take any real t.
 */
export function strengthWeight(
  spec: StrengthSpec,
  t: number,
  stepIndex: number,
  steps: number,
  schedule: NoiseSchedule,
): number {
  switch (spec.kind) {
    case "sqrt":
      return Math.sqrt(1 - abarAt(schedule, t)); // Alg 6
    case "power":
      return (1 - abarAt(schedule, t)) ** spec.p; // §4.7
    case "sigmoid":
      return sigmoidWeight(t, spec.y0, spec.t0, spec.k); // eq 4.4
    case "linear":
      return schedule.T === 1 ? 1 : t / (schedule.T - 1); // Fig 4.17
    case "constant":
      return 1;
    case "two-phase":
      checkStep(stepIndex, steps);
      return stepIndex < fractionToSteps(spec.switchAt, steps) ? spec.s1 : spec.s2; // §4.5
  }
}

/**
 * The factor multiplying the guidance direction g at one step (Alg 6:
 * eps_hat = eps - factor * g):
 * - 0 while stepIndex < activation * steps (guidance off for the first fraction, §4.3);
 * - otherwise `scale * w(t)` for the weight kinds;
 * - otherwise s1 or s2 for `two-phase`, **ignoring `scale`**: the thesis's §4.5 strengths
 *   (30 then 11) are absolute and replace s * w(t). Use scale 1 in run.json for clarity.
 */
export function guidanceFactor(
  sched: StrengthSchedule,
  scale: number,
  t: number,
  stepIndex: number,
  steps: number,
  schedule: NoiseSchedule,
): number {
  const a = sched.activation;
  if (!(a >= 0 && a <= 1)) {
    throw new Error(`activation = ${a} is invalid: use a fraction of the steps in [0, 1]`);
  }
  if (!Number.isFinite(scale)) {
    throw new Error(`guidance scale = ${scale} is invalid: use a finite number`);
  }
  checkStep(stepIndex, steps);
  if (stepIndex < fractionToSteps(a, steps)) return 0; // §4.3 activation
  const w = strengthWeight(sched.spec, t, stepIndex, steps, schedule);
  return sched.spec.kind === "two-phase" ? w : scale * w;
}
