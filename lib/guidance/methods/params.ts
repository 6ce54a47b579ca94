/**
 * Each guidance method's own documented parameters, and the parser of `--method-params
 * k=v,k=v` (numbers, or one of a parameter's choices). Unknown names and bad values are errors
 * naming the value and listing what the method takes.
 * @module
 */

/** One parameter of a method: its default, meaning and admissible values. */
export interface ParamSpec {
  /** Default value. */
  default: number | string;
  /** What it does (shown by `guide --help` and in the README). */
  doc: string;
  /** Admissible values of a string parameter. */
  choices?: readonly string[];
  /** Smallest admissible value of a numeric parameter. */
  min?: number;
  /** Whether a numeric parameter must be an integer. */
  integer?: boolean;
}

/** Resolved parameter values, by name. */
export type ParamValues = Readonly<Record<string, number | string>>;

/** The defaults of `specs`, overridden by `given` (validated). */
export function resolveParams(
  method: string,
  specs: Readonly<Record<string, ParamSpec>>,
  given: Readonly<Record<string, number | string>> = {},
): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  for (const [k, s] of Object.entries(specs)) out[k] = s.default;
  for (const [k, v] of Object.entries(given)) {
    const s = specs[k];
    if (!s) {
      throw new Error(
        `--method ${method} has no parameter '${k}'; its parameters are ` +
          (Object.keys(specs).join(", ") || "none"),
      );
    }
    out[k] = checkValue(method, k, s, v);
  }
  return out;
}

function checkValue(method: string, k: string, s: ParamSpec, v: number | string): number | string {
  if (s.choices) {
    if (typeof v !== "string" || !s.choices.includes(v)) {
      throw new Error(
        `--method ${method}: ${k}=${v} is invalid: use one of ${s.choices.join(", ")}`,
      );
    }
    return v;
  }
  const num = typeof v === "number" ? v : Number(v);
  if (typeof v === "string" && v.trim() === "" || !Number.isFinite(num)) {
    throw new Error(`--method ${method}: ${k}=${v} is not a number`);
  }
  if (s.integer && !Number.isInteger(num)) {
    throw new Error(`--method ${method}: ${k}=${v} must be an integer`);
  }
  if (s.min !== undefined && num < s.min) {
    throw new Error(`--method ${method}: ${k}=${v} must be >= ${s.min}`);
  }
  return num;
}

/** Parses "k=v,k=v" (empty: none) into raw values (numbers stay strings until resolved). */
export function parseParamText(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const part of text.split(",")) {
    const m = /^\s*([A-Za-z_][\w-]*)\s*=\s*(\S+)\s*$/.exec(part);
    if (!m) {
      throw new Error(
        `--method-params '${part}' is not name=value; write e.g. --method-params rho=2,mu=0.5`,
      );
    }
    out[m[1]] = m[2];
  }
  return out;
}

/** One line per parameter: "name (default d): doc". */
export function describeParams(specs: Readonly<Record<string, ParamSpec>>): string[] {
  return Object.entries(specs).map(([k, s]) =>
    `${k} (default ${s.default}${s.choices ? `; ${s.choices.join("|")}` : ""}): ${s.doc}`
  );
}
