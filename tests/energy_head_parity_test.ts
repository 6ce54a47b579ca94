// Energy-head gradients against torch.autograd on small PyTorch classifiers exported to ONNX
// (fixtures from weights/recipes/energy_head_parity.py: Conv strides/pads/dilation/groups,
// BatchNorm, ReLU/LeakyReLU/Sigmoid/Tanh/Softplus/ELU, Max/Avg/Global pooling, Flatten/Reshape,
// Gemm, residual Add, Concat, Transpose; opsets 9, 13, 17).
import assert from "node:assert/strict";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import type { InputConventions } from "../lib/energy/head.ts";
import { relMaxError } from "./_energy_models.ts";
import { f32 } from "./_base64.ts";

interface ParityFixture {
  model: string;
  opset: number;
  conventions: InputConventions;
  x_shape: number[];
  x_b64: string;
  y: number[];
  coef: number[];
  e_star: number[];
  logits_b64: string;
  energy_xy: number[];
  energy_x: number[];
  grad_b64: string;
}

const DIR = new URL("./fixtures/autodiff/", import.meta.url);

/** sqrt(sum (a-b)^2 / sum b^2). */
function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

for (const name of ["convnet_op9", "resnet_op13", "mixed_op17"]) {
  Deno.test(`PyTorch parity: ${name}`, async () => {
    const fx: ParityFixture = JSON.parse(
      await Deno.readTextFile(new URL(`energy_${name}.ref.json`, DIR)),
    );
    const bytes = await Deno.readFile(new URL(fx.model, DIR));
    const clf = await loadEnergyClassifier(bytes, { conventions: fx.conventions, provider: "cpu" });
    const n = fx.x_shape[0];
    const out = await clf.energies(f32(fx.x_b64), n, fx.y, Float32Array.from(fx.coef), fx.e_star);
    const errs = {
      logits: relMaxError(out.logits, f32(fx.logits_b64)),
      energyXY: relMaxError(out.energyXY, fx.energy_xy),
      energyX: relMaxError(out.energyX, fx.energy_x),
      grad: relMaxError(out.grad, f32(fx.grad_b64)),
      gradL2: relL2(out.grad, f32(fx.grad_b64)),
    };
    for (const [k, v] of Object.entries(errs)) {
      assert.ok(v < 1e-4, `${name}: ${k} relative error ${v}`);
    }
  });
}
