// The energy head on classifiers whose output is not logits (issue 13 item 3) and on
// reduced-precision classifiers (item 4): a final Softmax, LogSoftmax, Log(Softmax) or a
// spelled-out softmax is traced back to its logits (the head's logits and energies equal those
// of the same classifier without the softmax); a Sigmoid, a softmax over the batch axis, and
// probabilities that cannot be traced are refused with the reason; float16 and bfloat16
// classifiers run in float32 and give exactly the outputs of the same weights stored as float32.
import assert from "node:assert/strict";
import { buildEnergyHead, compileEnergyHead } from "../lib/energy/head.ts";
import { loadEnergyClassifier, OBJECTIVES } from "../lib/energy/classifier.ts";
import { bfloat16ToFloat, halfToFloat } from "../lib/energy/precision.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, decodeModel, encodeModel, type TensorProto } from "../lib/onnx/proto.ts";
import { RandomStream } from "../lib/random.ts";

const FLOAT16 = 10, BFLOAT16 = 16;
const K = 5, C = 2, H = 4, W = 4;

function images(n: number, seed: number): Float32Array {
  const rng = new RandomStream(seed);
  return new Float32Array(n * C * H * W).map(() => rng.uniform());
}

/** Weights that float16 holds exactly (multiples of 1/64 in [-2, 2]). */
function weights(n: number, seed: number): number[] {
  const rng = new RandomStream(seed);
  return Array.from({ length: n }, () => Math.round((4 * rng.uniform() - 2) * 64) / 64);
}

/** A tensor of float16 or bfloat16 bits (exact for the values of `weights`). */
function halfTensor(name: string, dims: number[], values: number[], type: number): TensorProto {
  const bits = new Uint16Array(values.map((v) => {
    const f = new Float32Array([v]);
    const u = new Uint32Array(f.buffer)[0];
    if (type === BFLOAT16) return u >>> 16;
    // float16 of a multiple of 1/64 in [-2, 2]: sign, exponent, 10-bit mantissa.
    if (v === 0) return 0;
    const s = v < 0 ? 0x8000 : 0, a = Math.abs(v), e = Math.floor(Math.log2(a));
    return s | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
  }));
  return { name, dims, data_type: type, raw_data: new Uint8Array(bits.buffer) };
}

/**
 * conv -> relu -> flatten -> gemm, then `tail` (the output kind), with weights stored as
 * `type` (float32, float16 or bfloat16; the input and output take that type too).
 */
function classifier(
  tail: (b: GraphBuilder, logits: string) => string,
  opts: { type?: number; opset?: number } = {},
): Uint8Array {
  const type = opts.type ?? DataType.FLOAT;
  const b = new GraphBuilder({ opset: opts.opset ?? 13 });
  const x = b.input("img", type, ["N", C, H, W]);
  const param = (name: string, dims: number[], seed: number) => {
    const n = dims.reduce((a, d) => a * d, 1), v = weights(n, seed);
    if (type === DataType.FLOAT) return b.f32(name, v, dims);
    const t = halfTensor(b.fresh(name), dims, v, type);
    b.graph.initializer!.push(t);
    return t.name!;
  };
  const h = b.node("Relu", [
    b.node("Conv", [x, param("w", [3, C, 3, 3], 1), param("c", [3], 2)], { pads: [1, 1, 1, 1] }),
  ]);
  const flat = b.node("Flatten", [h], { axis: 1 });
  const logits = b.node("Gemm", [flat, param("fc", [K, 3 * H * W], 3), param("fb", [K], 4)], {
    transB: 1,
  });
  b.output(tail(b, logits), type, ["N", K], "out");
  return b.toBytes();
}

async function run(bytes: Uint8Array, n = 3) {
  const notes: string[] = [];
  const clf = await loadEnergyClassifier(bytes, {
    conventions: {},
    provider: "cpu",
    onNote: (m) => notes.push(m),
  });
  try {
    const out = await clf.energies(images(n, 5), n, [0, 3, 4], OBJECTIVES.crossEntropy);
    return { out, info: clf.info, notes };
  } finally {
    await clf.release();
  }
}

const softmaxTails: Array<[string, number, (b: GraphBuilder, z: string) => string, string]> = [
  ["Softmax (opset 13)", 13, (b, z) => b.node("Softmax", [z], { axis: -1 }), "softmax"],
  ["Softmax axis 1 (opset 11)", 11, (b, z) => b.node("Softmax", [z], { axis: 1 }), "softmax"],
  ["LogSoftmax", 13, (b, z) => b.node("LogSoftmax", [z], { axis: 1 }), "logsoftmax"],
  [
    "Log(Softmax), then Identity",
    13,
    (b, z) => b.node("Identity", [b.node("Log", [b.node("Softmax", [z], { axis: 1 })])]),
    "logsoftmax",
  ],
  [
    "exp(z - max z) / sum exp",
    13,
    (b, z) => {
      const e = b.node("Exp", [
        b.node("Sub", [z, b.node("ReduceMax", [z], { axes: [1], keepdims: 1 })]),
      ]);
      return b.node("Div", [e, b.node("ReduceSum", [e, b.i64("ax", [1])], { keepdims: 1 })]);
    },
    "softmax",
  ],
];

for (const [name, opset, tail, kind] of softmaxTails) {
  Deno.test(`a classifier ending in ${name}: the head reads the logits before it, says so`, async () => {
    const plain = await run(classifier((_, z) => z, { opset }));
    const probs = await run(classifier(tail, { opset }));
    assert.equal(plain.info.outputKind, "logits");
    assert.equal(probs.info.outputKind, kind);
    assert.equal(probs.notes.length, 1);
    assert.match(probs.notes[0], /output 'out' is .* the head uses '.*' as the logits/);
    assert.deepEqual(probs.out.logits, plain.out.logits);
    assert.deepEqual(probs.out.energyX, plain.out.energyX);
    assert.deepEqual(probs.out.grad, plain.out.grad);
  });
}

Deno.test("a final Sigmoid or a softmax over the batch axis is refused, saying why and what to pass", () => {
  const sig = classifier((b, z) => b.node("Sigmoid", [z]));
  assert.throws(
    () => compileEnergyHead(sig, { source: "sig.onnx" }),
    /^Error: sig\.onnx: output 'out' is a Sigmoid .*not softmax logits.*pass the logits output/s,
  );
  const batch = classifier((b, z) => b.node("Softmax", [z], { axis: 0 }));
  assert.throws(
    () => compileEnergyHead(batch, { source: "b.onnx" }),
    /b\.onnx: output 'out' is a Softmax .* not over the class axis.*export the classifier without/s,
  );
});

Deno.test("probabilities that cannot be traced back to logits are refused at load", async () => {
  // Softmax, then a Reshape to the same shape: no traceable softmax at the output.
  const hidden = classifier((b, z) =>
    b.node("Reshape", [b.node("Softmax", [z], { axis: 1 }), b.i64("s", [-1, K])])
  );
  await assert.rejects(
    () => loadEnergyClassifier(hidden, { conventions: {}, provider: "cpu" }),
    /holds probabilities \(every row is in \[0, 1\] and sums to 1\) on two random images, not logits.*--output NAME/s,
  );
  const logProbs = classifier((b, z) =>
    b.node("Reshape", [b.node("LogSoftmax", [z], { axis: 1 }), b.i64("s", [-1, K])])
  );
  await assert.rejects(
    () => loadEnergyClassifier(logProbs, { conventions: {}, provider: "cpu" }),
    /holds log-probabilities \(every row has logsumexp 0, so E\(x\) would be 0\)/,
  );
});

Deno.test("float16 and bfloat16 bit patterns decode exactly", () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x0001), 2 ** -24);
  assert.equal(halfToFloat(0x3555), 0.333251953125);
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.equal(bfloat16ToFloat(0x3f80), 1);
  assert.equal(bfloat16ToFloat(0xc2f7), -123.5);
});

for (const [name, type] of [["float16", FLOAT16], ["bfloat16", BFLOAT16]] as const) {
  Deno.test(`a ${name} classifier runs in float32: outputs equal the float32 copy's exactly`, async () => {
    const half = await run(classifier((_, z) => z, { type }));
    const full = await run(classifier((_, z) => z));
    assert.deepEqual(half.info.widenedFrom, [name]);
    assert.match(half.notes[0], new RegExp(`computes in ${name}; the head computes in float32`));
    assert.deepEqual(half.out.logits, full.out.logits);
    assert.deepEqual(half.out.energyXY, full.out.energyXY);
    assert.deepEqual(half.out.grad, full.out.grad);
    const { model } = buildEnergyHead(classifier((_, z) => z, { type }), {});
    const types = new Set((model.graph.initializer ?? []).map((t) => t.data_type));
    assert.ok(!types.has(type), `no ${name} tensor is left in the head`);
  });
}

Deno.test("an output exported without a shape or type is read as [N, K] by shape inference", async () => {
  const bytes = classifier((_, z) => z);
  const model = decodeModel(bytes);
  delete model.graph.output[0].type;
  const stripped = await run(encodeModel(model));
  const plain = await run(bytes);
  assert.equal(stripped.info.numClasses, K);
  assert.deepEqual(stripped.out.grad, plain.out.grad);
});
