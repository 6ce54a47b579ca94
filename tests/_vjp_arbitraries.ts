// Shared fast-check arbitraries and the property wrapper of the autodiff tests.
import fc from "fast-check";
import type { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType } from "../lib/onnx/proto.ts";

/**
 * Runs per property: small by default, so that every autodiff test file stays well under 60 s;
 * set AUTODIFF_RUNS (e.g. 500) for a deeper search.
 */
export const RUNS = Number(Deno.env.get("AUTODIFF_RUNS") ?? 10);

/**
 * The fast-check seed of a property: fixed per test name, so that CI draws the same values on
 * every run (float32 finite differences have rare draws where rounding beats the tolerance);
 * AUTODIFF_SEED=<n> picks another, AUTODIFF_SEED=random a fresh one (printed on failure).
 */
export function propertySeed(name: string): number | undefined {
  const env = Deno.env.get("AUTODIFF_SEED");
  if (env === "random") return undefined;
  let h = env === undefined ? 0x811c9dc5 : Number(env) | 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h | 0;
}

/** A Deno test that checks `run` on `numRuns` values drawn from `arb`. */
export function property<T>(
  name: string,
  arb: fc.Arbitrary<T>,
  run: (v: T) => Promise<unknown>,
  numRuns = RUNS,
) {
  Deno.test(name, async () => {
    await fc.assert(fc.asyncProperty(arb, async (v) => void await run(v)), {
      numRuns,
      seed: propertySeed(name),
    });
  });
}

/** Seeds of RandomStream. */
export const seedArb = fc.integer({ min: 0, max: 2 ** 31 });

/** A shape of rank minRank..maxRank with dims 1..maxDim. */
export function shapeArb(minRank: number, maxRank: number, maxDim = 4): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: 1, max: maxDim }), { minLength: minRank, maxLength: maxRank });
}

/**
 * A shape that broadcasts to `full`: a suffix of it (leading axes dropped) with some dims set
 * to 1; `flags` decide (one per axis, from the end).
 */
export function broadcastShape(
  full: readonly number[],
  keep: number,
  ones: readonly boolean[],
): number[] {
  const tail = full.slice(full.length - Math.min(keep, full.length));
  return tail.map((d, i) => (ones[i] ? 1 : d));
}

/** A pseudo-random constant (deterministic in `seed`) of `elem` type, values in [-1.5, 1.5]. */
export function randomConst(
  b: GraphBuilder,
  dims: readonly number[],
  seed: number,
  elem: number,
  awayFromZero = 0,
): string {
  const n = dims.reduce((a, d) => a * d, 1);
  const values = Array.from({ length: n }, (_, i) => {
    const v = 1.5 * Math.sin(seed * 0.37 + i * 2.17 + 0.3);
    return Math.sign(v || 1) * (awayFromZero + Math.abs(v));
  });
  return elem === DataType.DOUBLE
    ? b.constant("c", dims, Float64Array.from(values))
    : b.constant("c", dims, Float32Array.from(values));
}

/** An int64 constant. */
export function ints(b: GraphBuilder, values: readonly number[]): string {
  return b.i64("k", values);
}
