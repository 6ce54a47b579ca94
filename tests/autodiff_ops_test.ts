// appendVjp per op, elementwise / broadcasting / matrix products / reductions: each property
// builds a one- or two-op graph, appends the VJP of sum(w * f(x)) and compares it with central
// finite differences (tests/_vjp_check.ts). float64 graphs (tolerance 1e-6 relative) unless ORT
// has only float32 kernels for the op (Softplus, Elu: tolerance 1e-2).
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import fc from "fast-check";
import { appendVjp } from "../lib/autodiff/vjp.ts";
import { DataType, decodeModel } from "../lib/onnx/proto.ts";
import { RandomStream } from "../lib/random.ts";
import { float, GraphBuilder } from "../lib/onnx/builder.ts";
import {
  broadcastShape,
  ints,
  property,
  randomConst,
  seedArb,
  shapeArb,
} from "./_vjp_arbitraries.ts";
import { awayFromZero, buildCase, checkVjp } from "./_vjp_check.ts";

const D = DataType.DOUBLE;

property(
  "vjp: smooth and piecewise-linear activations (float64)",
  fc.record({
    op: fc.constantFrom(
      "Relu",
      "LeakyRelu",
      "Sigmoid",
      "Tanh",
      "Exp",
      "Neg",
      "Abs",
      "Identity",
      "Sqrt",
      "Log",
      "Reciprocal",
    ),
    alpha: fc.double({ min: 0.01, max: 0.9, noNaN: true }),
    dims: shapeArb(1, 4),
    seed: seedArb,
  }),
  ({ op, alpha, dims, seed }) =>
    checkVjp({
      build: (b, x) => {
        // Sqrt and Log need positive inputs: take them of exp(x).
        const arg = op === "Sqrt" || op === "Log" ? b.node("Exp", [x]) : x;
        return b.node(op, [arg], op === "LeakyRelu" ? { alpha: float(alpha) } : {});
      },
      xDims: dims,
      precision: "double",
      seed,
      sample: op === "Reciprocal" ? awayFromZero(0.3) : undefined,
    }, op),
);

property(
  "vjp: Softplus and Elu (float32 kernels only)",
  fc.record({
    op: fc.constantFrom("Softplus", "Elu"),
    alpha: fc.double({ min: 0.2, max: 2, noNaN: true }),
    dims: shapeArb(1, 4),
    seed: seedArb,
  }),
  ({ op, alpha, dims, seed }) =>
    checkVjp({
      build: (b, x) => b.node(op, [x], op === "Elu" ? { alpha: float(alpha) } : {}),
      xDims: dims,
      precision: "float",
      seed,
      sample: awayFromZero(0.05), // Elu's derivative jumps at 0 when alpha != 1
    }, op),
);

property(
  "vjp: Clip with attribute bounds (opset 9) and input bounds (11+), one or both",
  fc.record({
    opset: fc.constantFrom(9, 10, 11, 13, 17),
    lo: fc.option(fc.double({ min: -1, max: 0, noNaN: true }), { nil: undefined }),
    hi: fc.option(fc.double({ min: 0.1, max: 1, noNaN: true }), { nil: undefined }),
    dims: shapeArb(1, 3),
    seed: seedArb,
  }),
  ({ opset, lo, hi, dims, seed }) =>
    checkVjp({
      build: (b, x) => {
        if (opset < 11) {
          return b.node("Clip", [x], {
            min: lo === undefined ? undefined : float(lo),
            max: hi === undefined ? undefined : float(hi),
          });
        }
        const bound = (v: number | undefined) =>
          v === undefined ? "" : b.constant("bound", [], Float64Array.of(v));
        const inputs = [x, bound(lo), bound(hi)];
        while (inputs.length > 1 && inputs[inputs.length - 1] === "") inputs.pop();
        return b.node("Clip", inputs);
      },
      xDims: dims,
      precision: "double",
      opset,
      seed,
    }, `Clip@${opset}`),
);

const broadcastCase = fc.record({
  op: fc.constantFrom("Add", "Sub", "Mul", "Div"),
  full: shapeArb(1, 4),
  keepA: fc.integer({ min: 1, max: 4 }),
  keepB: fc.integer({ min: 1, max: 4 }),
  onesA: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
  onesB: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
  side: fc.constantFrom("a", "b", "both"),
  // Declared shape of x: sizes (static reduction axes), or some/all as symbols (run-time axes).
  symbolic: fc.constantFrom("none", "some", "all"),
  seed: seedArb,
});

property(
  "vjp: Add/Sub/Mul/Div with numpy broadcasting, gradient of either operand or both; x's " +
    "shape declared static or (partly) symbolic",
  broadcastCase,
  ({ op, full, keepA, keepB, onesA, onesB, side, symbolic, seed }) => {
    const dimsA = broadcastShape(full, keepA, onesA);
    const dimsB = broadcastShape(full, keepB, onesB);
    const xDims = side === "b" ? dimsB : dimsA;
    const declaredDims = xDims.map((d, i) =>
      symbolic === "all" || (symbolic === "some" && i % 2 === 0) ? `d${i}` : d
    );
    return checkVjp({
      declaredDims,
      build: (b, x) => {
        // "both": the second operand is a function of x broadcast against x itself.
        if (side === "both") {
          return b.node(op, [
            x,
            b.node("Add", [b.node("Mul", [x, x]), randomConst(b, dimsB, seed, D, 1)]),
          ]);
        }
        const c = randomConst(b, side === "a" ? dimsB : dimsA, seed, D, op === "Div" ? 0.5 : 0);
        return b.node(op, side === "a" ? [x, c] : [c, x]);
      },
      xDims,
      precision: "double",
      seed,
      sample: op === "Div" && side === "b" ? awayFromZero(0.5) : undefined,
    }, `${op} ${side} [${dimsA}]x[${dimsB}] declared [${declaredDims}]`);
  },
);

property(
  "vjp: a value with several consumers gets the sum of their cotangents",
  fc.record({ dims: shapeArb(1, 3), seed: seedArb }),
  ({ dims, seed }) =>
    checkVjp({
      build: (b, x) => {
        const r = b.node("Relu", [x]);
        return b.node("Sum", [
          r,
          b.node("Mul", [x, x]),
          b.node("Tanh", [r]),
          randomConst(b, [1], seed, D),
        ]);
      },
      xDims: dims,
      precision: "double",
      seed,
    }, "Sum"),
);

/** Batch dims of two MatMul operands that broadcast against each other. */
const matmulCase = fc.record({
  rankA: fc.integer({ min: 1, max: 4 }),
  rankB: fc.integer({ min: 1, max: 4 }),
  batch: shapeArb(2, 2, 3),
  onesA: fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }),
  onesB: fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }),
  mkn: fc.tuple(
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 1, max: 3 }),
  ),
  side: fc.constantFrom("a", "b"),
  seed: seedArb,
});

property(
  "vjp: MatMul, batched and broadcast, with 1-D operands",
  matmulCase,
  ({ rankA, rankB, batch, onesA, onesB, mkn: [m, k, n], side, seed }) => {
    const lead = (r: number, ones: boolean[]) =>
      broadcastShape(batch, r - 2, ones.slice(2 - (r - 2)));
    const dimsA = rankA === 1 ? [k] : [...lead(rankA, onesA), m, k];
    const dimsB = rankB === 1 ? [k] : [...lead(rankB, onesB), k, n];
    return checkVjp({
      build: (b, x) => {
        const c = randomConst(b, side === "a" ? dimsB : dimsA, seed, D);
        return b.node("MatMul", side === "a" ? [x, c] : [c, x]);
      },
      xDims: side === "a" ? dimsA : dimsB,
      precision: "double",
      seed,
    }, `MatMul ${side} [${dimsA}]@[${dimsB}]`);
  },
);

property(
  "vjp: MatMul(x, x^T) (both operands depend on x)",
  fc.record({ dims: shapeArb(2, 3, 3), seed: seedArb }),
  ({ dims, seed }) =>
    checkVjp({
      build: (b, x) => {
        const r = dims.length;
        const perm = [...Array(r - 2).keys(), r - 1, r - 2];
        return b.node("MatMul", [x, b.node("Transpose", [x], { perm })]);
      },
      xDims: dims,
      precision: "double",
      seed,
    }, "MatMul x x^T"),
);

property(
  "vjp: Gemm with transA/transB/alpha/beta and broadcast C, gradient of A, B or C",
  fc.record({
    mkn: fc.tuple(
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 4 }),
    ),
    transA: fc.integer({ min: 0, max: 1 }),
    transB: fc.integer({ min: 0, max: 1 }),
    alpha: fc.integer({ min: -16, max: 16 }).map((v) => v / 8),
    beta: fc.integer({ min: -16, max: 16 }).map((v) => v / 8),
    cShape: fc.constantFrom("none", "scalar", "n", "m1", "1n", "mn"),
    wrt: fc.constantFrom(0, 1, 2),
    seed: seedArb,
  }),
  ({ mkn: [m, k, n], transA, transB, alpha, beta, cShape, wrt, seed }) => {
    const dimsA = transA ? [k, m] : [m, k];
    const dimsB = transB ? [n, k] : [k, n];
    const dimsC = { none: [], scalar: [], n: [n], m1: [m, 1], "1n": [1, n], mn: [m, n] }[cShape];
    const hasC = cShape !== "none";
    const slot = hasC ? wrt : wrt % 2;
    return checkVjp({
      build: (b, x) => {
        const dims = hasC ? [dimsA, dimsB, dimsC] : [dimsA, dimsB];
        const inputs = dims.map((d, i) => (i === slot ? x : randomConst(b, d, seed + i, D)));
        return b.node("Gemm", inputs, {
          transA,
          transB,
          alpha: float(alpha),
          beta: float(beta),
        });
      },
      xDims: [dimsA, dimsB, dimsC][slot],
      precision: "double",
      seed,
    }, `Gemm tA=${transA} tB=${transB} C=${cShape} wrt ${slot}`);
  },
);

/** A reduction node in the form the opset wants (axes attribute or input). */
function reduceNode(
  b: GraphBuilder,
  op: string,
  x: string,
  axes: number[] | undefined,
  keepdims: number,
  opset: number,
  noop: boolean,
): string {
  const inputForm = op === "ReduceSum" ? opset >= 13 : opset >= 18;
  if (!inputForm) return b.node(op, [x], { axes, keepdims });
  const extra = noop ? { noop_with_empty_axes: 1 } : {};
  return b.node(op, axes ? [x, ints(b, axes)] : [x], { keepdims, ...extra });
}

property(
  "vjp: ReduceSum/ReduceMean/ReduceLogSumExp, axes attribute (<13 / <18) or input, keepdims",
  fc.record({
    op: fc.constantFrom("ReduceSum", "ReduceMean", "ReduceLogSumExp"),
    opset: fc.constantFrom(9, 11, 13, 17, 18),
    dims: shapeArb(1, 4),
    pick: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    negative: fc.boolean(),
    allAxes: fc.boolean(),
    keepdims: fc.integer({ min: 0, max: 1 }),
    noop: fc.boolean(),
    seed: seedArb,
  }),
  ({ op, opset, dims, pick, negative, allAxes, keepdims, noop, seed }) => {
    let axes: number[] | undefined = dims.map((_, i) => i).filter((i) => pick[i]);
    if (axes.length === 0) axes = [0];
    if (negative) axes = axes.map((a) => a - dims.length);
    if (allAxes) axes = undefined;
    return checkVjp({
      build: (b, x) => reduceNode(b, op, x, axes, keepdims, opset, noop && allAxes),
      xDims: dims,
      precision: "double",
      opset,
      seed,
    }, `${op}@${opset} axes ${axes} keepdims ${keepdims}`);
  },
);

property(
  "vjp: Softmax/LogSoftmax, 2-D coercion before opset 13 and one axis from 13",
  fc.record({
    op: fc.constantFrom("Softmax", "LogSoftmax"),
    opset: fc.constantFrom(9, 11, 13, 17),
    dims: shapeArb(1, 4),
    axisPick: fc.integer({ min: 0, max: 7 }),
    seed: seedArb,
  }),
  ({ op, opset, dims, axisPick, seed }) => {
    const axis = (axisPick % (2 * dims.length)) - dims.length;
    return checkVjp({
      build: (b, x) => b.node(op, [x], { axis }),
      xDims: dims,
      precision: "double",
      opset,
      seed,
    }, `${op}@${opset} axis ${axis}`);
  },
);

property(
  "vjp: Where, Pow, PRelu, Cast (float32 <-> float64)",
  fc.record({
    op: fc.constantFrom("Where", "Pow", "PRelu", "Cast"),
    dims: shapeArb(2, 4),
    seed: seedArb,
  }),
  ({ op, dims, seed }) =>
    checkVjp({
      build: (b, x) => {
        if (op === "Where") {
          const cond = b.node("Greater", [x, b.f32("zero", 0, [])]); // x stays 0.05 away from 0
          return b.node("Where", [cond, b.node("Mul", [x, x]), b.node("Sin", [x])]);
        }
        if (op === "Pow") return b.node("Pow", [b.node("Exp", [x]), b.f32("p", [1.7], [1])]);
        if (op === "PRelu") {
          return b.node("PRelu", [
            x,
            randomConst(b, [dims[1], ...dims.slice(2).map(() => 1)], seed, DataType.FLOAT),
          ]);
        }
        const up = b.node("Cast", [x], { to: DataType.DOUBLE });
        return b.node("Cast", [b.node("Mul", [up, b.node("Sin", [up])])], { to: DataType.FLOAT });
      },
      xDims: dims,
      precision: "float",
      seed,
      sample: awayFromZero(0.05),
    }, op),
);

property(
  "vjp: Max/Min/Mean with 2-3 broadcasting inputs, ties split evenly (float64)",
  fc.record({
    op: fc.constantFrom("Max", "Min", "Mean"),
    full: shapeArb(1, 3),
    keep: fc.integer({ min: 1, max: 3 }),
    ones: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
    three: fc.boolean(),
    seed: seedArb,
  }),
  ({ op, full, keep, ones, three, seed }) => {
    const other = broadcastShape(full, keep, ones);
    return checkVjp({
      build: (b, x) => {
        const type = op === "Mean" ? DataType.FLOAT : D;
        const inputs = [x, randomConst(b, other, seed, type)];
        if (three) inputs.push(b.node("Sin", [x]));
        return b.node(op, inputs);
      },
      xDims: full,
      precision: op === "Mean" ? "float" : "double", // ORT has no float64 Mean kernel
      seed,
      kinks: op !== "Mean",
    }, `${op} [${full}] with [${other}]${three ? " and sin(x)" : ""}`);
  },
);

Deno.test("vjp: Max of equal inputs splits the cotangent evenly (torch.maximum's rule)", async () => {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input("x", DataType.FLOAT, [3]);
  const y = b.node("Max", [x, b.f32("c", [1, 1, 1], [3])]);
  const w = b.input("w", DataType.FLOAT, [3]);
  b.output(appendVjp(b, y, w, x), DataType.FLOAT, undefined, "g");
  const s = await ort.InferenceSession.create(b.toBytes());
  const out = await s.run({
    x: new ort.Tensor("float32", Float32Array.of(2, 1, 0), [3]),
    w: new ort.Tensor("float32", Float32Array.of(4, 4, 4), [3]),
  });
  assert.deepEqual([...(out.g.data as Float32Array)], [4, 2, 0]);
});

property(
  "vjp: SiLU x * sigmoid(x) in either order, sigmoid(x) also used elsewhere or not: the whole " +
    "derivative goes to x, sigmoid(x) is not differentiated when nothing else reads it (float64)",
  fc.record({
    dims: shapeArb(1, 4),
    swap: fc.boolean(),
    shared: fc.boolean(),
    seed: seedArb,
  }),
  async ({ dims, swap, shared, seed }) => {
    const c = {
      build: (b: GraphBuilder, x: string) => {
        const h = b.node("Mul", [x, randomConst(b, [1], seed, D, 0.5)]);
        const s = b.node("Sigmoid", [h], {}, { name: "the_sigmoid" });
        const y = b.node("Mul", swap ? [s, h] : [h, s]);
        return shared ? b.node("Add", [y, b.node("Exp", [s])]) : y;
      },
      xDims: dims,
      precision: "double" as const,
      seed,
    };
    // Without another reader, no node of the backward pass reads the_sigmoid's output.
    const g = decodeModel(buildCase(c, new RandomStream(seed)).bytes).graph;
    const out = g.node.find((n) => n.name === "the_sigmoid")!.output[0];
    const readers = g.node.filter((n) => n.input.includes(out)).length;
    assert.ok(shared ? readers > 2 : readers === 1, `readers of sigmoid(x): ${readers}`);
    await checkVjp(c, `SiLU swap ${swap} shared ${shared}`);
  },
);
