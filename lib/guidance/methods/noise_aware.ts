/**
 * `noise-aware`: classic classifier guidance (Dhariwal and Nichol 2021, §4.1-4.2, Alg 2) with a
 * classifier trained on noised images that takes (x_t, t): eps_hat = eps - s sqrt(1 - abar_t)
 * grad_{x_t} log p_phi(y | x_t, t). The classifier is MethodEnv.timedClassifier (the project's is
 * `cifar10-resnet16-noise-aware`, weights/recipes/train_noise_aware.py).
 * @module
 */
import { abarAt } from "../../schedule.ts";
import type { MethodDef } from "./method.ts";
import { num, str } from "./method.ts";
import { labelsOf } from "./env.ts";

/** Dhariwal and Nichol's guidance with a time-conditioned classifier. */
export const NOISE_AWARE: MethodDef = {
  name: "noise-aware",
  cite: "Dhariwal and Nichol 2021, Alg 2: eps_hat = eps - s sqrt(1 - abar_t) grad log p(y|x_t, t)",
  params: {
    scale: { default: 5, min: 0, doc: "classifier scale s" },
    objective: {
      default: "logp",
      choices: ["logp", "joint"],
      doc: "log p(y|x_t,t) or -E(x_t,y;t)",
    },
  },
  throughDenoiser: () => false,
  build: (env, p) => {
    const clf = env.timedClassifier;
    if (!clf) {
      throw new Error(
        "--method noise-aware needs a time-conditioned classifier: pass --classifier " +
          "cifar10-resnet16-noise-aware (or any (x, t) classifier from train_noise_aware.py)",
      );
    }
    const s = num(p, "scale");
    const coef = str(p, "objective") === "logp" ? [1, -1, 0] as const : [1, 0, 0] as const;
    return async (x, t, ctx) => {
      const eps = await env.denoiser(x, t, ctx);
      if (s === 0) return eps;
      const o = await clf.fromDiffusionSpaceAt(x, ctx.n, t, labelsOf(env, ctx.items), coef);
      // o.grad = grad of -log p (or E(x,y)): eps_hat = eps + s sqrt(1 - abar) o.grad
      const k = s * Math.sqrt(1 - abarAt(ctx.schedule, t));
      const out = new Float32Array(eps.length);
      for (let i = 0; i < out.length; i++) out[i] = eps[i] + k * o.grad[i];
      return out;
    };
  },
  tune: { param: "scale", grid: [2, 5, 10, 20] },
};
