/**
 * Gradient rules for the activations of today's image classifiers (GELU in both forms, the
 * hard-swish family of MobileNetV3, Mish, the ELU family, Softsign, ThresholdedRelu, Erf).
 * Derivatives as in any calculus table; at a kink the one-sided value PyTorch's autograd uses
 * (HardSigmoid and HardSwish: the inside branch only strictly inside, as
 * torch.nn.functional.hardsigmoid_backward; ThresholdedRelu: 0 at the threshold).
 * @module
 */
import { constLike, floatAttr, maskedBy, stringAttr } from "./_emit.ts";
import type { GradRule, VjpContext } from "./rule.ts";

/** A unary rule: the input cotangent from (ctx, g, x, y). */
function unary(f: (ctx: VjpContext, g: string, x: string, y: string) => string): GradRule {
  return {
    slots: ["diff"],
    vjp: (ctx) => [f(ctx, ctx.dy[0]!, ctx.node.input[0], ctx.node.output[0])],
  };
}

/** d erf(x) = g 2 / sqrt(pi) exp(-x^2). */
const erf = unary(({ b }, g, x) => {
  const e = b.node("Exp", [b.node("Neg", [b.node("Mul", [x, x])])]);
  return b.node("Mul", [g, b.node("Mul", [e, constLike(b, 2 / Math.sqrt(Math.PI), x)])]);
});

/**
 * Gelu (opset 20). approximate "none": y = x Phi(x), dy/dx = Phi(x) + x phi(x) with
 * Phi(x) = (1 + erf(x / sqrt 2)) / 2 and phi the standard normal density.
 * approximate "tanh": y = x (1 + tanh u) / 2, u = sqrt(2/pi) (x + 0.044715 x^3),
 * dy/dx = (1 + t) / 2 + x (1 - t^2) sqrt(2/pi) (1 + 3 0.044715 x^2) / 2, t = tanh u (computed
 * through sigmoid(2u), see below).
 */
const gelu: GradRule = {
  slots: ["diff"],
  check: (node) => {
    const a = stringAttr(node, "approximate", "none");
    return a === "none" || a === "tanh"
      ? undefined
      : `approximate '${a}' is not one of Gelu's "none" or "tanh"`;
  },
  vjp: ({ b, node, dy }) => {
    const x = node.input[0], g = dy[0]!;
    const c = (v: number) => constLike(b, v, x);
    const half = c(0.5), one = c(1);
    let d: string;
    if (stringAttr(node, "approximate", "none") === "tanh") {
      // (1 + tanh u) / 2 = sigmoid(2 u): with v = 2u = x (c1 + c2 x^2), s = sigmoid(v),
      // dy/dx = s + x s (1 - s) v' = s (1 + x (1 - s) (c1 + 3 c2 x^2)). Fewer nodes than the
      // tanh form (13 instead of 17), the same function.
      const k = Math.sqrt(2 / Math.PI), a = 0.044715;
      const c1 = 2 * k, c2 = 2 * k * a;
      const x2 = b.node("Mul", [x, x]);
      const sg = b.node("Sigmoid", [
        b.node("Mul", [x, b.node("Add", [b.node("Mul", [x2, c(c2)]), c(c1)])]),
      ]);
      const dv = b.node("Add", [b.node("Mul", [x2, c(3 * c2)]), c(c1)]);
      const t = b.node("Mul", [b.node("Mul", [x, b.node("Sub", [one, sg])]), dv]);
      d = b.node("Mul", [sg, b.node("Add", [t, one])]);
    } else {
      const cdf = b.node("Mul", [
        half,
        b.node("Add", [one, b.node("Erf", [b.node("Mul", [x, c(Math.SQRT1_2)])])]),
      ]);
      const pdf = b.node("Mul", [
        c(1 / Math.sqrt(2 * Math.PI)),
        b.node("Exp", [b.node("Mul", [c(-0.5), b.node("Mul", [x, x])])]),
      ]);
      d = b.node("Add", [cdf, b.node("Mul", [x, pdf])]);
    }
    return [b.node("Mul", [g, d])];
  },
};

/**
 * HardSigmoid y = max(0, min(1, alpha x + beta)) (alpha 0.2, beta 0.5 by default):
 * dx = g alpha strictly inside (0 < alpha x + beta < 1), 0 elsewhere.
 */
const hardSigmoid = unary(({ b, node }, g, x) => {
  const alpha = floatAttr(node, "alpha", 0.2), beta = floatAttr(node, "beta", 0.5);
  const z = b.node("Add", [b.node("Mul", [x, constLike(b, alpha, x)]), constLike(b, beta, x)]);
  const inside = b.node("And", [
    b.node("Greater", [z, constLike(b, 0, z)]),
    b.node("Less", [z, constLike(b, 1, z)]),
  ]);
  return maskedBy(b, b.node("Mul", [g, constLike(b, alpha, g)]), inside);
});

/**
 * HardSwish y = x hardsigmoid(x) with alpha 1/6, beta 1/2: dx = 0 for x < -3, g for x > 3,
 * g (x / 3 + 1/2) in between (PyTorch: the middle branch on [-3, 3]).
 */
const hardSwish = unary(({ b }, g, x) => {
  const mid = b.node("Add", [b.node("Div", [x, constLike(b, 3, x)]), constLike(b, 0.5, x)]);
  const slope = b.node("Where", [
    b.node("Less", [x, constLike(b, -3, x)]),
    constLike(b, 0, x),
    b.node("Where", [b.node("Greater", [x, constLike(b, 3, x)]), constLike(b, 1, x), mid]),
  ]);
  return b.node("Mul", [g, slope]);
});

/** Mish y = x tanh(softplus x): dy/dx = t + x sigmoid(x) (1 - t^2), t = tanh(softplus x). */
const mish = unary(({ b }, g, x) => {
  const t = b.node("Tanh", [b.node("Softplus", [x])]);
  const sech2 = b.node("Sub", [constLike(b, 1, t), b.node("Mul", [t, t])]);
  const d = b.node("Add", [t, b.node("Mul", [b.node("Mul", [x, b.node("Sigmoid", [x])]), sech2])]);
  return b.node("Mul", [g, d]);
});

/**
 * Selu y = gamma x (x > 0), gamma alpha (e^x - 1) else: dx = g gamma, resp. g (y + gamma alpha).
 */
const selu = unary(({ b, node }, g, x, y) => {
  const alpha = floatAttr(node, "alpha", 1.67326319217681884765625);
  const gamma = floatAttr(node, "gamma", 1.05070102214813232421875);
  const pos = b.node("Mul", [g, constLike(b, gamma, g)]);
  const neg = b.node("Mul", [g, b.node("Add", [y, constLike(b, gamma * alpha, y)])]);
  return b.node("Where", [b.node("Greater", [x, constLike(b, 0, x)]), pos, neg]);
});

/** Celu y = max(0, x) + min(0, alpha (e^(x/alpha) - 1)): dx = g (x > 0), g e^(x/alpha) else. */
const celu = unary(({ b, node }, g, x) => {
  const alpha = floatAttr(node, "alpha", 1);
  const neg = b.node("Mul", [g, b.node("Exp", [b.node("Div", [x, constLike(b, alpha, x)])])]);
  return b.node("Where", [b.node("Greater", [x, constLike(b, 0, x)]), g, neg]);
});

/** Softsign y = x / (1 + |x|): dx = g / (1 + |x|)^2. */
const softsign = unary(({ b }, g, x) => {
  const d = b.node("Add", [constLike(b, 1, x), b.node("Abs", [x])]);
  return b.node("Div", [g, b.node("Mul", [d, d])]);
});

/** ThresholdedRelu y = x (x > alpha), 0 else: dx = g (x > alpha). */
const thresholdedRelu = unary(({ b, node }, g, x) => {
  const alpha = floatAttr(node, "alpha", 1);
  return maskedBy(b, g, b.node("Greater", [x, constLike(b, alpha, x)]));
});

/** Activation rules by op type. */
export const ACTIVATION_RULES: Readonly<Record<string, GradRule>> = {
  Celu: celu,
  Erf: erf,
  Gelu: gelu,
  HardSigmoid: hardSigmoid,
  HardSwish: hardSwish,
  Mish: mish,
  Selu: selu,
  Softsign: softsign,
  ThresholdedRelu: thresholdedRelu,
};
