// Class names beyond CIFAR-10 (lib/labels.ts, issue 13 item 7): K from the graph, names from
// --labels, the manifest, CIFAR-10 only when the manifest says so; --class by index or name;
// a 1000-class error lists a few names, not all.
import assert from "node:assert/strict";
import fc from "fast-check";
import { CIFAR10_CLASSES } from "../lib/data/cifar10.ts";
import {
  parseClassArg,
  parseLabelsText,
  readLabelsFile,
  readManifestLabels,
  resolveClassNames,
  someNames,
} from "../lib/labels.ts";

const imagenetLike = Array.from({ length: 1000 }, (_, i) => `species ${i}, latin name ${i}`);

Deno.test("labels: sources in order: --labels file, manifest, CIFAR-10 when marked, indices", () => {
  const file = { path: "l.txt", text: "cat\ndog\r\n  fox  \n\n" };
  assert.deepEqual(resolveClassNames(3, { labelsFile: file, classes: ["a", "b", "c"] }), {
    names: ["cat", "dog", "fox"],
    origin: "labels-file",
  });
  assert.deepEqual(resolveClassNames(3, { classes: ["a", "b", "c"], dataset: "cifar10" }).names, [
    "a",
    "b",
    "c",
  ]);
  assert.deepEqual(resolveClassNames(10, { dataset: "cifar10" }), {
    names: [...CIFAR10_CLASSES],
    origin: "cifar10",
  });
  // a 10-class model the manifest does not mark as CIFAR-10 gets no CIFAR-10 names
  assert.deepEqual(resolveClassNames(10, {}).names.slice(0, 2), ["class0", "class1"]);
  assert.equal(resolveClassNames(4, { dataset: "cifar10" }).origin, "index");
});

Deno.test("labels: a labels file of the wrong length or with bad names is refused, naming it", () => {
  assert.throws(
    () => parseLabelsText("a\nb\n", "my/labels.txt", 3),
    /--labels my\/labels\.txt has 2 names but the classifier has K=3 classes/,
  );
  assert.throws(() => parseLabelsText("a\n\nb\n", "l.txt", 2), /line 2 is blank/);
  assert.throws(() => parseLabelsText("a\nb/c\n", "l.txt", 2), /line 2: class name 'b\/c'/);
  assert.throws(
    () => resolveClassNames(5, { classes: ["a", "b"], model: "clf-x" }),
    /manifest lists 2 class names for clf-x but its graph has K=5 classes/,
  );
});

Deno.test("labels: repeated names become distinct; --class on one lists the candidates", () => {
  const { names } = resolveClassNames(4, { classes: ["crane", "kite", "Crane", "heron"] });
  assert.deepEqual(names, ["crane#0", "kite", "Crane#2", "heron"]);
  assert.deepEqual(parseClassArg("crane#2", names), [2]);
  assert.throws(() => parseClassArg("crane", names), /names several classes \(crane#0, Crane#2\)/);
});

Deno.test("labels: --class takes indices, names (any case), lists, all", () => {
  const names = resolveClassNames(1000, {
    labelsFile: { path: "in.txt", text: imagenetLike.join("\n") },
  }).names;
  assert.deepEqual(parseClassArg(undefined, names).length, 1000);
  assert.deepEqual(parseClassArg("all", names).length, 1000);
  assert.deepEqual(parseClassArg("7,999", names), [7, 999]);
  // a name with commas matches as a whole
  assert.deepEqual(parseClassArg("SPECIES 12, latin name 12", names), [12]);
  assert.deepEqual(parseClassArg("cat,3", [...CIFAR10_CLASSES]), [3, 3]);
});

Deno.test("labels: errors for a 1000-class model list a few names, not all", () => {
  const names = imagenetLike;
  for (const bad of ["1000", "unicorn"]) {
    let msg = "";
    try {
      parseClassArg(bad, names);
    } catch (e) {
      msg = (e as Error).message;
    }
    assert.match(msg, bad === "1000" ? /out of range.*0\.\.999/ : /'unicorn' is not a class name/);
    assert.match(msg, /species 0, latin name 0/);
    assert.match(msg, /\(1000 classes\)/);
    assert.ok(!msg.includes("species 500,"), "lists every name");
    assert.ok(msg.length < 600, `message of ${msg.length} characters`);
  }
});

Deno.test("labels: any name list round-trips through a labels file and --class (property)", () => {
  const name = fc.string({ minLength: 1, maxLength: 12 }).map((s) =>
    // deno-lint-ignore no-control-regex
    s.replace(/[/\\\x00-\x1f,]/g, "_").trim()
  ).filter((s) =>
    s !== "" && s !== "." && s !== ".." && !/^\d+$/.test(s) && s.toLowerCase() !== "all"
  );
  fc.assert(
    fc.property(
      fc.uniqueArray(name, {
        minLength: 1,
        maxLength: 30,
        comparator: (a, b) => a.toLowerCase() === b.toLowerCase(),
      }),
      (list) => {
        const { names } = resolveClassNames(list.length, {
          labelsFile: { path: "x.txt", text: list.join("\n") + "\n" },
        });
        assert.deepEqual(names, list);
        list.forEach((n, i) => assert.deepEqual(parseClassArg(n, names), [i]));
      },
    ),
    { numRuns: 80 },
  );
});

Deno.test("labels: readLabelsFile names a missing file", async () => {
  assert.equal(await readLabelsFile(undefined), undefined);
  await assert.rejects(
    () => readLabelsFile("/nonexistent/labels.txt"),
    /--labels \/nonexistent\/labels\.txt cannot be read/,
  );
  assert.equal(someNames(["a", "b"]), "a, b");
});

Deno.test("labels: the manifest's labels file (relative to the weights folder) comes after --labels", async () => {
  const dir = await Deno.makeTempDir({ prefix: "labels_" });
  try {
    await Deno.writeTextFile(`${dir}/names.txt`, "alpha\nbeta\ngamma\n");
    const base = new URL(`file://${dir}/`);
    const manifestLabels = await readManifestLabels({ labels: "names.txt" }, base);
    assert.deepEqual(resolveClassNames(3, { manifestLabels, classes: ["a", "b", "c"] }), {
      names: ["alpha", "beta", "gamma"],
      origin: "manifest",
    });
    const labelsFile = { path: "l.txt", text: "x\ny\nz" };
    assert.equal(resolveClassNames(3, { labelsFile, manifestLabels }).origin, "labels-file");
    assert.throws(
      () => resolveClassNames(4, { manifestLabels }),
      /manifest labels file:.*names\.txt has 3 names but the classifier has K=4 classes/,
    );
    assert.equal(await readManifestLabels({}, base), undefined);
    await assert.rejects(
      () => readManifestLabels({ labels: "missing.txt" }, base),
      /the manifest's labels file .*missing\.txt cannot be read/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
