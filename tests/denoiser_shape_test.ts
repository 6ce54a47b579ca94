// Issue 14, items 1, 3, 5, 6: image shape from the graph, output channels and timestep input
// checked at load, the ADM UNet in ONNX Runtime against PyTorch, and 64x64 runs end to end from
// models given by path (tiny random ADM UNet with a learned variance, mixture classifier).
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { decodePng } from "../lib/io/png.ts";
import { buildMixtureClassifier, gaussianMixture } from "../lib/models/mixture.ts";
import { inspectDenoiser, onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, decodeModel, encodeModel } from "../lib/onnx/proto.ts";
import { loadOnnx } from "../lib/runtime/session.ts";
import { linearSchedule } from "../lib/schedule.ts";
import { RandomStream } from "../lib/random.ts";
import { f32 } from "./_base64.ts";
import { cli } from "./_hardening.ts";

const root = new URL("../", import.meta.url).pathname;
const ADM64 = "tests/fixtures/adm/tiny_adm64.onnx";
const TINY_UNET = "weights/testing/tiny_unet.onnx";

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

/** x [N,C,H,W] and a timestep input -> out = x * t (+ C' - C zero channels); shapes as given. */
function probeGraph(
  opts: { hw: [number | string, number | string]; t: "scalar" | "vector"; outC?: number | string },
): Uint8Array {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input("x", DataType.FLOAT, ["N", 3, ...opts.hw]);
  const t = b.input("t", DataType.FLOAT, opts.t === "scalar" ? [] : ["N"]);
  const tt = opts.t === "scalar" ? t : b.node("Reshape", [t, b.i64("shape4", [-1, 1, 1, 1])]);
  let y = b.node("Mul", [x, tt]);
  if (opts.outC !== undefined) {
    y = b.node("Concat", [y, b.node("Mul", [x, b.f32("zero", 0)])], { axis: 1 });
  }
  b.output(y, DataType.FLOAT, ["N", opts.outC ?? 3, ...opts.hw], "out");
  return b.toBytes();
}

Deno.test("ADM UNet (tiny, 64x64, learned sigma): ONNX Runtime equals PyTorch", async () => {
  const ref = JSON.parse(await Deno.readTextFile(`${root}tests/fixtures/adm/tiny_adm64.ref.json`));
  const m = await loadOnnx(`${root}${ADM64}`, { provider: "cpu" });
  const setup = await inspectDenoiser(m, { spec: ref.schedule });
  assert.deepEqual(setup.shape, { c: 3, h: 64, w: 64 });
  assert.deepEqual(setup.output, { prediction: "epsilon", variance: "learned_range" });
  assert.equal(setup.timestep, "rescaled");
  const x = f32(ref.x), want = f32(ref.out);
  const res = await m.session.run({
    x: new ort.Tensor("float32", x, [1, 3, 64, 64]),
    t: new ort.Tensor("float32", Float32Array.from(ref.t), [1]),
  });
  const got = res.out.data as Float32Array;
  assert.deepEqual(res.out.dims, ref.shape);
  let err = 0;
  for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  assert.ok(err < 1e-4, `max abs error ${err}`);
});

Deno.test("shape comes from the graph; output channels are checked against the parameterisation", async () => {
  const m = await loadOnnx(`${root}${ADM64}`, { provider: "cpu" });
  const inferred = await inspectDenoiser(m);
  assert.deepEqual(inferred.shape, { c: 3, h: 64, w: 64 });
  assert.equal(inferred.output.variance, "learned_range");
  assert.match(inferred.notes.join(" "), /6 channels for 3 image channels.*learned variance/);
  await assert.rejects(
    () => inspectDenoiser(m, { spec: { type: "linear", variance_type: "fixed" } }),
    /tiny_adm64\.onnx outputs 6 channels.*needs 3.*learned-variance model/s,
  );
  await assert.rejects(
    () => inspectDenoiser(m, { declaredShape: [3, 32, 32] }),
    /declares input shape \[3,32,32\].*tiny_adm64\.onnx.*\[N,3,64,64\]/s,
  );
  await assert.rejects(
    () => inspectDenoiser(m, { imageSize: [32, 32] }),
    /--image-size 32x32 disagrees with .*tiny_adm64\.onnx/,
  );
  const unet = await loadOnnx(`${root}${TINY_UNET}`, { provider: "cpu" });
  await assert.rejects(
    () =>
      inspectDenoiser(unet, {
        spec: { type: "linear", variance_type: "learned_range" },
      }),
    /outputs 3 channels.*needs 6.*no variance channels/s,
  );
  await assert.rejects(
    () => inspectDenoiser(unet, { spec: { type: "cosine", T: 4000, timestep: "rescaled" } }),
    /int64 timestep 't'.*'rescaled'.*T = 4000/,
  );
});

Deno.test("dynamic H/W needs --image-size; symbolic output channels are probed; scalar t is fed", async () => {
  const dyn = await loadOnnx(probeGraph({ hw: ["H", "W"], t: "scalar", outC: "C2" }), {
    provider: "cpu",
    source: "dyn.onnx",
  });
  await assert.rejects(
    () => inspectDenoiser(dyn),
    /dyn\.onnx has a dynamic image size.*--image-size HxW/s,
  );
  const setup = await inspectDenoiser(dyn, {
    imageSize: [6, 10],
    spec: { type: "cosine", T: 4000, timestep: "rescaled", prediction_type: "sample" },
  });
  assert.deepEqual(setup.shape, { c: 3, h: 6, w: 10 });
  assert.deepEqual(setup.output, { prediction: "sample", variance: "learned_range" });
  assert.equal(setup.io.tScalar, true);
  // the network gets t * 1000 / T as a scalar: out = x * tv is its x0 prediction
  const den = onnxDenoiser(dyn, 2, setup);
  const n = 3, per = 3 * 6 * 10, x = new Float32Array(n * per);
  new RandomStream(1).fillNormal(x);
  const s = linearSchedule(4000, 2.5e-5, 0.005);
  const ctx = { n, shape: setup.shape, schedule: s } as unknown as Parameters<typeof den>[2];
  const eps = await den(x, 3999, ctx);
  const abar = s.alphasCumprod[3999], a = Math.sqrt(abar), sg = Math.sqrt(1 - abar);
  for (let i = 0; i < x.length; i += 17) {
    const x0 = Math.fround(x[i] * 999.75);
    assert.ok(Math.abs(eps[i] - (x[i] - a * x0) / sg) < 1e-3 * (1 + Math.abs(eps[i])), `i ${i}`);
  }
  assert.equal((ctx as { v?: Float32Array }).v?.length, x.length);
  // the pixel cap splits a batch into single-image runs without changing anything
  const one = await onnxDenoiser(dyn, 64, setup, 6 * 10)(x, 3999, { ...ctx });
  assert.deepEqual(one, eps);
});

Deno.test("64x64 sample from an ADM UNet given by path: learned variance read, 64x64 PNGs", async () => {
  const dir = await Deno.makeTempDir();
  const r = await cli(["sample", "--model", ADM64, "--n", "2", "--steps", "3", "--out", dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /outputs 6 channels for 3 image channels/);
  for (const s of [0, 1]) {
    const png = decodePng(await Deno.readFile(`${dir}/images/${s}.png`));
    assert.deepEqual([png.width, png.height], [64, 64]);
  }
  const run = JSON.parse(await Deno.readTextFile(`${dir}/run.json`));
  assert.deepEqual(run.config.shape, [3, 64, 64]);
  assert.deepEqual(run.config.output, { prediction: "epsilon", variance: "learned_range" });
  // DDPM would default to the learned variance; a fixed one is refused for nothing
  const bad = await cli([
    "sample",
    "--model",
    TINY_UNET,
    "--variance",
    "learned",
    "--out",
    `${dir}/x`,
  ]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--variance learned needs a model that outputs its variance/);
  assert.equal(await exists(`${dir}/x`), false);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("non-square images of a dynamic-size model flow through sampling and PNG output", async () => {
  const dir = await Deno.makeTempDir();
  const model = `${dir}/dyn.onnx`;
  await Deno.writeFile(model, probeGraph({ hw: ["H", "W"], t: "vector" }));
  const refused = await cli(["sample", "--model", model, "--out", `${dir}/a`]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /dyn\.onnx has a dynamic image size.*--image-size/s);
  assert.equal(await exists(`${dir}/a`), false);
  const r = await cli([
    "sample",
    "--model",
    model,
    "--image-size",
    "12x20",
    "--n",
    "3",
    "--steps",
    "2",
    "--out",
    `${dir}/b`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const png = decodePng(await Deno.readFile(`${dir}/b/images/2.png`));
  assert.deepEqual([png.width, png.height], [20, 12]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("64x64 guided grid: ADM UNet and a 64x64 classifier, both given by path", async () => {
  const dir = await Deno.makeTempDir();
  const shape = { c: 3, h: 64, w: 64 }, D = 3 * 64 * 64, K = 3;
  const rng = new RandomStream(3);
  const means = Array.from({ length: K * D }, () => 0.4 * rng.normal());
  const clf = `${dir}/clf64.onnx`;
  await Deno.writeFile(
    clf,
    buildMixtureClassifier(gaussianMixture(means, [0.3, 0.3, 0.4], [0.05, 0.05, 0.05]), shape),
  );
  const r = await cli([
    "guide",
    "--model",
    ADM64,
    "--classifier",
    clf,
    "--range",
    "pm1",
    "--class",
    "0,2",
    "--seeds",
    "0-1",
    "--steps",
    "3",
    "--evaluator",
    "none",
    "--out",
    `${dir}/g`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const grid = decodePng(await Deno.readFile(`${dir}/g/grid.png`));
  const img = decodePng(await Deno.readFile(`${dir}/g/images/class2/1.png`));
  assert.deepEqual([img.width, img.height], [64, 64]);
  assert.ok(grid.width >= 2 * 64 && grid.height >= 2 * 64, `grid ${grid.width}x${grid.height}`);
  const run = JSON.parse(await Deno.readTextFile(`${dir}/g/run.json`));
  assert.deepEqual(run.config.shape, [3, 64, 64]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a 64x64 denoiser with a 32x32 classifier is refused before anything is written", async () => {
  const dir = await Deno.makeTempDir();
  const r = await cli([
    "guide",
    "--model",
    ADM64,
    "--classifier",
    "cifar10-resnet16-l2-0.5",
    "--class",
    "0",
    "--seeds",
    "0",
    "--steps",
    "2",
    "--evaluator",
    "none",
    "--out",
    `${dir}/g`,
  ]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /64/);
  assert.match(r.stderr, /32/);
  assert.equal(await exists(`${dir}/g`), false, r.stderr);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a manifest ADM entry declares its parameterisation and timestep convention", async () => {
  const dir = await Deno.makeTempDir();
  const r = await cli([
    "sample",
    "--model",
    "adm-tiny64",
    "--n",
    "1",
    "--steps",
    "2",
    "--out",
    dir,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /read as epsilon \+ learned variance/); // declared, not inferred
  const run = JSON.parse(await Deno.readTextFile(`${dir}/run.json`));
  assert.deepEqual(run.config.output, { prediction: "epsilon", variance: "learned_range" });
  assert.equal(run.config.timestep, "rescaled");
  const bad = await cli([
    "sample",
    "--model",
    "adm-tiny64",
    "--timestep",
    "index",
    "--out",
    `${dir}/x`,
  ]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--prediction\/--timestep are for models given by path/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a model whose weights live in an external .data file loads by path, and says so when it cannot", async () => {
  // move every initializer of the tiny ADM into one external file, as export_adm.py does > 2 GB
  const model = decodeModel(await Deno.readFile(`${root}${ADM64}`));
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const t of model.graph.initializer ?? []) {
    const raw = t.raw_data;
    if (!raw || raw.length < 1024) continue;
    parts.push(raw);
    const ext = t as typeof t & {
      external_data?: { key: string; value: string }[];
      data_location?: number;
    };
    ext.external_data = [
      { key: "location", value: "ext.onnx.data" },
      { key: "offset", value: String(offset) },
      { key: "length", value: String(raw.length) },
    ];
    ext.data_location = 1;
    delete t.raw_data;
    offset += raw.length;
  }
  const dir = await Deno.makeTempDir();
  await Deno.writeFile(`${dir}/ext.onnx`, encodeModel(model));
  const data = new Uint8Array(offset);
  parts.reduce((o, p) => (data.set(p, o), o + p.length), 0);
  await Deno.writeFile(`${dir}/ext.onnx.data`, data);
  const ref = JSON.parse(await Deno.readTextFile(`${root}tests/fixtures/adm/tiny_adm64.ref.json`));
  const m = await loadOnnx(`${dir}/ext.onnx`, { provider: "cpu" });
  const res = await m.session.run({
    x: new ort.Tensor("float32", f32(ref.x), [1, 3, 64, 64]),
    t: new ort.Tensor("float32", Float32Array.from(ref.t), [1]),
  });
  const got = res.out.data as Float32Array, want = f32(ref.out);
  let err = 0;
  for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  assert.ok(err < 1e-4, `max abs error ${err}`);
  const r = await cli([
    "sample",
    "--model",
    `${dir}/ext.onnx`,
    "--n",
    "1",
    "--steps",
    "2",
    "--out",
    `${dir}/o`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  await Deno.rename(`${dir}/ext.onnx.data`, `${dir}/elsewhere.data`);
  const bad = await cli(["sample", "--model", `${dir}/ext.onnx`, "--out", `${dir}/o2`]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /keeps its weights in ext\.onnx\.data, which cannot be read/);
  assert.equal(await exists(`${dir}/o2`), false);
  await Deno.remove(dir, { recursive: true });
});
