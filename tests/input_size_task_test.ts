// --input-size and --labels on the command line (issue 13 items 5 and 7): a 1000-class 64x64
// classifier from the zoo guides the 32x32 mixture denoiser through the head's bilinear resize,
// with class names from a labels file; without --input-size the run is refused before any output
// folder exists, naming both models and their sizes; a 1000-class --class error lists a few names.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { decodePng, encodePng } from "../lib/io/png.ts";
import { RandomStream } from "../lib/random.ts";
import { tinyLinear } from "./_energy_models.ts";
import { cli, exists } from "./_hardening.ts";
import { ZOO_DIR } from "./_zoo.ts";

const clf64 = fileURLToPath(new URL("resnet_imagenet64_k1000_dynamo_op18.onnx", ZOO_DIR));
const IMAGENET = ["--range", "01", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"];
const FAST = [
  "--model",
  "mixture-cifar10",
  "--seeds",
  "0-1",
  "--steps",
  "2",
  "--evaluator",
  "none",
];

Deno.test("guide: a 64x64 classifier of 1000 classes guides 32x32 images with --input-size and --labels", async () => {
  const dir = await Deno.makeTempDir({ prefix: "input_size_" });
  try {
    // refused before anything runs: both models and both sizes named, no folder made
    const refused = await cli([
      "guide",
      ...FAST,
      "--classifier",
      clf64,
      ...IMAGENET,
      "--out",
      `${dir}/a`,
    ]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(
      refused.stderr,
      /classifier .*resnet_imagenet64_k1000_dynamo_op18\.onnx takes 3x64x64 images, the denoiser mixture-cifar10 makes 3x32x32.*--input-size 64,64/,
    );
    assert.ok(!(await exists(`${dir}/a`)), "an output folder was created");

    const labels = `${dir}/labels.txt`;
    await Deno.writeTextFile(
      labels,
      Array.from({ length: 1000 }, (_, i) => `species ${i}, latin ${i}`).join("\n") + "\n",
    );
    const bad = await cli([
      "guide",
      ...FAST,
      "--classifier",
      clf64,
      ...IMAGENET,
      "--input-size",
      "64",
      "--labels",
      labels,
      "--class",
      "unicorn",
      "--out",
      `${dir}/b`,
    ]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(
      bad.stderr,
      /'unicorn' is not a class name .*species 0, latin 0.*\(1000 classes\)/,
    );
    assert.ok(!bad.stderr.includes("species 500,"), "the error lists all 1000 names");

    const out = `${dir}/c`;
    const ok = await cli([
      "guide",
      ...FAST,
      "--classifier",
      clf64,
      ...IMAGENET,
      "--input-size",
      "64",
      "--labels",
      labels,
      "--class",
      "species 7, latin 7",
      "--out",
      out,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const png = decodePng(await Deno.readFile(`${out}/images/species 7, latin 7/1.png`));
    assert.deepEqual([png.width, png.height], [32, 32]);
    const run = JSON.parse(await Deno.readTextFile(`${out}/run.json`));
    assert.deepEqual(run.config.classes, ["species 7, latin 7"]);
    assert.deepEqual(run.config.shape, [3, 32, 32]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("evaluate: a 64x64 1000-class evaluator scores 32x32 PNGs with --input-size and --labels", async () => {
  const dir = await Deno.makeTempDir({ prefix: "input_size_eval_" });
  try {
    const rng = new RandomStream(11);
    for (const set of ["imgs", "ref"]) {
      await Deno.mkdir(`${dir}/${set}`);
      for (let i = 0; i < 6; i++) {
        const rgb = new Uint8Array(32 * 32 * 3).map(() => Math.floor(256 * rng.uniform()));
        await Deno.writeFile(`${dir}/${set}/${i}.png`, encodePng(rgb, 32, 32));
      }
    }
    const labels = `${dir}/labels.txt`;
    await Deno.writeTextFile(labels, Array.from({ length: 1000 }, (_, i) => `n${i}`).join("\n"));
    const base = [
      "evaluate",
      "--images",
      `${dir}/imgs`,
      "--reference",
      `${dir}/ref`,
      "--evaluator",
      clf64,
      ...IMAGENET,
      "--no-cache",
      "--k",
      "2",
      "--splits",
      "2",
      "--provider",
      "cpu",
    ];
    const refused = await cli([...base, "--out", `${dir}/a.json`]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /0\.png is 32x32 but the network takes 64x64 images/);
    assert.ok(!(await exists(`${dir}/a.json`)));

    const ok = await cli([
      ...base,
      "--input-size",
      "64",
      "--labels",
      labels,
      "--out",
      `${dir}/b.json`,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const res = JSON.parse(await Deno.readTextFile(`${dir}/b.json`));
    assert.equal(res.results.n, 6);
    assert.deepEqual(res.evaluator.classes.slice(0, 2), ["n0", "n1"]);
    assert.deepEqual(res.evaluator.resize, {
      from: [32, 32],
      to: [64, 64],
      mode: "bilinear-half-pixel",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("energy-head: --image-size and --input-size compile a head that resizes; guide runs it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "input_size_head_" });
  try {
    const head = `${dir}/head64.onnx`;
    const refused = await cli([
      "energy-head",
      "--model",
      clf64,
      ...IMAGENET,
      "--image-size",
      "32",
      "--out",
      head,
    ]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(
      refused.stderr,
      /takes 64x64 images but the images are 32x32 images; pass --input-size 64/,
    );
    assert.ok(!(await exists(head)));
    const made = await cli([
      "energy-head",
      "--model",
      clf64,
      ...IMAGENET,
      "--image-size",
      "32",
      "--input-size",
      "64",
      "--out",
      head,
    ]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /x \[N,3,32,32\].*bilinear resize 32x32 -> 64x64/);
    const out = `${dir}/g`;
    const ok = await cli(["guide", ...FAST, "--classifier", head, "--class", "5", "--out", out]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(
      await exists(`${out}/images/class5/0.png`),
      "a 1000-class model without names: class<i>",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("robust-accuracy: a 10-class 48x48 classifier on CIFAR-10's 32x32 images with --input-size", async () => {
  const dir = await Deno.makeTempDir({ prefix: "input_size_eval_" });
  try {
    const rng = new RandomStream(5);
    const rec = new Uint8Array(6 * 3073); // a CIFAR-10 binary batch of 6 random images
    for (let i = 0; i < 6; i++) {
      rec[i * 3073] = i % 10;
      for (let j = 1; j < 3073; j++) rec[i * 3073 + j] = Math.floor(rng.uniform() * 256);
    }
    await Deno.writeFile(`${dir}/test_batch.bin`, rec);
    const model = `${dir}/linear48.onnx`;
    await Deno.writeFile(model, tinyLinear({ C: 3, H: 48, W: 48, K: 10, seed: 4 }).bytes);
    const args = [
      "robust-accuracy",
      "--classifier",
      model,
      "--range",
      "01",
      "--data",
      dir,
      "--limit",
      "6",
      "--eps",
      "0,0.5",
      "--steps",
      "2",
      "--threads",
      "1",
      "--provider",
      "cpu",
    ];
    const refused = await cli([...args, "--out", `${dir}/a.json`]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(
      refused.stderr,
      /takes 3x48x48 images; CIFAR-10 images are 3x32x32: .*--input-size 48,48/,
    );
    const ok = await cli([...args, "--input-size", "48", "--out", `${dir}/b.json`]);
    assert.equal(ok.code, 0, ok.stderr);
    const res = JSON.parse(await Deno.readTextFile(`${dir}/b.json`));
    assert.equal(res.config.data.count, 6);
    assert.ok(res.table.accuracy[1][0] <= res.table.accuracy[0][0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sweep: --labels reaches guide and evaluate (class folders, names, target accuracy)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "input_size_sweep_" });
  try {
    const labels = `${dir}/labels.txt`;
    await Deno.writeTextFile(labels, Array.from({ length: 10 }, (_, i) => `kind-${i}`).join("\n"));
    const data = fileURLToPath(
      new URL("../../shared/data/cifar10/cifar-10-binary.tar.gz", import.meta.url),
    );
    const r = await cli([
      "sweep",
      "--model",
      "mixture-cifar10",
      "--classifiers",
      "vnncomp21-resnet4b",
      "--evaluator",
      "sri-resnet-a",
      "--directions",
      "joint",
      "--scales",
      "10",
      "--schedules",
      "sqrt",
      "--seeds",
      "0-1",
      "--class",
      "kind-8",
      "--steps",
      "3",
      "--reference-limit",
      "100",
      "--data",
      data,
      "--cache",
      `${dir}/cache`,
      "--labels",
      labels,
      "--provider",
      "cpu",
      "--out",
      `${dir}/s`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const sweep = JSON.parse(await Deno.readTextFile(`${dir}/s/sweep.json`));
    const run = JSON.parse(await Deno.readTextFile(`${dir}/s/${sweep.rows[0].run}/run.json`));
    assert.deepEqual(run.config.classes, ["kind-8"]);
    assert.ok(await exists(`${dir}/s/${sweep.rows[0].run}/images/kind-8/1.png`));
    assert.ok(sweep.rows[0].targetAccuracy !== null, "evaluate read the kind-8 folder as class 8");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("guide: a manifest entry's labels file names a 1000-class classifier's classes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "input_size_manifest_" });
  try {
    const bytes = await Deno.readFile(clf64);
    await Deno.writeFile(`${dir}/clf64.onnx`, bytes);
    await Deno.writeFile(
      `${dir}/mixture.onnx`,
      await Deno.readFile(new URL("../weights/mixture_cifar10.onnx", import.meta.url)),
    );
    await Deno.writeTextFile(
      `${dir}/clf64.labels.txt`,
      Array.from({ length: 1000 }, (_, i) => `thing ${i}`).join("\n"),
    );
    const sha = async (p: string) =>
      Array.from(
        new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(p))),
        (b) => b.toString(16).padStart(2, "0"),
      ).join("");
    const manifest = JSON.parse(
      await Deno.readTextFile(new URL("../weights/manifest.json", import.meta.url)),
    );
    const mixture = { ...manifest.models["mixture-cifar10"], file: "mixture.onnx" };
    await Deno.writeTextFile(
      `${dir}/manifest.json`,
      JSON.stringify({
        version: 1,
        defaults: { denoiser: "mixture", classifier: "clf64" },
        models: {
          mixture: { ...mixture, sha256: await sha(`${dir}/mixture.onnx`) },
          clf64: {
            file: "clf64.onnx",
            sha256: await sha(`${dir}/clf64.onnx`),
            kind: "classifier",
            input: {
              range: "01",
              layout: "nchw",
              shape: [3, 64, 64],
              mean: [0.485, 0.456, 0.406],
              std: [0.229, 0.224, 0.225],
            },
            source: "tests/fixtures/zoo (random weights)",
            labels: "clf64.labels.txt",
          },
        },
      }),
    );
    const out = `${dir}/g`;
    const r = await cli([
      "guide",
      "--weights",
      dir,
      "--model",
      "mixture",
      "--classifier",
      "clf64",
      "--input-size",
      "64",
      "--class",
      "thing 42",
      "--seeds",
      "0",
      "--steps",
      "2",
      "--evaluator",
      "none",
      "--out",
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await exists(`${out}/images/thing 42/0.png`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
