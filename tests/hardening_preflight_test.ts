// Issue 12, items 3, 4 and 8 (raw-classifier hint): every model is checked against the run and
// the others before the output folder is claimed, and every model error names its file or id.
import assert from "node:assert/strict";
import {
  cli,
  exists,
  FAST_GUIDE,
  FAST_SAMPLE,
  linearClassifier,
  toyDenoiser,
} from "./_hardening.ts";

const tmp = await Deno.makeTempDir({ prefix: "rg-preflight-" });

for (const [c, h, w] of [[1, 28, 28], [3, 64, 64]]) {
  Deno.test(`item 3: a ${c}x${h}x${w} classifier is refused before the folder is claimed`, async () => {
    const clf = await linearClassifier(tmp, c, h, w);
    const out = `${tmp}/clf-${c}x${h}x${w}`;
    const r = await cli([...FAST_GUIDE, "--classifier", clf, "--range", "01", "--out", out]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /mixture-cifar10/); // the denoiser, by manifest id
    assert.ok(r.stderr.includes(clf), r.stderr); // the classifier, by path
    assert.match(r.stderr, new RegExp(`${c}x${h}x${w}`));
    assert.match(r.stderr, /3x32x32/);
    assert.doesNotMatch(r.stderr, /Float32Array/);
    assert.equal(await exists(`${out}/config.json`), false, "config.json was written");
    // the corrected rerun into the same folder runs
    const lin = await linearClassifier(tmp, 3, 32, 32);
    const ok = await cli([...FAST_GUIDE, "--classifier", lin, "--range", "01", "--out", out]);
    assert.equal(ok.code, 0, ok.stderr);
  });
}

Deno.test("item 3: a denoiser of another image size than the classifier is refused, naming both", async () => {
  const den = `${tmp}/toy_3x16x16.onnx`;
  await Deno.writeFile(den, toyDenoiser(3, 16, 16));
  const lin = await linearClassifier(tmp, 3, 32, 32);
  const out = `${tmp}/den16`;
  const args = FAST_GUIDE.slice();
  args[2] = den;
  const r = await cli([...args, "--classifier", lin, "--range", "01", "--out", out]);
  assert.equal(r.code, 2, r.stderr);
  assert.ok(r.stderr.includes(den) && r.stderr.includes(lin), r.stderr);
  assert.match(r.stderr, /3x16x16/);
  assert.equal(await exists(out), false);
  // alone, the denoiser's own size is used (read from its graph)
  const s = await cli([
    "sample",
    "--model",
    den,
    "--steps",
    "2",
    "--n",
    "1",
    "--out",
    `${tmp}/s16`,
  ]);
  assert.equal(s.code, 0, s.stderr);
  const run = JSON.parse(await Deno.readTextFile(`${tmp}/s16/run.json`));
  assert.deepEqual(run.config.shape, [3, 16, 16]);
});

Deno.test("item 4: an empty or non-ONNX model file is named in the error", async () => {
  const empty = `${tmp}/empty.onnx`, junk = `${tmp}/junk.onnx`;
  await Deno.writeFile(empty, new Uint8Array());
  await Deno.writeTextFile(junk, "not a model at all");
  for (const file of [empty, junk]) {
    const s = await cli(["sample", "--model", file, "--n", "1", "--out", `${tmp}/s-empty`]);
    assert.notEqual(s.code, 0);
    assert.ok(s.stderr.includes(file), s.stderr);
    assert.doesNotMatch(s.stderr, /<bytes>/);
    const g = await cli([
      ...FAST_GUIDE,
      "--classifier",
      file,
      "--range",
      "01",
      "--out",
      `${tmp}/g-empty`,
    ]);
    assert.notEqual(g.code, 0);
    assert.ok(g.stderr.includes(file), g.stderr);
    assert.doesNotMatch(g.stderr, /<bytes>/);
  }
  assert.equal(await exists(`${tmp}/s-empty`), false);
  assert.equal(await exists(`${tmp}/g-empty`), false);
});

Deno.test("item 8: a raw classifier without conventions gets the flags, not code syntax", async () => {
  const lin = await linearClassifier(tmp, 3, 32, 32);
  const r = await cli([...FAST_GUIDE, "--classifier", lin, "--out", `${tmp}/raw`]);
  assert.equal(r.code, 2, r.stderr);
  assert.ok(r.stderr.includes(lin), r.stderr);
  assert.match(r.stderr, /--range/);
  assert.match(r.stderr, /--mean/);
  assert.doesNotMatch(r.stderr, /\{ mean/);
  assert.equal(await exists(`${tmp}/raw`), false);
  void FAST_SAMPLE;
});

Deno.test("item 3: sweep checks its models before claiming its folder", async () => {
  const clf = await linearClassifier(tmp, 1, 28, 28);
  const out = `${tmp}/sweep`;
  const base = ["sweep", "--model", "mixture-cifar10", "--directions", "joint", "--scales", "1"];
  const r = await cli([
    ...base,
    "--classifiers",
    clf,
    "--seeds",
    "0",
    "--steps",
    "2",
    "--out",
    out,
  ]);
  assert.equal(r.code, 2, r.stderr);
  assert.ok(r.stderr.includes(clf) && r.stderr.includes("mixture-cifar10"), r.stderr);
  assert.match(r.stderr, /--classifiers/);
  assert.equal(await exists(out), false, "the sweep folder was claimed");
});
