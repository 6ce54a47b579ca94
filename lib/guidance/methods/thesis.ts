/**
 * `thesis`: the project's method (METHOD.md §4, Alg 6): the off-the-shelf robust classifier read
 * as an energy model at x_t, eps_hat = eps - s w(t) g(x_t), with every option of `guide`
 * (direction, strength schedule, accumulation, activation, point). Only the scale is a method
 * parameter; the rest comes from the guide flags.
 * @module
 */
import { guided } from "../guided.ts";
import { DEFAULT_STRENGTH } from "../strength.ts";
import type { MethodDef } from "./method.ts";
import { num } from "./method.ts";

/** The thesis's classifier guidance at x_t (default method). */
export const THESIS: MethodDef = {
  name: "thesis",
  cite: "METHOD.md §4, Alg 6 (joint direction §4.6, w(t) = sqrt(1 - abar_t))",
  params: {
    scale: {
      default: 10,
      min: 0,
      doc: "strength s of eps_hat = eps - s w(t) g(x_t) (Alg 6, joint at x_t); " +
        "in guide it is --scale, whose default belongs to guide's own default setting",
    },
  },
  throughDenoiser: () => false,
  build: (env, p) =>
    guided(env.denoiser, {
      direction: { kind: "joint" },
      strength: DEFAULT_STRENGTH,
      point: "xt",
      form: "eps",
      ...env.thesis,
      classifier: env.classifier,
      labels: env.labels,
      scale: num(p, "scale"),
    }),
  tune: { param: "scale", grid: [5, 10, 20, 40] },
};
