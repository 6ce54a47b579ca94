// Issue 12, items 6 and 7 (--scale): a non-finite value is reported with the step, t and the
// network (by file) or the guidance arithmetic that produced it; absurd strengths are refused.
import assert from "node:assert/strict";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType } from "../lib/onnx/proto.ts";
import { loadOnnx } from "../lib/runtime/session.ts";
import { onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import { type Denoiser, sample, type SamplerConfig } from "../lib/sampler/loop.ts";
import { linearSchedule } from "../lib/schedule.ts";
import { guided } from "../lib/guidance/guided.ts";
import type { EnergySource } from "../lib/guidance/directions.ts";
import { cli, FAST_GUIDE, linearClassifier } from "./_hardening.ts";

const shape = { c: 1, h: 2, w: 2 };
const cfg: SamplerConfig = {
  sampler: "ddim",
  schedule: linearSchedule(),
  steps: 4,
  eta: 0,
  spacing: "leading",
  clip: false,
  variance: "fixed_small",
  seeds: [0, 1],
  shape,
  batchSize: 2,
};

/** eps = log(x): NaN as soon as some x_t < 0 (at the first step for these seeds). */
function logDenoiser(): Uint8Array {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input("x", DataType.FLOAT, ["N", 1, 2, 2]);
  const t = b.input("t", DataType.INT64, ["N"]);
  const tf = b.node("Unsqueeze", [
    b.node("Cast", [t], { to: DataType.FLOAT }),
    b.i64("a", [1, 2, 3]),
  ]);
  const eps = b.node("Add", [b.node("Log", [x]), b.node("Mul", [tf, b.f32("z", 0)])]);
  b.output(eps, DataType.FLOAT, ["N", 1, 2, 2], "eps");
  return b.toBytes();
}

Deno.test("item 6: a denoiser's NaN names its file, the step and t", async () => {
  const model = await loadOnnx(logDenoiser(), { provider: "cpu", source: "weights/toy-log.onnx" });
  await assert.rejects(
    () => sample(onnxDenoiser(model), cfg),
    (e: Error) => {
      assert.match(e.message, /weights\/toy-log\.onnx/);
      assert.match(e.message, /step 1\/4/);
      assert.match(e.message, /t = 750/);
      assert.match(e.message, /denoiser/);
      return true;
    },
  );
});

Deno.test("item 6: a denoiser returning NaN (any Denoiser) is caught at its step", async () => {
  const nan: Denoiser = (x, t) =>
    Promise.resolve(new Float32Array(x.length).fill(t < 500 ? NaN : 0));
  await assert.rejects(() => sample(nan, cfg), (e: Error) => {
    assert.match(e.message, /the denoiser returned NaN/);
    assert.match(e.message, /step 3\/4 \(t = 250\)/);
    return true;
  });
});

Deno.test("item 6: diverging guidance arithmetic is blamed, not the denoiser", async () => {
  const zeros: Denoiser = (x) => Promise.resolve(new Float32Array(x.length));
  const clf: EnergySource = {
    numClasses: 2,
    fromDiffusionSpace(x, n) {
      return Promise.resolve({
        logits: new Float32Array(n * 2),
        energyXY: new Float32Array(n),
        energyX: new Float32Array(n),
        grad: new Float32Array(x.length).fill(1),
      });
    },
  };
  const den = guided(zeros, {
    classifier: clf,
    direction: { kind: "joint" },
    scale: 1e39,
    strength: { spec: { kind: "constant" }, activation: 0 },
    labels: [0, 1],
    point: "xt",
    form: "eps",
  });
  await assert.rejects(
    () => sample(den, cfg),
    (e: Error) => {
      assert.match(e.message, /guidance/);
      assert.match(e.message, /step 1\/4/);
      assert.match(e.message, /t = 750/);
      assert.doesNotMatch(e.message, /^denoiser/);
      return true;
    },
  );
});

Deno.test("item 7: --scale beyond float32 is refused with the reason; huge ones warn", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "rg-scale-" });
  const lin = await linearClassifier(tmp, 3, 32, 32);
  const r = await cli([
    ...FAST_GUIDE,
    "--classifier",
    lin,
    "--range",
    "01",
    "--scale",
    "1e308",
    "--out",
    `${tmp}/a`,
  ]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--scale '1e308'/);
  assert.match(r.stderr, /float32/);
  const w = await cli([
    ...FAST_GUIDE,
    "--classifier",
    lin,
    "--range",
    "01",
    "--scale",
    "1e6",
    "--out",
    `${tmp}/b`,
  ]);
  assert.equal(w.code, 0, w.stderr);
  assert.match(w.stderr, /warning: --scale 1e6/);
});
