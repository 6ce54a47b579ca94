// Feature networks: a classifier rewritten to x -> (logits, features), on the real shared models.
import assert from "node:assert/strict";
import { CIFAR10_NORMALISATION } from "../lib/energy/conventions.ts";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import {
  buildFeatureModel,
  extractFeatures,
  FEATURE_NAMES,
  loadFeatureNetwork,
} from "../lib/metrics/feature_model.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, decodeModel } from "../lib/onnx/proto.ts";
import { tensorToFloat64 } from "../lib/onnx/tensor.ts";
import { RandomStream } from "../lib/random.ts";

const MODELS = [
  { file: "sri_resnet_a", dim: 100, last: "9" },
  { file: "vnncomp21_resnet4b", dim: 100, last: "linear2" },
];

/** n random images as CIFAR-layout bytes. */
function randomBytes(n: number, seed: number): Uint8Array {
  const r = new RandomStream(seed);
  return Uint8Array.from({ length: n * 3072 }, () => Math.floor(r.uniform() * 256));
}

for (const m of MODELS) {
  Deno.test(`${m.file}: penultimate features map to the logits through the final Gemm`, async () => {
    const bytes = await Deno.readFile(
      new URL(`../../shared/models/${m.file}.onnx`, import.meta.url),
    );
    const net = await loadFeatureNetwork(bytes, { ...CIFAR10_NORMALISATION, provider: "cpu" });
    assert.equal(net.info.layer, "penultimate");
    assert.deepEqual(net.model.inputs.map((i) => i.name), [FEATURE_NAMES.x]);
    assert.deepEqual(net.model.outputs.map((o) => o.name).sort(), ["features", "logits"]);
    const n = 5;
    const images = randomBytes(n, 3);
    const out = await extractFeatures(net, images, n, { batch: 2 });
    assert.equal(out.dim, m.dim);
    // logits = features W^T + b with the source model's final Gemm weights.
    const g = decodeModel(bytes).graph;
    const init = (name: string) => tensorToFloat64(g.initializer!.find((t) => t.name === name)!);
    const w = init(`${m.last}.weight`), b = init(`${m.last}.bias`);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 10; c++) {
        let s = b[c];
        for (let j = 0; j < m.dim; j++) s += out.features[i * m.dim + j] * w[c * m.dim + j];
        assert.ok(Math.abs(s - out.logits[i * 10 + c]) < 1e-4, `${s} vs ${out.logits[i * 10 + c]}`);
      }
    }
    // The logits are the energy head's (same conventions folded in).
    const head = await loadEnergyClassifier(bytes, {
      conventions: CIFAR10_NORMALISATION,
      provider: "cpu",
    });
    const x01 = Float32Array.from(images, (v) => v / 255);
    const ref = await head.forward(x01, n, new Array(n).fill(0));
    ref.logits.forEach((v, i) => assert.ok(Math.abs(v - out.logits[i]) < 1e-4));
    await head.release();
    await net.model.session.release();
  });
}

Deno.test("a named value becomes the features; an unknown name is an error", async () => {
  const bytes = await Deno.readFile(
    new URL("../../shared/models/sri_resnet_a.onnx", import.meta.url),
  );
  const { info } = buildFeatureModel(bytes, { ...CIFAR10_NORMALISATION, features: "100" });
  assert.equal(info.layer, "100");
  const net = await loadFeatureNetwork(bytes, {
    ...CIFAR10_NORMALISATION,
    features: "100",
    provider: "cpu",
  });
  const out = await extractFeatures(net, randomBytes(2, 4), 2);
  assert.equal(out.dim, 512);
  await net.model.session.release();
  assert.throws(
    () => buildFeatureModel(bytes, { ...CIFAR10_NORMALISATION, features: "pool9" }),
    /no value named 'pool9' is computed from the image; name a graph output \(output\)/,
  );
});

/** A 1x3x4x4 -> 1x2 classifier: Conv, Flatten, then MatMul + Add (head) or only pooling. */
function tinyClassifier(withMatMul: boolean): Uint8Array {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input("image", DataType.FLOAT, [1, 3, 4, 4]);
  const conv = b.node("Conv", [x, b.f32("w", new Array(2 * 3).fill(0.1), [2, 3, 1, 1])]);
  if (!withMatMul) {
    const pooled = b.node("GlobalAveragePool", [conv]);
    b.output(b.node("Flatten", [pooled], { axis: 1 }), DataType.FLOAT, [1, 2], "out");
    return b.toBytes();
  }
  const flat = b.node("Flatten", [conv], { axis: 1 }, { outputs: ["flat"] });
  const mm = b.node("MatMul", [flat, b.f32("fc", new Array(32 * 2).fill(0.01), [32, 2])]);
  b.output(b.node("Add", [mm, b.f32("bias", [0.5, -0.5])]), DataType.FLOAT, [1, 2], "out");
  return b.toBytes();
}

Deno.test("penultimate: the input of a final MatMul + bias Add; an error without one", async () => {
  const net = await loadFeatureNetwork(tinyClassifier(true), { provider: "cpu" });
  assert.equal(net.info.featureValue, "flat");
  const images = new Uint8Array(3 * 48).fill(255);
  const out = await extractFeatures(net, images, 3);
  assert.equal(out.dim, 32);
  out.features.forEach((v) => assert.ok(Math.abs(v - 0.3) < 1e-6));
  assert.ok(Math.abs(out.logits[0] - (0.3 * 32 * 0.01 + 0.5)) < 1e-6);
  await net.model.session.release();
  assert.throws(
    () => buildFeatureModel(tinyClassifier(false)),
    /logits come from GlobalAveragePool .* not from a final Gemm\/MatMul.*--features-output/,
  );
});
