// appendVjp for LayerNormalization, InstanceNormalization, GroupNormalization, LpNormalization
// and RMSNormalization (rules_norm.ts): one-op graphs with random scale and bias, checked against central finite
// differences (tests/_vjp_check.ts); float64 where ONNX Runtime has the kernel
// (LayerNormalization), float32 otherwise.
import assert from "node:assert/strict";
import fc from "fast-check";
import { upgradeOpset } from "../lib/autodiff/opset.ts";
import { float, type GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, decodeModel } from "../lib/onnx/proto.ts";
import { RandomStream } from "../lib/random.ts";
import { property, randomConst, seedArb, shapeArb } from "./_vjp_arbitraries.ts";
import { awayFromZero, buildCase, checkVjp } from "./_vjp_check.ts";

property(
  "vjp: LayerNormalization, any axis (negative or positive), epsilon, scale and bias, opset " +
    "17/18/21 (float64)",
  fc.record({
    dims: shapeArb(2, 4, 4),
    axisPick: fc.integer({ min: 0, max: 7 }),
    negative: fc.boolean(),
    bias: fc.boolean(),
    eps: fc.constantFrom(1e-5, 1e-3, 0.1),
    opset: fc.constantFrom(17, 18, 21),
    seed: seedArb,
  }),
  ({ dims, axisPick, negative, bias, eps, opset, seed }) => {
    const r = dims.length;
    const axis = (axisPick % r) - (negative ? r : 0);
    const norm = dims.slice(axis < 0 ? axis + r : axis);
    return checkVjp({
      build: (b, x) => {
        const inputs = [x, randomConst(b, norm, seed, DataType.DOUBLE, 0.3)];
        if (bias) inputs.push(randomConst(b, norm, seed + 1, DataType.DOUBLE));
        return b.node("LayerNormalization", inputs, { axis, epsilon: float(eps) });
      },
      xDims: dims,
      precision: "double",
      opset,
      seed,
    }, `LayerNormalization axis ${axis} eps ${eps}`);
  },
);

property(
  "vjp: InstanceNormalization, rank 3-5, epsilon (float32)",
  fc.record({
    // At least 4 values per instance: with 2 or 3, xhat is nearly fixed (+-1) and float32
    // differences with step 1e-2 see the curvature, not a wrong rule.
    dims: shapeArb(3, 5, 4).filter((d) => d.slice(2).reduce((a, v) => a * v, 1) >= 4),
    eps: fc.constantFrom(1e-5, 0.1),
    seed: seedArb,
  }),
  ({ dims, eps, seed }) =>
    checkVjp({
      build: (b, x) =>
        b.node("InstanceNormalization", [
          x,
          randomConst(b, [dims[1]], seed, DataType.FLOAT, 0.3),
          randomConst(b, [dims[1]], seed + 1, DataType.FLOAT),
        ], { epsilon: float(eps) }),
      xDims: dims,
      precision: "float",
      seed,
    }, `InstanceNormalization eps ${eps}`),
);

property(
  "vjp: GroupNormalization, per-group affine (opset 18), per-channel (21), and 18 raised to 21 " +
    "by upgradeOpset (float32)",
  fc.record({
    groups: fc.integer({ min: 1, max: 3 }),
    perGroup: fc.integer({ min: 1, max: 2 }),
    n: fc.integer({ min: 1, max: 2 }),
    spatial: shapeArb(1, 2, 3).filter((d) => d.reduce((a, v) => a * v, 1) >= 2),
    opset: fc.constantFrom(18, 21, "18to21" as const),
    seed: seedArb,
  }),
  ({ groups, perGroup, n, spatial, opset, seed }) => {
    const C = groups * perGroup;
    if (perGroup * spatial.reduce((a, v) => a * v, 1) < 4) return Promise.resolve(); // see above
    const affine = opset === 21 ? C : groups;
    return checkVjp({
      build: (b, x) => {
        const y = b.node("GroupNormalization", [
          x,
          randomConst(b, [affine], seed, DataType.FLOAT, 0.3),
          randomConst(b, [affine], seed + 1, DataType.FLOAT),
        ], { num_groups: groups, epsilon: float(1e-3) });
        // the per-channel affine is computed from Shape(x) after the upgrade: still a parameter
        if (opset === "18to21") upgradeOpset(b, 21);
        return y;
      },
      xDims: [n, C, ...spatial],
      precision: "float",
      opset: opset === "18to21" ? 18 : opset,
      seed,
    }, `GroupNormalization@${opset} G=${groups} C=${C}`);
  },
);

property(
  "vjp: LpNormalization p 1 and 2, any axis (float64)",
  fc.record({
    dims: shapeArb(1, 4, 4),
    axisPick: fc.integer({ min: 0, max: 7 }),
    p: fc.constantFrom(1, 2),
    seed: seedArb,
  }),
  ({ dims, axisPick, p, seed }) => {
    const axis = (axisPick % (2 * dims.length)) - dims.length;
    return checkVjp({
      build: (b, x) => b.node("LpNormalization", [x], { axis, p }),
      xDims: dims,
      precision: "double",
      seed,
      sample: awayFromZero(0.1), // |x| has a kink at 0
      kinks: p === 1,
    }, `LpNormalization p ${p} axis ${axis}`);
  },
);

property(
  "vjp: RMSNormalization (opset 23), negative or positive axis, scale (float64)",
  fc.record({
    dims: shapeArb(2, 4, 4),
    axisPick: fc.integer({ min: 0, max: 7 }),
    negative: fc.boolean(),
    seed: seedArb,
  }),
  ({ dims, axisPick, negative, seed }) => {
    const r = dims.length;
    const axis = (axisPick % r) - (negative ? r : 0);
    const norm = dims.slice(axis < 0 ? axis + r : axis);
    return checkVjp({
      build: (b, x) =>
        b.node("RMSNormalization", [x, randomConst(b, norm, seed, DataType.DOUBLE, 0.3)], {
          axis,
          epsilon: float(1e-3),
        }),
      xDims: dims,
      precision: "double",
      opset: 23,
      seed,
    }, `RMSNormalization axis ${axis}`);
  },
);

property(
  "vjp: LayerNormalization in float32 reads the forward node's Mean and InvStdDev (float32)",
  fc.record({
    dims: shapeArb(2, 4, 5).filter((d) => d[d.length - 1] >= 4),
    bias: fc.boolean(),
    seed: seedArb,
  }),
  ({ dims, bias, seed }) =>
    checkVjp({
      build: (b, x) => {
        const inputs = [x, randomConst(b, [dims[dims.length - 1]], seed, DataType.FLOAT, 0.3)];
        if (bias) inputs.push(randomConst(b, [dims[dims.length - 1]], seed + 1, DataType.FLOAT));
        const y = b.node("LayerNormalization", inputs, { axis: -1, epsilon: float(1e-3) });
        return b.node("Tanh", [y]);
      },
      xDims: dims,
      precision: "float",
      seed,
    }, `LayerNormalization float32 [${dims}]`),
);

property(
  "vjp: a spelled-out layer norm (ReduceMean, Sub, Pow or Mul, ReduceMean, Add eps, Sqrt, Div) " +
    "over trailing axes becomes one LayerNormalization; over other axes it stays (float32)",
  fc.record({
    dims: shapeArb(2, 4, 4).filter((d) => d[d.length - 1] >= 3),
    trailing: fc.integer({ min: 1, max: 2 }),
    leading: fc.boolean(), // normalise over axis 0 instead: not a layer norm, not rewritten
    square: fc.constantFrom("Pow", "Mul"),
    epsFirst: fc.boolean(),
    opset: fc.constantFrom(13, 18),
    seed: seedArb,
  }),
  async ({ dims, trailing, leading: leadingWanted, square, epsFirst, opset, seed }) => {
    const r = dims.length;
    // Over axis 0 only with >= 4 values (2 or 3 are the near-degenerate groups, see above).
    const leading = leadingWanted && dims[0] >= 4;
    const axes = leading
      ? [0]
      : Array.from({ length: Math.min(trailing, r) }, (_, i) => i - Math.min(trailing, r));
    const mean = (b: GraphBuilder, v: string) =>
      opset >= 18
        ? b.node("ReduceMean", [v, b.i64("axes", axes)], { keepdims: 1 })
        : b.node("ReduceMean", [v], { axes, keepdims: 1 });
    const c = {
      build: (b: GraphBuilder, x: string) => {
        const h = b.node("Sin", [x]);
        const d = b.node("Sub", [h, mean(b, h)]);
        const sq = square === "Pow"
          ? b.node("Pow", [d, b.f32("two", 2, [])])
          : b.node("Mul", [d, d]);
        const eps = b.f32("eps", 1e-3, []);
        const v = mean(b, sq);
        const s = b.node("Sqrt", [b.node("Add", epsFirst ? [eps, v] : [v, eps])]);
        return b.node("Tanh", [b.node("Div", [d, s])]);
      },
      xDims: dims,
      precision: "float" as const,
      opset,
      seed,
    };
    const ops = decodeModel(buildCase(c, new RandomStream(seed)).bytes).graph.node.map((n) =>
      n.op_type
    );
    const rewritten = ops.includes("LayerNormalization");
    assert.equal(rewritten, !leading || r === 1, `rewritten: ${ops}`);
    if (rewritten) assert.ok(!ops.includes("Sqrt"), `${ops}`);
    await checkVjp(c, `spelled-out layer norm axes ${axes} ${square}`);
  },
);
