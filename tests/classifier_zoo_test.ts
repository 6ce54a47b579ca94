// The classifier zoo (issue 13, item 6): today's architecture families (ResNet, PreAct-ResNet
// with BatchNorm and GroupNorm, WideResNet-SiLU, ViT, ConvNeXt, MobileNetV2/V3, EfficientNet,
// DenseNet, Swin, VGG with PReLU/ELU/Mish/Softplus/SELU and reflect/replicate padding), random
// weights, exported by torch.onnx's legacy and dynamo exporters at opsets 11-25 (one saved
// with its weights in external data, as torch saves to a file), plus a classifier ending in
// Softmax, float16 and bfloat16 exports and a 1000-class 64x64 model (export_zoo.py). Each is
// compiled into an energy head exactly as a user's classifier is (loadEnergyClassifier with the
// fixture's conventions) and compared with float64 torch.autograd: logits, E(x,y), E(x) and the
// input gradients of the joint, logp and dual objectives, relative error <= 1e-4 (the fixture's
// `tolerance`). Two fixtures take images of another size through the head's bilinear resize
// (--input-size: 32 -> 224, 48 -> 32). A wrong gradient rule for any op in these graphs moves a
// gradient far past that bound (checked by mutating the LayerNormalization, PRelu and
// tanh-Gelu/HardSigmoid rules and the resize).
import assert from "node:assert/strict";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { buildEnergyHead } from "../lib/energy/head.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { fileURLToPath } from "node:url";
import { readZooFixture, ZOO_DIR, zooErrors, zooLoadOptions, zooNames } from "./_zoo.ts";

const names = zooNames();

function sizeOrZero(url: URL): number {
  try {
    return Deno.statSync(url).size;
  } catch {
    return 0;
  }
}

Deno.test("zoo: the fixtures cover every family, both exporters, the special cases", async () => {
  const fixtures = await Promise.all(names.map(async (n) => (await readZooFixture(n)).fx));
  const families = new Set(fixtures.map((f) => f.family));
  for (
    const family of [
      "resnet",
      "preact_resnet",
      "wide_resnet",
      "vit",
      "convnext",
      "mobilenetv3",
      "efficientnet",
      "densenet",
      "swin",
      "vgg",
    ]
  ) {
    assert.ok(families.has(family), `no zoo fixture of family ${family}`);
    for (const exporter of ["legacy", "dynamo"]) {
      assert.ok(
        fixtures.some((f) => f.family === family && f.exporter === exporter),
        `no ${exporter} export of ${family}`,
      );
    }
  }
  assert.ok(fixtures.some((f) => f.output_kind === "softmax"), "no classifier ending in Softmax");
  assert.ok(fixtures.some((f) => f.dtype === "float16"), "no float16 export");
  assert.ok(fixtures.some((f) => f.dtype === "bfloat16"), "no bfloat16 export");
  assert.ok(
    fixtures.some((f) => f.num_classes === 1000 && f.x_shape[2] === 64),
    "no 1000-class 64x64",
  );
  assert.ok(fixtures.some((f) => !f.dynamic_batch), "no fixed-batch export");
  assert.ok(
    fixtures.some((f) => f.input_size[0] === 224 && f.resize_from === 32),
    "no 224 from 32",
  );
  assert.ok(
    fixtures.some((f) => f.resize_from && f.resize_from > f.input_size[0]),
    "no downsizing",
  );
  assert.ok(fixtures.some((f) => f.conventions.mean), "no model expecting mean/std outside");
  const bytes = names.reduce(
    (s, n) =>
      s + Deno.statSync(new URL(`${n}.onnx`, ZOO_DIR)).size +
      Deno.statSync(new URL(`${n}.ref.json`, ZOO_DIR)).size +
      sizeOrZero(new URL(`${n}.onnx.data`, ZOO_DIR)),
    0,
  );
  assert.ok(
    bytes < 10e6,
    `zoo fixtures hold ${(bytes / 1e6).toFixed(1)} MB; keep them under 10 MB`,
  );
});

for (const name of names) {
  Deno.test(`zoo: ${name} matches float64 autograd`, async () => {
    const { fx } = await readZooFixture(name);
    const clf = await loadEnergyClassifier(
      fileURLToPath(new URL(fx.model, ZOO_DIR)),
      zooLoadOptions(fx),
    );
    try {
      assert.equal(clf.numClasses, fx.num_classes, "K read from the graph");
      assert.deepEqual(clf.info.inputShape, fx.x_shape.slice(1), "input shape read from the graph");
      const errs = await zooErrors(clf, fx);
      const bad = Object.entries(errs).filter(([, v]) => !(v <= fx.tolerance));
      assert.deepEqual(
        bad,
        [],
        `${name} (${fx.family}, ${fx.exporter} exporter, opset ${fx.opset}): relative errors ` +
          `above ${fx.tolerance}: ${JSON.stringify(Object.fromEntries(bad))}`,
      );
    } finally {
      await clf.release();
    }
  });
}

Deno.test("zoo: no head carries initializers nothing reads (onnxruntime warns about each)", async () => {
  const unused: string[] = [];
  for (const name of names) {
    const { fx, bytes } = await readZooFixture(name);
    const o = zooLoadOptions(fx);
    const { model } = buildEnergyHead(bytes, { ...fx.conventions, ...o, source: name });
    const n = GraphBuilder.fromModel(model).dropUnusedInitializers();
    if (n) unused.push(`${name}: ${n}`);
  }
  assert.deepEqual(unused, []);
});
