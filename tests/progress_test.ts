// The progress line's rate follows the last minute, not the average since the start.
import assert from "node:assert/strict";
import { RATE_WINDOW_S, recentRate } from "../lib/progress.ts";

Deno.test("recentRate: the pace of the last minute, not the whole run's average", () => {
  // 10 units/s for 10 minutes, then 1 unit/s for 2 minutes
  const h = [];
  for (let s = 0; s <= 600; s += 5) h.push({ sec: s, done: 10 * s });
  for (let s = 605; s <= 720; s += 5) h.push({ sec: s, done: 6000 + (s - 600) });
  const r = recentRate(h);
  assert.ok(Math.abs(r - 1) < 1e-9, `rate ${r}, want 1 (the average would be ${6120 / 720})`);
  // shorter than the window: from the first sample
  assert.equal(recentRate([{ sec: 0, done: 0 }, { sec: 4, done: 8 }]), 2);
  assert.equal(recentRate([{ sec: 0, done: 0 }]), 0);
  assert.equal(recentRate([]), 0);
  // exactly the window back
  assert.equal(
    recentRate([{ sec: 0, done: 0 }, { sec: 10, done: 100 }, {
      sec: 10 + RATE_WINDOW_S,
      done: 160,
    }]),
    1,
  );
});
