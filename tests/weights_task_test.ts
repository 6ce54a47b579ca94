// `deno task weights`: listing, sha256 verification, thesis-model commands, --add; diffusers
// scheduler configs.
import assert from "node:assert/strict";
import { scheduleSpecFromDiffusers } from "../lib/schedule.ts";

const root = new URL("../", import.meta.url).pathname;

async function run(args: string[], cwd = root) {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}mod.ts`, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { RG_QUIET: "1" },
  }).output();
  const d = new TextDecoder();
  return { code: o.code, stdout: d.decode(o.stdout), stderr: d.decode(o.stderr) };
}

/** A weights folder with a copy of the manifest and of the mixture model. */
async function tempWeights(): Promise<string> {
  const dir = await Deno.makeTempDir();
  const m = JSON.parse(await Deno.readTextFile(`${root}weights/manifest.json`));
  m.models = { "mixture-cifar10": m.models["mixture-cifar10"] };
  m.defaults = { denoiser: "mixture-cifar10" };
  await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(m, null, 2));
  await Deno.copyFile(`${root}weights/mixture_cifar10.onnx`, `${dir}/mixture_cifar10.onnx`);
  return dir;
}

Deno.test("weights lists and verifies the installed models and prints commands for missing thesis models", async () => {
  const r = await run(["weights"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /ddpm-cifar10-minsnr\s+denoiser\s+ok \(.* sha256 verified\)\s+\[default denoiser\]/,
  );
  assert.match(r.stdout, /ddpm-cifar10-small\s+denoiser\s+ok \(.* sha256 verified\)\n/);
  assert.match(r.stdout, /cifar10-airbench64-eval\s+classifier\s+ok .*\[default evaluator\]/);
  assert.match(r.stdout, /cifar10-wresnet-l2-0.5\s+classifier\s+ok .*\[default classifier\]/);
  assert.match(r.stdout, /mixture-cifar10\s+denoiser\s+ok \(.* sha256 verified\)\n/);
  assert.match(r.stdout, /ddpm-cifar10-32: google\/ddpm-cifar10-32/);
  assert.match(
    r.stdout,
    /export_robustness_resnet\.py cifar_l2_0_5\.pt --out weights\/robustness_cifar_l2_0_5\.onnx/,
  );
  assert.match(r.stdout, /export_fid_inception\.py pt_inception-2015-12-05-6726825d\.pth/);
});

Deno.test("weights reports a corrupt or missing file and exits 1", async () => {
  const dir = await tempWeights();
  const bytes = await Deno.readFile(`${dir}/mixture_cifar10.onnx`);
  bytes[100] ^= 1;
  await Deno.writeFile(`${dir}/mixture_cifar10.onnx`, bytes);
  const r = await run(["weights", "--weights", dir]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /SHA256 MISMATCH/);
  await Deno.remove(`${dir}/mixture_cifar10.onnx`);
  assert.match((await run(["weights", "--weights", dir])).stdout, /MISSING/);
});

Deno.test("weights --add registers converted files: kind detected, schedule from a diffusers config", async () => {
  const dir = await tempWeights();
  await Deno.copyFile(`${root}weights/testing/tiny_unet.onnx`, `${dir}/unet.onnx`);
  const noSched = await run([
    "weights",
    "--weights",
    dir,
    "--add",
    `${dir}/unet.onnx`,
    "--id",
    "my-unet",
  ]);
  assert.equal(noSched.code, 2);
  assert.match(noSched.stderr, /needs --scheduler-config/);
  const cfg = `${dir}/scheduler_config.json`;
  await Deno.writeTextFile(
    cfg,
    JSON.stringify({
      _class_name: "DDPMScheduler",
      beta_schedule: "linear",
      beta_start: 0.0001,
      beta_end: 0.02,
      num_train_timesteps: 1000,
      clip_sample: true,
      prediction_type: "epsilon",
    }),
  );
  const ok = await run([
    "weights",
    "--weights",
    dir,
    "--add",
    `${dir}/unet.onnx`,
    "--id",
    "my-unet",
    "--scheduler-config",
    cfg,
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  const clf = await run([
    "weights",
    "--weights",
    dir,
    "--add",
    `${root}../shared/models/sri_resnet_a.onnx`,
    "--id",
    "sri",
    "--mean",
    "0.4914,0.4822,0.4465",
    "--std",
    "0.2471,0.2435,0.2616",
  ]);
  assert.equal(clf.code, 0, clf.stderr);
  const m = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
  assert.equal(m.models["my-unet"].kind, "denoiser");
  assert.equal(m.models["my-unet"].file, "unet.onnx");
  assert.deepEqual(m.models["my-unet"].schedule, {
    type: "linear",
    T: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    clip_sample: true,
  });
  assert.equal(m.models.sri.kind, "classifier");
  assert.deepEqual(m.models.sri.input.std, [0.2471, 0.2435, 0.2616]);
  // the registered denoiser samples
  const s = await run([
    "sample",
    "--weights",
    dir,
    "--model",
    "my-unet",
    "--n",
    "1",
    "--steps",
    "2",
    "--out",
    `${dir}/o`,
  ]);
  assert.equal(s.code, 0, s.stderr);
  const list = await run(["weights", "--weights", dir]);
  assert.match(list.stdout, /my-unet\s+denoiser\s+ok/);
  assert.equal(
    (await run(["weights", "--weights", dir, "--add", "nope.onnx", "--id", "x"])).code,
    2,
  );
  assert.match(
    (await run(["weights", "--weights", dir, "--add", `${dir}/unet.onnx`])).stderr,
    /--add needs --id/,
  );
});

Deno.test("diffusers scheduler configs: beta schedules map, other predictions are refused", () => {
  assert.equal(scheduleSpecFromDiffusers({ beta_schedule: "squaredcos_cap_v2" }).type, "cosine");
  assert.equal(
    scheduleSpecFromDiffusers({ beta_schedule: "scaled_linear", beta_end: 0.012 }).beta_end,
    0.012,
  );
  assert.equal(scheduleSpecFromDiffusers({ clip_sample: false }).clip_sample, false);
  // issue 14: every diffusers parameterisation is read (lib/models/parameterisation.ts)
  assert.equal(
    scheduleSpecFromDiffusers({ prediction_type: "v_prediction" }).prediction_type,
    "v_prediction",
  );
  assert.equal(scheduleSpecFromDiffusers({ prediction_type: "sample" }).prediction_type, "sample");
  assert.equal(
    scheduleSpecFromDiffusers({ variance_type: "learned_range" }).variance_type,
    "learned_range",
  );
  assert.equal(scheduleSpecFromDiffusers({ variance_type: "fixed_small" }).variance_type, "fixed");
  assert.throws(
    () => scheduleSpecFromDiffusers({ prediction_type: "score" }),
    /'score' is not supported: use epsilon, v_prediction or sample/,
  );
  assert.throws(
    () => scheduleSpecFromDiffusers({ variance_type: "learned" }),
    /variance_type 'learned' is not supported/,
  );
  assert.throws(
    () => scheduleSpecFromDiffusers({ beta_schedule: "sigmoid" }),
    /'sigmoid' is not supported/,
  );
  assert.throws(() => scheduleSpecFromDiffusers({ trained_betas: [0.1] }), /trained_betas/);
});

Deno.test("sample --scheduler-config for a model given by path; refused for manifest models", async () => {
  const dir = await Deno.makeTempDir();
  const cfg = `${dir}/s.json`;
  await Deno.writeTextFile(
    cfg,
    JSON.stringify({ beta_schedule: "squaredcos_cap_v2", clip_sample: false }),
  );
  const r = await run([
    "sample",
    "--model",
    "weights/testing/tiny_unet.onnx",
    "--scheduler-config",
    cfg,
    "--n",
    "1",
    "--steps",
    "2",
    "--out",
    `${dir}/o`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const runJson = JSON.parse(await Deno.readTextFile(`${dir}/o/run.json`));
  assert.equal(runJson.config.schedule.type, "cosine");
  assert.equal(runJson.config.clip, false);
  const bad = await run(["sample", "--scheduler-config", cfg, "--n", "1", "--out", `${dir}/o2`]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--scheduler-config is for models given by path/);
  // issue 14: a v_prediction config is read; a learned variance the model lacks is refused
  await Deno.writeTextFile(cfg, JSON.stringify({ prediction_type: "v_prediction" }));
  const v = await run([
    "sample",
    "--model",
    "weights/testing/tiny_unet.onnx",
    "--scheduler-config",
    cfg,
    "--n",
    "1",
    "--steps",
    "2",
    "--out",
    `${dir}/o3`,
  ]);
  assert.equal(v.code, 0, v.stderr);
  const vRun = JSON.parse(await Deno.readTextFile(`${dir}/o3/run.json`));
  assert.equal(vRun.config.output.prediction, "v_prediction");
  await Deno.writeTextFile(cfg, JSON.stringify({ variance_type: "learned_range" }));
  const lv = await run([
    "sample",
    "--model",
    "weights/testing/tiny_unet.onnx",
    "--scheduler-config",
    cfg,
    "--out",
    `${dir}/o4`,
  ]);
  assert.equal(lv.code, 2);
  assert.match(lv.stderr, /outputs 3 channels.*needs 6/);
});
