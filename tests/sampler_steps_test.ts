// Property tests of the DDIM/DDPM step identities (METHOD.md §2, eq 2.13, 2.25).
import assert from "node:assert/strict";
import fc from "fast-check";
import { ddimSigma, ddimStep } from "../lib/sampler/ddim.ts";
import { ddpmCoefficients, ddpmStep } from "../lib/sampler/ddpm.ts";
import { abarAt, linearSchedule, posteriorVariance, scheduleFromBetas } from "../lib/schedule.ts";

const vec = (n: number) =>
  fc.array(fc.float({ min: -3, max: 3, noNaN: true, noDefaultInfinity: true }), {
    minLength: n,
    maxLength: n,
  })
    .map((a) => Float32Array.from(a));

const scheduleArb = fc.array(fc.double({ min: 1e-4, max: 0.05, noNaN: true }), {
  minLength: 2,
  maxLength: 200,
})
  .map((b) => scheduleFromBetas(b));

Deno.test("DDIM eta = 1 on the full grid: sigma^2 equals DDPM's beta~_t and the step equals DDPM's", () => {
  fc.assert(
    fc.property(scheduleArb, fc.nat(), vec(16), vec(16), vec(16), (s, k, x, eps, z) => {
      const t = 1 + (k % (s.T - 1)); // t >= 1 so the DDPM step is stochastic
      const abarT = abarAt(s, t), abarPrev = abarAt(s, t - 1);
      const sigma = ddimSigma(abarT, abarPrev, 1);
      const betaTilde = posteriorVariance(s, t, "fixed_small");
      assert.ok(
        Math.abs(sigma * sigma - betaTilde) <= 1e-12 + 1e-9 * betaTilde,
        `${sigma ** 2} vs ${betaTilde}`,
      );
      const a = ddimStep({ x, eps, abarT, abarPrev, eta: 1, noise: z });
      const b = ddpmStep({ x, eps, schedule: s, t, variance: "fixed_small", noise: z });
      for (let i = 0; i < x.length; i++) {
        assert.ok(
          Math.abs(a.x[i] - b.x[i]) <= 2e-5 * (1 + Math.abs(b.x[i])),
          `${i}: ${a.x[i]} vs ${b.x[i]}`,
        );
      }
    }),
    { numRuns: 200 },
  );
});

Deno.test("with x0 clipping, DDIM eta = 1 (eps re-derived from the clipped x0) still equals DDPM", () => {
  const big = fc.array(fc.float({ min: -40, max: 40, noNaN: true, noDefaultInfinity: true }), {
    minLength: 16,
    maxLength: 16,
  })
    .map((a) => Float32Array.from(a));
  fc.assert(
    fc.property(scheduleArb, fc.nat(), big, vec(16), vec(16), (s, k, x, eps, z) => {
      const t = 1 + (k % (s.T - 1));
      const abarT = abarAt(s, t), abarPrev = abarAt(s, t - 1);
      const a = ddimStep({ x, eps, abarT, abarPrev, eta: 1, noise: z, clip: true });
      const b = ddpmStep({ x, eps, schedule: s, t, variance: "fixed_small", noise: z, clip: true });
      for (let i = 0; i < x.length; i++) {
        assert.ok(
          Math.abs(a.x[i] - b.x[i]) <= 2e-5 * (1 + Math.abs(b.x[i])),
          `${i}: ${a.x[i]} vs ${b.x[i]}`,
        );
        assert.ok(a.x0[i] >= -1 && a.x0[i] <= 1);
      }
    }),
    { numRuns: 200 },
  );
});

Deno.test("keepEps (diffusers) differs from the consistent form only where x0 was clipped", () => {
  const s = linearSchedule();
  const abarT = abarAt(s, 900);
  // entry 0: x0_hat far outside [-1, 1]; entry 1: x0_hat = 0.5 exactly representable inside
  const x = Float32Array.from([3, 0.5 * Math.sqrt(abarT) + 0.3 * Math.sqrt(1 - abarT)]);
  const eps = Float32Array.from([0.2, 0.3]);
  const p = { x, eps, abarT, abarPrev: abarAt(s, 890), eta: 0, clip: true };
  const a = ddimStep(p), b = ddimStep({ ...p, keepEps: true });
  assert.notEqual(a.x[0], b.x[0]);
  assert.equal(a.x[1], b.x[1]);
  assert.deepEqual(a.x0, b.x0);
});

Deno.test("DDIM eta = 0 is deterministic: no noise needed, noise ignored", () => {
  fc.assert(
    fc.property(vec(8), vec(8), vec(8), fc.integer({ min: 1, max: 999 }), (x, eps, z, t) => {
      const s = linearSchedule();
      const p = { x, eps, abarT: abarAt(s, t), abarPrev: abarAt(s, t - 1), eta: 0 };
      const a = ddimStep(p);
      const b = ddimStep({ ...p, noise: z });
      assert.deepEqual(a.x, b.x);
    }),
  );
});

Deno.test("DDIM eta = 0 on a sub-grid maps x0-consistent inputs onto the forward marginal of x0", () => {
  fc.assert(
    fc.property(
      vec(12),
      vec(12),
      fc.integer({ min: 1, max: 999 }),
      fc.integer({ min: -1, max: 998 }),
      (x0, e, t, tp0) => {
        const s = linearSchedule();
        const tp = Math.min(tp0, t - 1);
        const abarT = abarAt(s, t), abarPrev = abarAt(s, tp);
        // x_t built from a known x0 and noise e: the exact eps is e
        const xt = Float32Array.from(
          x0,
          (v, i) => Math.sqrt(abarT) * v + Math.sqrt(1 - abarT) * e[i],
        );
        const { x, x0: x0hat } = ddimStep({ x: xt, eps: e, abarT, abarPrev, eta: 0 });
        for (let i = 0; i < 12; i++) {
          // the x0 that the float32-rounded x_t and the noise e imply exactly
          const x0exact = (xt[i] - Math.sqrt(1 - abarT) * e[i]) / Math.sqrt(abarT);
          const want = Math.sqrt(abarPrev) * x0exact + Math.sqrt(1 - abarPrev) * e[i];
          assert.ok(
            Math.abs(x[i] - want) <= 1e-6 * (1 + Math.abs(want)),
            `x[${i}] ${x[i]} vs ${want}`,
          );
          assert.ok(Math.abs(x0hat[i] - x0exact) <= 1e-6 * (1 + Math.abs(x0exact)));
          // and that x0 is the one we started from, up to float32 rounding of x_t
          assert.ok(Math.abs(x0exact - x0[i]) <= 2e-7 * (1 + Math.abs(xt[i])) / Math.sqrt(abarT));
        }
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("x0 clipping bounds x0_hat to [-1, 1] in both steps", () => {
  const s = linearSchedule();
  const x = Float32Array.from([5, -5, 0.5]), eps = new Float32Array(3), z = new Float32Array(3);
  const a = ddimStep({
    x,
    eps,
    abarT: abarAt(s, 500),
    abarPrev: abarAt(s, 490),
    eta: 0,
    clip: true,
  });
  const b = ddpmStep({
    x,
    eps,
    schedule: s,
    t: 500,
    variance: "fixed_large",
    noise: z,
    clip: true,
  });
  for (const v of [...a.x0, ...b.x0]) assert.ok(v >= -1 && v <= 1);
  assert.equal(a.x0[0], 1);
  assert.equal(b.x0[1], -1);
});

Deno.test("DDPM posterior mean coefficients: mu = c0 x0 + ct x_t is the true posterior mean", () => {
  // E[x_{t-1} | x_t, x0] from Bayes on the Gaussian chain, computed independently
  const s = linearSchedule();
  for (const t of [1, 10, 500, 999]) {
    const { c0, ct, variance } = ddpmCoefficients(s, t, "fixed_small");
    const ab = s.alphasCumprod[t], abp = s.alphasCumprod[t - 1], alpha = s.alphas[t];
    // prior x_{t-1}|x0 ~ N(sqrt(abp) x0, 1-abp); likelihood x_t|x_{t-1} ~ N(sqrt(alpha) x_{t-1}, 1-alpha)
    const prec = 1 / (1 - abp) + alpha / (1 - alpha);
    assert.ok(Math.abs(1 / prec - variance) < 1e-12);
    assert.ok(Math.abs(Math.sqrt(abp) / (1 - abp) / prec - c0) < 1e-12);
    assert.ok(Math.abs(Math.sqrt(alpha) / (1 - alpha) / prec - ct) < 1e-9 * ct, `${t}`);
    void ab;
  }
});

Deno.test("step errors: missing noise and length mismatch are reported", () => {
  const s = linearSchedule();
  const x = new Float32Array(4), eps = new Float32Array(4);
  assert.throws(
    () => ddimStep({ x, eps, abarT: abarAt(s, 10), abarPrev: abarAt(s, 0), eta: 0.5 }),
    /noise of length 4 is required/,
  );
  assert.throws(
    () => ddimStep({ x, eps: new Float32Array(3), abarT: 0.5, abarPrev: 0.6, eta: 0 }),
    /eps has 3 values, x has 4/,
  );
  assert.throws(
    () => ddpmStep({ x, eps, schedule: s, t: 5, variance: "fixed_small" }),
    /needs noise/,
  );
});
