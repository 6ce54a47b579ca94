/**
 * Every guidance method by its `--method` name, and the one entry point that builds a guided
 * denoiser from a name and `--method-params`.
 * @module
 */
import type { Denoiser } from "../../sampler/loop.ts";
import { DPS } from "./dps.ts";
import type { MethodEnv } from "./env.ts";
import { FREEDOM } from "./freedom.ts";
import type { MethodDef } from "./method.ts";
import { MPGD } from "./mpgd.ts";
import { NOISE_AWARE } from "./noise_aware.ts";
import { type ParamValues, resolveParams } from "./params.ts";
import { TFG } from "./tfg.ts";
import { THESIS } from "./thesis.ts";
import { UGD } from "./ugd.ts";

/** The methods, by name (`thesis` is the default). */
export const METHODS: Readonly<Record<string, MethodDef>> = {
  thesis: THESIS,
  mpgd: MPGD,
  dps: DPS,
  freedom: FREEDOM,
  ugd: UGD,
  tfg: TFG,
  "noise-aware": NOISE_AWARE,
};

/** The method names, in the order tasks list them. */
export const METHOD_NAMES: readonly string[] = Object.keys(METHODS);

/** The method called `name`; throws listing the names otherwise. */
export function methodDef(name: string): MethodDef {
  const m = Object.hasOwn(METHODS, name) ? METHODS[name] : undefined;
  if (!m) throw new Error(`--method '${name}' is invalid: use one of ${METHOD_NAMES.join(", ")}`);
  return m;
}

/** A method with its parameters resolved (defaults overridden by `given`). */
export interface ResolvedMethod {
  /** The definition. */
  def: MethodDef;
  /** Every parameter's value. */
  params: ParamValues;
}

/** Resolves `name` and its parameters (validated). */
export function resolveMethod(
  name: string,
  given: Readonly<Record<string, number | string>> = {},
): ResolvedMethod {
  const def = methodDef(name);
  return { def, params: resolveParams(name, def.params, given) };
}

/** The guided denoiser of a resolved method over the shared ingredients `env`. */
export function buildMethod(env: MethodEnv, m: ResolvedMethod): Denoiser {
  if (m.def.throughDenoiser(m.params) && !env.pullback && !env.through) {
    throw new Error(
      `--method ${m.def.name} back-propagates through the denoiser, but neither a pull-back ` +
        `graph nor a fused graph was built; load one with loadDenoiserPullback or loadThroughDenoiser`,
    );
  }
  return m.def.build(env, m.params);
}
