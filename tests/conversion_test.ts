// Checkpoint converters (weights/recipes/export_{diffusers_unet,robustness_resnet,fid_inception}.py):
// what CI can check without the real (or the full-size random) models. Fixtures come from
// weights/recipes/verify_*.py (tests/fixtures/conversion/):
// - schedules.json: diffusers scheduler configs -> schedule spec; abar against diffusers' values;
// - tiny_ddpm_unet.onnx: a small UNet2DModel with the ddpm-cifar10-32 block structure, converted
//   from a DDPMPipeline.save_pretrained folder; ORT must reproduce PyTorch's eps;
// - tiny_robustness_resnet{18,50}.onnx: robustness-library ResNets at small width, converted from
//   AttackerModel checkpoints; ORT logits and energy-head gradients against float64 torch.autograd;
// - *_random.ref.json of the full-size random-weight models (ddpm-cifar10-32, robustness
//   ResNet-50, FID Inception): well-formedness always; with CONVERSION_MODELS_DIR pointing at
//   the folder verify_*.py --full wrote the ONNX files to, ORT against the fixtures as well.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { scheduleFromSpec, type ScheduleSpec } from "../lib/schedule.ts";
import { loadOnnx, runOnnx, sha256Hex } from "../lib/runtime/session.ts";
import { denoiserIO, onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { toClassifierInput } from "../lib/energy/conventions.ts";
import { loadFeatureNetwork } from "../lib/metrics/feature_model.ts";
import type { ManifestEntry } from "../lib/weights.ts";
import { relMaxError } from "./_energy_models.ts";

const DIR = new URL("./fixtures/conversion/", import.meta.url);

function bytesOf(b64: string): Uint8Array {
  const b = Buffer.from(b64, "base64");
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
function f32(b64: string): Float32Array {
  const b = bytesOf(b64);
  return new Float32Array(b.slice().buffer);
}
function f64(b64: string): Float64Array {
  const b = bytesOf(b64);
  return new Float64Array(b.slice().buffer);
}
async function fixture<T>(name: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(new URL(name, DIR))) as T;
}
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.abs(b[i]));
  return m;
}
const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** A manifest entry as the converters write it: the fields lib/weights.ts reads. */
function assertManifestEntry(e: ManifestEntry, kind: ManifestEntry["kind"]): void {
  assert.equal(e.kind, kind);
  assert.match(e.file, /\.onnx$/);
  assert.match(e.sha256, /^[0-9a-f]{64}$/);
  assert.ok(e.input.range === "01" || e.input.range === "pm1");
  assert.equal(e.input.layout, "nchw");
  assert.equal(e.input.shape.length, 3);
  assert.ok(typeof e.source === "string" && e.source.length > 0);
  if (kind === "denoiser") scheduleFromSpec(e.schedule as ScheduleSpec);
  if (kind === "classifier") {
    assert.equal(e.input.mean?.length, 3);
    assert.equal(e.input.std?.length, 3);
  }
}

// ---------------------------------------------------------------- schedules

interface ScheduleCase {
  name: string;
  scheduler_config: Record<string, unknown>;
  spec: ScheduleSpec;
  abar_f64_b64: string;
  abar_f32_b64: string;
  f32_vs_f64_max_rel: number;
}

Deno.test("schedule conversion: scheduleFromSpec of the converted spec reproduces diffusers' abar", async () => {
  const fx = await fixture<{ cases: ScheduleCase[] }>("schedules.json");
  assert.deepEqual(fx.cases.map((c) => c.spec.type).sort(), [
    "cosine",
    "linear",
    "linear",
    "scaled_linear",
  ]);
  for (const c of fx.cases) {
    const s = scheduleFromSpec(c.spec);
    assert.equal(s.T, c.scheduler_config.num_train_timesteps);
    assert.equal(c.spec.clip_sample, c.scheduler_config.clip_sample);
    const want64 = f64(c.abar_f64_b64);
    const want32 = f32(c.abar_f32_b64);
    assert.equal(want64.length, s.T);
    // The same formulas in float64: agreement to rounding.
    const rel64 = maxRel(s.alphasCumprod, want64);
    assert.ok(rel64 < 1e-6, `${c.name}: rel err vs diffusers formulas (float64) ${rel64}`);
    // diffusers itself runs in float32 (linspace + cumprod); its own float32-vs-float64 gap is
    // the bound: < 1e-6 for the linear schedules, 1.3e-5 for the cosine one (abar_999 ~ 1e-9).
    const rel32 = maxRel(s.alphasCumprod, want32);
    const bound = c.spec.type === "cosine" ? 2e-5 : 1e-6;
    assert.ok(rel32 < bound, `${c.name}: rel err vs diffusers' float32 alphas_cumprod ${rel32}`);
    assert.ok(Math.abs(rel32 - c.f32_vs_f64_max_rel) < 1e-6, `${c.name}: ${rel32}`);
  }
  const ddpm = fx.cases.find((c) => c.name === "ddpm_cifar10_linear")!;
  assert.deepEqual(ddpm.spec, {
    type: "linear",
    T: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    clip_sample: true,
  });
});

// ---------------------------------------------------------------- tiny UNet

interface UnetFixture {
  onnx: string;
  manifest_entry: ManifestEntry;
  x_shape: number[];
  x_b64: string;
  t: number[];
  eps_shape: number[];
  eps_b64: string;
  onnx_report: { sha256: string; file_bytes: number };
}

Deno.test("tiny ddpm-cifar10-32-structure UNet: converted ONNX reproduces PyTorch eps", async () => {
  const fx = await fixture<UnetFixture>("tiny_ddpm_unet.ref.json");
  const bytes = await Deno.readFile(new URL(fx.onnx, DIR));
  assert.ok(bytes.length < 2 * 1024 * 1024);
  assert.equal(sha256Hex(bytes), fx.onnx_report.sha256);
  assertManifestEntry(fx.manifest_entry, "denoiser");
  assert.equal(fx.manifest_entry.sha256, fx.onnx_report.sha256);
  assert.deepEqual(fx.manifest_entry.input, { range: "pm1", layout: "nchw", shape: [3, 32, 32] });

  const m = await loadOnnx(bytes, { provider: "cpu", intraOpThreads: 1 });
  assert.deepEqual(m.inputs, [
    { name: "x", type: "float32", shape: ["N", 3, 32, 32] },
    { name: "t", type: "int64", shape: ["N"] },
  ]);
  assert.deepEqual(m.outputs, [{ name: "eps", type: "float32", shape: ["N", 3, 32, 32] }]);
  assert.deepEqual(denoiserIO(m), { x: "x", t: "t", tType: "int64", tScalar: false, eps: "eps" });
  const x = f32(fx.x_b64), want = f32(fx.eps_b64);
  const n = fx.x_shape[0], size = prod(fx.x_shape.slice(1));
  const out = await runOnnx(m, {
    x: { data: x, dims: fx.x_shape },
    t: { data: BigInt64Array.from(fx.t.map(BigInt)), dims: [n] },
  });
  assert.deepEqual(out.eps.dims, fx.eps_shape);
  const err = maxAbsDiff(out.eps.data as Float32Array, want);
  assert.ok(err < 1e-4, `batch ${n}: max abs err ${err}`);
  // Batch 1, through the toolkit's denoiser adapter, one image per timestep.
  const den = onnxDenoiser(m);
  const schedule = scheduleFromSpec(fx.manifest_entry.schedule!);
  for (let i = 0; i < n; i++) {
    const xi = x.slice(i * size, (i + 1) * size);
    const eps = await den(xi, fx.t[i], {
      n: 1,
      shape: { c: 3, h: 32, w: 32 },
      seeds: [0],
      items: [i],
      stepIndex: 0,
      steps: 1,
      schedule,
    });
    const e = maxAbsDiff(eps, want.subarray(i * size, (i + 1) * size));
    assert.ok(e < 1e-4, `image ${i} (t=${fx.t[i]}): max abs err ${e}`);
  }
});

// ---------------------------------------------------------------- tiny robustness ResNets

interface ResnetFixture {
  model: string;
  arch: string;
  conventions: { mean: number[]; std: number[] };
  manifest_entry: ManifestEntry;
  x_shape: number[];
  x_b64: string;
  y: number[];
  coef: [number, number, number];
  logits_b64: string;
  energy_xy: number[];
  energy_x: number[];
  grad_b64: string;
  onnx_report: { sha256: string };
}

for (const name of ["tiny_robustness_resnet18", "tiny_robustness_resnet50"]) {
  Deno.test(`${name}: ORT logits and energy-head gradients match torch.autograd`, async () => {
    const fx = await fixture<ResnetFixture>(`${name}.ref.json`);
    const bytes = await Deno.readFile(new URL(fx.model, DIR));
    assert.ok(bytes.length < 2 * 1024 * 1024);
    assert.equal(sha256Hex(bytes), fx.onnx_report.sha256);
    assertManifestEntry(fx.manifest_entry, "classifier");
    assert.equal(fx.manifest_entry.sha256, fx.onnx_report.sha256);
    // The converter recorded the checkpoint's own normaliser (robustness' CIFAR mean/std).
    assert.deepEqual(fx.manifest_entry.input.mean, fx.conventions.mean);
    assert.deepEqual(fx.manifest_entry.input.std, fx.conventions.std);
    assert.deepEqual(fx.conventions, {
      mean: [0.4914, 0.4822, 0.4465],
      std: [0.2023, 0.1994, 0.201],
    });

    const x01 = f32(fx.x_b64), n = fx.x_shape[0];
    const logitsRef = f32(fx.logits_b64);
    // Raw ONNX: input is the normalised image (the normalisation is not in the graph).
    const m = await loadOnnx(bytes, { provider: "cpu", intraOpThreads: 1 });
    assert.deepEqual(m.inputs, [{ name: "x", type: "float32", shape: ["N", 3, 32, 32] }]);
    assert.deepEqual(m.outputs, [{ name: "logits", type: "float32", shape: ["N", 10] }]);
    const xn = toClassifierInput(x01, n, [3, 32, 32], fx.conventions);
    const out = await runOnnx(m, { x: { data: xn, dims: fx.x_shape } });
    const errLogits = maxAbsDiff(out.logits.data as Float32Array, logitsRef);
    assert.ok(errLogits < 1e-4, `logits max abs err ${errLogits}`);

    // Energy head with the manifest's conventions: gradient of sum_n CE(f((x - mean)/std), y).
    const clf = await loadEnergyClassifier(bytes, {
      conventions: { mean: fx.manifest_entry.input.mean, std: fx.manifest_entry.input.std },
      provider: "cpu",
      intraOpThreads: 1,
    });
    const e = await clf.energies(x01, n, fx.y, fx.coef);
    const errs = {
      logits: relMaxError(e.logits, logitsRef),
      energyXY: relMaxError(e.energyXY, fx.energy_xy),
      energyX: relMaxError(e.energyX, fx.energy_x),
      grad: relMaxError(e.grad, f32(fx.grad_b64)),
    };
    for (const [k, v] of Object.entries(errs)) assert.ok(v < 1e-4, `${k}: relative error ${v}`);
  });
}

// ---------------------------------------------------------------- full-size random models

interface BigFixture {
  onnx: string;
  params: number;
  x_shape: number[];
  x_b64: string;
  t?: number[];
  [k: string]: unknown;
}

const BIG: {
  file: string;
  outputs: string[];
  params: number;
  feeds: (fx: BigFixture) => string[];
}[] = [
  {
    file: "ddpm_cifar10_32_random.ref.json",
    outputs: ["eps"],
    params: 35_746_307,
    feeds: () => ["x", "t"],
  },
  {
    file: "robustness_resnet50_random.ref.json",
    outputs: ["logits"],
    params: 23_520_842,
    feeds: () => ["x"],
  },
  {
    file: "fid_inception_random.ref.json",
    outputs: ["features", "logits"],
    params: 23_850_960,
    feeds: () => ["x"],
  },
];

Deno.test("full-size fixtures are well-formed (shapes, finite values, < 300 KB)", async () => {
  for (const b of BIG) {
    const text = await Deno.readTextFile(new URL(b.file, DIR));
    assert.ok(text.length < 300_000, `${b.file}: ${text.length} bytes`);
    const fx = JSON.parse(text) as BigFixture;
    assert.equal(fx.params, b.params, b.file);
    const x = f32(fx.x_b64);
    assert.equal(x.length, prod(fx.x_shape));
    for (const o of b.outputs) {
      const shape = fx[`${o}_shape`] as number[];
      const data = f32(fx[`${o}_b64`] as string);
      assert.equal(data.length, prod(shape), `${b.file}: ${o}`);
      assert.equal(shape[0], fx.x_shape[0]);
      assert.ok(data.every(Number.isFinite), `${b.file}: ${o} not finite`);
    }
    const rep = fx.onnx_report as { sha256: string; ops: Record<string, number> };
    assert.match(rep.sha256, /^[0-9a-f]{64}$/);
    assert.ok(Object.keys(rep.ops).length > 0);
    const errs = Object.values(fx.ort_max_abs_err as Record<string, number>);
    assert.ok(errs.length >= 2 && errs.every((e) => e < 1e-4), `${b.file}: ${errs}`);
  }
  const fid = await fixture<BigFixture>("fid_inception_random.ref.json");
  assert.deepEqual(fid.features_shape, [4, 2048]);
  assert.deepEqual(fid.logits_shape, [4, 1008]);
  assertManifestEntry(fid.manifest_entry as ManifestEntry, "feature");
});

const modelsDir = Deno.env.get("CONVERSION_MODELS_DIR");
for (const b of BIG) {
  Deno.test({
    name: `full-size random model of ${b.file} (CONVERSION_MODELS_DIR)`,
    ignore: !modelsDir,
    fn: async () => {
      const fx = await fixture<BigFixture>(b.file);
      const bytes = await Deno.readFile(`${modelsDir}/${fx.onnx}`);
      assert.equal(sha256Hex(bytes), (fx.onnx_report as { sha256: string }).sha256);
      const m = await loadOnnx(bytes, { provider: "cpu" });
      const n = fx.x_shape[0];
      const feeds: Record<string, { data: Float32Array | BigInt64Array; dims: number[] }> = {
        x: { data: f32(fx.x_b64), dims: fx.x_shape },
      };
      if (b.feeds(fx).includes("t")) {
        feeds.t = { data: BigInt64Array.from(fx.t!.map(BigInt)), dims: [n] };
      }
      const out = await runOnnx(m, feeds);
      for (const o of b.outputs) {
        const err = maxAbsDiff(out[o].data as Float32Array, f32(fx[`${o}_b64`] as string));
        assert.ok(err < 1e-4, `${b.file} ${o}: max abs err ${err}`);
      }
      await m.session.release();
      const entry = fx.manifest_entry as ManifestEntry | undefined;
      if (entry?.kind === "feature") {
        // The toolkit's metrics take the FID ONNX as a feature network (evaluate task).
        const net = await loadFeatureNetwork(bytes, {
          range: "01",
          features: "features",
          logits: "logits",
          provider: "cpu",
        });
        assert.deepEqual(net.info.inputShape, [3, 32, 32]);
        const o = await runOnnx(net.model, { x: feeds.x });
        for (const name of ["features", "logits"]) {
          const err = maxAbsDiff(o[name].data as Float32Array, f32(fx[`${name}_b64`] as string));
          assert.ok(err < 1e-4, `feature network ${name}: max abs err ${err}`);
        }
      } else if (entry?.kind === "classifier") {
        // The energy head with the manifest's mean/std, fed x01 = x * std + mean.
        const x = f32(fx.x_b64), x01 = new Float32Array(x.length), hw = 32 * 32;
        for (let i = 0; i < x.length; i++) {
          const c = Math.floor(i / hw) % 3;
          x01[i] = x[i] * entry.input.std![c] + entry.input.mean![c];
        }
        const clf = await loadEnergyClassifier(bytes, {
          conventions: { mean: entry.input.mean, std: entry.input.std },
          provider: "cpu",
        });
        const e = await clf.energies(x01, n, Array(n).fill(0), [1, -1, 0]);
        const err = relMaxError(e.logits, f32(fx.logits_b64 as string));
        assert.ok(err < 1e-4, `energy head logits: relative error ${err}`);
        assert.ok(e.grad.every(Number.isFinite));
      }
    },
  });
}
