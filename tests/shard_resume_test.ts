// Sharding and resume: several worker processes, one killed with SIGKILL mid-run, resumed, then
// merged; the images equal those of one uninterrupted run, byte for byte.
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url).pathname;
const common = ["--seeds", "0-8", "--steps", "400", "--eta", "1", "--batch", "1"];

function worker(out: string, extra: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "mod.ts", "sample", ...common, "--out", out, ...extra],
    cwd: root,
    stdout: "null",
    stderr: "piped",
    env: { RG_QUIET: "1" },
  }).spawn();
}

async function run(args: string[]) {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "mod.ts", ...args],
    cwd: root,
    stderr: "piped",
    stdout: "null",
  }).output();
  return { code: o.code, stderr: new TextDecoder().decode(o.stderr) };
}

async function pngs(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(`${dir}/images`)) {
    if (e.name.endsWith(".png")) names.push(e.name);
  }
  return names.sort();
}

Deno.test("3 shards, one killed with SIGKILL and rerun, merge: same images as one run", async () => {
  const ref = await Deno.makeTempDir(), out = await Deno.makeTempDir();
  const single = worker(ref, []);
  // shards 0 and 2 run to the end while shard 1 is killed after its first image lands
  const s0 = worker(out, ["--shard", "0/3"]);
  const s2 = worker(out, ["--shard", "2/3"]);
  const s1 = worker(out, ["--shard", "1/3"]);
  const mine = ["1.png", "4.png", "7.png"]; // shard 1 of 3 owns positions 1, 4, 7
  const t0 = Date.now();
  while (!(await pngs(out).catch(() => [])).some((n) => mine.includes(n))) {
    if (Date.now() - t0 > 60_000) throw new Error("shard 1 wrote nothing in 60 s");
    await new Promise((r) => setTimeout(r, 5));
  }
  s1.kill("SIGKILL");
  const killed = await s1.status;
  assert.equal(killed.signal, "SIGKILL");
  assert.equal((await s0.status).code, 0);
  assert.equal((await s2.status).code, 0);
  const afterKill = (await pngs(out)).filter((n) => mine.includes(n));
  assert.ok(
    afterKill.length >= 1 && afterKill.length < 3,
    `shard 1 left ${afterKill} (kill came too late?)`,
  );
  // merging now fails and names what is missing
  const early = await run(["merge", "--out", out]);
  assert.equal(early.code, 1);
  assert.match(early.stderr, /incomplete: \d of 9 images missing \(images\/[147]\.png/);
  // the rerun of shard 1 makes only what is missing
  const stamps = new Map<string, number>();
  for (const n of afterKill) {
    stamps.set(n, (await Deno.stat(`${out}/images/${n}`)).mtime!.getTime());
  }
  const rerun = worker(out, ["--shard", "1/3"]);
  assert.equal((await rerun.status).code, 0);
  for (const [n, t] of stamps) {
    assert.equal((await Deno.stat(`${out}/images/${n}`)).mtime!.getTime(), t, `${n} was redone`);
  }
  const merged = await run(["merge", "--out", out]);
  assert.equal(merged.code, 0, merged.stderr);
  assert.equal((await single.status).code, 0);
  assert.deepEqual(await pngs(out), await pngs(ref));
  for (const n of await pngs(ref)) {
    assert.deepEqual(
      await Deno.readFile(`${out}/images/${n}`),
      await Deno.readFile(`${ref}/images/${n}`),
      n,
    );
  }
  const runJson = JSON.parse(await Deno.readTextFile(`${out}/run.json`));
  assert.equal(runJson.images, 9);
  assert.equal(runJson.shards.length, 3);
  for await (const e of Deno.readDir(`${out}/images`)) assert.ok(!e.name.includes(".tmp-"), e.name);
  await Deno.remove(ref, { recursive: true });
  await Deno.remove(out, { recursive: true });
});

Deno.test("a run folder refuses another configuration; --shard is validated", async () => {
  const out = await Deno.makeTempDir();
  assert.equal((await run(["sample", "--seeds", "0-1", "--steps", "3", "--out", out])).code, 0);
  const other = await run(["sample", "--seeds", "0-1", "--steps", "4", "--out", out]);
  assert.equal(other.code, 2);
  assert.match(other.stderr, /holds a run with another configuration/);
  const bad = await run(["sample", "--shard", "3/3", "--out", `${out}/x`]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--shard '3\/3' is invalid: write i\/n with 0 <= i < n/);
  const notRun = await run(["merge", "--out", `${out}/images`]);
  assert.equal(notRun.code, 2);
  assert.match(notRun.stderr, /is not a run folder/);
  await Deno.remove(out, { recursive: true });
});
