// Shapes known before differentiation (lib/autodiff/shape_fold.ts, issue 13 item 1): the
// shapes the pass records agree with what ONNX Runtime computes for every value of every zoo
// classifier (legacy and dynamo exports, opsets 11-21) at two batch sizes; folding shape
// sub-graphs changes no output; and a run-time-reshaped attention block, whose ranks the graph
// only knows after folding, is differentiated exactly (finite differences).
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { foldShapes } from "../lib/autodiff/shape_fold.ts";
import { appendVjp } from "../lib/autodiff/vjp.ts";
import { buildEnergyHead } from "../lib/energy/head.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, encodeModel, type ValueInfoProto } from "../lib/onnx/proto.ts";
import { RandomStream } from "../lib/random.ts";
import { randomConst } from "./_vjp_arbitraries.ts";
import { checkVjp } from "./_vjp_check.ts";
import { readZooFixture, zooNames } from "./_zoo.ts";

const SESSION = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: "disabled" };

Deno.test("shape_fold: every recorded shape of every zoo classifier is what ONNX Runtime computes (batch 1 and 3)", async () => {
  for (const name of zooNames()) {
    const { fx, bytes } = await readZooFixture(name);
    const [, , h, w] = fx.x_shape;
    const { model, info } = buildEnergyHead(bytes, {
      ...fx.conventions,
      gradient: false,
      ...(fx.resize_from ? { imageSize: [h, w] as const, inputSize: fx.input_size } : {}),
    });
    const g = model.graph;
    const recorded = new Map<string, ValueInfoProto>();
    for (const v of g.value_info ?? []) recorded.set(v.name, v);
    assert.ok(recorded.size > g.node.length / 2, `${name}: only ${recorded.size} shapes recorded`);
    // Every recorded value becomes an output, with no declared shape of its own.
    const outputs = new Set(g.output.map((o) => o.name));
    for (const v of recorded.values()) {
      if (!outputs.has(v.name)) {
        g.output.push({
          name: v.name,
          type: { tensor_type: { elem_type: v.type!.tensor_type!.elem_type } },
        });
      }
    }
    const s = await ort.InferenceSession.create(encodeModel(model), SESSION as never);
    for (const n of [1, 3]) {
      const size = info.inputShape.reduce((a, d) => a * d, 1);
      const rng = new RandomStream(n);
      const x = new ort.Tensor("float32", new Float32Array(n * size).map(() => rng.uniform()), [
        n,
        ...info.inputShape,
      ]);
      const out = await s.run({ x, y: new ort.Tensor("int64", new BigInt64Array(n), [n]) });
      for (const [v, vi] of recorded) {
        const dims = vi.type!.tensor_type!.shape!.dim ?? [];
        const got = out[v].dims;
        assert.equal(got.length, dims.length, `${name}: rank of '${v}'`);
        dims.forEach((d, i) => {
          // Symbols: the batch N, or a product with it ("4*N": a window partition's N * 4).
          const sym = d.dim_param?.split("*").reduce((acc, f) => {
            if (f === "N") return acc * n;
            assert.match(f, /^[0-9]+$/, `${name}: symbol ${d.dim_param} of '${v}'`);
            return acc * Number(f);
          }, 1);
          const want = sym ?? (d.dim_value === undefined ? undefined : Number(d.dim_value));
          if (want !== undefined) {
            assert.equal(
              got[i],
              want,
              `${name} batch ${n}: '${v}' is [${got}], recorded [${
                dims.map((e) => e.dim_param ?? e.dim_value)
              }]`,
            );
          }
        });
      }
    }
  }
});

/**
 * A legacy-style attention reshape: qkv [N, T, 3 D] -> [N, T, 3, H, D/H] with the shape built
 * from Shape(x) at run time (Gather, Unsqueeze, Div, Concat), then q k^T over the heads.
 */
function attention(b: GraphBuilder, x: string, heads: number, d: number): string {
  const qkv = b.node("MatMul", [x, randomConst(b, [d, 3 * d], 3, DataType.DOUBLE)]);
  const shape = b.node("Shape", [x]);
  const dim = (i: number) =>
    b.node("Unsqueeze", [
      b.node("Gather", [shape, b.i64("i", i, [])], { axis: 0 }),
      b.i64("a", [0]),
    ]);
  const perHead = b.node("Div", [dim(2), b.i64("h", [heads])]);
  const target = b.node("Concat", [
    dim(0),
    dim(1),
    b.i64("three", [3]),
    b.i64("h", [heads]),
    perHead,
  ], {
    axis: 0,
  });
  const split = b.node("Transpose", [b.node("Reshape", [qkv, target])], { perm: [2, 0, 3, 1, 4] });
  const [q, k] = b.nodeN("Split", [split, b.i64("s", [1, 1, 1])], { axis: 0 }, { outputs: 3 });
  const sq = (v: string) => b.node("Squeeze", [v, b.i64("z", [0])]);
  const att = b.node("MatMul", [sq(q), b.node("Transpose", [sq(k)], { perm: [0, 1, 3, 2] })]);
  return b.node("Softmax", [att], { axis: -1 });
}

Deno.test("shape_fold: without the pass a run-time reshape hides MatMul's rank; with it the gradient is exact", async () => {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input("x", DataType.DOUBLE, ["N", 5, 8]);
  const y = attention(b, x, 2, 8);
  assert.throws(
    () => appendVjp(b, y, b.input("w", DataType.DOUBLE, ["N", 2, 5, 5]), x),
    /MatMul.*rank of input .* is not known statically/,
  );
  await checkVjp({
    build: (c, v) => {
      const out = attention(c, v, 2, 8);
      const report = foldShapes(c, [out]);
      assert.ok(
        report.reshapes === 1,
        `the Reshape's shape folds to a constant: ${JSON.stringify(report)}`,
      );
      assert.ok(report.folded >= 4, `the head-size arithmetic folds: ${JSON.stringify(report)}`);
      return out;
    },
    xDims: [3, 5, 8],
    declaredDims: ["N", 5, 8],
    precision: "double",
    seed: 4,
  }, "attention");
});

Deno.test("shape_fold: folding shape sub-graphs (Slice, Cast, Mul, Equal/Where, ConstantOfShape, Range, Expand, Tile) changes no output", async () => {
  const build = () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input("x", DataType.FLOAT, ["N", 3, 4]);
    const shape = b.node("Shape", [x]);
    const tail = b.node("Slice", [shape, b.i64("s", [-2]), b.i64("e", [9]), b.i64("a", [0])]);
    const scaled = b.node("Cast", [
      b.node("Mul", [b.node("Cast", [tail], { to: DataType.FLOAT }), b.f32("two", [2, 0.5], [2])]),
    ], { to: DataType.INT64 });
    // legacy expand(-1, ...) pattern: Where(Equal(shape, -1), ones, shape)
    const wanted = b.i64("want", [-1, 3, 4]);
    const ones = b.node("ConstantOfShape", [b.i64("three", [3])], {
      value: {
        name: "v",
        dims: [1],
        data_type: DataType.INT64,
        raw_data: new Uint8Array(new BigInt64Array([1n]).buffer),
      },
    });
    const fixed = b.node("Where", [b.node("Equal", [wanted, b.i64("m1", -1, [])]), ones, wanted]);
    const bias = b.node("Expand", [b.f32("b", [0.5], [1, 1, 1]), fixed]);
    const steps = b.node("Cast", [
      b.node("Range", [
        b.i64("r0", 0, []),
        b.node("Gather", [tail, b.i64("j", 1, [])], { axis: 0 }),
        b.i64("r1", 1, []),
      ]),
    ], { to: DataType.FLOAT });
    const y = b.node("Add", [b.node("Add", [x, bias]), steps]);
    const big = b.node("Tile", [y, b.node("Concat", [b.i64("one", [1]), scaled], { axis: 0 })]);
    b.output(big, DataType.FLOAT, undefined, "out");
    return b;
  };
  const plain = build(), folded = build();
  const report = foldShapes(folded, []);
  assert.ok(report.folded >= 6, JSON.stringify(report));
  assert.ok(!folded.graph.node.some((n) => n.op_type === "Range" || n.op_type === "Where"));
  for (const n of [1, 4]) {
    const x = new ort.Tensor("float32", Float32Array.from({ length: n * 12 }, (_, i) => i / 7), [
      n,
      3,
      4,
    ]);
    const [a, c] = await Promise.all([plain, folded].map(async (b) => {
      const s = await ort.InferenceSession.create(b.toBytes());
      return (await s.run({ x })).out;
    }));
    assert.deepEqual(c.dims, a.dims);
    assert.deepEqual(c.data, a.data);
    assert.deepEqual(a.dims, [n, 18, 8]); // tiled by [1, 3 * 2, 4 / 2]
  }
});
