// appendVjp at the graph level: which nodes are differentiated (paths from wrt to output only),
// the errors for unsupported ops and parameters, the opset upgrade (forward results unchanged),
// and the three real opset-9 classifiers against finite differences.
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { BACKWARD_OPSET, upgradeOpset } from "../lib/autodiff/opset.ts";
import { appendVjp } from "../lib/autodiff/vjp.ts";
import { float, GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, decodeModel } from "../lib/onnx/proto.ts";
import { randomConst } from "./_vjp_arbitraries.ts";
import { awayFromZero, checkVjp } from "./_vjp_check.ts";

const F = DataType.FLOAT;

/** A float32 graph x[2,3] -> f(x) at `opset`, for the error tests. */
function small(opset: number, f: (b: GraphBuilder, x: string) => string) {
  const b = new GraphBuilder({ opset });
  const x = b.input("x", F, [2, 3]);
  const y = f(b, x);
  const w = b.input("w", F, [2, 3]);
  return { b, x, y, w };
}

Deno.test("vjp: an op without a rule on the path throws naming op, node, outputs and opset", () => {
  const { b, x, y, w } = small(13, (b, x) => {
    const e = b.node("CumSum", [b.node("Relu", [x]), b.i64("axis", 0, [])], {}, {
      name: "CumSum_12",
      outputs: ["y7"],
    });
    return b.node("Tanh", [e]);
  });
  const nodesBefore = b.graph.node.length;
  assert.throws(
    () => appendVjp(b, y, w, x),
    (e: Error) => {
      assert.match(
        e.message,
        /^cannot differentiate op 'CumSum' \(node 'CumSum_12', outputs y7\) at opset 13: no gradient rule; supported ops: .*Conv.*MaxPool/,
      );
      return true;
    },
  );
  // Reported before anything was changed: same nodes, same opset.
  assert.equal(b.graph.node.length, nodesBefore);
  assert.equal(b.opset, 13);
});

Deno.test("vjp: an LSTM on the path throws; one whose output is cut (Shape) does not", () => {
  const lstm = (b: GraphBuilder, x: string) => {
    const seq = b.node("Unsqueeze", [x], { axes: [1] }); // [2, 1, 3]: seq 2, batch 1, input 3
    const wt = b.f32("W", Array(4 * 3 * 3).fill(0.1), [1, 12, 3]);
    const rt = b.f32("R", Array(4 * 3 * 3).fill(0.1), [1, 12, 3]);
    return b.node("LSTM", [seq, wt, rt], { hidden_size: 3 }, { name: "lstm_1" });
  };
  const onPath = small(9, (b, x) => b.node("Reshape", [lstm(b, x), b.i64("s", [2, 3])]));
  assert.throws(
    () => appendVjp(onPath.b, onPath.y, onPath.w, onPath.x),
    /op 'LSTM' \(node 'lstm_1'.*at opset 9: no gradient rule/,
  );
  const offPath = small(9, (b, x) => {
    const size = b.node("Shape", [lstm(b, x)]); // only the LSTM's shape is used
    const two = b.node("Gather", [size, b.i64("i", 0, [])], { axis: 0 });
    return b.node("Mul", [b.node("Relu", [x]), b.node("Cast", [two], { to: F })]);
  });
  appendVjp(offPath.b, offPath.y, offPath.w, offPath.x);
});

Deno.test("vjp: shape sub-graphs and comparisons are off the differentiable path (FD-checked)", async () => {
  await checkVjp({
    build: (b, x) => {
      // An unsupported op (Erf) whose only consumer is a comparison: a mask, no gradient.
      const mask = b.node("Greater", [b.node("Erf", [x]), b.f32("zero", 0, [])]);
      const y = b.node("Where", [mask, b.node("Mul", [x, x]), b.node("Relu", [x])]);
      // Reshape to a shape computed from x: Shape -> Gather -> Concat (no rule needed).
      const dims = b.node("Shape", [x]);
      const first = b.node("Gather", [dims, b.i64("i", [0])], { axis: 0 });
      return b.node("Reshape", [y, b.node("Concat", [first, b.i64("m", [-1])], { axis: 0 })]);
    },
    xDims: [2, 3, 4],
    precision: "float", // ORT's Erf is float32-only
    opset: 11,
    seed: 3,
    sample: awayFromZero(0.05),
  }, "off-path");
});

Deno.test("vjp: nodes before wrt are not differentiated (wrt an intermediate value)", async () => {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input("x", F, [3]);
  const h = b.node("Erf", [x]); // no rule, but upstream of wrt
  const y = b.node("Mul", [h, b.f32("three", 3, [])]);
  const w = b.input("w", F, [3]);
  b.output(appendVjp(b, y, w, h), F, [3], "g");
  const s = await ort.InferenceSession.create(b.toBytes());
  const out = await s.run({
    x: new ort.Tensor("float32", Float32Array.of(0.1, 0.2, 0.3), [3]),
    w: new ort.Tensor("float32", Float32Array.of(1, -2, 0.5), [3]),
  });
  assert.deepEqual([...(out.g.data as Float32Array)], [3, -6, 1.5]);
});

Deno.test("vjp: a weight that depends on wrt throws; wrong names and no dependence throw", () => {
  const conv = small(9, (b, x) => {
    const img = b.node("Reshape", [x, b.i64("s", [1, 1, 2, 3])]);
    const weight = b.node("Reshape", [
      b.node("Slice", [x], { starts: [0, 0], ends: [1, 2], axes: [0, 1] }),
      b.i64("k", [1, 1, 1, 2]),
    ]);
    return b.node("Conv", [img, weight], {}, { name: "conv_w" });
  });
  assert.throws(
    () => appendVjp(conv.b, conv.y, conv.w, conv.x),
    /op 'Conv' \(node 'conv_w'.*input 1 \('reshape_\d+'\) depends on the differentiation variable, but only the gradient with respect to input\(s\) 0 is implemented/,
  );
  const plain = small(17, (b, x) => b.node("Relu", [x]));
  assert.throws(
    () => appendVjp(plain.b, "nope", plain.w, plain.x),
    /output 'nope' is not a value of the graph/,
  );
  assert.throws(
    () => appendVjp(plain.b, plain.y, plain.w, "w"),
    /does not depend differentiably on 'w'/,
  );
  const cut = small(17, (b, x) => b.node("Cast", [b.node("Shape", [x])], { to: F }));
  assert.throws(() => appendVjp(cut.b, cut.y, cut.w, cut.x), /does not depend differentiably/);
});

Deno.test("vjp: appendVjp raises opset 9 to 17 (IR >= 8) and keeps 18 as it is", () => {
  for (const [from, to] of [[9, BACKWARD_OPSET], [13, BACKWARD_OPSET], [18, 18]]) {
    const { b, x, y, w } = small(from, (b, x) => b.node("Relu", [x]));
    appendVjp(b, y, w, x);
    assert.equal(b.opset, to);
    assert.equal(b.toModel().opset_import?.find((o) => !o.domain)?.version, to);
    assert.ok((b.toModel().ir_version ?? 0) >= 8);
  }
});

/** Runs a float32 graph with one input x and returns every output's values. */
async function runAll(bytes: Uint8Array, x: Float32Array, dims: number[]) {
  const s = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
  const out = await s.run({ x: new ort.Tensor("float32", x, dims) });
  return Object.fromEntries(
    Object.entries(out).map(([k, v]) => [k, [...(v.data as Float32Array)].map(Number)]),
  );
}

Deno.test("upgradeOpset: attribute-form ops of opset 9 compute the same values at 17 and 18", async () => {
  const build = () => {
    const b = new GraphBuilder({ opset: 9 });
    const x = b.input("x", F, [2, 3, 4]);
    const out = (v: string, name: string) => b.output(v, F, undefined, `out_${name}`);
    out(b.node("Clip", [x], { min: float(-0.5), max: float(0.7) }), "clip");
    out(b.node("Clip", [x], { max: float(0.2) }), "clip_max");
    out(b.node("Pad", [x], { pads: [0, 1, 0, 0, 0, 2], value: float(1.5) }), "pad");
    out(b.node("Pad", [x], { pads: [0, 0, 1, 0, 0, 2], mode: "reflect" }), "pad_reflect");
    out(b.node("Slice", [x], { starts: [1, -3], ends: [100, -1], axes: [2, 1] }), "slice");
    out(b.node("Squeeze", [b.node("Unsqueeze", [x], { axes: [0, 3] })], { axes: [0] }), "squeeze");
    out(b.node("ReduceSum", [x], { axes: [1], keepdims: 0 }), "reduce_sum");
    out(b.node("ReduceMean", [x], { axes: [2, 0] }), "reduce_mean");
    const parts = b.nodeN("Split", [x], { axis: 2, split: [1, 3] }, { outputs: 2 });
    out(parts[1], "split");
    out(b.nodeN("Dropout", [x], { ratio: float(0.4) }, { outputs: 2 })[0], "dropout");
    const bn = [1, 2, 3].map((i) => randomConst(b, [3], i, F));
    out(
      b.node("BatchNormalization", [x, ...bn, b.f32("var", [0.5, 1, 2])], { epsilon: float(1e-3) }),
      "bn",
    );
    out(b.node("Softmax", [x], { axis: 1 }), "softmax"); // coerced to [2, 12] before opset 13
    out(b.node("LogSoftmax", [x]), "log_softmax");
    out(b.node("Hardmax", [x], { axis: 2 }), "hardmax");
    out(b.nodeN("TopK", [x], { k: 2, axis: 2 }, { outputs: 2 })[0], "topk");
    out(
      b.node("Cast", [
        b.node("Scatter", [
          x,
          b.constant("idx", [2, 3, 1], BigInt64Array.from([0n, 1n, 2n, 3n, 0n, 1n])),
          b.f32("upd", [1, 2, 3, 4, 5, 6], [2, 3, 1]),
        ], { axis: 2 }),
      ], { to: F }),
      "scatter",
    );
    return b;
  };
  const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i * 1.3) * 2);
  const reference = await runAll(build().toBytes(), x, [2, 3, 4]);
  for (const target of [17, 18]) {
    const b = build();
    upgradeOpset(b, target);
    assert.equal(b.opset, target);
    const upgraded = await runAll(b.toBytes(), x, [2, 3, 4]);
    for (const [name, values] of Object.entries(reference)) {
      assert.deepEqual(upgraded[name], values, `${name} differs after the upgrade to ${target}`);
    }
  }
});

Deno.test("upgradeOpset: ops changed at 20 and 21 (DFT, GridSample, GroupNormalization) compute the same values up to 26", async () => {
  const dims = [2, 4, 3, 5];
  const build = () => {
    const b = new GraphBuilder({ opset: 18 });
    const x = b.input("x", F, dims);
    const out = (v: string, name: string) => b.output(v, F, undefined, `out_${name}`);
    // per-group affine at 18 (G = 2 of C = 4 channels); G = C and G = 1 as well
    out(
      b.node("GroupNormalization", [x, b.f32("s2", [0.5, -2]), b.f32("b2", [1, 3])], {
        num_groups: 2,
        epsilon: float(1e-3),
      }),
      "gn2",
    );
    out(
      b.node("GroupNormalization", [x, b.f32("s4", [1, 2, 3, 4]), b.f32("b4", [0, 1, 0, 1])], {
        num_groups: 4,
      }),
      "gn4",
    );
    out(
      b.node("GroupNormalization", [x, b.f32("s1", [1.5]), b.f32("b1", [-1])], {
        num_groups: 1,
      }),
      "gn1",
    );
    const grid = randomConst(b, [2, 2, 3, 2], 7, F); // in [-1, 1]: inside and at the edges
    out(b.node("GridSample", [x, grid], { align_corners: 1 }), "grid_default");
    out(
      b.node("GridSample", [x, grid], { mode: "bilinear", padding_mode: "border" }),
      "grid_bilinear",
    );
    out(b.node("GridSample", [x, grid], { mode: "bicubic" }), "grid_bicubic");
    out(b.node("GridSample", [x, grid], { mode: "nearest" }), "grid_nearest");
    // DFT-17 over axis 2 of a real signal [2, 4, 3, 5, 1], and with the default axis 1
    const signal = b.node("Unsqueeze", [x, b.i64("ax", [4])]);
    out(b.node("DFT", [signal], { axis: 2 }), "dft_axis2");
    out(b.node("DFT", [signal], { onesided: 1 }), "dft_default");
    return b;
  };
  const n = dims.reduce((a, d) => a * d);
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.77) * 2 + (i % 5) * 0.1);
  const reference = await runAll(build().toBytes(), x, dims);
  for (const target of [19, 20, 21, 23, 26]) {
    const b = build();
    upgradeOpset(b, target);
    assert.equal(b.opset, target);
    const upgraded = await runAll(b.toBytes(), x, dims);
    for (const [name, values] of Object.entries(reference)) {
      const worst = Math.max(...values.map((v, i) => Math.abs(v - upgraded[name][i])));
      assert.ok(worst <= 1e-5, `${name} differs after the upgrade to ${target} by ${worst}`);
    }
  }
  // the per-group scale really is per channel after 21 (a rewrite that dropped it would fail)
  const b = build();
  upgradeOpset(b, 21);
  const gn = b.graph.node.find((m) => m.op_type === "GroupNormalization")!;
  assert.notEqual(gn.input[1], "s2");
});

Deno.test("upgradeOpset: refuses what it cannot carry over exactly", () => {
  const cases: Array<[number, (b: GraphBuilder, x: string) => void, RegExp]> = [
    [
      9,
      (b, x) => b.node("Upsample", [x, b.f32("sc", [1, 2])], {}, { name: "up" }),
      /node 'up' \(Upsample.*no exact equivalent/,
    ],
    [
      10,
      (b, x) => b.node("Resize", [x, b.f32("sc", [1, 2])], {}, { name: "rs" }),
      /node 'rs' \(Resize/,
    ],
    [
      9,
      (b, x) =>
        b.nodeN("Dropout", [x], {}, { outputs: 2, name: "dr" }).forEach((v) =>
          b.node("Identity", [v])
        ),
      /mask output .* of Dropout node 'dr' is used/,
    ],
  ];
  for (const [opset, add, pattern] of cases) {
    const b = new GraphBuilder({ opset });
    add(b, b.input("x", F, [2, 2]));
    assert.throws(() => upgradeOpset(b, 17), pattern);
  }
  // Sub-graphs (If/Loop bodies) would change meaning too.
  const b = new GraphBuilder({ opset: 9 });
  const x = b.input("x", F, [2]);
  const body = { name: "body", node: [], input: [], output: [] };
  b.node(
    "If",
    [b.node("Greater", [b.node("ReduceSum", [x], { keepdims: 0 }), b.f32("z", 0, [])])],
    {},
    { name: "cond" },
  );
  b.graph.node[b.graph.node.length - 1].attribute = [{ name: "then_branch", type: 5, g: body }, {
    name: "else_branch",
    type: 5,
    g: body,
  }];
  assert.throws(() => upgradeOpset(b, 17), /node 'cond' \(If.*sub-graph/);
  assert.throws(
    () => upgradeOpset(new GraphBuilder({ opset: 8 }), 17),
    /below opset 9 are not supported/,
  );
});

const MODELS = ["vnncomp21_resnet2b", "vnncomp21_resnet4b", "sri_resnet_a"];

for (const name of MODELS) {
  const path = new URL(`../../shared/models/${name}.onnx`, import.meta.url);
  let bytes: Uint8Array | undefined;
  try {
    bytes = Deno.readFileSync(path);
  } catch {
    bytes = undefined;
  }
  Deno.test({
    name: `vjp: the real classifier ${name} (opset 9): input gradient against finite differences`,
    ignore: bytes === undefined,
    fn: async () => {
      const model = decodeModel(bytes!, name);
      const input = model.graph.input[0].name;
      const output = model.graph.output[0].name;
      await checkVjp({
        from: { model, input },
        build: () => output,
        xDims: [1, 3, 32, 32],
        precision: "float",
        seed: 11,
        sample: (rng, n) => Float64Array.from({ length: n }, () => rng.normal()),
        directions: 2,
        // A ReLU network is piecewise linear: small steps, and a retry should a switch fall inside.
        eps: 1e-3,
        tol: 1e-2,
        kinks: true,
      }, name);
    },
  });
}
