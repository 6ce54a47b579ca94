// Property tests of the schedule identities (METHOD.md §2).
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  abarAt,
  cosineSchedule,
  linearSchedule,
  posteriorVariance,
  scaledLinearSchedule,
  scheduleFromBetas,
} from "../lib/schedule.ts";
import { thesisGrid, timestepGrid } from "../lib/timesteps.ts";

const betasArb = fc.array(fc.double({ min: 1e-5, max: 0.5, noNaN: true }), {
  minLength: 1,
  maxLength: 300,
});

Deno.test("abar[t] is the running product of alpha, monotone, in (0, 1)", () => {
  fc.assert(
    fc.property(betasArb, (betas) => {
      const s = scheduleFromBetas(betas);
      let prod = 1;
      for (let t = 0; t < s.T; t++) {
        prod *= 1 - betas[t];
        assert.ok(Math.abs(s.alphasCumprod[t] - prod) <= 1e-15 * Math.max(1, prod));
        assert.ok(s.alphasCumprod[t] > 0 && s.alphasCumprod[t] < 1);
        if (t > 0) assert.ok(s.alphasCumprod[t] < s.alphasCumprod[t - 1]);
      }
    }),
    { numRuns: 200 },
  );
});

Deno.test("built-in schedules: linear endpoints, cosine and scaled_linear are valid", () => {
  const s = linearSchedule();
  assert.equal(s.T, 1000);
  assert.equal(s.betas[0], 1e-4);
  assert.ok(Math.abs(s.betas[999] - 0.02) < 1e-15);
  // google/ddpm-cifar10-32: abar_999 ~ 4.04e-5
  assert.ok(Math.abs(s.alphasCumprod[999] - 4.035e-5) < 1e-7, `${s.alphasCumprod[999]}`);
  for (const sch of [cosineSchedule(), scaledLinearSchedule(), cosineSchedule(50)]) {
    for (let t = 1; t < sch.T; t++) assert.ok(sch.alphasCumprod[t] < sch.alphasCumprod[t - 1]);
  }
  // cosine: abar(t) = f(t+1)/f(0) where betas are not clipped
  const c = cosineSchedule(1000);
  const f = (t: number) => Math.cos(((t / 1000 + 0.008) / 1.008) * Math.PI / 2) ** 2;
  assert.ok(Math.abs(c.alphasCumprod[500] - f(501) / f(0)) < 1e-12);
});

Deno.test("abar(-1) = 1 and out-of-range timesteps are errors", () => {
  const s = linearSchedule(10);
  assert.equal(abarAt(s, -1), 1);
  assert.throws(() => abarAt(s, 10), /outside 0\.\.9/);
  assert.throws(() => abarAt(s, 1.5), /outside/);
  assert.throws(() => scheduleFromBetas([0.1, 1.2]), /beta\[1\] = 1\.2 is outside/);
  assert.throws(() => scheduleFromBetas([]), /at least one beta/);
});

Deno.test("posterior variance: fixed_small = beta (1-abar_{t-1})/(1-abar_t) <= beta = fixed_large", () => {
  fc.assert(fc.property(betasArb, fc.nat(), (betas, k) => {
    const s = scheduleFromBetas(betas);
    const t = k % s.T;
    const small = posteriorVariance(s, t, "fixed_small");
    const large = posteriorVariance(s, t, "fixed_large");
    assert.ok(small <= large * (1 + 1e-12));
    if (t === 0) assert.equal(small, 0);
  }));
});

Deno.test("grids: the thesis grid is 990, 980, ..., 0; spacings give descending distinct steps", () => {
  const g = thesisGrid();
  assert.equal(g.length, 100);
  assert.equal(g[0], 990);
  assert.equal(g[99], 0);
  assert.ok(g.every((t, i) => t === 990 - 10 * i));
  assert.deepEqual(timestepGrid(1000, 10, "trailing"), [
    999,
    899,
    799,
    699,
    599,
    499,
    399,
    299,
    199,
    99,
  ]);
  assert.deepEqual(timestepGrid(1000, 4, "linspace"), [999, 666, 333, 0]);
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 1000 }),
    fc.integer({ min: 1, max: 1000 }),
    fc.constantFrom("leading", "trailing", "linspace" as const),
    (T, k, spacing) => {
      const steps = Math.min(k, T);
      const grid = timestepGrid(T, steps, spacing);
      assert.equal(grid.length, steps);
      for (let i = 0; i < grid.length; i++) {
        assert.ok(grid[i] >= 0 && grid[i] < T);
        if (i > 0) assert.ok(grid[i] < grid[i - 1]);
      }
    },
  ));
  assert.throws(() => timestepGrid(1000, 0), /--steps 0 is invalid/);
  assert.throws(() => timestepGrid(1000, 1001), /from 1 to T = 1000/);
});
