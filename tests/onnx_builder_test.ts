// ONNX decode/encode and the graph builder.
import assert from "node:assert/strict";
import fc from "fast-check";
import { DataType, decodeModel, defaultOpset, encodeModel } from "../lib/onnx/proto.ts";
import { float, getAttr, GraphBuilder } from "../lib/onnx/builder.ts";
import { makeTensor, tensorToFloat64 } from "../lib/onnx/tensor.ts";
import { loadOnnx, runOnnx } from "../lib/runtime/session.ts";

Deno.test("decode -> encode -> decode of real models keeps the graph", async () => {
  for (
    const rel of [
      "../weights/testing/tiny_unet.onnx",
      "../../shared/models/vnncomp21_resnet2b.onnx",
    ]
  ) {
    const bytes = await Deno.readFile(new URL(rel, import.meta.url));
    const m = decodeModel(bytes, rel);
    const again = decodeModel(encodeModel(m), rel);
    assert.equal(again.graph.node.length, m.graph.node.length);
    assert.deepEqual(again.graph.node.map((n) => n.op_type), m.graph.node.map((n) => n.op_type));
    assert.equal(again.graph.initializer!.length, m.graph.initializer!.length);
    assert.equal(defaultOpset(again), defaultOpset(m));
    // re-encoded bytes still run in ONNX Runtime
    await loadOnnx(encodeModel(m), { provider: "cpu" });
  }
});

Deno.test("tensors round-trip through raw_data for every supported type", () => {
  fc.assert(
    fc.property(
      fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 20 }),
      (vals) => {
        const t = makeTensor("t", [vals.length], Float32Array.from(vals));
        assert.deepEqual(Array.from(tensorToFloat64(t)), Array.from(Float32Array.from(vals)));
      },
    ),
  );
  assert.deepEqual(
    Array.from(tensorToFloat64(makeTensor("i", [2], BigInt64Array.from([-3n, 7n])))),
    [-3, 7],
  );
  assert.deepEqual(
    Array.from(tensorToFloat64({ dims: [2], data_type: DataType.FLOAT, float_data: [1.5, 2] })),
    [1.5, 2],
  );
  assert.throws(
    () => makeTensor("bad", [2, 2], new Float32Array(3)),
    /shape \[2,2\] holds 4 values, data has 3/,
  );
});

Deno.test("builder: typed attributes, fresh names, constants, and a graph that runs", async () => {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input("x", DataType.FLOAT, ["N", 4]);
  const g = b.node("Gemm", [
    x,
    b.f32("w", [1, 0, 0, 1, 1, 1, 2, 2], [4, 2]),
    b.f32("c", [0.5, -0.5]),
  ], {
    alpha: float(2),
    beta: 1.0,
    transA: 0,
  });
  const y = b.node("LeakyRelu", [g], { alpha: 0.1 });
  b.output(y, DataType.FLOAT, ["N", 2], "y");
  const node = b.graph.node[0];
  assert.equal(getAttr(node, "alpha"), 2);
  assert.equal(node.attribute!.find((a) => a.name === "alpha")!.type, 1); // FLOAT, though integral
  assert.equal(node.attribute!.find((a) => a.name === "transA")!.type, 2); // INT
  assert.equal(getAttr(node, "missing", 7), 7);
  assert.notEqual(b.fresh("w"), "w");
  assert.deepEqual(Array.from(b.constantValue("w")!.values), [1, 0, 0, 1, 1, 1, 2, 2]);
  assert.throws(() => b.input("x", DataType.FLOAT, [1]), /already has a value named 'x'/);
  const m = await loadOnnx(b.toBytes(), { provider: "cpu" });
  const out = await runOnnx(m, { x: { data: Float32Array.from([1, 2, 3, 4]), dims: [1, 4] } });
  // x W = [1*1+3*1+4*2, 2*1+3*1+4*2] = [12, 13]; *2 + c = [24.5, 25.5]
  assert.deepEqual(Array.from(out.y.data as Float32Array), [24.5, 25.5]);
});

Deno.test("builder rewrites an existing model: append nodes, add an output", async () => {
  const bytes = await Deno.readFile(
    new URL("../../shared/models/vnncomp21_resnet2b.onnx", import.meta.url),
  );
  const model = decodeModel(bytes);
  const b = GraphBuilder.fromModel(model);
  const logits = model.graph.output[0].name;
  b.output(b.node("Neg", [logits]), DataType.FLOAT, undefined, "neg_logits");
  const m = await loadOnnx(b.toBytes(), { provider: "cpu" });
  const x = new Float32Array(3 * 32 * 32).fill(0.1);
  const out = await runOnnx(m, { [m.inputs[0].name]: { data: x, dims: [1, 3, 32, 32] } });
  const a = out[logits].data as Float32Array, n = out.neg_logits.data as Float32Array;
  assert.equal(a.length, 10);
  a.forEach((v, i) => assert.equal(n[i], -v));
});

Deno.test("dropUnusedInitializers keeps what nodes, subgraphs and outputs read", async () => {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input("x", DataType.FLOAT, [2]);
  const used = b.f32("used", [1, 2]);
  const unused = b.f32("unused", [3, 4]);
  const inBranch = b.f32("in_branch", [5, 6]);
  const asOutput = b.f32("as_output", [7, 8]);
  const branch = (value: string) => ({
    name: "branch",
    node: [{ op_type: "Identity", input: [value], output: [`${value}_out`], attribute: [] }],
    input: [],
    output: [{
      name: `${value}_out`,
      type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: [{ dim_value: 2 }] } } },
    }],
  });
  const cond = b.constant("cond", [], Uint8Array.of(1));
  b.graph.initializer!.find((t) => t.name === cond)!.data_type = DataType.BOOL;
  const picked = b.node("If", [cond], {}, { outputs: [b.fresh("picked")] });
  const ifNode = b.graph.node.at(-1)!;
  ifNode.attribute!.push(
    { name: "then_branch", type: 5, g: branch(inBranch) },
    { name: "else_branch", type: 5, g: branch(used) },
  );
  b.output(b.node("Add", [x, b.node("Add", [used, picked])]), DataType.FLOAT, [2], "y");
  b.output(asOutput, DataType.FLOAT, [2]);
  assert.equal(b.dropUnusedInitializers(), 1);
  const left = b.graph.initializer!.map((t) => t.name);
  assert.ok(!left.includes(unused));
  for (const name of [used, inBranch, asOutput, cond]) assert.ok(left.includes(name), name);
  // the graph still runs in onnxruntime
  const m = await loadOnnx(encodeModel(b.toModel()), { provider: "cpu" });
  const out = await runOnnx(m, { x: { data: Float32Array.of(1, 1), dims: [2] } });
  assert.deepEqual([...out.y.data as Float32Array], [7, 9]);
  await m.session.release();
});
