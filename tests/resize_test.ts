// The head's bilinear resize (lib/energy/resize.ts, --input-size, issue 13 item 5): torch's
// F.interpolate(mode="bilinear", align_corners=False, antialias=False) matrices and a 2-D resize
// with its vector-Jacobian product (tests/fixtures/resize/bilinear_torch.json, written by
// weights/recipes/export_zoo.py), the graph prefix's gradient against float64 finite
// differences, and the refusals: images of another size without --input-size, an --input-size
// that contradicts the graph, a compiled head of another size. The zoo (classifier_zoo_test.ts)
// holds the end-to-end cases: a 224 classifier on 32x32 images and a 32 one on 64x64 images.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import fc from "fast-check";
import { appendVjp } from "../lib/autodiff/vjp.ts";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { buildEnergyHead, compileEnergyHead } from "../lib/energy/head.ts";
import {
  appendBilinearResize,
  bilinearMatrix,
  bilinearResize,
  parseInputSize,
} from "../lib/energy/resize.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, decodeModel, encodeModel } from "../lib/onnx/proto.ts";
import { RandomStream } from "../lib/random.ts";
import { linearHeadClosedForm, tinyLinear } from "./_energy_models.ts";
import { checkVjp } from "./_vjp_check.ts";
import { relError, ZOO_DIR } from "./_zoo.ts";

interface TorchResize {
  matrices: Record<string, number[]>;
  x: number[];
  y: number[];
  g: number[];
  dx: number[];
}

const torchRef: TorchResize = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/resize/bilinear_torch.json", import.meta.url)),
);

Deno.test("resize: the 1-D matrices are torch's (bilinear, align_corners=False)", () => {
  for (const [key, want] of Object.entries(torchRef.matrices)) {
    const [n, m] = key.split("->").map(Number);
    const got = bilinearMatrix(n, m);
    assert.equal(got.length, want.length, key);
    assert.ok(relError(got, want) < 1e-12, `${key}: ${relError(got, want)}`);
  }
});

Deno.test("resize: rows are convex weights, equal sizes give the identity (property)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 40 }), (n, m) => {
      const r = bilinearMatrix(n, m);
      for (let i = 0; i < m; i++) {
        let s = 0;
        for (let j = 0; j < n; j++) {
          assert.ok(r[i * n + j] >= 0 && r[i * n + j] <= 1);
          s += r[i * n + j];
        }
        assert.ok(Math.abs(s - 1) < 1e-12, `row ${i} of ${n}->${m} sums to ${s}`);
      }
      if (n === m) {
        r.forEach((v, k) => assert.equal(v, Math.floor(k / n) === k % n ? 1 : 0));
      }
    }),
    { numRuns: 60 },
  );
});

Deno.test("resize: typed-array and graph resizes and the graph's VJP match torch", async () => {
  const spec = { from: [5, 7] as [number, number], to: [9, 4] as [number, number] };
  const x = Float32Array.from(torchRef.x);
  assert.ok(relError(bilinearResize(x, 2, 3, spec), torchRef.y) < 1e-6);

  const b = new GraphBuilder({ opset: 17 });
  const xin = b.input("x", DataType.FLOAT, [2, 3, 5, 7]);
  const gin = b.input("g", DataType.FLOAT, [2, 3, 9, 4]);
  const y = appendBilinearResize(b, xin, spec);
  const dx = appendVjp(b, y, gin, xin);
  b.output(y, DataType.FLOAT, [2, 3, 9, 4], "y");
  b.output(dx, DataType.FLOAT, [2, 3, 5, 7], "dx");
  const session = await ort.InferenceSession.create(b.toBytes(), { executionProviders: ["cpu"] });
  const out = await session.run({
    x: new ort.Tensor("float32", x, [2, 3, 5, 7]),
    g: new ort.Tensor("float32", Float32Array.from(torchRef.g), [2, 3, 9, 4]),
  });
  assert.ok(relError(out.y.data as Float32Array, torchRef.y) < 1e-6);
  assert.ok(relError(out.dx.data as Float32Array, torchRef.dx) < 1e-6);
});

for (
  const [from, to] of [[[32, 32], [224, 224]], [[64, 48], [32, 32]], [[5, 7], [9, 4]]] as const
) {
  Deno.test(`resize: ${from.join("x")} -> ${to.join("x")} gradient vs float64 finite differences`, async () => {
    await checkVjp({
      build: (b, x) =>
        appendBilinearResize(b, x, { from: [...from], to: [...to] }, undefined, "double"),
      xDims: [1, 2, ...from],
      precision: "double",
      seed: from[0] * 1000 + to[0],
      directions: 3,
    });
  });
}

Deno.test("resize: parseInputSize reads H or H,W and names the flag on bad input", () => {
  assert.deepEqual(parseInputSize("224"), [224, 224]);
  assert.deepEqual(parseInputSize("64,48"), [64, 48]);
  for (const bad of ["", "0", "-3", "2.5", "1,2,3", "a", "64,"]) {
    assert.throws(() => parseInputSize(bad), /--input-size '.*' is invalid: .*H or H,W/);
  }
});

const zoo64 = fileURLToPath(new URL("resnet_imagenet64_k1000_dynamo_op18.onnx", ZOO_DIR));

Deno.test("resize: a classifier of another size is refused without --input-size, naming both sizes", async () => {
  const bytes = await Deno.readFile(zoo64);
  assert.throws(
    () => buildEnergyHead(bytes, { source: "c64.onnx", imageSize: [32, 32] }),
    /c64\.onnx \(input 'input'\) takes 64x64 images but the images are 32x32 images; pass --input-size 64 to/,
  );
  assert.throws(
    () => buildEnergyHead(bytes, { source: "c64.onnx", imageSize: [32, 32], inputSize: [96, 96] }),
    /takes 64x64 images but --input-size is 96x96/,
  );
  // same size: no resize; another size with --input-size: the head takes the images' size
  assert.equal(buildEnergyHead(bytes, { imageSize: [64, 64] }).info.resize, null);
  const { info } = buildEnergyHead(bytes, { imageSize: [32, 32], inputSize: [64, 64] });
  assert.deepEqual(info.inputShape, [3, 32, 32]);
  assert.deepEqual(info.resize, { from: [32, 32], to: [64, 64], mode: "bilinear-half-pixel" });
});

Deno.test("resize: a compiled head keeps its resize; images of another size are refused", async () => {
  const head = compileEnergyHead(await Deno.readFile(zoo64), {
    imageSize: [32, 32],
    inputSize: [64, 64],
  });
  const clf = await loadEnergyClassifier(head, { provider: "cpu", imageSize: [32, 32] });
  try {
    assert.deepEqual(clf.info.resize?.to, [64, 64]);
    const x = new Float32Array(2 * 3 * 32 * 32).map((_, i) => (i % 17) / 17);
    const out = await clf.forward(x, 2, [0, 999]);
    assert.equal(out.logits.length, 2 * 1000);
    // the same logits as the raw classifier on the typed-array resize of the images
    const raw = await loadEnergyClassifier(zoo64, { provider: "cpu", conventions: {} });
    const ref = await raw.forward(bilinearResize(x, 2, 3, { from: [32, 32], to: [64, 64] }), 2, [
      0,
      1,
    ]);
    await raw.release();
    assert.ok(relError(out.logits, ref.logits) < 1e-5, `${relError(out.logits, ref.logits)}`);
  } finally {
    await clf.release();
  }
  await assert.rejects(
    () => loadEnergyClassifier(head, { provider: "cpu", imageSize: [48, 48] }),
    /energy head for 32x32 images but the images are 48x48 images/,
  );
});

Deno.test("resize: NHWC classifier, non-square sizes, pm1 and mean/std: the head's closed form", async () => {
  const m = tinyLinear({ C: 3, H: 6, W: 10, K: 5, layout: "nhwc", seed: 9 });
  const conv = {
    layout: "nhwc" as const,
    range: "pm1" as const,
    mean: [0.1, 0.2, 0.3],
    std: [0.5, 0.6, 0.7],
  };
  const from: [number, number] = [4, 5], to: [number, number] = [6, 10];
  const clf = await loadEnergyClassifier(m.bytes, {
    conventions: conv,
    provider: "cpu",
    imageSize: from,
    inputSize: to,
  });
  try {
    const n = 2, rng = new RandomStream(4);
    const x = new Float32Array(n * 3 * 4 * 5).map(() => rng.uniform());
    const y = [1, 4], coef = [1, -1, 0, 1, 0, 0.5], eStar = [0, 3];
    const out = await clf.energies(x, n, y, Float32Array.from(coef), eStar);
    // closed form on the resized images, gradient pulled back through R_h^T g R_w
    const big = bilinearResize(x, n, 3, { from, to });
    const ref = linearHeadClosedForm(m, conv, big, n, y, coef, eStar);
    assert.ok(
      relError(out.logits, ref.logits) < 1e-5,
      `logits ${relError(out.logits, ref.logits)}`,
    );
    const rh = bilinearMatrix(4, 6), rw = bilinearMatrix(5, 10);
    const want = new Float64Array(n * 3 * 4 * 5);
    for (let p = 0; p < n * 3; p++) {
      for (let i = 0; i < 6; i++) {
        for (let j = 0; j < 10; j++) {
          const g = ref.grad[p * 60 + i * 10 + j];
          for (let r = 0; r < 4; r++) {
            for (let c = 0; c < 5; c++) {
              want[p * 20 + r * 5 + c] += rh[i * 4 + r] * g * rw[j * 5 + c];
            }
          }
        }
      }
    }
    assert.ok(relError(out.grad, want) < 1e-5, `grad ${relError(out.grad, want)}`);
  } finally {
    await clf.release();
  }
});

Deno.test("resize: a classifier with symbolic H, W runs at the images' size or at --input-size", async () => {
  const model = decodeModel(
    await Deno.readFile(new URL("resnet_dynamo_op18.onnx", ZOO_DIR)),
  );
  const dims = model.graph.input[0].type!.tensor_type!.shape!.dim!;
  dims[2] = { dim_param: "H" };
  dims[3] = { dim_param: "W" };
  const bytes = encodeModel(model);
  assert.throws(() => buildEnergyHead(bytes, {}), /symbolic image dimensions/);
  const native = buildEnergyHead(bytes, { imageSize: [48, 40] }).info;
  assert.deepEqual([native.inputShape, native.resize], [[3, 48, 40], null]);
  const resized = buildEnergyHead(bytes, { imageSize: [48, 40], inputSize: [32, 32] }).info;
  assert.deepEqual(resized.inputShape, [3, 48, 40]);
  assert.deepEqual(resized.resize?.to, [32, 32]);
  const clf = await loadEnergyClassifier(bytes, {
    conventions: {},
    provider: "cpu",
    imageSize: [48, 40],
    inputSize: [32, 32],
  });
  try {
    const x = new Float32Array(2 * 3 * 48 * 40).map((_, i) => (i % 13) / 13);
    const out = await clf.energies(x, 2, [0, 1], [1, 0, 0]);
    assert.ok(out.grad.every(Number.isFinite) && out.grad.some((v) => v !== 0));
  } finally {
    await clf.release();
  }
});
