/**
 * `freedom`: FreeDoM (Yu et al., ICCV 2023, eq 10-11 and Alg 1): the energy of the clean
 * prediction guides the step through the denoiser, x_{t-1} = m(x_t) - rho_t grad_{x_t}
 * E(c, x0_hat(x_t)), with E = -log p(y|x0_hat), and the time-travel strategy (§3.3) repeats each
 * step r times inside a window of t by re-noising x_{t-1} back to x_t (lib/guidance/recurrence.ts).
 * rho_t = rho (constant, TFG's rendering of FreeDoM, Ye et al. 2024 §3.2).
 * @module
 */
import { recurrent } from "../recurrence.ts";
import type { MethodDef } from "./method.ts";
import { num, str } from "./method.ts";
import { nextT } from "./step_grid.ts";
import { trainingFreeGuided } from "./tfg_form.ts";

/** FreeDoM with time travel (Yu et al. 2023). */
export const FREEDOM: MethodDef = {
  name: "freedom",
  cite: "Yu et al. 2023 (ICCV), FreeDoM eq 10-11, time-travel §3.3 / Alg 1",
  params: {
    rho: { default: 1, min: 0, doc: "step size rho of the energy gradient through the denoiser" },
    repeats: {
      default: 1,
      min: 0,
      integer: true,
      doc: "time-travel repeats r per step inside the window (0: none)",
    },
    t_low: { default: 400, min: 0, integer: true, doc: "time travel for t in [t_low, t_high]" },
    t_high: { default: 800, min: 0, integer: true, doc: "upper end of the time-travel window" },
    objective: { default: "logp", choices: ["logp", "joint"], doc: "log p(y|x) or -E(x,y)" },
  },
  throughDenoiser: (p) => num(p, "rho") !== 0,
  build: (env, p) => {
    const step = trainingFreeGuided(env, () => ({
      rho: num(p, "rho"),
      mu: 0,
      iters: 0,
      sigma: 0,
      samples: 1,
      objective: str(p, "objective") as "logp" | "joint",
      form: "x-shift",
      meanWeight: 1,
    }));
    const [lo, hi, r] = [num(p, "t_low"), num(p, "t_high"), num(p, "repeats")];
    return recurrent(step, {
      rounds: (t) => (t >= lo && t <= hi ? r : 0),
      nextT: (i) => nextT(env.grid, i),
      eta: env.grid.eta,
      clip: env.grid.clip,
    });
  },
  tune: { param: "rho", grid: [1, 3, 10] },
};
