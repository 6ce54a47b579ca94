// The energy head on the three real robust CIFAR-10 classifiers in ../shared/models (fixed
// batch 1, opset 9, normalised input): logits equal the classifier's own at batch 1 and 64;
// the gradient equals a float64 torch.autograd reference (weights/recipes/energy_head_parity.py)
// and agrees with central finite differences. tools/measure_energy_head.ts records the full
// numbers in tests/fixtures/energy_head_real_models.json.
import assert from "node:assert/strict";
import { compareLogits, directionalGradCheck } from "../lib/energy/check.ts";
import { loadEnergyClassifier, OBJECTIVES } from "../lib/energy/classifier.ts";
import { CIFAR10_NORMALISATION } from "../lib/energy/conventions.ts";
import { RandomStream } from "../lib/random.ts";
import { loadOnnx, sha256Hex } from "../lib/runtime/session.ts";
import { relMaxError } from "./_energy_models.ts";
import { f32 } from "./_base64.ts";

const MODELS = ["vnncomp21_resnet2b", "vnncomp21_resnet4b", "sri_resnet_a"];
const REF = new URL("./fixtures/autodiff/energy_real_models.ref.json", import.meta.url);

interface RealRef {
  x_shape: number[];
  x_b64: string;
  models: Record<string, {
    sha256: string;
    y: number[];
    coef: number[];
    e_star: number[];
    logits_b64: string;
    energy_x: number[];
    grad_b64: string;
  }>;
}

for (const name of MODELS) {
  Deno.test(`real model ${name}: logits = classifier's (batch 1, 64); grad = float64 autograd; FD`, async () => {
    const bytes = await Deno.readFile(new URL(`../../shared/models/${name}.onnx`, import.meta.url));
    const raw = await loadOnnx(bytes, { provider: "cpu" });
    const clf = await loadEnergyClassifier(bytes, {
      conventions: CIFAR10_NORMALISATION,
      provider: "cpu",
    });
    const shape = clf.info.inputShape, D = clf.imageSize, n = 64;
    const rng = new RandomStream(42);
    const x = new Float32Array(n * D).map(() => rng.uniform());
    const y = Array.from({ length: n }, (_, i) => i % 10);
    const batch64 = await clf.forward(x, n, y);
    const c64 = await compareLogits(raw, CIFAR10_NORMALISATION, x, n, shape, batch64.logits);
    assert.ok(c64.maxAbsDiff < 1e-4, `batch 64: max |logit diff| ${c64.maxAbsDiff}`);
    const x1 = x.subarray(0, D);
    const batch1 = await clf.forward(x1, 1, [0]);
    const c1 = await compareLogits(raw, CIFAR10_NORMALISATION, x1, 1, shape, batch1.logits);
    assert.ok(c1.maxAbsDiff < 1e-4, `batch 1: max |logit diff| ${c1.maxAbsDiff}`);

    const ref: RealRef = JSON.parse(await Deno.readTextFile(REF));
    const m = ref.models[name];
    assert.equal(
      sha256Hex(bytes),
      m.sha256,
      `${name}.onnx is not the file the reference was made from`,
    );
    const out = await clf.energies(
      f32(ref.x_b64),
      ref.x_shape[0],
      m.y,
      Float32Array.from(m.coef),
      m.e_star,
    );
    const gradErr = relMaxError(out.grad, f32(m.grad_b64));
    assert.ok(gradErr < 1e-4, `grad vs float64 autograd: relative error ${gradErr}`);
    assert.ok(relMaxError(out.energyX, m.energy_x) < 1e-5);

    const fd = await directionalGradCheck(clf, x1, 3, OBJECTIVES.joint, 0, { directions: 16 });
    assert.ok(fd.cosine > 0.999, `FD cosine ${fd.cosine}`);
    assert.ok(fd.relError < 1e-2, `FD relative error ${fd.relError}`);
    assert.ok(
      fd.alongGradRelError < 1e-2,
      `FD along the gradient: relative error ${fd.alongGradRelError}`,
    );
  });
}
