// Issue 12, items 1, 2, 5, 7 (seed ranges) and 8 (--evaluator none rerun): the run folder's key,
// its claim, what a resume skips, and what merge accepts.
import assert from "node:assert/strict";
import { claimRunFolder } from "../lib/shard.ts";
import { cli, exists, FAST_GUIDE, FAST_SAMPLE, linearClassifier } from "./_hardening.ts";

const tmp = await Deno.makeTempDir({ prefix: "rg-hardening-" });
const lin = await linearClassifier(tmp, 3, 32, 32);

Deno.test("item 1: a rerun with other classifier conventions is refused; run.json records them", async () => {
  const out = `${tmp}/conv`;
  const first = await cli([...FAST_GUIDE, "--classifier", lin, "--range", "01", "--out", out]);
  assert.equal(first.code, 0, first.stderr);
  for (
    const flags of [["--range", "pm1"], [
      "--range",
      "01",
      "--mean",
      "0.5,0.5,0.5",
      "--std",
      "0.5,0.5,0.5",
    ]]
  ) {
    const again = await cli([...FAST_GUIDE, "--classifier", lin, ...flags, "--out", out]);
    assert.equal(again.code, 2, `${flags.join(" ")} was accepted into ${out}:\n${again.stderr}`);
    assert.match(again.stderr, /another configuration/);
  }
  // the same flags resume (nothing to make)
  const same = await cli([...FAST_GUIDE, "--classifier", lin, "--range", "01", "--out", out]);
  assert.equal(same.code, 0, same.stderr);
  const run = JSON.parse(await Deno.readTextFile(`${out}/run.json`));
  assert.equal(run.classifier.input.range, "01", JSON.stringify(run.classifier));
  assert.equal(run.classifier.input.layout, "nchw");
  assert.deepEqual(run.classifier.input.shape, [3, 32, 32]);
});

Deno.test("item 2: claimRunFolder is atomic: of concurrent claims with different configs one wins", async () => {
  for (let trial = 0; trial < 12; trial++) {
    const out = `${tmp}/race-${trial}`;
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, k) => claimRunFolder(out, { task: "sample", steps: k + 1 })),
    );
    const won = results.filter((r) => r.status === "fulfilled").length;
    assert.equal(won, 1, `trial ${trial}: ${won} of 6 different configs claimed ${out}`);
    for (const r of results) {
      if (r.status === "rejected") assert.match(String(r.reason), /another configuration/);
    }
  }
});

Deno.test("item 2: merge refuses a shard record written for another configuration", async () => {
  const a = `${tmp}/merge-a`, b = `${tmp}/merge-b`;
  for (const s of ["0/2", "1/2"]) {
    const r = await cli([...FAST_SAMPLE, "--seeds", "0-3", "--out", a, "--shard", s]);
    assert.equal(r.code, 0, r.stderr);
  }
  const r = await cli([
    ...FAST_SAMPLE,
    "--steps",
    "3",
    "--seeds",
    "0-3",
    "--out",
    b,
    "--shard",
    "1/2",
  ]);
  assert.equal(r.code, 0, r.stderr);
  // a worker of another configuration left its record in folder a (e.g. a raced claim)
  await Deno.copyFile(`${b}/run.shard-1-of-2.json`, `${a}/run.shard-1-of-2.json`);
  const merged = await cli(["merge", "--out", a]);
  assert.notEqual(merged.code, 0, `merge accepted a foreign shard record:\n${merged.stderr}`);
  assert.match(merged.stderr, /run\.shard-1-of-2\.json/);
  assert.match(merged.stderr, /config\.json/);
});

Deno.test("item 5: resume remakes empty or truncated images, byte-identical, and names them", async () => {
  const out = `${tmp}/damaged`;
  const first = await cli([...FAST_SAMPLE, "--seeds", "0-2", "--out", out]);
  assert.equal(first.code, 0, first.stderr);
  const good = await Promise.all([0, 1, 2].map((s) => Deno.readFile(`${out}/images/${s}.png`)));
  await Deno.writeFile(`${out}/images/1.png`, new Uint8Array());
  await Deno.writeFile(`${out}/images/2.png`, good[2].subarray(0, good[2].length >> 1));
  const again = await cli([...FAST_SAMPLE, "--seeds", "0-2", "--out", out]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /images\/1\.png/);
  assert.match(again.stderr, /images\/2\.png/);
  for (const s of [0, 1, 2]) {
    assert.deepEqual(await Deno.readFile(`${out}/images/${s}.png`), good[s], `image ${s}`);
  }
});

Deno.test("item 5: merge names a damaged image instead of 'could not decode 0 bytes'", async () => {
  const out = `${tmp}/damaged-merge`;
  for (const s of ["0/2", "1/2"]) {
    const r = await cli([...FAST_SAMPLE, "--seeds", "0-3", "--out", out, "--shard", s]);
    assert.equal(r.code, 0, r.stderr);
  }
  await Deno.writeFile(`${out}/images/2.png`, new Uint8Array());
  const merged = await cli(["merge", "--out", out]);
  assert.notEqual(merged.code, 0);
  assert.match(merged.stderr, /images\/2\.png/);
  assert.match(merged.stderr, /rerun/);
});

Deno.test("item 7: a huge seed range is stored compactly and the run says it is large", async () => {
  const out = `${tmp}/huge`;
  const r = await cli([
    ...FAST_SAMPLE,
    "--steps",
    "1",
    "--seeds",
    "0-1000000",
    "--shard",
    "0/1000000",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const size = (await Deno.stat(`${out}/config.json`)).size;
  assert.ok(size < 4096, `config.json is ${size} bytes for one seed range`);
  assert.match(await Deno.readTextFile(`${out}/config.json`), /"0-1000000"/);
  assert.match(r.stderr, /1000001 images/);
  assert.ok(await exists(`${out}/images/0.png`));
});

Deno.test("item 8: a no-op rerun with --evaluator none keeps the evaluator's results", async () => {
  const out = `${tmp}/evalkeep`;
  const base = FAST_GUIDE.slice(0, -2); // without --evaluator none
  const first = await cli([
    ...base,
    "--classifier",
    lin,
    "--range",
    "01",
    "--evaluator",
    "cifar10-resnet16-l2-0",
    "--out",
    out,
  ]);
  assert.equal(first.code, 0, first.stderr);
  const before = JSON.parse(await Deno.readTextFile(`${out}/run.json`));
  assert.equal(typeof before.results.targetAccuracy, "number");
  const again = await cli([...FAST_GUIDE, "--classifier", lin, "--range", "01", "--out", out]);
  assert.equal(again.code, 0, again.stderr);
  const after = JSON.parse(await Deno.readTextFile(`${out}/run.json`));
  assert.equal(after.results.targetAccuracy, before.results.targetAccuracy);
  assert.deepEqual(after.results.evaluatorHistogram, before.results.evaluatorHistogram);
  assert.equal(after.evaluator.ref ?? after.evaluator, "cifar10-resnet16-l2-0");
});
