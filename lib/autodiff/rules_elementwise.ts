/**
 * Gradient rules for elementwise ops: activations (derivatives as in any calculus table, the
 * subgradient at a kink chosen as PyTorch does: 0 for Relu at 0, 0 for Clip on a bound as
 * hardtanh), numpy-broadcasting arithmetic (operand cotangents summed back over broadcast axes)
 * and the identity-like ops.
 * @module
 */
import {
  castLike,
  constLike,
  floatAttr,
  maskedBy,
  optionalInput,
  sumValues,
  unbroadcast,
} from "./_emit.ts";
import type { GradRule, VjpContext } from "./rule.ts";

type Rule = GradRule;

/** A unary rule: the input cotangent from (b, g, x, y). */
function unary(f: (ctx: VjpContext, g: string, x: string, y: string) => string): Rule {
  return {
    slots: ["diff"],
    vjp: (ctx) => [f(ctx, ctx.dy[0]!, ctx.node.input[0], ctx.node.output[0])],
  };
}

/**
 * dx = g * (x > 0); Relu'(0) = 0. The mask is read off the output (y > 0 exactly when x > 0), so
 * that x keeps Relu as its only consumer and runtimes can still fuse Conv + Relu.
 */
const relu = unary(({ b }, g, _x, y) => maskedBy(b, g, b.node("Greater", [y, constLike(b, 0, y)])));

/** dx = g where x > 0, alpha g elsewhere. */
const leakyRelu = unary(({ b, node }, g, x) => {
  const alpha = floatAttr(node, "alpha", 0.01);
  const scaled = b.node("Mul", [g, constLike(b, alpha, g)]);
  return b.node("Where", [b.node("Greater", [x, constLike(b, 0, x)]), g, scaled]);
});

/** dx = g y (1 - y) with y = sigmoid(x). */
const sigmoid = unary(({ b }, g, _x, y) =>
  b.node("Mul", [g, b.node("Mul", [y, b.node("Sub", [constLike(b, 1, y), y])])])
);

/** dx = g (1 - y^2) with y = tanh(x). */
const tanh = unary(({ b }, g, _x, y) =>
  b.node("Mul", [g, b.node("Sub", [constLike(b, 1, y), b.node("Mul", [y, y])])])
);

/** softplus(x) = log(1 + e^x): dx = g sigmoid(x). */
const softplus = unary(({ b }, g, x) => b.node("Mul", [g, b.node("Sigmoid", [x])]));

/** elu(x) = x (x > 0), alpha (e^x - 1) else: dx = g, resp. g (y + alpha). */
const elu = unary(({ b, node }, g, x, y) => {
  const alpha = floatAttr(node, "alpha", 1);
  const neg = b.node("Mul", [g, b.node("Add", [y, constLike(b, alpha, y)])]);
  return b.node("Where", [b.node("Greater", [x, constLike(b, 0, x)]), g, neg]);
});

/**
 * dx = g where min < x < max (bounds as inputs, opset >= 11; attributes are upgraded away),
 * read off the output y = clip(x) as Relu's mask is, so that x keeps Clip as its only consumer
 * and runtimes still fuse Conv + Clip (ReLU6). Strictly inside, as PyTorch's hardtanh_backward
 * (ReLU6 is hardtanh(0, 6)); torch.clamp also passes the gradient at x exactly on a bound, a
 * set of measure zero.
 */
const clip: Rule = {
  slots: ["diff", "param", "param"],
  check: (_node, opset) =>
    opset < 11 ? "Clip before opset 11 must be upgraded first (upgradeOpset)" : undefined,
  vjp: ({ b, node, dy }) => {
    const [lo, hi] = [optionalInput(node, 1), optionalInput(node, 2)];
    const y = node.output[0], g = dy[0]!;
    const inside = [
      lo ? b.node("Greater", [y, lo]) : undefined,
      hi ? b.node("Less", [y, hi]) : undefined,
    ].filter((v): v is string => v !== undefined);
    if (inside.length === 0) return [g];
    const mask = inside.length === 2 ? b.node("And", inside) : inside[0];
    return [maskedBy(b, g, mask)];
  },
};

/** dx = g x / |x| (sign; 0 at 0). */
const abs = unary(({ b }, g, x) => b.node("Mul", [g, b.node("Sign", [x])]));
const neg = unary(({ b }, g) => b.node("Neg", [g]));
const exp = unary(({ b }, g, _x, y) => b.node("Mul", [g, y]));
const log = unary(({ b }, g, x) => b.node("Div", [g, x]));
/** d sqrt(x) = g / (2 y). */
const sqrt = unary(({ b }, g, _x, y) => b.node("Div", [g, b.node("Mul", [y, constLike(b, 2, y)])]));
/** d (1/x) = -g y^2. */
const reciprocal = unary(({ b }, g, _x, y) =>
  b.node("Neg", [b.node("Mul", [g, b.node("Mul", [y, y])])])
);
const identity = unary((_ctx, g) => g);
/** Cast between float types: the cotangent is cast back. (Casts to integers are cut.) */
const cast = unary(({ b }, g, x) => castLike(b, g, x));

/** CastLike(x, like): like only lends its type (an index-like input). */
const castLikeRule: Rule = {
  slots: ["diff", "index"],
  vjp: ({ b, node, dy }) => [castLike(b, dy[0]!, node.input[0])],
};

const sin = unary(({ b }, g, x) => b.node("Mul", [g, b.node("Cos", [x])]));
const cos = unary(({ b }, g, x) => b.node("Neg", [b.node("Mul", [g, b.node("Sin", [x])])]));

/** Inference Dropout is the identity; training mode (a true training_mode input) is refused. */
const dropout: Rule = {
  slots: ["diff", "param", "index"],
  nonDiffOutputs: [1],
  check: (node, _opset, b) => {
    const mode = optionalInput(node, 2);
    if (mode === undefined) return undefined;
    const c = b.constantValue(mode);
    return c && c.values.every((v) => v === 0)
      ? undefined
      : `Dropout with training_mode '${mode}' ` +
        "that is not a constant false is not supported (inference Dropout only); fold it to false";
  },
  vjp: ({ dy }) => [dy[0]],
};

/** y = a + b: da = g, db = g, each summed back over its broadcast axes. */
const add: Rule = {
  slots: ["diff", "diff"],
  vjp: ({ b, node, dy, needs }) => {
    const [x0, x1] = node.input;
    return [
      needs[0] ? unbroadcast(b, dy[0]!, x0, node.output[0]) : undefined,
      needs[1] ? unbroadcast(b, dy[0]!, x1, node.output[0]) : undefined,
    ];
  },
};

/** y = a - b: da = g, db = -g. */
const sub: Rule = {
  slots: ["diff", "diff"],
  vjp: ({ b, node, dy, needs }) => {
    const [x0, x1] = node.input;
    const g = dy[0]!;
    return [
      needs[0] ? unbroadcast(b, g, x0, node.output[0]) : undefined,
      // Negated after the broadcast sum (linear maps commute): on the smaller tensor.
      needs[1] ? b.node("Neg", [unbroadcast(b, g, x1, node.output[0])]) : undefined,
    ];
  },
};

/**
 * The SiLU pattern y = x sigmoid(x) (EfficientNet, SiLU ResNets; exporters write Mul(x,
 * Sigmoid(x)), which ONNX Runtime fuses into one kernel): the index (0 or 1) of the Sigmoid
 * operand, whose own input is the other operand, or -1.
 */
function siluSigmoidSlot(b: VjpContext["b"], node: VjpContext["node"]): number {
  const [x0, x1] = node.input;
  for (const [k, s, x] of [[1, x1, x0], [0, x0, x1]] as const) {
    const p = b.graph.node.find((n) => n.output[0] === s);
    if (p && p.op_type === "Sigmoid" && (!p.domain || p.domain === "ai.onnx") && p.input[0] === x) {
      return k;
    }
  }
  return -1;
}

/**
 * y = a b: da = g b, db = g a. For SiLU, y = x s with s = sigmoid(x), the whole derivative goes
 * to x, dx = g s (1 + x (1 - s)) with s recomputed from x, and none through s (`null`): the
 * backward then reads only x, so the runtime keeps the forward's x * sigmoid(x) fused.
 */
const mul: Rule = {
  slots: ["diff", "diff"],
  vjp: ({ b, node, dy, needs }) => {
    const [x0, x1] = node.input;
    const g = dy[0]!;
    const k = needs[0] && needs[1] ? siluSigmoidSlot(b, node) : -1;
    if (k >= 0) {
      const x = node.input[1 - k];
      const s = b.node("Sigmoid", [x]);
      const inner = b.node("Add", [
        b.node("Mul", [x, b.node("Sub", [constLike(b, 1, s), s])]),
        constLike(b, 1, x),
      ]);
      const dx = b.node("Mul", [g, b.node("Mul", [s, inner])]);
      return k === 1
        ? [unbroadcast(b, dx, x, node.output[0]), null]
        : [null, unbroadcast(b, dx, x, node.output[0])];
    }
    return [
      needs[0] ? unbroadcast(b, b.node("Mul", [g, x1]), x0, node.output[0]) : undefined,
      needs[1] ? unbroadcast(b, b.node("Mul", [g, x0]), x1, node.output[0]) : undefined,
    ];
  },
};

/** y = a / b: da = g / b, db = -g y / b. */
const div: Rule = {
  slots: ["diff", "diff"],
  vjp: ({ b, node, dy, needs }) => {
    const [x0, x1] = node.input;
    const g = dy[0]!;
    const y = node.output[0];
    return [
      needs[0] ? unbroadcast(b, b.node("Div", [g, x1]), x0, node.output[0]) : undefined,
      needs[1]
        ? unbroadcast(
          b,
          b.node("Neg", [b.node("Div", [b.node("Mul", [g, y]), x1])]),
          x1,
          node.output[0],
        )
        : undefined,
    ];
  },
};

/** y = x^p (the exponent a parameter): dx = g p x^(p-1). */
const pow: Rule = {
  slots: ["diff", "param"],
  vjp: ({ b, node, dy }) => {
    const [x, p] = node.input;
    const pm1 = b.node("Sub", [p, constLike(b, 1, p)]);
    const d = b.node("Mul", [castLike(b, p, x), b.node("Pow", [x, pm1])]);
    return [unbroadcast(b, b.node("Mul", [dy[0]!, d]), x, node.output[0])];
  },
};

/** y = sum_i x_i (broadcasting): dx_i = g summed back to x_i's shape. */
const sum: Rule = {
  slots: [],
  rest: "diff",
  vjp: ({ b, node, dy, needs }) =>
    node.input.map((x, i) => needs[i] ? unbroadcast(b, dy[0]!, x, node.output[0]) : undefined),
};

/**
 * y = max_i x_i (or min, broadcasting, any number of inputs): the cotangent goes to the
 * inputs equal to y, split evenly where several are (torch.maximum's rule at ties):
 * dx_i = g [x_i == y] / #{j : x_j == y}, summed back over x_i's broadcast axes.
 */
const extreme: Rule = {
  slots: [],
  rest: "diff",
  vjp: ({ b, node, dy, needs }) => {
    const y = node.output[0], g = dy[0]!;
    const hits = node.input.map((x) => b.node("Equal", [x, y]));
    const count = sumValues(b, hits.map((h) => castLike(b, h, g)));
    const share = b.node("Div", [g, count]);
    const zero = constLike(b, 0, g);
    return node.input.map((x, i) =>
      needs[i] ? unbroadcast(b, b.node("Where", [hits[i], share, zero]), x, y) : undefined
    );
  },
};

/** y = mean_i x_i (broadcasting): dx_i = g / n summed back to x_i's shape. */
const mean: Rule = {
  slots: [],
  rest: "diff",
  vjp: ({ b, node, dy, needs }) => {
    const share = b.node("Div", [dy[0]!, constLike(b, node.input.length, dy[0]!)]);
    return node.input.map((x, i) =>
      needs[i] ? unbroadcast(b, share, x, node.output[0]) : undefined
    );
  },
};

/** y = where(c, a, b): da = g where c, db = g elsewhere. */
const where: Rule = {
  slots: ["index", "diff", "diff"],
  vjp: ({ b, node, dy, needs }) => {
    const [c, x1, x2] = node.input;
    const g = dy[0]!;
    const zero = constLike(b, 0, g);
    return [
      undefined,
      needs[1] ? unbroadcast(b, b.node("Where", [c, g, zero]), x1, node.output[0]) : undefined,
      needs[2] ? unbroadcast(b, b.node("Where", [c, zero, g]), x2, node.output[0]) : undefined,
    ];
  },
};

/** prelu(x) = x (x > 0), slope x else; the slope is a parameter. */
const prelu: Rule = {
  slots: ["diff", "param"],
  vjp: ({ b, node, dy }) => {
    const [x, slope] = node.input;
    const g = dy[0]!;
    const scaled = b.node("Mul", [g, slope]);
    // slope broadcasts to x's shape (unidirectionally), so the Where already has x's shape.
    return [b.node("Where", [b.node("Greater", [x, constLike(b, 0, x)]), g, scaled])];
  },
};

/** Elementwise rules by op type. */
export const ELEMENTWISE_RULES: Readonly<Record<string, GradRule>> = {
  Abs: abs,
  Add: add,
  Cast: cast,
  CastLike: castLikeRule,
  Clip: clip,
  Cos: cos,
  Div: div,
  Dropout: dropout,
  Elu: elu,
  Exp: exp,
  Identity: identity,
  LeakyRelu: leakyRelu,
  Log: log,
  Max: extreme,
  Mean: mean,
  Min: extreme,
  Mul: mul,
  Neg: neg,
  Pow: pow,
  PRelu: prelu,
  Reciprocal: reciprocal,
  Relu: relu,
  Sigmoid: sigmoid,
  Sin: sin,
  Softplus: softplus,
  Sqrt: sqrt,
  Sub: sub,
  Sum: sum,
  Tanh: tanh,
  Where: where,
};
