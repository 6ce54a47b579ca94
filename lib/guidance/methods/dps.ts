/**
 * `dps`: Diffusion Posterior Sampling (Chung et al., ICLR 2023, Alg 1): after the unguided step,
 * x_{t-1} = x'_{t-1} - zeta_t grad_{x_t} L(x0_hat(x_t)), the gradient taken through the
 * denoiser. For a classifier L = -log p(y|x0_hat) (the measurement residual of Alg 1 has no
 * analogue, so zeta_t = zeta is constant, as in TFG's benchmark, Ye et al. 2024 §3.2).
 * @module
 */
import type { MethodDef } from "./method.ts";
import { num, str } from "./method.ts";
import { trainingFreeGuided } from "./tfg_form.ts";

/** DPS through the denoiser (Chung et al. 2023). */
export const DPS: MethodDef = {
  name: "dps",
  cite:
    "Chung et al. 2023 (ICLR), DPS Alg 1: x_{t-1} = x'_{t-1} + zeta grad_{x_t} log p(y|x0_hat(x_t))",
  params: {
    zeta: { default: 1, min: 0, doc: "step size zeta of the gradient through the denoiser" },
    objective: { default: "logp", choices: ["logp", "joint"], doc: "log p(y|x) or -E(x,y)" },
  },
  throughDenoiser: (p) => num(p, "zeta") !== 0,
  build: (env, p) =>
    trainingFreeGuided(env, () => ({
      rho: num(p, "zeta"),
      mu: 0,
      iters: 0,
      sigma: 0,
      samples: 1,
      objective: str(p, "objective") as "logp" | "joint",
      form: "x-shift",
      meanWeight: 1,
    })),
  tune: { param: "zeta", grid: [1, 3, 10] },
};
