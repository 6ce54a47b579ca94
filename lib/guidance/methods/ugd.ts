/**
 * `ugd`: Universal Guidance (Bansal et al., ICLR 2024, Alg 1): forward guidance through the
 * denoiser in eps, eps_hat = eps - s(t) grad_{x_t} log p(y|x0_hat(x_t)) with
 * s(t) = s sqrt(1 - abar_t) (eq 6, l = -log p), backward guidance in x0 space, m gradient steps
 * Delta_0 <- Delta_0 + mu grad log p(y|x0_hat + Delta_0) then eps_hat <- eps_hat -
 * sqrt(abar_t/(1 - abar_t)) Delta_0 (eq 7-8), and k-step recurrence, x_t = sqrt(alpha_t) x_{t-1} +
 * sqrt(1 - alpha_t) z (eq 9; lib/guidance/recurrence.ts).
 * @module
 */
import { abarAt } from "../../schedule.ts";
import { recurrent } from "../recurrence.ts";
import type { MethodDef } from "./method.ts";
import { num, str } from "./method.ts";
import { nextT } from "./step_grid.ts";
import { trainingFreeGuided } from "./tfg_form.ts";

/** Universal Guidance (Bansal et al.). */
export const UGD: MethodDef = {
  name: "ugd",
  cite:
    "Bansal et al. 2024 (ICLR), Universal Guidance Alg 1, eq 6 (forward), 7-8 (backward), 9 (recurrence)",
  params: {
    s: { default: 1, min: 0, doc: "forward strength s, s(t) = s sqrt(1 - abar_t) (eq 6)" },
    mu: { default: 0.1, min: 0, doc: "step size of the backward x0-space gradient steps (eq 7)" },
    m: { default: 1, min: 0, integer: true, doc: "backward steps m (0: forward guidance only)" },
    k: { default: 1, min: 1, integer: true, doc: "recurrence k: each step taken k times (eq 9)" },
    objective: { default: "logp", choices: ["logp", "joint"], doc: "log p(y|x) or -E(x,y)" },
  },
  throughDenoiser: (p) => num(p, "s") !== 0,
  build: (env, p) => {
    const step = trainingFreeGuided(env, (_i, t) => ({
      rho: num(p, "s") * Math.sqrt(1 - abarAt(env.grid.schedule, t)),
      mu: num(p, "mu"),
      iters: num(p, "m"),
      sigma: 0,
      samples: 1,
      objective: str(p, "objective") as "logp" | "joint",
      form: "eps",
      meanWeight: 1,
    }));
    const k = num(p, "k");
    return recurrent(step, {
      rounds: () => k - 1,
      nextT: (i) => nextT(env.grid, i),
      eta: env.grid.eta,
      clip: env.grid.clip,
    });
  },
  tune: { param: "s", grid: [1, 3, 10, 30] },
};
