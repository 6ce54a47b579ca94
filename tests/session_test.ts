// The ONNX Runtime adapter: loading, provider choice, discovery, batching, and every error path.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { DataType, encodeModel } from "../lib/onnx/proto.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import {
  fixedBatch,
  loadOnnx,
  ortLogSeverity,
  runBatched,
  runOnnx,
} from "../lib/runtime/session.ts";
import { onnxDenoiser } from "../lib/models/onnx_denoiser.ts";

const tinyUnet = new URL("../weights/testing/tiny_unet.onnx", import.meta.url).pathname;

/** y = x * k + c with dynamic batch (or a fixed batch when given). */
function affineModel(batch: number | string = "N", k = 2): Uint8Array {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input("x", DataType.FLOAT, [batch, 3]);
  const y = b.node("Add", [b.node("Mul", [x, b.f32("k", k)]), b.f32("c", [1, 2, 3], [1, 3])]);
  b.output(y, DataType.FLOAT, [batch, 3], "y");
  return b.toBytes();
}

/** y = log(x): NaN for negative inputs. */
function logModel(): Uint8Array {
  const b = new GraphBuilder({ opset: 17 });
  b.output(b.node("Log", [b.input("x", DataType.FLOAT, ["N", 2])]), DataType.FLOAT, ["N", 2], "y");
  return b.toBytes();
}

Deno.test("loads from bytes and path, discovers names/shapes, says which provider ran", async () => {
  const m = await loadOnnx(affineModel(), { provider: "auto" });
  assert.deepEqual(m.inputs, [{ name: "x", type: "float32", shape: ["N", 3] }]);
  assert.deepEqual(m.outputs, [{ name: "y", type: "float32", shape: ["N", 3] }]);
  assert.ok(m.provider === "cpu" || m.provider === "cuda");
  if (m.provider === "cpu") assert.match(m.providerNote ?? "", /CUDA provider/);
  const u = await loadOnnx(tinyUnet, { provider: "cpu", intraOpThreads: 1 });
  assert.equal(u.source, tinyUnet);
  assert.equal(u.sha256.length, 64);
  assert.deepEqual(u.inputs.map((i) => i.name), ["x", "t"]);
});

Deno.test("runs and batches any N through a dynamic-batch model", async () => {
  const m = await loadOnnx(affineModel(), { provider: "cpu" });
  const x = Float32Array.from({ length: 7 * 3 }, (_, i) => i);
  const whole = await runOnnx(m, { x: { data: x, dims: [7, 3] } });
  const chunked = await runBatched(m, { x: { data: x, dims: [7, 3] } }, 7, 3);
  assert.deepEqual(chunked.y.data, whole.y.data);
  assert.deepEqual(chunked.y.dims, [7, 3]);
  assert.equal(whole.y.data[4], 4 * 2 + 2);
});

Deno.test("a fixed-batch model is run one batch at a time", async () => {
  const m = await loadOnnx(affineModel(1), { provider: "cpu" });
  assert.equal(fixedBatch(m), 1);
  const x = Float32Array.from({ length: 5 * 3 }, (_, i) => -i);
  const out = await runBatched(m, { x: { data: x, dims: [5, 3] } }, 5, 64);
  assert.deepEqual(out.y.dims, [5, 3]);
  assert.equal(out.y.data[14], -14 * 2 + 3);
});

Deno.test("error: missing file names the path and the fix", async () => {
  await assert.rejects(
    () => loadOnnx("/nonexistent/model.onnx"),
    /model file not found: '\/nonexistent\/model\.onnx'.*manifest/,
  );
});

Deno.test("error: a non-ONNX file or empty bytes is reported as such", async () => {
  const tmp = await Deno.makeTempFile({ suffix: ".onnx" });
  await Deno.writeTextFile(tmp, "this is not a protobuf, just text\n".repeat(20));
  await assert.rejects(() => loadOnnx(tmp), new RegExp(`${tmp} is not an ONNX model`));
  await assert.rejects(() => loadOnnx(new Uint8Array()), /is empty \(0 bytes\)/);
  await assert.rejects(() => loadOnnx(Buffer.from("PNG\x89 garbage")), /not an ONNX model/);
  await Deno.remove(tmp);
});

Deno.test("error: wrong input name, dtype, rank and fixed dimension", async () => {
  const m = await loadOnnx(affineModel(1), { provider: "cpu" });
  const ok = new Float32Array(3);
  await assert.rejects(
    () => runOnnx(m, { z: { data: ok, dims: [1, 3] } }),
    /has no input 'z'; its inputs are x float32\[1,3\]/,
  );
  await assert.rejects(
    () => runOnnx(m, { x: { data: new BigInt64Array(3), dims: [1, 3] } }),
    /wants float32, got int64/,
  );
  await assert.rejects(
    () => runOnnx(m, { x: { data: ok, dims: [3] } }),
    /wants rank 2 \[1,3\], got rank 1 \[3\]/,
  );
  await assert.rejects(
    () => runOnnx(m, { x: { data: new Float32Array(6), dims: [2, 3] } }),
    /wants shape \[1,3\], got \[2,3\] \(dimension 0 must be 1\)/,
  );
  await assert.rejects(
    () => runOnnx(m, { x: { data: ok, dims: [1, 4] } }),
    /dimension 1 must be 3/,
  );
});

Deno.test("error: NaN or Inf in an output stops with its position", async () => {
  const m = await loadOnnx(logModel(), { provider: "cpu" });
  await assert.rejects(
    () => runOnnx(m, { x: { data: Float32Array.from([1, 2, -1, 4]), dims: [2, 2] } }),
    /output 'y' of <bytes> holds NaN at flat index 2/,
  );
  await assert.rejects(
    () => runOnnx(m, { x: { data: Float32Array.from([1, 0, 1, 4]), dims: [2, 2] } }),
    /holds -Infinity at flat index 1/,
  );
});

Deno.test("error: explicit --provider cuda without the CUDA libraries is a clear error", async () => {
  const m = await loadOnnx(affineModel(), { provider: "auto" });
  if (m.provider === "cuda") return; // a GPU machine: nothing to check here
  await assert.rejects(
    () => loadOnnx(affineModel(), { provider: "cuda" }),
    /CUDA execution provider did not load.*--provider cpu/,
  );
});

Deno.test("error: a model that is not a denoiser is refused with its signature", async () => {
  const m = await loadOnnx(affineModel(), { provider: "cpu" });
  assert.throws(
    () => onnxDenoiser(m),
    /is not a denoiser: expected inputs \(x float32\[N,C,H,W\], t int64\|float32\[N\]\), found x float32\[N,3\]/,
  );
});

Deno.test("tiny diffusers UNet: ONNX Runtime output equals the PyTorch reference fixture", async () => {
  const ref = JSON.parse(
    await Deno.readTextFile(new URL("./fixtures/tiny_unet_ref.json", import.meta.url)),
  );
  const f32 = (b64: string) => {
    const bytes = Buffer.from(b64, "base64");
    return new Float32Array(
      bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
    );
  };
  const x = f32(ref.x_b64), want = f32(ref.eps_b64);
  const m = await loadOnnx(tinyUnet, { provider: "cpu" });
  const n = ref.x_shape[0];
  const out = await runOnnx(m, {
    x: { data: x, dims: ref.x_shape },
    t: { data: BigInt64Array.from(ref.t.map(BigInt)), dims: [n] },
  });
  let maxErr = 0;
  for (let i = 0; i < want.length; i++) {
    maxErr = Math.max(maxErr, Math.abs(out.eps.data[i] as number - want[i]));
  }
  assert.ok(maxErr < 1e-4, `max abs err ${maxErr}`);
});

Deno.test("allowSpinning false (idle workers sleep) loads and gives the same outputs", async () => {
  const x = Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => Math.sin(i));
  const t = new BigInt64Array([10n, 900n]);
  const run = async (allowSpinning?: boolean) => {
    const m = await loadOnnx(tinyUnet, { provider: "cpu", intraOpThreads: 2, allowSpinning });
    const out = await runOnnx(m, {
      x: { data: x, dims: [2, 3, 32, 32] },
      t: { data: t, dims: [2] },
    });
    await m.session.release();
    return out.eps.data;
  };
  assert.deepEqual(await run(false), await run(undefined));
});

Deno.test("onnxruntime logs errors only, unless RG_ORT_LOG names a level", () => {
  const before = Deno.env.get("RG_ORT_LOG");
  try {
    Deno.env.delete("RG_ORT_LOG");
    assert.equal(ortLogSeverity(), 3);
    Deno.env.set("RG_ORT_LOG", "warning");
    assert.equal(ortLogSeverity(), 2);
    Deno.env.set("RG_ORT_LOG", "verbose");
    assert.equal(ortLogSeverity(), 0);
    Deno.env.set("RG_ORT_LOG", "loud");
    assert.throws(
      () => ortLogSeverity(),
      /RG_ORT_LOG='loud' .*verbose, info, warning, error, fatal/,
    );
  } finally {
    if (before === undefined) Deno.env.delete("RG_ORT_LOG");
    else Deno.env.set("RG_ORT_LOG", before);
  }
});

Deno.test("a graph onnxruntime refuses is reported with its name, opset and the fix", async () => {
  // torch 2.13's failed opset-26 conversion writes GroupNormalization-21's stash_type at opset 18
  const b = new GraphBuilder({ opset: 18 });
  const x = b.input("x", DataType.FLOAT, ["N", 2, 4, 4]);
  const y = b.node("GroupNormalization", [x, b.f32("scale", [1, 1]), b.f32("bias", [0, 0])], {
    num_groups: 1,
    stash_type: 1,
  });
  b.output(y, DataType.FLOAT, ["N", 2, 4, 4]);
  await assert.rejects(
    () => loadOnnx(encodeModel(b.toModel()), { provider: "cpu", source: "bad.onnx" }),
    /onnxruntime 1\.30 cannot load bad\.onnx \(opset 18\): .*stash_type.*check_model.*opset_version=18/s,
  );
});
