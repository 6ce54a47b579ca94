// Issue 12, items 8 and 9: the smaller things a new user hit (help texts, flag errors, a corrupt
// manifest, CIFAR-10 batches and limits) and the README / mod.ts as a new user reads them.
import assert from "node:assert/strict";
import { loadCifar10 } from "../lib/data/cifar10.ts";
import { cli, root } from "./_hardening.ts";

const tmp = await Deno.makeTempDir({ prefix: "rg-cli-" });

for (const task of ["merge", "energy-stats", "weights", "build-mixture"]) {
  Deno.test(`item 8: ${task} --help prints its usage and exits 0`, async () => {
    const r = await cli([task, "--help"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`deno task ${task}`));
  });
}

Deno.test("item 8: bench-compare --help prints its usage without a stack trace", async () => {
  const r = await cli(["--help"], { script: "bench/compare.ts" });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /bench-compare/);
  assert.doesNotMatch(r.stderr, /\bat \w+.*:\d+:\d+/);
});

Deno.test("item 8: sample --help lists --trajectory-steps", async () => {
  const r = await cli(["sample", "--help"]);
  assert.match(r.stdout, /--trajectory-steps/);
});

Deno.test("item 8: a flag without its value says so in words, with the = form for negatives", async () => {
  for (const args of [["sample", "--eta"], ["sample", "--eta", "--steps", "3"]]) {
    const r = await cli([...args, "--out", `${tmp}/eta`]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--eta needs a value/);
    assert.match(r.stderr, /--eta=-1/);
    assert.doesNotMatch(r.stderr, /ambiguous|Did you forget/);
  }
});

Deno.test("item 8: a corrupt manifest.json is named", async () => {
  const w = `${tmp}/weights`;
  await Deno.mkdir(w, { recursive: true });
  await Deno.writeTextFile(`${w}/manifest.json`, '{"version": 1, "models": {');
  const r = await cli(["sample", "--weights", w, "--n", "1", "--out", `${tmp}/m`]);
  assert.notEqual(r.code, 0);
  assert.ok(r.stderr.includes(`${w}/manifest.json`), r.stderr);
  assert.match(r.stderr, /JSON/);
});

Deno.test("item 8: a CIFAR-10 batch cut at a record boundary and a limit above the data are reported", async () => {
  const dir = `${tmp}/cifar`;
  await Deno.mkdir(dir, { recursive: true });
  const batch = new Uint8Array(3 * 3073);
  await Deno.writeFile(`${dir}/test_batch.bin`, batch);
  const split = await loadCifar10(dir, "test", { limit: 5 });
  assert.equal(split.count, 3);
  const notes = (split.notes ?? []).join("\n");
  assert.match(notes, /test_batch\.bin holds 3 records.*10000/s);
  assert.match(notes, /limit 5.*3/s);
});

// --- item 9: the README and mod.ts as a new user reads them ---

const readme = await Deno.readTextFile(`${root}README.md`);
const denoJson = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
const modTs = await Deno.readTextFile(`${root}mod.ts`);

Deno.test("item 9: README's Tasks table lists every deno.json task", () => {
  const section = readme.split(/^## Tasks$/m)[1].split(/^## /m)[0];
  const missing = Object.keys(denoJson.tasks).filter((t) =>
    !new RegExp("`(npx )?deno task " + t + "[ `]").test(section)
  );
  assert.deepEqual(missing, []);
});

Deno.test("item 9: mod.ts's doc lists every task of its command line", async () => {
  const { TASK_NAMES } = await import("../mod.ts");
  const doc = modTs.split("@module")[0];
  assert.ok(TASK_NAMES.length >= 14);
  assert.deepEqual(TASK_NAMES.filter((t: string) => !doc.includes(t)), []);
});

Deno.test("item 9: README's shell examples run deno through npx (no deno on PATH after npm ci)", () => {
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  const inline = [...readme.matchAll(/`(deno (?:run|task)[^`]*)`/g)].map((m) => m[1]);
  const bare = [...blocks.flatMap((b) => b.split("\n")), ...inline].filter((l) =>
    /(^|[;&|(]\s*)deno (run|task)/.test(l.trim()) && !l.includes("npx deno")
  );
  assert.deepEqual(bare, []);
});

Deno.test("item 9: npm knows every key of .npmrc (no 'Unknown project config' warning)", async () => {
  const o = await new Deno.Command("npm", {
    args: ["config", "get", "ignore-scripts"],
    cwd: root,
    stderr: "piped",
    stdout: "piped",
  })
    .output();
  assert.doesNotMatch(new TextDecoder().decode(o.stderr), /Unknown project config/);
});

Deno.test("item 9: deno doc --lint mod.ts is clean", async () => {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--lint", "mod.ts"],
    cwd: root,
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
});
