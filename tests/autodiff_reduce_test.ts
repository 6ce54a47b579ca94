// appendVjp for ReduceMax/ReduceMin (axes attribute before 18, input from 18; keepdims),
// ReduceL1/ReduceL2/ReduceSumSquare and GlobalMaxPool (rules_reduce.ts, rules_pool.ts): one-op
// graphs checked against central finite differences (tests/_vjp_check.ts), float64 except
// GlobalMaxPool (float32 kernel only). Inputs are distinct values, so every max/min is unique
// (ties have no derivative to check; the rule splits them evenly, as torch.amax).
import fc from "fast-check";
import { property, seedArb, shapeArb } from "./_vjp_arbitraries.ts";
import { awayFromZero, checkVjp, distinctValues } from "./_vjp_check.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType } from "../lib/onnx/proto.ts";
import { appendVjp } from "../lib/autodiff/vjp.ts";
import * as ort from "onnxruntime-node";
import assert from "node:assert/strict";

property(
  "vjp: ReduceMax/ReduceMin/ReduceL1/ReduceL2/ReduceSumSquare, axes attribute or input, " +
    "negative axes, keepdims, all axes (float64)",
  fc.record({
    op: fc.constantFrom("ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare"),
    opset: fc.constantFrom(13, 17, 18, 20),
    dims: shapeArb(1, 4),
    pick: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    negative: fc.boolean(),
    allAxes: fc.boolean(),
    keepdims: fc.integer({ min: 0, max: 1 }),
    seed: seedArb,
  }),
  ({ op, opset, dims, pick, negative, allAxes, keepdims, seed }) => {
    let axes: number[] | undefined = dims.map((_, i) => i).filter((i) => pick[i]);
    if (axes.length === 0) axes = [0];
    if (negative) axes = axes.map((a) => a - dims.length);
    if (allAxes) axes = undefined;
    return checkVjp({
      build: (b, x) =>
        opset >= 18
          ? b.node(op, axes ? [x, b.i64("axes", axes)] : [x], { keepdims })
          : b.node(op, [x], { axes, keepdims }),
      xDims: dims,
      precision: "double",
      opset,
      seed,
      sample: op === "ReduceL1" ? awayFromZero(0.05) : distinctValues,
      kinks: op === "ReduceL1",
    }, `${op}@${opset} axes ${axes} keepdims ${keepdims}`);
  },
);

property(
  "vjp: GlobalMaxPool, rank 3-5 (float32)",
  fc.record({ dims: shapeArb(3, 5, 4), seed: seedArb }),
  ({ dims, seed }) =>
    checkVjp({
      build: (b, x) => b.node("GlobalMaxPool", [x]),
      xDims: dims,
      precision: "float",
      seed,
      sample: distinctValues,
    }, "GlobalMaxPool"),
);

Deno.test("vjp: ReduceMax and GlobalMaxPool split the cotangent evenly between tied maxima", async () => {
  for (const op of ["ReduceMax", "GlobalMaxPool"]) {
    const b = new GraphBuilder({ opset: 18 });
    const x = b.input("x", DataType.FLOAT, [1, 1, 2, 2]);
    const y = op === "ReduceMax"
      ? b.node(op, [x, b.i64("axes", [2, 3])], { keepdims: 1 })
      : b.node(op, [x]);
    const w = b.input("w", DataType.FLOAT, [1, 1, 1, 1]);
    b.output(appendVjp(b, y, w, x), DataType.FLOAT, undefined, "g");
    const s = await ort.InferenceSession.create(b.toBytes());
    const out = await s.run({
      x: new ort.Tensor("float32", Float32Array.of(3, 1, 3, 3), [1, 1, 2, 2]),
      w: new ort.Tensor("float32", Float32Array.of(1.5), [1, 1, 1, 1]),
    });
    assert.deepEqual([...(out.g.data as Float32Array)], [0.5, 0, 0.5, 0.5], op);
  }
});
