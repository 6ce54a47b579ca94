/**
 * `mpgd`: Manifold Preserving Guided Diffusion without projection (He et al., ICLR 2024, Alg 1
 * "MPGD w/o proj.", eq 9): the classifier is evaluated at the predicted clean image and the
 * prediction itself takes a gradient step, x0' = x0_hat - c_t grad_{x0} L(x0_hat) with
 * L = -log p(y|x0_hat), before the sampler's step uses x0' (no gradient through the denoiser).
 * In TFG's terms (Ye et al. 2024, §3.2) this is rho = 0, one x0 iteration, sigma = 0.
 * @module
 */
import type { MethodDef } from "./method.ts";
import { num, str } from "./method.ts";
import { trainingFreeGuided } from "./tfg_form.ts";
import { type TfgScheduleKind, tfgWeights } from "./step_grid.ts";

/** MPGD at x0_hat (He et al. 2024). */
export const MPGD: MethodDef = {
  name: "mpgd",
  cite: "He et al. 2024 (ICLR), MPGD Alg 1 w/o projection, eq 9: x0' = x0 - c_t grad L(x0)",
  params: {
    c: { default: 0.5, min: 0, doc: "step size c of x0' = x0_hat + c_t grad log p(y|x0_hat)" },
    schedule: {
      default: "constant",
      choices: ["constant", "increase", "decrease"],
      doc: "c_t = c times TFG's normalised schedule (constant: c_t = c)",
    },
    objective: { default: "logp", choices: ["logp", "joint"], doc: "log p(y|x) or -E(x,y)" },
  },
  throughDenoiser: () => false,
  build: (env, p) => {
    const w = tfgWeights(env.grid, str(p, "schedule") as TfgScheduleKind);
    return trainingFreeGuided(env, (i) => ({
      rho: 0,
      mu: num(p, "c") * w[i],
      iters: 1,
      sigma: 0,
      samples: 1,
      objective: str(p, "objective") as "logp" | "joint",
      form: "x-shift",
      meanWeight: 0,
    }));
  },
  tune: { param: "c", grid: [0.5, 2, 8] },
};
