// The `sample` task end to end, as a user runs it: outputs, run.json, and bad input.
import assert from "node:assert/strict";
import { decodePng } from "../lib/io/png.ts";

const root = new URL("../", import.meta.url).pathname;

async function runTask(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "mod.ts", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { RG_QUIET: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stderr: dec.decode(out.stderr), stdout: dec.decode(out.stdout) };
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

Deno.test("sample writes images/<seed>.png, grid.png, trajectory and run.json", async () => {
  const dir = await Deno.makeTempDir();
  const r = await runTask([
    "sample",
    "--n",
    "4",
    "--seeds",
    "10-13",
    "--steps",
    "10",
    "--eta",
    "0.5",
    "--out",
    dir,
    "--trajectory",
    "--batch",
    "3",
  ]);
  assert.equal(r.code, 0, r.stderr);
  for (const s of [10, 11, 12, 13]) {
    const png = decodePng(await Deno.readFile(`${dir}/images/${s}.png`));
    assert.deepEqual([png.width, png.height], [32, 32]);
  }
  assert.ok(await exists(`${dir}/grid.png`));
  assert.ok(await exists(`${dir}/trajectory.png`));
  const run = JSON.parse(await Deno.readTextFile(`${dir}/run.json`));
  const manifest = JSON.parse(
    await Deno.readTextFile(new URL("../weights/manifest.json", import.meta.url)),
  );
  assert.equal(run.model.id, manifest.defaults.denoiser);
  assert.equal(run.model.sha256.length, 64);
  assert.equal(run.config.steps, 10);
  assert.equal(run.config.eta, 0.5);
  assert.equal(run.config.seeds, "10-13");
  assert.ok(run.provider === "cpu" || run.provider === "cuda");
  assert.ok(run.seconds > 0);
  assert.ok(run.versions.deno);
  // no temp files left behind
  for await (const e of Deno.readDir(dir)) assert.ok(!e.name.includes(".tmp-"), e.name);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sample: the image of a seed does not depend on which other seeds are in the run", async () => {
  const a = await Deno.makeTempDir(), b = await Deno.makeTempDir();
  assert.equal(
    (await runTask(["sample", "--seeds", "0-5", "--steps", "8", "--eta", "1", "--out", a])).code,
    0,
  );
  assert.equal(
    (await runTask([
      "sample",
      "--seeds",
      "4,5",
      "--steps",
      "8",
      "--eta",
      "1",
      "--out",
      b,
      "--batch",
      "1",
    ])).code,
    0,
  );
  for (const s of [4, 5]) {
    assert.deepEqual(
      await Deno.readFile(`${a}/images/${s}.png`),
      await Deno.readFile(`${b}/images/${s}.png`),
    );
  }
  await Deno.remove(a, { recursive: true });
  await Deno.remove(b, { recursive: true });
});

Deno.test("sample runs a real UNet graph given by path (tiny random diffusers UNet)", async () => {
  const dir = await Deno.makeTempDir();
  const r = await runTask([
    "sample",
    "--model",
    "weights/testing/tiny_unet.onnx",
    "--n",
    "2",
    "--steps",
    "3",
    "--out",
    dir,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const run = JSON.parse(await Deno.readTextFile(`${dir}/run.json`));
  assert.equal(run.model.id, undefined);
  assert.equal(run.config.schedule.type, "linear");
  await Deno.remove(dir, { recursive: true });
});

const bad: Array<[string[], RegExp, number]> = [
  [["--steps", "0"], /--steps '0' is invalid: use an integer in \[1, 1000\]/, 2],
  [["--eta=-1"], /--eta '-1' is invalid: use a number in \[0, inf\]/, 2],
  [["--sampler", "euler"], /--sampler 'euler' is invalid: use one of ddim, ddpm/, 2],
  [["--bogus"], /Unknown option '--bogus'.*Known flags/, 2],
  [["--seeds", "3-1"], /--seeds range '3-1' runs backwards/, 2],
  [["--n", "3", "--seeds", "0-1"], /--n 3 disagrees with --seeds 0-1/, 2],
  [["--sampler", "ddpm", "--steps", "100"], /DDPM sampler runs all 1000 steps, not --steps 100/, 2],
  [["--model", "no-such-model"], /unknown model id 'no-such-model'; known ids: mixture-cifar10/, 1],
  [["--model", "missing/file.onnx"], /model file not found: 'missing\/file\.onnx'/, 1],
  [["--model", "vnncomp21-resnet4b"], /is a classifier, but a denoiser is needed/, 1],
];

for (const [args, pattern, code] of bad) {
  Deno.test(`sample rejects ${args.join(" ")} with a clear error and writes nothing`, async () => {
    const dir = `${await Deno.makeTempDir()}/out`;
    const r = await runTask(["sample", "--out", dir, ...args]);
    assert.equal(r.code, code, r.stderr);
    assert.match(r.stderr, pattern);
    assert.ok(!(await exists(dir)), "no output folder for a failed run");
  });
}

Deno.test("mod.ts: unknown task exits 2 and lists the tasks", async () => {
  const r = await runTask(["samplez"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown task 'samplez'; tasks: sample/);
});
