// appendVjp for the activations of today's classifiers (rules_activation.ts): each property
// builds a one-op graph, appends the VJP of sum(w * f(x)) and compares it with central finite
// differences (tests/_vjp_check.ts). ONNX Runtime has float32 kernels only for these ops, so
// the check runs in float32 (step 1e-2, tolerance 1e-2); piecewise ops retry smaller steps at
// a kink (a wrong slope does not go away).
import fc from "fast-check";
import { float } from "../lib/onnx/builder.ts";
import { property, RUNS, seedArb, shapeArb } from "./_vjp_arbitraries.ts";
import { awayFromZero, checkVjp } from "./_vjp_check.ts";

/** Each op with the opset it needs and its attributes drawn from `a` in [0, 1). */
const OPS: Record<string, { opset: number; attrs: (a: number) => Record<string, unknown> }> = {
  Erf: { opset: 13, attrs: () => ({}) },
  GeluNone: { opset: 20, attrs: () => ({ approximate: "none" }) },
  GeluTanh: { opset: 20, attrs: () => ({ approximate: "tanh" }) },
  HardSigmoid: {
    opset: 17,
    attrs: (a) => ({ alpha: float(0.1 + a / 3), beta: float(0.3 + a / 2) }),
  },
  HardSwish: { opset: 17, attrs: () => ({}) },
  Mish: { opset: 18, attrs: () => ({}) },
  Selu: { opset: 17, attrs: (a) => ({ alpha: float(1 + a), gamma: float(0.5 + a) }) },
  Celu: { opset: 17, attrs: (a) => ({ alpha: float(0.3 + 2 * a) }) },
  Softsign: { opset: 17, attrs: () => ({}) },
  ThresholdedRelu: { opset: 17, attrs: (a) => ({ alpha: float(a) }) },
};

property(
  "vjp: Erf, Gelu (none/tanh, opset 20/21), HardSigmoid, HardSwish, Mish, Selu, Celu, Softsign, " +
    "ThresholdedRelu (float32)",
  fc.record({
    key: fc.constantFrom(...Object.keys(OPS)),
    a: fc.double({ min: 0, max: 0.99, noNaN: true }),
    newer: fc.boolean(),
    dims: shapeArb(1, 4),
    seed: seedArb,
  }),
  ({ key, a, newer, dims, seed }) => {
    const { opset, attrs } = OPS[key];
    const op = key.startsWith("Gelu") ? "Gelu" : key;
    const at = newer ? 21 : opset;
    return checkVjp({
      // Inputs spread over [-5, 5] so that the hard ops' flat and linear pieces are all hit.
      build: (b, x) =>
        b.node(op, [b.node("Mul", [x, b.f32("spread", 2.5, [])])], attrs(a) as never),
      xDims: dims,
      precision: "float",
      opset: at,
      seed,
      sample: awayFromZero(0.05),
      kinks: true,
      directions: 3,
    }, `${key}@${at}`);
  },
  5 * RUNS, // ten ops share the runs
);
