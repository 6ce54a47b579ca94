// Per-image random streams and seed lists.
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseSeeds, RandomStream } from "../lib/random.ts";

Deno.test("streams are reproducible per seed and differ across seeds", () => {
  const a = new RandomStream(7).fillNormal(new Float32Array(100));
  const b = new RandomStream(7).fillNormal(new Float32Array(100));
  const c = new RandomStream(8).fillNormal(new Float32Array(100));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("normals have mean 0, variance 1, and uniforms are in (0, 1)", () => {
  const s = new RandomStream(123);
  const n = 200_000;
  let m = 0, v = 0, m4 = 0;
  for (let i = 0; i < n; i++) {
    const z = s.normal();
    m += z;
    v += z * z;
    m4 += z ** 4;
  }
  m /= n;
  v /= n;
  m4 /= n;
  assert.ok(Math.abs(m) < 0.01, `mean ${m}`); // SE 0.0022
  assert.ok(Math.abs(v - 1) < 0.015, `var ${v}`); // SE 0.0032
  assert.ok(Math.abs(m4 - 3) < 0.1, `kurtosis ${m4}`);
  for (let i = 0; i < 10000; i++) {
    const u = s.uniform();
    assert.ok(u > 0 && u < 1);
  }
});

Deno.test("seed lists parse ranges and reject malformed text", () => {
  assert.deepEqual(parseSeeds("0-3"), [0, 1, 2, 3]);
  assert.deepEqual(parseSeeds("5"), [5]);
  assert.deepEqual(parseSeeds("0-1,10,20-21"), [0, 1, 10, 20, 21]);
  assert.throws(() => parseSeeds("a-b"), /malformed at 'a-b'/);
  assert.throws(() => parseSeeds("5-2"), /runs backwards; write 2-5/);
  assert.throws(() => parseSeeds("1,1"), /repeats a seed/);
  assert.throws(() => parseSeeds("4294967296"), /seeds are integers in 0\.\.4294967295/);
  fc.assert(fc.property(fc.nat(1000), fc.nat(50), (a, len) => {
    assert.equal(parseSeeds(`${a}-${a + len}`).length, len + 1);
  }));
});
