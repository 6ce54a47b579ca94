/**
 * Command-line helpers shared by the tasks: strict parsing (node:util parseArgs) and validated
 * numbers, with errors that name the flag, the value and the fix.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../lib/errors.ts";

/** Parses `args` strictly; unknown flags are an error listing the known ones. */
export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(
  task: string,
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    const msg = (e as Error).message;
    // parseArgs words a flag without its value ("argument missing", "argument is ambiguous ...
    // Did you forget ...") for programmers; say it for users
    const missing =
      /^Option '(?:-\w, )?(--[-\w]+)(?:, -\w)?(?: <value>)?' argument (missing|is ambiguous)/
        .exec(msg);
    if (missing) {
      const flag = missing[1];
      throw new UsageError(
        `${task}: ${flag} needs a value: ${flag} <value> or ${flag}=<value>` +
          (missing[2] === "missing"
            ? ""
            : ` (the next argument starts with '-', so it is taken for a flag)`) +
          `; a negative number needs the = form: ${flag}=-1`,
      );
    }
    throw new UsageError(
      `${task}: ${msg}. Known flags: ${Object.keys(options).map((k) => "--" + k).join(" ")}`,
    );
  }
}

export { UsageError } from "../lib/errors.ts";

/** A number flag: finite, optionally integer and within [min, max]. */
export function numberFlag(
  name: string,
  raw: string | undefined,
  fallback: number,
  opts: { int?: boolean; min?: number; max?: number } = {},
): number {
  if (raw === undefined) return fallback;
  const v = Number(raw);
  const kind = opts.int ? "an integer" : "a number";
  const range = opts.min !== undefined || opts.max !== undefined
    ? ` in [${opts.min ?? "-inf"}, ${opts.max ?? "inf"}]`
    : "";
  if (
    raw.trim() === "" || !Number.isFinite(v) || (opts.int && !Number.isInteger(v)) ||
    (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)
  ) {
    throw new UsageError(`--${name} '${raw}' is invalid: use ${kind}${range}`);
  }
  return v;
}

/** A flag restricted to a set of words. */
export function choiceFlag<C extends string>(
  name: string,
  raw: string | undefined,
  choices: readonly C[],
  fallback: C,
): C {
  if (raw === undefined) return fallback;
  if (!(choices as readonly string[]).includes(raw)) {
    throw new UsageError(`--${name} '${raw}' is invalid: use one of ${choices.join(", ")}`);
  }
  return raw as C;
}

/** Versions recorded in run.json. */
export function versions(): Record<string, string> {
  return { deno: Deno.version.deno, v8: Deno.version.v8, typescript: Deno.version.typescript };
}

/** The largest finite float32: eps, g and eps - s w(t) g are float32 arrays. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/** Above this |s| a warning says the images will saturate (the thesis's strengths are <= ~100). */
export const SCALE_WARN = 1e4;

/**
 * The guidance strength `--scale` (Alg 6: eps_hat = eps - s w(t) g): a finite number whose size
 * float32 can hold, since the guidance arithmetic runs in float32; beyond {@link SCALE_WARN} a
 * warning on stderr says why the images will saturate.
 */
export function scaleFlag(raw: string | undefined, fallback: number): number {
  const s = numberFlag("scale", raw, fallback);
  if (Math.abs(s) > FLOAT32_MAX) {
    throw new UsageError(
      `--scale '${raw}' is beyond float32's range (|s| <= 3.4e38): the guidance eps - s w(t) g ` +
        `is computed in float32 and would be Inf; strengths that change images are ~1-100`,
    );
  }
  if (Math.abs(s) > SCALE_WARN) {
    console.error(
      `warning: --scale ${raw} is far above the useful range (~1-100): the guidance term ` +
        `dominates eps and the images saturate to 0/255 pixels`,
    );
  }
  return s;
}
