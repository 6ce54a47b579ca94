/**
 * Helpers shared by the tasks that run `guide` + `evaluate` over a grid of points (sweep, compare,
 * sampler-tradeoff): pass-through flags, and reading a point's JSON files on resume.
 * @module
 */

/**
 * The parseFlags options of string flags passed through unchanged, each name once.
 * @param lists the pass-through flag lists (e.g. GUIDE_PASS, EVALUATE_PASS)
 * @returns `{ name: { type: "string" } }` for every name
 */
export function passThroughOptions<K extends string>(
  ...lists: readonly (readonly K[])[]
): Record<K, { type: "string" }> {
  return Object.fromEntries(
    [...new Set(lists.flat())].map((k) => [k, { type: "string" as const }]),
  ) as Record<K, { type: "string" }>;
}

/**
 * `--name=value` of each of the given flags that was set, in the order of `names`.
 * @param f the parsed flags
 * @param names the flags to pass on
 */
export function passFlags(f: object, names: readonly string[]): string[] {
  const rec = f as Record<string, unknown>;
  return names.flatMap((k) => rec[k] === undefined ? [] : [`--${k}=${rec[k]}`]);
}

/**
 * Reads a JSON file, or undefined when it does not exist.
 * @throws Error naming the file when it exists but is not valid JSON
 */
// deno-lint-ignore no-explicit-any
export async function readJson(path: string): Promise<any> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new Error(
      `${path} cannot be read as JSON (${(e as Error).message}); delete it and rerun`,
    );
  }
}
