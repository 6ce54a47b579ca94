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
    throw new UsageError(
      `${task}: ${(e as Error).message}. Known flags: ${
        Object.keys(options).map((k) => "--" + k).join(" ")
      }`,
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
