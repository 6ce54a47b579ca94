// mod.ts run remotely: the repository served over HTTP on 127.0.0.1, `deno run -A <url>/mod.ts`.
// Code and weights come over HTTP (weights resolved from the module URL, or --weights); npm
// packages come from a node_modules folder linked into the working directory
// (--node-modules-dir=manual) so the test does not download ~300 MB of onnxruntime-node into
// Deno's cache on every clean CI machine. Without that flag Deno fetches them from npm (checked
// by hand; see README "Running remotely").
import assert from "node:assert/strict";
import { serveStatic } from "../tools/serve_static.ts";

const root = new URL("../", import.meta.url).pathname;
const manifest = JSON.parse(await Deno.readTextFile(`${root}weights/manifest.json`));
/** The default denoiser's file, relative to the weights folder. */
const defaultFile: string = manifest.models[manifest.defaults.denoiser].file;

async function remoteRun(url: string, args: string[]) {
  const cwd = await Deno.makeTempDir();
  await Deno.symlink(`${root}node_modules`, `${cwd}/node_modules`);
  await Deno.copyFile(`${root}package.json`, `${cwd}/package.json`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--node-modules-dir=manual", `--reload=${url}`, `${url}mod.ts`, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { RG_QUIET: "1" },
  }).output();
  return { cwd, code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("deno run -A <url>/mod.ts sample: code and weights over HTTP", async () => {
  const { server, url } = serveStatic(root);
  try {
    const base = await url;
    const r = await remoteRun(base, ["sample", "--n", "2", "--steps", "3", "--out", "out"]);
    assert.equal(r.code, 0, r.stderr);
    const run = JSON.parse(await Deno.readTextFile(`${r.cwd}/out/run.json`));
    assert.equal(run.model.location, `${base}weights/${defaultFile}`);
    assert.ok((await Deno.stat(`${r.cwd}/out/images/1.png`)).size > 100);
    // a --weights directory overrides the module URL
    const w = await remoteRun(base, [
      "sample",
      "--n",
      "1",
      "--steps",
      "2",
      "--out",
      "o2",
      "--weights",
      `${root}weights`,
    ]);
    assert.equal(w.code, 0, w.stderr);
    const run2 = JSON.parse(await Deno.readTextFile(`${w.cwd}/o2/run.json`));
    assert.equal(run2.model.location, `file://${root}weights/${defaultFile}`);
    // a missing weights folder is a clear error
    const bad = await remoteRun(base, [
      "sample",
      "--n",
      "1",
      "--weights",
      `${base}nowhere/`,
      "--out",
      "o3",
    ]);
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /cannot read the weights manifest at .*nowhere\/manifest\.json.*--weights/,
    );
  } finally {
    await server.shutdown();
  }
});
