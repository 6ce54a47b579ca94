import assert from "node:assert/strict";
import fc from "fast-check";
import { chwToHwcBytes, decodePng, encodePng, makeGrid, writeFileAtomic } from "../lib/io/png.ts";

Deno.test("encodePng → decodePng round trip is exact", () => {
  const w = 7, h = 5;
  const rgb = new Uint8Array(w * h * 3).map((_, i) => (i * 37 + 11) % 256);
  const png = encodePng(rgb, w, h);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const back = decodePng(png);
  assert.equal(back.width, w);
  assert.equal(back.height, h);
  assert.deepEqual(back.rgb, rgb);
});

Deno.test("encodePng → decodePng round trip (property)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      (w, h, seed) => {
        const rgb = new Uint8Array(w * h * 3).map((_, i) => (seed + i * 2654435761) >>> 24);
        const back = decodePng(encodePng(rgb, w, h));
        return back.width === w && back.height === h &&
          back.rgb.every((v, i) => v === rgb[i]);
      },
    ),
    { numRuns: 30 },
  );
});

Deno.test("encodePng/decodePng reject bad input", () => {
  assert.throws(
    () => encodePng(new Uint8Array(10), 2, 2),
    /has 10 bytes but a 2x2 RGB image needs 12/,
  );
  assert.throws(() => encodePng(new Uint8Array(0), 0, 2), /positive integers, got width=0/);
  assert.throws(() => decodePng(new Uint8Array([1, 2, 3, 4])), /could not decode 4 bytes as PNG/);
});

Deno.test("chwToHwcBytes quantises pm1 like torchvision: -1→0, 0→128, 1→255, clamps", () => {
  const xs = [-1, 0, 1, -3, 5, 0.5, -0.999, Infinity, -Infinity];
  const x = new Float32Array(xs);
  const out = chwToHwcBytes(x, 0, 1, 1, xs.length, "pm1");
  // 0.5 → 0.75*255 = 191.25 → 191; -0.999 → 0.0005*255 ≈ 0.13 → 0.
  assert.deepEqual([...out], [0, 128, 255, 0, 255, 191, 0, 255, 0]);
});

Deno.test("chwToHwcBytes quantises 01: 0.5→128, clamps out-of-range", () => {
  const x = new Float32Array([0, 0.5, 1, -0.1, 1.1, 0.2]);
  assert.deepEqual([...chwToHwcBytes(x, 0, 1, 2, 3, "01")], [0, 128, 255, 0, 255, 51]);
});

Deno.test("chwToHwcBytes reorders CHW planes to HWC and honours offset", () => {
  // Two images of 3x1x2; take the second.
  const x = new Float32Array(12);
  const second = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]; // R0 R1 G0 G1 B0 B1
  x.set(second, 6);
  const out = chwToHwcBytes(x, 6, 3, 1, 2, "01");
  const q = (v: number) => Math.round(Math.fround(v) * 255);
  assert.deepEqual([...out], [q(0.1), q(0.3), q(0.5), q(0.2), q(0.4), q(0.6)]);
  assert.throws(() => chwToHwcBytes(x, 7, 3, 1, 2, "01"), /needs elements \[7, 13\).*has 12/);
  assert.throws(() => chwToHwcBytes(x, 0, 3, 1, 2, "x" as "01"), /range must be/);
  x[8] = NaN;
  assert.throws(
    () => chwToHwcBytes(x, 6, 3, 1, 2, "01"),
    /NaN at element 8 \(channel 1, pixel 0\)/,
  );
});

Deno.test("makeGrid: geometry, tile placement, padding and empty cells", () => {
  const w = 2, h = 1;
  const tile = (v: number) => new Uint8Array(w * h * 3).fill(v);
  const grid = makeGrid([tile(10), tile(20), tile(30)], w, h, 2, 1, 7);
  // 2 columns, 2 rows: width 2*(2+1)+1 = 7, height 2*(1+1)+1 = 5.
  assert.equal(grid.width, 7);
  assert.equal(grid.height, 5);
  assert.equal(grid.rgb.length, 7 * 5 * 3);
  const px = (x: number, y: number) => grid.rgb[(y * grid.width + x) * 3];
  const rows = [];
  for (let y = 0; y < grid.height; y++) {
    const row = [];
    for (let x = 0; x < grid.width; x++) row.push(px(x, y));
    rows.push(row);
  }
  assert.deepEqual(rows, [
    [7, 7, 7, 7, 7, 7, 7],
    [7, 10, 10, 7, 20, 20, 7],
    [7, 7, 7, 7, 7, 7, 7],
    [7, 30, 30, 7, 7, 7, 7],
    [7, 7, 7, 7, 7, 7, 7],
  ]);

  // Defaults pad=2, padValue=255; cols clamps to the image count.
  const wide = makeGrid([tile(0), tile(0)], w, h, 10);
  assert.equal(wide.width, 2 * (2 + 2) + 2);
  assert.equal(wide.height, 1 * (1 + 2) + 2);
  assert.equal(wide.rgb[0], 255);
  assert.equal(makeGrid([tile(5)], w, h, 1, 0).rgb.every((v) => v === 5), true);
});

Deno.test("makeGrid rejects empty input and wrong tile sizes", () => {
  assert.throws(() => makeGrid([], 2, 2, 1), /images is empty/);
  assert.throws(
    () => makeGrid([new Uint8Array(12), new Uint8Array(11)], 2, 2, 2),
    /image 1 has 11 bytes but every tile must be 2x2 RGB = 12 bytes/,
  );
  assert.throws(() => makeGrid([new Uint8Array(12)], 2, 2, 0), /cols must be a positive integer/);
});

Deno.test("writeFileAtomic creates parents, replaces, and leaves no temp file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "png_test_" });
  try {
    const path = `${dir}/a/b/grid.png`;
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    assert.deepEqual(await Deno.readFile(path), new Uint8Array([1, 2, 3]));
    await writeFileAtomic(path, encodePng(new Uint8Array([9, 8, 7]), 1, 1));
    assert.deepEqual(decodePng(await Deno.readFile(path)).rgb, new Uint8Array([9, 8, 7]));
    const names = [];
    for await (const e of Deno.readDir(`${dir}/a/b`)) names.push(e.name);
    assert.deepEqual(names, ["grid.png"]);
    await assert.rejects(
      writeFileAtomic(`${dir}/a/b/grid.png/inside`, new Uint8Array(1)),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
