// The energy head on hand-built linear classifiers, where every output has a closed form
// (METHOD.md §3-4), plus its input validation and the classifier adapter's contract.
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  buildEnergyHead,
  compileEnergyHead,
  type InputConventions,
  readHeadInfo,
} from "../lib/energy/head.ts";
import { loadEnergyClassifier, OBJECTIVES } from "../lib/energy/classifier.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, decodeModel } from "../lib/onnx/proto.ts";
import { loadOnnx, runOnnx } from "../lib/runtime/session.ts";
import { RandomStream } from "../lib/random.ts";
import {
  type FlattenKind,
  linearHeadClosedForm,
  relMaxError,
  tinyLinear,
} from "./_energy_models.ts";

const CIFAR = { mean: [0.4914, 0.4822, 0.4465], std: [0.2471, 0.2435, 0.2616] };

function images(n: number, size: number, seed: number): Float32Array {
  const rng = new RandomStream(seed);
  return new Float32Array(n * size).map(() => rng.uniform());
}

const CASES: Array<
  { name: string; conv: InputConventions; flatten: FlattenKind; opset: number; names?: boolean }
> = [
  { name: "nchw [0,1], Flatten, opset 9", conv: {}, flatten: "flatten", opset: 9 },
  {
    name: "nchw pm1 + mean/std, Reshape [1,-1], opset 13",
    conv: { ...CIFAR, range: "pm1" },
    flatten: "reshape-1",
    opset: 13,
  },
  {
    name: "nhwc + mean/std, Reshape [1,D], opset 17, names x/logits taken",
    conv: { ...CIFAR, layout: "nhwc" },
    flatten: "reshape-D",
    opset: 17,
    names: true,
  },
  {
    name: "nchw mean/std, Constant-node shape, opset 11",
    conv: CIFAR,
    flatten: "constant-node",
    opset: 11,
  },
];

for (const c of CASES) {
  Deno.test(`head equals its closed form: ${c.name}`, async () => {
    const m = tinyLinear({
      layout: c.conv.layout ?? "nchw",
      flatten: c.flatten,
      opset: c.opset,
      inputName: c.names ? "x" : undefined,
      outputName: c.names ? "logits" : undefined,
    });
    const clf = await loadEnergyClassifier(m.bytes, {
      conventions: c.conv,
      batch: 2,
      provider: "cpu",
    });
    const n = 5, D = m.C * m.H * m.W;
    const x = images(n, D, 7);
    const y = [0, 3, 6, 2, 5];
    const coef = [
      ...OBJECTIVES.crossEntropy,
      ...OBJECTIVES.joint,
      ...OBJECTIVES.dual(0.15),
      0.3,
      -2,
      1.5,
      -1,
      0.5,
      -0.7,
    ];
    const ref0 = linearHeadClosedForm(m, c.conv, x, n, y, coef, new Array(n).fill(0));
    // E* on both sides of E(x), away from the kink
    const eStar = Array.from(ref0.energyX, (e, i) => e + (i % 2 ? 1 : -1));
    const ref = linearHeadClosedForm(m, c.conv, x, n, y, coef, eStar);
    const out = await clf.energies(x, n, y, Float32Array.from(coef), eStar);
    assert.ok(
      relMaxError(out.logits, ref.logits) < 1e-5,
      `logits ${relMaxError(out.logits, ref.logits)}`,
    );
    assert.ok(relMaxError(out.energyXY, ref.energyXY) < 1e-5);
    assert.ok(relMaxError(out.energyX, ref.energyX) < 1e-5);
    const err = relMaxError(out.grad, ref.grad);
    assert.ok(err < 1e-5, `grad relative error ${err}`);
  });
}

Deno.test("head gradient matches the closed form for random coef and E* (fast-check)", async () => {
  const m = tinyLinear({ opset: 13, seed: 3 });
  const conv: InputConventions = { ...CIFAR, range: "pm1" };
  const clf = await loadEnergyClassifier(m.bytes, { conventions: conv, provider: "cpu" });
  const D = m.C * m.H * m.W;
  const coefArb = fc.tuple(
    fc.double({ min: -3, max: 3, noNaN: true }),
    fc.double({ min: -3, max: 3, noNaN: true }),
    fc.double({ min: -3, max: 3, noNaN: true }),
  );
  await fc.assert(
    fc.asyncProperty(
      coefArb,
      fc.integer({ min: 0, max: 6 }),
      fc.integer({ min: 0, max: 1000 }),
      async (coef, y, seed) => {
        const x = images(1, D, seed);
        const e = linearHeadClosedForm(m, conv, x, 1, [y], [0, 0, 0], [0]).energyX[0];
        const eStar = [e + (seed % 2 ? 0.5 : -0.5)];
        const c32 = Array.from(Float32Array.from(coef));
        const ref = linearHeadClosedForm(m, conv, x, 1, [y], c32, eStar);
        const out = await clf.energies(x, 1, [y], c32 as [number, number, number], eStar);
        const scale = Math.max(1, ...c32.map(Math.abs));
        let worst = 0;
        for (let i = 0; i < D; i++) worst = Math.max(worst, Math.abs(out.grad[i] - ref.grad[i]));
        const gmax = ref.grad.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
        assert.ok(
          worst <= 1e-5 * Math.max(gmax, scale),
          `max abs err ${worst}, max |grad| ${gmax}`,
        );
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("sign(0) = 0: at E(x) = E* the abs term has zero gradient", async () => {
  const m = tinyLinear({});
  const clf = await loadEnergyClassifier(m.bytes, { conventions: CIFAR, provider: "cpu" });
  const D = m.C * m.H * m.W, x = images(2, D, 11);
  const fwd = await clf.forward(x, 2, [1, 2]);
  const out = await clf.energies(x, 2, [1, 2], [0, 0, 1], fwd.energyX);
  assert.ok(out.grad.every((v) => v === 0));
  const off = await clf.energies(x, 2, [1, 2], [0, 0, 1], fwd.energyX.map((e) => e + 1));
  assert.ok(off.grad.some((v) => v !== 0));
});

Deno.test("fromDiffusionSpace evaluates at (x+1)/2 and halves the gradient", async () => {
  const m = tinyLinear({});
  const clf = await loadEnergyClassifier(m.bytes, { conventions: CIFAR, provider: "cpu" });
  const D = m.C * m.H * m.W, n = 3;
  const x01 = images(n, D, 5);
  const xpm = x01.map((v) => 2 * v - 1);
  const a = await clf.energies(x01, n, [0, 1, 2], OBJECTIVES.crossEntropy);
  const b = await clf.fromDiffusionSpace(xpm, n, [0, 1, 2], OBJECTIVES.crossEntropy);
  assert.ok(relMaxError(b.logits, a.logits) < 1e-6);
  assert.ok(relMaxError(b.grad, a.grad.map((g) => g / 2)) < 1e-5);
});

Deno.test("forward-only head: same logits and energies, no grad, energies() refuses", async () => {
  const m = tinyLinear({});
  const full = await loadEnergyClassifier(m.bytes, { conventions: CIFAR, provider: "cpu" });
  const fwdBytes = compileEnergyHead(m.bytes, { ...CIFAR, gradient: false });
  const onnx = decodeModel(fwdBytes);
  assert.deepEqual(onnx.graph.input.map((v) => v.name), ["x", "y"]);
  assert.deepEqual(onnx.graph.output.map((v) => v.name), ["logits", "energy_xy", "energy_x"]);
  const fwd = await loadEnergyClassifier(fwdBytes, { provider: "cpu" });
  const D = m.C * m.H * m.W, x = images(4, D, 2);
  const a = await full.forward(x, 4, [0, 1, 2, 3]);
  const b = await fwd.forward(x, 4, [0, 1, 2, 3]);
  assert.deepEqual(b.logits, a.logits);
  assert.deepEqual(b.energyX, a.energyX);
  await assert.rejects(() => fwd.energies(x, 4, [0, 1, 2, 3], OBJECTIVES.joint), /forward-only/);
});

Deno.test("head contract: names, dynamic batch, metadata round trip", async () => {
  const m = tinyLinear({ flatten: "reshape-1" });
  const { model, info } = buildEnergyHead(m.bytes, CIFAR);
  assert.deepEqual(model.graph.input.map((v) => v.name), ["x", "y", "coef", "e_star"]);
  assert.deepEqual(model.graph.output.map((v) => v.name), [
    "logits",
    "energy_xy",
    "energy_x",
    "grad",
  ]);
  assert.equal(model.graph.input[0].type?.tensor_type?.shape?.dim?.[0].dim_param, "N");
  assert.deepEqual(info.batchRewrites.map((r) => [r.from, r.to]), [[[1, -1], [0, -1]]]);
  const bytes = compileEnergyHead(m.bytes, CIFAR);
  const read = readHeadInfo(decodeModel(bytes));
  assert.deepEqual(read, info);
  assert.equal(read?.numClasses, m.K);
  assert.deepEqual(read?.inputShape, [m.C, m.H, m.W]);
  // batch 9 through the raw head at once
  const sess = await loadOnnx(bytes, { provider: "cpu" });
  const D = m.C * m.H * m.W;
  const res = await runOnnx(sess, {
    x: { data: images(9, D, 1), dims: [9, m.C, m.H, m.W] },
    y: { data: new BigInt64Array(9), dims: [9] },
    coef: { data: new Float32Array(27).fill(1), dims: [9, 3] },
    e_star: { data: new Float32Array(9), dims: [9] },
  });
  assert.deepEqual(res.grad.dims, [9, m.C, m.H, m.W]);
  assert.deepEqual(res.logits.dims, [9, m.K]);
  assert.deepEqual(res.energy_x.dims, [9]);
});

Deno.test("energy_x is numerically stable for huge logits", async () => {
  const b = new GraphBuilder({ opset: 9 });
  const u = b.input("u", DataType.FLOAT, [1, 1, 1, 2]);
  const flat = b.node("Flatten", [u], { axis: 1 });
  const out = b.node("Mul", [flat, b.f32("big", [1000, -1000], [1, 2])]);
  b.output(out, DataType.FLOAT, [1, 2]);
  const clf = await loadEnergyClassifier(b.toBytes(), { conventions: {}, provider: "cpu" });
  const r = await clf.energies(Float32Array.from([1, 1]), 1, [0], OBJECTIVES.crossEntropy);
  // logits (1000, -1000): logsumexp = 1000 exactly in float32
  assert.equal(r.energyX[0], -1000);
  assert.equal(r.energyXY[0], -1000);
  assert.ok(r.grad.every(Number.isFinite));
});

// --- bad inputs: each a clear error -------------------------------------------------------

Deno.test("rejects a graph without a 2-D logits output", () => {
  const b = new GraphBuilder({ opset: 13 });
  const u = b.input("img", DataType.FLOAT, [1, 3, 4, 4]);
  const o = b.node("Relu", [u], {}, { outputs: ["o"] });
  b.output(o, DataType.FLOAT, [1, 3, 4, 4]);
  assert.throws(
    () => compileEnergyHead(b.toBytes()),
    /not a classifier: output 'o' has rank 4 \[1,3,4,4\]/,
  );
});

Deno.test("rejects a model with two inputs, ignoring initializers listed as inputs", () => {
  const b = new GraphBuilder({ opset: 9 });
  const a = b.input("a", DataType.FLOAT, [1, 3, 2, 2]);
  const c = b.input("b", DataType.FLOAT, [1, 3, 2, 2]);
  const flat = b.node("Flatten", [b.node("Add", [a, c])], { axis: 1 });
  const w = b.f32("w", new Array(24).fill(0.1), [12, 2]);
  b.output(b.node("MatMul", [flat, w]), DataType.FLOAT, [1, 2]);
  assert.throws(
    () => compileEnergyHead(b.toBytes()),
    /model has 2 inputs \(a, b\); an energy head needs a single image input/,
  );
  // an old-style export listing its weights as inputs is still a one-input model
  const m = tinyLinear({ opset: 9 });
  const model = decodeModel(m.bytes);
  for (const t of model.graph.initializer ?? []) {
    model.graph.input.push({
      name: t.name!,
      type: {
        tensor_type: {
          elem_type: t.data_type,
          shape: { dim: (t.dims ?? []).map((d) => ({ dim_value: d })) },
        },
      },
    });
  }
  const { model: head } = buildEnergyHead(model, CIFAR);
  assert.deepEqual(head.graph.input.map((v) => v.name), ["x", "y", "coef", "e_star"]);
  assert.equal(model.graph.input.length, 3, "the caller's model is left unchanged");
});

Deno.test("rejects mean/std whose length is not the channel count", () => {
  const m = tinyLinear({ C: 3 });
  assert.throws(
    () => compileEnergyHead(m.bytes, { mean: [0.5], std: [0.5] }),
    /mean has 1 values \[0\.5\] but the classifier input has C=3 channels; pass one mean per channel \(3 values\)/,
  );
  assert.throws(
    () => compileEnergyHead(m.bytes, { mean: [0, 0, 0], std: [1, 1] }),
    /std has 2 values/,
  );
  assert.throws(
    () => compileEnergyHead(m.bytes, { mean: [0, 0, 0] }),
    /mean was given without std/,
  );
  assert.throws(
    () => compileEnergyHead(m.bytes, { mean: [0, 0, 0], std: [1, 0, 1] }),
    /must be > 0/,
  );
  assert.throws(
    () => compileEnergyHead(m.bytes, { layout: "chw" as "nchw" }),
    /layout 'chw' is not supported/,
  );
});

Deno.test("rejects an operator the autodiff cannot differentiate, naming it", () => {
  const b = new GraphBuilder({ opset: 13 });
  const u = b.input("img", DataType.FLOAT, [1, 2, 2, 2]);
  const flat = b.node("Flatten", [
    b.node("CumSum", [u, b.i64("ax", 1, [])], {}, { name: "cumsum_3" }),
  ], {
    axis: 1,
  });
  const w = b.f32("w", new Array(16).fill(0.1), [8, 2]);
  b.output(b.node("MatMul", [flat, w]), DataType.FLOAT, [1, 2]);
  assert.throws(() => compileEnergyHead(b.toBytes(), { source: "cumsum.onnx" }), (e: Error) => {
    assert.match(e.message, /^cumsum\.onnx: cannot build the energy gradient: /);
    assert.match(e.message, /op 'CumSum' \(node 'cumsum_3'.*\) at opset 13/);
    return true;
  });
});

Deno.test("rejects Flatten(axis=0) on the image path and non-image inputs", () => {
  const b = new GraphBuilder({ opset: 9 });
  const u = b.input("img", DataType.FLOAT, [1, 2, 2, 2]);
  const flat = b.node("Flatten", [u], { axis: 0 });
  b.output(b.node("MatMul", [flat, b.f32("w", new Array(16).fill(0.1), [8, 2])]), DataType.FLOAT, [
    1,
    2,
  ]);
  assert.throws(() => compileEnergyHead(b.toBytes()), /flattens with axis 0/);
  const v = new GraphBuilder({ opset: 9 });
  const vec = v.input("vec", DataType.FLOAT, [1, 8]);
  v.output(v.node("MatMul", [vec, v.f32("w", new Array(16).fill(0.1), [8, 2])]), DataType.FLOAT, [
    1,
    2,
  ]);
  assert.throws(
    () => compileEnergyHead(v.toBytes()),
    /input 'vec' has rank 2 \[1,8\]; an energy head needs an image input of rank 4/,
  );
});

Deno.test("adapter errors: raw model without conventions, mismatched conventions, bad labels/coef", async () => {
  const m = tinyLinear({});
  await assert.rejects(
    () => loadEnergyClassifier(m.bytes),
    /is a raw classifier, not an energy head; pass its input conventions/,
  );
  const head = compileEnergyHead(m.bytes, CIFAR);
  await assert.rejects(
    () => loadEnergyClassifier(head, { conventions: {} }),
    /drop the conventions option/,
  );
  const clf = await loadEnergyClassifier(head, { conventions: CIFAR, provider: "cpu" });
  const D = m.C * m.H * m.W, x = images(2, D, 1);
  await assert.rejects(
    () => clf.energies(x, 2, [0, 7], OBJECTIVES.joint),
    /label y\[1\] = 7 is not a class index in \[0, 6\]/,
  );
  await assert.rejects(() => clf.energies(x, 2, [0, 1], [1, 2, 3, 4]), /coef has 4 values/);
  await assert.rejects(
    () => clf.energies(x, 2, [0, 1], OBJECTIVES.dual(0.15)),
    /no eStar was given/,
  );
  await assert.rejects(
    () => clf.energies(x, 3, [0, 1, 2], OBJECTIVES.joint),
    /n=3 images of \[3,4,5\] need 180/,
  );
});
