/**
 * `tfg`: Unified Training-Free Guidance (Ye et al., NeurIPS 2024, Alg 1): mean guidance
 * through the denoiser (rho), variance guidance in x0 space (mu, N_iter iterations), implicit
 * dynamics (the classifier Gaussian-smoothed with sigma_t, N_sample draws) and N_recur
 * recurrences; rho_t and mu_t follow the increase/decrease/constant schedules normalised to mean
 * one over the run's steps, sigma_t is constant or sigma sqrt(1 - abar_t) (the paper's §4 and its
 * reference code). Its special cases (§3.2): DPS (rho only), FreeDoM (rho + recurrence), MPGD
 * (mu, one iteration), UGD (rho, mu, iterations, recurrence).
 * @module
 */
import { abarAt } from "../../schedule.ts";
import { recurrent } from "../recurrence.ts";
import type { MethodDef } from "./method.ts";
import { num, str } from "./method.ts";
import { nextT, type TfgScheduleKind, tfgSigma, tfgWeights } from "./step_grid.ts";
import { trainingFreeGuided } from "./tfg_form.ts";

const SCHEDULES = ["increase", "decrease", "constant"] as const;

/** TFG (Ye et al. 2024). */
export const TFG: MethodDef = {
  name: "tfg",
  cite:
    "Ye et al. 2024 (NeurIPS), TFG Alg 1: x_{t'} = S(x_t, x0) + rho_t grad/sqrt(alpha_t) + sqrt(abar_t') Delta_0",
  params: {
    rho: { default: 1, min: 0, doc: "mean-guidance strength rho (through the denoiser)" },
    mu: { default: 0.25, min: 0, doc: "variance-guidance step mu (x0 space)" },
    sigma: { default: 0.01, min: 0, doc: "smoothing sigma of the implicit dynamics (0: none)" },
    iters: { default: 1, min: 0, integer: true, doc: "N_iter x0-space iterations" },
    recur: { default: 1, min: 1, integer: true, doc: "N_recur: each step taken recur times" },
    samples: {
      default: 1,
      min: 1,
      integer: true,
      doc: "N_sample Monte-Carlo draws of the smoothing",
    },
    rho_schedule: { default: "increase", choices: SCHEDULES, doc: "rho_t schedule" },
    mu_schedule: { default: "increase", choices: SCHEDULES, doc: "mu_t schedule" },
    sigma_schedule: {
      default: "decrease",
      choices: ["constant", "decrease"],
      doc: "sigma_t: constant, or sigma sqrt(1 - abar_t)",
    },
    objective: { default: "logp", choices: ["logp", "joint"], doc: "log p(y|x) or -E(x,y)" },
  },
  throughDenoiser: (p) => num(p, "rho") !== 0,
  build: (env, p) => {
    const wr = tfgWeights(env.grid, str(p, "rho_schedule") as TfgScheduleKind);
    const wm = tfgWeights(env.grid, str(p, "mu_schedule") as TfgScheduleKind);
    const step = trainingFreeGuided(env, (i, t) => {
      const [tt, tp] = env.grid.pairs[i];
      if (tt !== t) throw new Error(`internal: step ${i} is at t = ${tt}, called at t = ${t}`);
      const alpha = abarAt(env.grid.schedule, t) / abarAt(env.grid.schedule, tp);
      return {
        rho: num(p, "rho") * wr[i],
        mu: num(p, "mu") * wm[i],
        iters: num(p, "iters"),
        sigma: tfgSigma(env.grid, i, num(p, "sigma"), str(p, "sigma_schedule")),
        samples: num(p, "samples"),
        objective: str(p, "objective") as "logp" | "joint",
        form: "x-shift",
        meanWeight: 1 / Math.sqrt(alpha),
      };
    });
    const r = num(p, "recur");
    return recurrent(step, {
      rounds: () => r - 1,
      nextT: (i) => nextT(env.grid, i),
      eta: env.grid.eta,
      clip: env.grid.clip,
    });
  },
  tune: { param: "rho", grid: [1, 3, 10] },
};
