/**
 * What a guidance method is: a name, the paper it implements, its documented parameters, and a
 * builder that wraps the unguided denoiser into the guided one (and, for methods that repeat
 * steps, the recurrence it needs).
 * @module
 */
import type { Denoiser } from "../../sampler/loop.ts";
import type { MethodEnv } from "./env.ts";
import type { ParamSpec, ParamValues } from "./params.ts";

/** A guidance method (see the registry in ./registry.ts). */
export interface MethodDef {
  /** The `--method` name. */
  name: string;
  /** The paper and equation it implements. */
  cite: string;
  /** Its own parameters, with defaults and docs. */
  params: Readonly<Record<string, ParamSpec>>;
  /** Whether it back-propagates through the denoiser (needs MethodEnv.pullback). */
  throughDenoiser: (p: ParamValues) => boolean;
  /** The guided denoiser for resolved parameters `p`. */
  build: (env: MethodEnv, p: ParamValues) => Denoiser;
  /** The parameter the comparison tunes (the strength), and its grid. */
  tune: { param: string; grid: readonly number[] };
}

/** A numeric parameter value. */
export function num(p: ParamValues, k: string): number {
  const v = p[k];
  if (typeof v !== "number") throw new Error(`internal: parameter ${k} is not a number (${v})`);
  return v;
}

/** A string parameter value. */
export function str(p: ParamValues, k: string): string {
  return String(p[k]);
}
