import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import {
  CIFAR10_CLASSES,
  classMeans,
  decodeCifar10Batch,
  imagesToFloat,
  loadCifar10,
} from "../lib/data/cifar10.ts";

const REAL_ARCHIVE = fileURLToPath(
  new URL("../../shared/data/cifar10/cifar-10-binary.tar.gz", import.meta.url),
);
const RECORD = 3073;
const DIR = "cifar-10-batches-bin";

/** Path of the real archive; fails loudly (it is required, CI provides it) when absent. */
async function realArchive(): Promise<string> {
  try {
    await Deno.stat(REAL_ARCHIVE);
  } catch {
    throw new Error(
      `real CIFAR-10 archive missing at ${REAL_ARCHIVE}; these tests need it (CI provides it). ` +
        `Place the official cifar-10-binary.tar.gz there.`,
    );
  }
  return REAL_ARCHIVE;
}

/** A synthetic batch: record r (global index `first + r`) has label (first+r)%10. */
function makeBatch(n: number, first = 0): Uint8Array {
  const out = new Uint8Array(n * RECORD);
  for (let r = 0; r < n; r++) {
    const g = first + r;
    out[r * RECORD] = g % 10;
    for (let j = 0; j < 3072; j++) out[r * RECORD + 1 + j] = (g * 31 + j * 7) % 256;
  }
  return out;
}

interface TarEntry {
  name: string;
  data?: Uint8Array;
  type?: "0" | "5";
}

/** Builds a ustar archive (with the two zero end blocks). */
function makeTar(entries: TarEntry[]): Uint8Array {
  const blocks: Uint8Array[] = [];
  const enc = new TextEncoder();
  const putOctal = (h: Uint8Array, off: number, len: number, v: number) => {
    h.set(enc.encode(v.toString(8).padStart(len - 1, "0") + "\0"), off);
  };
  for (const e of entries) {
    const data = e.data ?? new Uint8Array(0);
    const h = new Uint8Array(512);
    h.set(enc.encode(e.name), 0);
    putOctal(h, 100, 8, e.type === "5" ? 0o755 : 0o644);
    putOctal(h, 108, 8, 0);
    putOctal(h, 116, 8, 0);
    putOctal(h, 124, 12, data.length);
    putOctal(h, 136, 12, 0);
    h[156] = (e.type ?? "0").charCodeAt(0);
    h.set(enc.encode("ustar\u000000"), 257);
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    blocks.push(h, data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((s, b) => s + b.length, 0));
  let o = 0;
  for (const b of blocks) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

/** Train batch sizes of the synthetic dataset (10 train records), and test size. */
const SIZES = [2, 3, 1, 2, 2];
const TEST_SIZE = 3;

/** Entries of a small, valid synthetic CIFAR-10 archive. */
function syntheticEntries(): TarEntry[] {
  const entries: TarEntry[] = [{ name: `${DIR}/`, type: "5" }];
  let first = 0;
  SIZES.forEach((n, i) => {
    entries.push({ name: `${DIR}/data_batch_${i + 1}.bin`, data: makeBatch(n, first) });
    first += n;
  });
  entries.push({ name: `${DIR}/test_batch.bin`, data: makeBatch(TEST_SIZE, 100) });
  entries.push({ name: `${DIR}/batches.meta.txt`, data: new TextEncoder().encode("airplane\n") });
  return entries;
}

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cifar10_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts that the synthetic train split decoded correctly. */
function assertSyntheticTrain(split: { images: Uint8Array; labels: Uint8Array; count: number }) {
  assert.equal(split.count, 10);
  assert.deepEqual([...split.labels], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const expected = makeBatch(10);
  for (let r = 0; r < 10; r++) {
    assert.deepEqual(
      split.images.subarray(r * 3072, (r + 1) * 3072),
      expected.subarray(r * RECORD + 1, (r + 1) * RECORD),
    );
  }
}

Deno.test("real archive: test split has 10000 records, 1000 per class", async () => {
  const split = await loadCifar10(await realArchive(), "test");
  assert.equal(split.count, 10000);
  assert.equal(split.images.length, 10000 * 3072);
  assert.equal(split.labels.length, 10000);
  const hist = new Array(10).fill(0);
  for (const l of split.labels) hist[l]++;
  assert.deepEqual(hist, new Array(10).fill(1000));
});

Deno.test("real archive: train split has 50000 records; limit takes a prefix", async () => {
  const path = await realArchive();
  const train = await loadCifar10(path, "train");
  assert.equal(train.count, 50000);
  assert.equal(train.images.length, 50000 * 3072);

  // limit 10001 crosses from data_batch_1 into data_batch_2.
  const head = await loadCifar10(path, "train", { limit: 10001 });
  assert.equal(head.count, 10001);
  assert.deepEqual(head.labels, train.labels.subarray(0, 10001));
  assert.deepEqual(head.images, train.images.subarray(0, 10001 * 3072));

  // Class means: 5000 records per class; the per-channel means over all classes match the
  // well-known CIFAR-10 train statistics (R 0.4914, G 0.4822, B 0.4465), which checks the
  // R/G/B plane order.
  const t0 = performance.now();
  const { means, counts } = classMeans(train, "01");
  const ms = performance.now() - t0;
  console.log(`classMeans(50000 train, "01") took ${ms.toFixed(0)} ms`);
  assert.deepEqual([...counts], new Array(10).fill(5000));
  const expected = [0.4914, 0.4822, 0.4465];
  for (let c = 0; c < 3; c++) {
    let s = 0;
    for (let k = 0; k < 10; k++) {
      for (let p = 0; p < 1024; p++) s += means[k * 3072 + c * 1024 + p];
    }
    const mean = s / (10 * 1024);
    assert.ok(Math.abs(mean - expected[c]) < 2e-3, `channel ${c} mean ${mean} vs ${expected[c]}`);
  }
  const pm1 = classMeans(train, "pm1").means;
  for (let i = 0; i < means.length; i += 997) {
    assert.ok(Math.abs(pm1[i] - (2 * means[i] - 1)) < 1e-12);
  }
});

Deno.test("synthetic .tar.gz: train concatenates batches 1..5 in order; test is test_batch", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/cifar.tar.gz`;
    await Deno.writeFile(path, gzipSync(makeTar(syntheticEntries())));
    assertSyntheticTrain(await loadCifar10(path, "train"));
    const test = await loadCifar10(path, "test");
    assert.equal(test.count, TEST_SIZE);
    assert.deepEqual([...test.labels], [0, 1, 2]);
    const head = await loadCifar10(path, "train", { limit: 4 });
    assert.equal(head.count, 4);
    assert.deepEqual([...head.labels], [0, 1, 2, 3]);
    assert.equal((await loadCifar10(path, "train", { limit: 99 })).count, 10);
  });
});

Deno.test("synthetic plain .tar is accepted too", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/cifar.tar`;
    await Deno.writeFile(path, makeTar(syntheticEntries()));
    assertSyntheticTrain(await loadCifar10(path, "train"));
  });
});

Deno.test("extracted directory: cifar-10-batches-bin/ itself or its parent", async () => {
  await withTempDir(async (dir) => {
    // Extract the synthetic archive's files by hand.
    await Deno.mkdir(`${dir}/${DIR}`);
    for (const e of syntheticEntries()) {
      if (e.data) await Deno.writeFile(`${dir}/${e.name}`, e.data);
    }
    assertSyntheticTrain(await loadCifar10(`${dir}/${DIR}`, "train"));
    assertSyntheticTrain(await loadCifar10(`${dir}/${DIR}/`, "train"));
    assertSyntheticTrain(await loadCifar10(dir, "train"));
    assert.equal((await loadCifar10(dir, "test")).count, TEST_SIZE);
    assert.equal((await loadCifar10(dir, "train", { limit: 3 })).count, 3);

    // GNU tar's output (directory entry, its own header details) reads the same.
    const tar = new Deno.Command("tar", { args: ["-czf", `${dir}/gnu.tar.gz`, "-C", dir, DIR] });
    const { success, stderr } = await tar.output();
    assert.ok(success, new TextDecoder().decode(stderr));
    assertSyntheticTrain(await loadCifar10(`${dir}/gnu.tar.gz`, "train"));

    await Deno.remove(`${dir}/${DIR}/data_batch_4.bin`);
    await assert.rejects(loadCifar10(dir, "train"), /has no data_batch_4\.bin/);
  });
});

Deno.test("error: missing path names it and suggests the shared archive", async () => {
  await assert.rejects(
    loadCifar10("no/such/cifar.tar.gz", "train"),
    (e: Error) => {
      assert.match(e.message, /"no\/such\/cifar\.tar\.gz" does not exist/);
      assert.match(e.message, /\.\.\/shared\/data\/cifar10\/cifar-10-binary\.tar\.gz/);
      return true;
    },
  );
});

Deno.test("error: a file that is neither gzip nor tar", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/notes.txt`;
    await Deno.writeFile(path, new TextEncoder().encode("hello, not an archive\n".repeat(40)));
    await assert.rejects(loadCifar10(path, "test"), /neither gzip .* nor a tar archive/);
    const gz = `${dir}/notes.gz`;
    await Deno.writeFile(gz, gzipSync(new TextEncoder().encode("x".repeat(2000))));
    await assert.rejects(loadCifar10(gz, "test"), /gzip-compressed but its content is not a tar/);
    const badGz = `${dir}/bad.gz`;
    await Deno.writeFile(badGz, new Uint8Array([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5]));
    await assert.rejects(loadCifar10(badGz, "test"), /damaged gzip data/);
  });
});

Deno.test("error: truncated tar (entry larger than the remaining bytes)", async () => {
  await withTempDir(async (dir) => {
    const tar = makeTar(syntheticEntries());
    const path = `${dir}/cut.tar.gz`;
    // Keep the first header and half of data_batch_1's payload.
    await Deno.writeFile(path, gzipSync(tar.subarray(0, 1024 + RECORD)));
    await assert.rejects(
      loadCifar10(path, "train"),
      /truncated: tar entry "cifar-10-batches-bin\/data_batch_1\.bin" .* declares 6146 bytes/,
    );
  });
});

Deno.test("error: batch file missing from the archive", async () => {
  await withTempDir(async (dir) => {
    const entries = syntheticEntries().filter((e) => !e.name.endsWith("data_batch_3.bin"));
    const path = `${dir}/partial.tar.gz`;
    await Deno.writeFile(path, gzipSync(makeTar(entries)));
    await assert.rejects(
      loadCifar10(path, "train"),
      /has no cifar-10-batches-bin\/data_batch_3\.bin/,
    );
    assert.equal((await loadCifar10(path, "test")).count, TEST_SIZE);
  });
});

Deno.test("error: batch length not a positive multiple of 3073", async () => {
  const bad = new Uint8Array(2 * RECORD + 5);
  assert.throws(
    () => decodeCifar10Batch(bad, "data_batch_9.bin"),
    /"data_batch_9\.bin" is 6151 bytes; expected a positive multiple of 3073/,
  );
  assert.throws(() => decodeCifar10Batch(new Uint8Array(0), "empty.bin"), /is 0 bytes/);
  await withTempDir(async (dir) => {
    const entries = syntheticEntries().map((e) =>
      e.name.endsWith("test_batch.bin") ? { ...e, data: bad } : e
    );
    const path = `${dir}/badlen.tar.gz`;
    await Deno.writeFile(path, gzipSync(makeTar(entries)));
    await assert.rejects(loadCifar10(path, "test"), /test_batch\.bin in .* is 6151 bytes/);
  });
});

Deno.test("error: label 10", async () => {
  const batch = makeBatch(3);
  batch[2 * RECORD] = 10;
  assert.throws(
    () => decodeCifar10Batch(batch, "test_batch.bin"),
    /"test_batch\.bin" record 2 \(byte offset 6146\) has label 10/,
  );
  await withTempDir(async (dir) => {
    const entries = syntheticEntries().map((e) =>
      e.name.endsWith("data_batch_5.bin") ? { ...e, data: batch } : e
    );
    const path = `${dir}/badlabel.tar.gz`;
    await Deno.writeFile(path, gzipSync(makeTar(entries)));
    await assert.rejects(loadCifar10(path, "train", { limit: 1 }), /has label 10/);
  });
});

Deno.test("error: bad split or limit arguments", async () => {
  await assert.rejects(loadCifar10("x", "val" as "test"), /split must be "train" or "test"/);
  await assert.rejects(loadCifar10("x", "test", { limit: 0 }), /limit must be a positive integer/);
  await assert.rejects(loadCifar10("x", "test", { limit: 1.5 }), /got 1\.5/);
});

Deno.test("decodeCifar10Batch strips label bytes and keeps the CHW planes", () => {
  const split = decodeCifar10Batch(makeBatch(4, 7), "b.bin");
  assert.equal(split.count, 4);
  assert.deepEqual([...split.labels], [7, 8, 9, 0]);
  assert.equal(split.images[3072 + 5], (8 * 31 + 5 * 7) % 256);
});

Deno.test("imagesToFloat maps bytes to [-1, 1] or [0, 1]", () => {
  const bytes = new Uint8Array([0, 51, 255, 128]);
  assert.deepEqual(
    [...imagesToFloat(bytes, "pm1")],
    [-1, 51 / 127.5 - 1, 1, 128 / 127.5 - 1].map(
      Math.fround,
    ),
  );
  assert.deepEqual([...imagesToFloat(bytes, "01")], [0, 0.2, 1, 128 / 255].map(Math.fround));
  assert.throws(() => imagesToFloat(bytes, "0255" as "01"), /range must be "pm1" or "01"/);
});

Deno.test("classMeans: exact per-class means, NaN for absent classes", () => {
  const images = new Uint8Array(3 * 3072);
  images.fill(0, 0, 3072);
  images.fill(255, 3072, 2 * 3072);
  images.fill(51, 2 * 3072);
  const split = { images, labels: new Uint8Array([3, 3, 9]), count: 3 };
  const { means, counts } = classMeans(split, "pm1");
  assert.equal(means.length, 10 * 3072);
  assert.deepEqual([...counts], [0, 0, 0, 2, 0, 0, 0, 0, 0, 1]);
  assert.equal(means[3 * 3072 + 100], 0);
  assert.ok(Math.abs(means[9 * 3072] - (51 / 127.5 - 1)) < 1e-15);
  assert.ok(Number.isNaN(means[0]));
  assert.equal(classMeans(split, "01").means[9 * 3072 + 3071], 0.2);
  assert.throws(
    () => classMeans({ images, labels: new Uint8Array(2), count: 3 }, "01"),
    /inconsistent split/,
  );
  assert.equal(CIFAR10_CLASSES[3], "cat");
  assert.equal(CIFAR10_CLASSES.length, 10);
});
