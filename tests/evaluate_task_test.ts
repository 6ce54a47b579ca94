// The `evaluate` task end to end on the real CIFAR-10 copy and the shared evaluator
// (sri-resnet-a), and its errors. Called in-process (evaluateTask) until mod.ts wires the task.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { CIFAR10_CLASSES, loadCifar10 } from "../lib/data/cifar10.ts";
import { encodePng } from "../lib/io/png.ts";
import { RandomStream } from "../lib/random.ts";
import { UsageError } from "../lib/errors.ts";
import { evaluateTask } from "../tasks/evaluate.ts";

Deno.env.set("RG_QUIET", "1");
const DATA = fileURLToPath(
  new URL("../../shared/data/cifar10/cifar-10-binary.tar.gz", import.meta.url),
);
const tmp = await Deno.makeTempDir({ prefix: "evaluate_test_" });
const cache = `${tmp}/cache`;

/** Runs the task and returns its result file. */
// deno-lint-ignore no-explicit-any
async function evaluate(args: string[]): Promise<any> {
  const out = `${tmp}/result-${crypto.randomUUID().slice(0, 8)}.json`;
  await evaluateTask([
    "--data",
    DATA,
    "--cache",
    cache,
    "--provider",
    "cpu",
    "--out",
    out,
    "--evaluator",
    "sri-resnet-a", // these tests pin the shared evaluator's numbers, not the manifest default
    ...args,
  ]);
  return JSON.parse(await Deno.readTextFile(out));
}

/** Writes CHW CIFAR bytes of image i as a PNG. */
async function writeCifarPng(path: string, images: Uint8Array, i: number): Promise<void> {
  const rgb = new Uint8Array(3072);
  for (let p = 0; p < 1024; p++) {
    for (let c = 0; c < 3; c++) rgb[p * 3 + c] = images[i * 3072 + c * 1024 + p];
  }
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeFile(path, encodePng(rgb, 32, 32));
}

/** A folder of n uniform-noise 32x32 PNGs. */
async function noiseFolder(n: number): Promise<string> {
  const dir = `${tmp}/noise`;
  await Deno.mkdir(dir, { recursive: true });
  for (let i = 0; i < n; i++) {
    const r = new RandomStream(i);
    const rgb = Uint8Array.from({ length: 3072 }, () => Math.floor(r.uniform() * 256));
    await Deno.writeFile(`${dir}/${i}.png`, encodePng(rgb, 32, 32));
  }
  return dir;
}

Deno.test("sanity: test vs train is far closer than noise vs test; accuracy ~80%", async () => {
  const real = await evaluate([
    "--images",
    "test",
    "--limit",
    "2000",
    "--reference",
    "train",
    "--reference-limit",
    "1000",
  ]);
  const noise = await evaluate([
    "--images",
    await noiseFolder(300),
    "--reference",
    "test",
    "--reference-limit",
    "1000",
  ]);
  const fdReal = real.results.fd.value, fdNoise = noise.results.fd.value;
  assert.equal(real.results.fd.name, "FD_sri-resnet-a-penultimate");
  assert.ok(fdReal < fdNoise / 20, `FD(test, train) ${fdReal} vs FD(noise, test) ${fdNoise}`);
  // shared/README.md: sri_resnet_a 80.0% on 2,000 random test images.
  const acc = real.results.targetAccuracy.overall;
  assert.ok(acc > 0.77 && acc < 0.83, `accuracy ${acc}`);
  assert.equal(Object.keys(real.results.targetAccuracy.perClass).length, 10);
  assert.equal(real.results.n, 2000);
  assert.equal(real.reference.n, 1000);
  assert.ok(real.results.precision.value > 0.5 && real.results.recall.value > 0.5);
  assert.equal(noise.results.recall.value, 0); // noise covers none of the real images
  assert.ok(noise.results.is.mean < 1.5 && real.results.is.mean > 2, "IS: noise is one class");
  assert.equal(noise.results.targetAccuracy, null); // a flat folder has no labels
  assert.equal(real.summary["IS_sri-resnet-a"], real.results.is.mean);
  assert.ok(real.notes.some((n: string) => /JPEG/.test(n)));
  // predicted-class histograms: every image counted; real test images spread over all classes
  const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
  assert.equal(sum(noise.results.predictedClasses.counts), 300);
  const counts = real.results.predictedClasses.counts;
  assert.equal(sum(counts), 2000);
  assert.deepEqual(Object.keys(counts), [...CIFAR10_CLASSES]);
  for (const c of CIFAR10_CLASSES) {
    assert.ok(counts[c] > 100 && counts[c] < 300, `${c}: ${counts[c]}`);
  }
});

Deno.test("a guide run folder: labels from images/<class>/, run.json classes, cache reuse", async () => {
  const split = await loadCifar10(DATA, "test", { limit: 60 });
  const run = `${tmp}/run`;
  const wanted = ["cat", "ship", "truck"];
  let written = 0;
  for (let i = 0; i < split.count; i++) {
    const name = CIFAR10_CLASSES[split.labels[i]];
    if (!wanted.includes(name)) continue;
    await writeCifarPng(`${run}/images/${name}/${i}.png`, split.images, i);
    written++;
  }
  await Deno.writeFile(`${run}/grid.png`, encodePng(new Uint8Array(64 * 64 * 3), 64, 64));
  await Deno.writeTextFile(`${run}/run.json`, JSON.stringify({ config: { classes: wanted } }));
  const args = ["--images", run, "--reference", "test", "--reference-limit", "500", "--k", "2"];
  const a = await evaluate(args);
  // grid.png at the run root is not a sample: only images/ is read.
  assert.equal(a.results.n, written);
  assert.deepEqual(Object.keys(a.results.targetAccuracy.perClass).sort(), wanted);
  assert.equal(a.results.precision.name, "precision_sri-resnet-a-penultimate_k2");
  // Same images as CIFAR test records: the evaluator's accuracy on them, class by class.
  const direct = await evaluate(["--images", "test", "--limit", "60", "--reference-limit", "500"]);
  for (const c of wanted) {
    const hits = direct.results.targetAccuracy.confusion[c][c];
    assert.equal(a.results.targetAccuracy.counts[c], direct.results.targetAccuracy.counts[c]);
    assert.equal(
      a.results.targetAccuracy.perClass[c],
      hits / direct.results.targetAccuracy.counts[c],
    );
  }
  assert.equal(a.reference.cacheHit, false);
  const b = await evaluate(args);
  assert.equal(b.reference.cacheHit, true);
  assert.equal(b.results.fd.value, a.results.fd.value);
  assert.equal(direct.reference.cache, a.reference.cache); // same key: same file
  const other = await evaluate([...args.slice(0, 4), "--reference-limit", "400"]);
  assert.notEqual(other.reference.cache, a.reference.cache);
});

Deno.test("--features-output and --features: metrics named after the network computing them", async () => {
  const r = await evaluate([
    "--images",
    "test",
    "--limit",
    "200",
    "--reference",
    "train",
    "--reference-limit",
    "200",
    "--features-output",
    "100",
  ]);
  assert.equal(r.features.dim, 512);
  assert.equal(r.results.fd.name, "FD_sri-resnet-a-100");
  assert.equal(r.results.is.name, "IS_sri-resnet-a");
  // Another feature network: FD and precision/recall are named after it, IS and accuracy after
  // the evaluator, whose numbers do not change.
  const other = await evaluate([
    ...["--images", "test", "--limit", "200", "--reference", "train", "--reference-limit", "200"],
    ...["--features", "vnncomp21-resnet4b"],
  ]);
  assert.equal(other.results.fd.name, "FD_vnncomp21-resnet4b-penultimate");
  assert.equal(other.results.precision.name, "precision_vnncomp21-resnet4b-penultimate_k3");
  assert.equal(other.results.is.mean, r.results.is.mean);
  assert.equal(other.results.targetAccuracy.overall, r.results.targetAccuracy.overall);
  assert.notEqual(other.results.fd.value, r.results.fd.value);
});

/** Asserts the task fails with a UsageError whose message matches. */
async function failsWith(args: string[], pattern: RegExp): Promise<void> {
  await assert.rejects(() => evaluate(args), (e: Error) => {
    assert.ok(e instanceof UsageError, `not a UsageError: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("errors: empty folder, wrong image size, missing data, class mismatch", async () => {
  const empty = `${tmp}/empty`;
  await Deno.mkdir(`${empty}/sub`, { recursive: true });
  await failsWith(["--images", empty], /no PNG images under .*empty \(searched recursively/);

  const big = `${tmp}/big`;
  await Deno.mkdir(big, { recursive: true });
  await Deno.writeFile(`${big}/0.png`, encodePng(new Uint8Array(32 * 32 * 3), 32, 32));
  await Deno.writeFile(`${big}/7.png`, encodePng(new Uint8Array(64 * 48 * 3), 64, 48));
  await failsWith(["--images", big], /big\/7\.png is 64x48 but the network takes 32x32 images/);

  await failsWith(
    ["--images", big, "--data", `${tmp}/nowhere.tar.gz`],
    /--reference test needs the CIFAR-10 archive, but '.*nowhere\.tar\.gz' does not exist; pass it with --data/,
  );
  await failsWith(
    ["--images", `${tmp}/missing`],
    /--images '.*missing' is neither test, train nor/,
  );

  const split = await loadCifar10(DATA, "test", { limit: 4 });
  const odd = `${tmp}/odd`;
  await writeCifarPng(`${odd}/images/unicorn/0.png`, split.images, 0);
  await Deno.writeTextFile(`${odd}/run.json`, JSON.stringify({ config: { classes: ["unicorn"] } }));
  await failsWith(
    ["--images", odd],
    /class mismatch: run.json lists 1 classes \[unicorn\] but the evaluator has 10 classes/,
  );
  const indexed = `${tmp}/indexed`;
  await writeCifarPng(`${indexed}/3/0.png`, split.images, 0);
  await writeCifarPng(`${indexed}/12/0.png`, split.images, 1);
  await failsWith(
    ["--images", indexed],
    /folder .*indexed\/12\/ names class index 12 but the evaluator has 10 classes/,
  );
  const mixed = `${tmp}/mixed`;
  await writeCifarPng(`${mixed}/cat/0.png`, split.images, 0);
  await writeCifarPng(`${mixed}/1.png`, split.images, 1);
  await failsWith(
    ["--images", mixed],
    /class mismatch: .*mixed\/ \(files outside class folders\) is not a class folder/,
  );

  await failsWith(
    ["--images", big, "--features", "../shared/models/sri_resnet_a.onnx"],
    /given by path, so its input conventions are unknown; pass them/,
  );
  await failsWith(["--images", "test", "--k", "0"], /--k '0' is invalid/);
});

Deno.test({
  name: "cleanup",
  fn: async () => await Deno.remove(tmp, { recursive: true }),
});
