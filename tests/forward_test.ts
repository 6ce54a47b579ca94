// The forward marginal q(x_t | x0): empirical mean and variance (eq 2.11).
import assert from "node:assert/strict";
import { qSample } from "../lib/forward.ts";
import { RandomStream } from "../lib/random.ts";
import { linearSchedule } from "../lib/schedule.ts";

Deno.test("q(x_t | x0): empirical mean sqrt(abar) x0 and variance 1 - abar", () => {
  const s = linearSchedule();
  const x0 = Float32Array.from([-1, -0.3, 0, 0.5, 1]);
  const reps = 40_000;
  for (const t of [0, 100, 500, 999]) {
    const abar = s.alphasCumprod[t];
    const rng = new RandomStream(t);
    const sum = new Float64Array(5), sq = new Float64Array(5);
    const eps = new Float32Array(5), xt = new Float32Array(5);
    for (let r = 0; r < reps; r++) {
      qSample(x0, abar, rng.fillNormal(eps), xt);
      for (let i = 0; i < 5; i++) {
        sum[i] += xt[i];
        sq[i] += xt[i] * xt[i];
      }
    }
    for (let i = 0; i < 5; i++) {
      const mean = sum[i] / reps, v = sq[i] / reps - mean * mean;
      const se = Math.sqrt((1 - abar) / reps);
      assert.ok(Math.abs(mean - Math.sqrt(abar) * x0[i]) < 5 * se + 1e-7, `t=${t} mean ${mean}`);
      // SE of a variance estimate ~ var * sqrt(2/reps)
      assert.ok(
        Math.abs(v - (1 - abar)) < 5 * (1 - abar) * Math.sqrt(2 / reps) + 1e-9,
        `t=${t} var ${v}`,
      );
    }
  }
});
