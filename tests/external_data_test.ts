// ONNX external data (lib/onnx/external_data.ts): a model saved by torch's dynamo exporter keeps
// its larger initializers in m.onnx.data beside m.onnx. Resolving it by path or by manifest id
// reads them back in (the energy head, fused and pull-back graphs are built from the bytes), and
// a missing, short or misplaced .data file is refused naming the file and the fix. The fixture is
// torch 2.13's own save (weights/recipes/export_zoo.py, preact_resnet_gn_dynamo_op23_extdata).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { decodeModel, encodeModel, type ModelProto } from "../lib/onnx/proto.ts";
import {
  externalDataRefs,
  hasExternalData,
  inlineExternalData,
} from "../lib/onnx/external_data.ts";
import { resolveModel, weightsBaseFrom } from "../lib/weights.ts";
import { CIFAR10_CLASSES } from "../lib/data/cifar10.ts";
import { loadOnnx, readModelFile } from "../lib/runtime/session.ts";

const NAME = "preact_resnet_gn_dynamo_op23_extdata";
const ZOO = new URL("./fixtures/zoo/", import.meta.url);
const onnxPath = new URL(`${NAME}.onnx`, ZOO).pathname;
const dataPath = new URL(`${NAME}.onnx.data`, ZOO).pathname;

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const dataSha = sha(await Deno.readFile(dataPath));

async function tempCopy(files: Record<string, Uint8Array>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "external_data_test_" });
  for (const [name, bytes] of Object.entries(files)) await Deno.writeFile(`${dir}/${name}`, bytes);
  return dir;
}

Deno.test("the fixture keeps weights outside the .onnx (torch's layout)", async () => {
  const model = decodeModel(await Deno.readFile(onnxPath));
  const refs = externalDataRefs(model);
  assert.ok(refs.length >= 5, `${refs.length} external tensors`);
  assert.ok(refs.every((r) => r.location === `${NAME}.onnx.data`));
  // some small tensors stay inline: both kinds must survive
  assert.ok(model.graph.initializer!.some((t) => (t.raw_data?.length ?? 0) > 0));
});

Deno.test("resolveModel by path reads the .data file in; sha256 stays the file's", async () => {
  const file = await Deno.readFile(onnxPath);
  const data = await Deno.readFile(dataPath);
  const refs = externalDataRefs(decodeModel(file));
  const r = await resolveModel(onnxPath);
  assert.equal(r.sha256, sha(file));
  assert.deepEqual(r.externalData, [{ location: `${NAME}.onnx.data`, sha256: dataSha }]);
  const inlined = decodeModel(r.bytes);
  assert.deepEqual(externalDataRefs(inlined), []);
  const byName = new Map(inlined.graph.initializer!.map((t) => [t.name, t]));
  for (const ref of refs) {
    const got = new Uint8Array(byName.get(ref.name)!.raw_data!); // protobufjs gives a Buffer
    assert.deepEqual(got, data.subarray(ref.offset, ref.offset + ref.length!), ref.name);
  }
  // readModelFile (loadOnnx, loadEnergyClassifier given a path) gives the same bytes
  assert.deepEqual(await readModelFile(onnxPath), r.bytes);
  // and onnxruntime runs the inlined bytes without any folder
  const m = await loadOnnx(r.bytes, { provider: "cpu" });
  const out = await m.session.run({
    [m.inputs[0].name]: new (await import("onnxruntime-node")).Tensor(
      "float32",
      new Float32Array(2 * 3 * 32 * 32).fill(0.5),
      [2, 3, 32, 32],
    ),
  });
  const logits = out[m.outputs[0].name].data as Float32Array;
  assert.ok(logits.length === 20 && logits.every(Number.isFinite));
  await m.session.release();
});

Deno.test("resolveModel by manifest id reads the .data file beside the entry's file", async () => {
  const file = await Deno.readFile(onnxPath);
  const dir = await tempCopy({
    "clf.onnx": file,
    [`${NAME}.onnx.data`]: await Deno.readFile(dataPath),
  });
  await Deno.writeTextFile(
    `${dir}/manifest.json`,
    JSON.stringify({
      version: 1,
      defaults: {},
      models: {
        ext: {
          file: "clf.onnx",
          sha256: sha(file),
          kind: "classifier",
          input: { range: "01", layout: "nchw", shape: [3, 32, 32] },
          source: "test",
        },
      },
    }),
  );
  const r = await resolveModel("ext", { base: weightsBaseFrom(dir), kind: "classifier" });
  assert.equal(r.sha256, sha(file));
  assert.deepEqual(r.externalData, [{ location: `${NAME}.onnx.data`, sha256: dataSha }]);
  assert.deepEqual(externalDataRefs(decodeModel(r.bytes)), []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a missing .data file is refused naming it and the fix", async () => {
  const dir = await tempCopy({ "m.onnx": await Deno.readFile(onnxPath) });
  await assert.rejects(
    () => resolveModel(`${dir}/m.onnx`),
    (e: Error) => {
      assert.match(e.message, new RegExp(`${dir}/m.onnx keeps its weights in ${NAME}.onnx.data`));
      assert.match(e.message, /keep the .data file beside the .onnx/);
      return true;
    },
  );
  await assert.rejects(() => readModelFile(`${dir}/m.onnx`), /keeps its weights in/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a .data file too short for the tensors is refused", async () => {
  const data = await Deno.readFile(dataPath);
  const dir = await tempCopy({
    "m.onnx": await Deno.readFile(onnxPath),
    [`${NAME}.onnx.data`]: data.subarray(0, data.length - 4),
  });
  await assert.rejects(
    () => resolveModel(`${dir}/m.onnx`),
    /which has \d+ bytes; the .data file does not belong to this .onnx .*copy both files/,
  );
  await Deno.remove(dir, { recursive: true });
});

/** The fixture with every external location replaced by `loc`. */
function relocated(model: ModelProto, loc: string): Uint8Array {
  for (const t of model.graph.initializer ?? []) {
    const ext = (t as { external_data?: { key: string; value: string }[] }).external_data;
    for (const e of ext ?? []) if (e.key === "location") e.value = loc;
  }
  return encodeModel(model);
}

Deno.test("locations outside the model's folder are refused; subfolders are read", async () => {
  const file = await Deno.readFile(onnxPath);
  const data = await Deno.readFile(dataPath);
  for (const loc of ["../w.data", "/etc/w.data", "a/../../w.data"]) {
    const dir = await tempCopy({ "m.onnx": relocated(decodeModel(file), loc) });
    await assert.rejects(() => resolveModel(`${dir}/m.onnx`), /outside the model's folder/, loc);
    await Deno.remove(dir, { recursive: true });
  }
  const dir = await tempCopy({ "m.onnx": relocated(decodeModel(file), "sub/w.data") });
  await Deno.mkdir(`${dir}/sub`);
  await Deno.writeFile(`${dir}/sub/w.data`, data);
  const r = await resolveModel(`${dir}/m.onnx`);
  assert.deepEqual(r.externalData?.map((f) => f.location), ["sub/w.data"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("inlineExternalData reads each file once and leaves inline models alone", async () => {
  const model = decodeModel(await Deno.readFile(onnxPath));
  const data = await Deno.readFile(dataPath);
  const reads: string[] = [];
  const files = await inlineExternalData(model, (loc) => {
    reads.push(loc);
    return Promise.resolve(data);
  }, "m");
  assert.deepEqual(files, [`${NAME}.onnx.data`]);
  assert.deepEqual(reads, files);
  assert.deepEqual(await inlineExternalData(model, () => Promise.reject(), "m"), []);
});

Deno.test("a model given by URL reads its .data file from beside it over HTTP", async () => {
  const { serveStatic } = await import("../tools/serve_static.ts");
  const { server, url } = serveStatic(ZOO.pathname);
  try {
    const base = await url;
    const r = await resolveModel(`${base}${NAME}.onnx`);
    assert.deepEqual(r.externalData, [{ location: `${NAME}.onnx.data`, sha256: dataSha }]);
    assert.deepEqual(r.bytes, await readModelFile(onnxPath));
  } finally {
    await server.shutdown();
  }
});

Deno.test("guide: a rerun whose .data file changed is refused (the .onnx sha256 is the same)", async () => {
  const { guideTask } = await import("../tasks/guide.ts");
  const data = await Deno.readFile(dataPath);
  const dir = await tempCopy({
    "m.onnx": await Deno.readFile(onnxPath),
    [`${NAME}.onnx.data`]: data,
  });
  const args = [
    "--model=mixture-cifar10",
    `--classifier=${dir}/m.onnx`,
    "--range=01",
    "--class=0",
    "--seeds=0-1",
    "--steps=2",
    "--evaluator=none",
    "--provider=cpu",
    `--out=${dir}/run`,
  ];
  Deno.env.set("RG_QUIET", "1");
  const error = console.error;
  console.error = () => {};
  try {
    await guideTask(args);
    const run = JSON.parse(await Deno.readTextFile(`${dir}/run/run.json`));
    assert.deepEqual(run.classifier.externalData, [{
      location: `${NAME}.onnx.data`,
      sha256: dataSha,
    }]);
    await guideTask(args); // the same files: resumed (nothing to make)
    const changed = data.slice();
    changed[changed.length - 1] ^= 1; // one bit of the last weight
    await Deno.writeFile(`${dir}/${NAME}.onnx.data`, changed);
    await assert.rejects(() => guideTask(args), /holds a run with another configuration/);
  } finally {
    console.error = error;
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * The model with every initializer of at least `threshold` bytes moved to `location` (as
 * onnx.save(..., save_as_external_data=True) lays it out: one file, 4096-aligned offsets).
 */
function externalize(model: ModelProto, location: string, threshold = 1024): Uint8Array {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (const t of model.graph.initializer ?? []) {
    const raw = t.raw_data;
    if (!raw || raw.length < threshold) continue;
    const offset = Math.ceil(size / 4096) * 4096;
    if (offset > size) parts.push(new Uint8Array(offset - size));
    parts.push(new Uint8Array(raw));
    size = offset + raw.length;
    const ext = t as typeof t & {
      external_data?: { key: string; value: string }[];
      data_location?: number;
    };
    ext.external_data = [
      { key: "location", value: location },
      { key: "offset", value: String(offset) },
      { key: "length", value: String(raw.length) },
    ];
    ext.data_location = 1;
    delete t.raw_data;
  }
  const data = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  return data;
}

Deno.test("sample: a denoiser with external data makes the images its inline file makes", async () => {
  const { sampleTask } = await import("../tasks/sample.ts");
  const inline = await Deno.readFile(
    new URL("../weights/denoisers/ddpm-cifar10-small.onnx", import.meta.url),
  );
  const model = decodeModel(inline);
  const data = externalize(model, "unet.onnx.data");
  const dir = await tempCopy({ "unet.onnx": encodeModel(model), "unet.onnx.data": data });
  assert.ok(externalDataRefs(decodeModel(await Deno.readFile(`${dir}/unet.onnx`))).length > 10);
  Deno.env.set("RG_QUIET", "1");
  const error = console.error;
  console.error = () => {};
  try {
    for (
      const [name, ref] of [["inline", "ddpm-cifar10-small"], ["external", `${dir}/unet.onnx`]]
    ) {
      await sampleTask([
        `--model=${ref}`,
        "--seeds=0-1",
        "--steps=3",
        "--provider=cpu",
        "--threads=1",
        `--out=${dir}/${name}`,
      ]);
    }
  } finally {
    console.error = error;
  }
  for (const seed of [0, 1]) {
    assert.deepEqual(
      await Deno.readFile(`${dir}/external/images/${seed}.png`),
      await Deno.readFile(`${dir}/inline/images/${seed}.png`),
      `seed ${seed}`,
    );
  }
  const run = JSON.parse(await Deno.readTextFile(`${dir}/external/run.json`));
  assert.deepEqual(run.model.externalData, [{ location: "unet.onnx.data", sha256: sha(data) }]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("hasExternalData: the file as saved yes, resolved (inlined) no, plain models no", async () => {
  assert.equal(hasExternalData(await Deno.readFile(onnxPath)), true);
  assert.equal(hasExternalData((await resolveModel(onnxPath)).bytes), false);
  assert.equal(
    hasExternalData(await Deno.readFile(new URL("vit_dynamo_op20.onnx", ZOO))),
    false,
  );
  assert.equal(hasExternalData(new TextEncoder().encode("location, not a model")), false);
});

Deno.test("evaluate: cached reference features are not reused after the .data file changed", async () => {
  const { evaluateTask } = await import("../tasks/evaluate.ts");
  const data = await Deno.readFile(dataPath);
  const dir = await tempCopy({
    "m.onnx": await Deno.readFile(onnxPath),
    [`${NAME}.onnx.data`]: data,
    "labels.txt": new TextEncoder().encode(CIFAR10_CLASSES.join("\n") + "\n"),
  });
  const run = async (out: string) => {
    await evaluateTask([
      "--images=test",
      "--limit=20",
      "--reference-limit=50",
      `--evaluator=${dir}/m.onnx`,
      "--range=01",
      `--labels=${dir}/labels.txt`,
      "--provider=cpu",
      `--cache=${dir}/cache`,
      `--out=${dir}/${out}`,
    ]);
    return JSON.parse(await Deno.readTextFile(`${dir}/${out}`));
  };
  Deno.env.set("RG_QUIET", "1");
  const error = console.error;
  console.error = () => {};
  try {
    const a = await run("a.json");
    assert.equal(a.reference.cacheHit, false);
    assert.deepEqual(a.features.externalData, [{ location: `${NAME}.onnx.data`, sha256: dataSha }]);
    const b = await run("b.json");
    assert.equal(b.reference.cacheHit, true);
    const changed = data.slice();
    changed[changed.length - 1] ^= 1;
    await Deno.writeFile(`${dir}/${NAME}.onnx.data`, changed);
    const c = await run("c.json");
    assert.equal(c.reference.cacheHit, false);
    assert.notEqual(c.reference.cache, a.reference.cache);
  } finally {
    console.error = error;
    await Deno.remove(dir, { recursive: true });
  }
});
