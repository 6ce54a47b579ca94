// Gradients through the denoiser (issue 15, item 1): the composed graph x_t -> denoiser ->
// x0_hat -> classifier -> energy, differentiated by lib/autodiff, against float64
// torch.autograd through the same ONNX graphs (weights/recipes/through_denoiser_reference.py),
// on the tiny UNet and on the default DDPM, with the default robust classifier.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  buildThroughDenoiser,
  loadDenoiserPullback,
  loadThroughDenoiser,
} from "../lib/energy/through_denoiser.ts";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { decodeModel } from "../lib/onnx/proto.ts";

interface Ref {
  denoiser: string;
  classifier: string;
  n: number;
  t: number[];
  sqrt_abar: number[];
  y: number[];
  coef: number[][];
  e_star: number[];
  x_t: string;
  eps: string;
  energy_xy: number[];
  energy_x: number[];
  grad: string;
}

const ROOT = new URL("../", import.meta.url);
const FIX = new URL("./fixtures/through_denoiser/", import.meta.url);

function decode(b64: string, type: "f32" | "f64"): Float64Array {
  const bytes = Buffer.from(b64, "base64");
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return Float64Array.from(type === "f32" ? new Float32Array(buf) : new Float64Array(buf));
}

/** ||a - b|| / ||b|| over the image of index k. */
function relL2(a: ArrayLike<number>, b: ArrayLike<number>, k: number, per: number): number {
  let num = 0, den = 0;
  for (let i = k * per; i < (k + 1) * per; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

async function checkCase(name: string): Promise<void> {
  const ref: Ref = JSON.parse(await Deno.readTextFile(new URL(`${name}.ref.json`, FIX)));
  const den = await Deno.readFile(new URL(ref.denoiser, ROOT));
  const clf = await Deno.readFile(new URL(ref.classifier, ROOT));
  const model = await loadThroughDenoiser(den, clf, { conventions: { range: "01" } });
  const x = Float32Array.from(decode(ref.x_t, "f32"));
  const per = x.length / ref.n;
  const gradRef = decode(ref.grad, "f64");
  const epsRef = decode(ref.eps, "f32");
  // The graph takes one t per call (as the samplers do): run each image at its own t.
  for (let k = 0; k < ref.n; k++) {
    const abar = ref.sqrt_abar[k] ** 2;
    const out = await model.run(
      x.subarray(k * per, (k + 1) * per),
      1,
      ref.t[k],
      abar,
      [ref.y[k]],
      ref.coef[k],
      ref.e_star[k],
    );
    const errGrad = relL2(out.grad, gradRef.subarray(k * per), 0, per);
    const errEps = relL2(out.eps, epsRef.subarray(k * per), 0, per);
    console.log(`${name} image ${k} t=${ref.t[k]}: grad rel L2 error ${errGrad.toExponential(2)}`);
    assert.ok(errEps <= 1e-5, `${name} image ${k}: eps rel error ${errEps}`);
    assert.ok(errGrad <= 1e-4, `${name} image ${k} (t=${ref.t[k]}): grad rel error ${errGrad}`);
    assert.ok(
      Math.abs(out.energyXY[0] - ref.energy_xy[k]) <= 1e-4 * (1 + Math.abs(ref.energy_xy[k])),
    );
    assert.ok(Math.abs(out.energyX[0] - ref.energy_x[k]) <= 1e-4 * (1 + Math.abs(ref.energy_x[k])));
  }
  await model.release();

  // The pull-back graph (denoiser only) with the classifier's x0-space gradient as cotangent
  // gives the same gradient: d L(x0_hat(x_t)) / d x_t = J^T grad_x0 L.
  const pb = await loadDenoiserPullback(den);
  const head = await loadEnergyClassifier(clf, { conventions: { range: "01" } });
  for (let k = 0; k < ref.n; k++) {
    const xk = x.subarray(k * per, (k + 1) * per);
    const abar = ref.sqrt_abar[k] ** 2;
    const zero = await pb.pullback(xk, 1, ref.t[k], abar, new Float32Array(per));
    assert.ok(zero.grad.every((v) => v === 0), "J^T 0 = 0");
    const at = await head.fromDiffusionSpace(zero.x0, 1, [ref.y[k]], ref.coef[k], ref.e_star[k]);
    const out = await pb.pullback(xk, 1, ref.t[k], abar, at.grad);
    const err = relL2(out.grad, gradRef.subarray(k * per), 0, per);
    console.log(`${name} image ${k}: pull-back grad rel L2 error ${err.toExponential(2)}`);
    assert.ok(err <= 1e-4, `${name} image ${k}: pull-back grad rel error ${err}`);
  }
  await pb.release();
  await head.release();
}

Deno.test("through the tiny UNet: d energy(x0_hat(x_t)) / d x_t matches float64 autograd", async () => {
  await checkCase("tiny_unet");
});

Deno.test("through the default DDPM: d energy(x0_hat(x_t)) / d x_t matches float64 autograd", async () => {
  await checkCase("ddpm_small");
});

Deno.test("the composed graph names a missing rule and refuses a non-denoiser", async () => {
  const clf = await Deno.readFile(
    new URL("weights/classifiers/cifar10-resnet16-l2-0.5.onnx", ROOT),
  );
  assert.throws(
    () => buildThroughDenoiser(clf, clf, { conventions: {} }),
    /is not a denoiser: expected inputs \(x float32\[N,C,H,W\], t/,
  );
  // The inlined parts keep their own names under a prefix, and the inputs are the contract's.
  const den = await Deno.readFile(new URL("weights/testing/tiny_unet.onnx", ROOT));
  const { model } = buildThroughDenoiser(den, clf, { conventions: {} });
  assert.deepEqual(
    model.graph.input.map((v) => v.name),
    ["x_t", "t", "sqrt_abar", "sqrt_one_minus_abar", "y", "coef", "e_star"],
  );
  assert.ok(decodeModel(den).graph.node.length < model.graph.node.length);
  assert.ok(model.graph.node.some((n) => n.name?.startsWith("denoiser/")));
});
