// Issue 14, item 2-3: every output parameterisation and timestep convention converts exactly to
// eps / x0_hat (closed forms), and the exact mixture denoiser written in each one samples the same
// images; the learned variance of the DDPM step against eq 15 (Nichol and Dhariwal 2021).
import assert from "node:assert/strict";
import fc from "fast-check";
import { mixtureEps } from "../lib/models/mixture.ts";
import {
  convertOutput,
  type OutputSpec,
  PREDICTION_TYPES,
} from "../lib/models/parameterisation.ts";
import { type Network, networkDenoiser } from "../lib/models/onnx_denoiser.ts";
import {
  abarAt,
  cosineSchedule,
  learnedLogVariance,
  linearSchedule,
  type NoiseSchedule,
  posteriorVariance,
  type TimestepConvention,
  timestepValue,
} from "../lib/schedule.ts";
import { ddpmStep } from "../lib/sampler/ddpm.ts";
import { guided } from "../lib/guidance/guided.ts";
import { sample, type SamplerConfig } from "../lib/sampler/loop.ts";
import { MIX_SHAPE, testMixture } from "./_mixture_fixture.ts";

const SPECS: OutputSpec[] = PREDICTION_TYPES.flatMap((prediction) =>
  (["fixed", "learned_range"] as const).map((variance) => ({ prediction, variance }))
);

Deno.test("conversion of every parameterisation matches its closed form (x_t = a x0 + s eps)", () => {
  fc.assert(
    fc.property(
      fc.double({ min: 1e-4, max: 0.9999, noNaN: true }),
      fc.array(
        fc.tuple(
          fc.double({ min: -1, max: 1, noNaN: true }),
          fc.double({ min: -3, max: 3, noNaN: true }),
        ),
        {
          minLength: 2,
          maxLength: 12,
        },
      ).filter((a) => a.length % 2 === 0),
      fc.constantFrom(...SPECS),
      (abar, pairs, spec) => {
        const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
        const n = 2, per = pairs.length / 2, C = spec.variance === "learned_range" ? 2 : 1;
        const x = new Float32Array(n * per), out = new Float32Array(n * per * C);
        const x0Ref: number[] = [], epsRef: number[] = [];
        pairs.forEach(([x0, eps], i) => {
          const xi = Math.fround(a * x0 + s * eps);
          x[i] = xi;
          // the true (x0, eps) consistent with the float32 x_t
          const e = eps + (xi - (a * x0 + s * eps)) / s;
          x0Ref.push(x0), epsRef.push(e);
          const k = Math.floor(i / per), p = i % per;
          // what each network outputs, written from its definition (not from the converter)
          out[k * per * C + p] = spec.prediction === "epsilon"
            ? e
            : spec.prediction === "sample"
            ? x0
            : a * e - s * x0; // v = alpha eps - sigma x0 (Salimans and Ho 2022)
          if (C === 2) out[k * per * 2 + per + p] = Math.tanh(x0);
        });
        const got = convertOutput(out, x, abar, spec, n);
        for (let i = 0; i < x.length; i++) {
          const x0Err = Math.abs(got.x0[i] - x0Ref[i]), epsErr = Math.abs(got.eps[i] - epsRef[i]);
          // float32 storage of the output, amplified by 1/a (x0 from eps) or 1/s (eps from x0)
          const tol = 4e-7 * (1 + 3 / a) * (1 + 3 / s) * 4;
          assert.ok(x0Err <= tol * 3, `${JSON.stringify(spec)} x0 err ${x0Err} (abar ${abar})`);
          assert.ok(epsErr <= tol * 3, `${JSON.stringify(spec)} eps err ${epsErr} (abar ${abar})`);
          if (got.v) assert.equal(got.v[i], Math.fround(Math.tanh(x0Ref[i])));
        }
        assert.equal(got.v === undefined, spec.variance === "fixed");
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("conversion refuses an output of the wrong size, naming what the model must give", () => {
  const x = new Float32Array(12);
  assert.throws(
    () =>
      convertOutput(new Float32Array(12), x, 0.5, {
        prediction: "epsilon",
        variance: "learned_range",
      }, 2),
    /12 values for 2 images of 6.*learned variance model must give 12 per image/,
  );
});

// --- the exact mixture denoiser written in every parameterisation and timestep convention ---

const mix = testMixture();
const D = mix.dim;

/** The mixture as a raw network of `spec` that decodes its timestep value by `conv`. */
function mixtureNetwork(
  schedule: NoiseSchedule,
  spec: OutputSpec,
  conv: TimestepConvention,
  seen: number[],
  vOut = 0.3,
): Network {
  return (x, tv, n) => {
    seen.push(tv);
    const t = conv === "index"
      ? tv
      : conv === "rescaled"
      ? Math.round(tv * schedule.T / 1000)
      : Math.round(tv * schedule.T - 1);
    assert.ok(
      Math.abs(timestepValue(t, schedule.T, conv) - tv) < 1e-9,
      `value ${tv} is not ${conv}`,
    );
    const abar = abarAt(schedule, t), a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
    const eps = mixtureEps(mix, x, n, abar);
    const C = spec.variance === "learned_range" ? 2 : 1;
    const out = new Float32Array(n * D * C);
    for (let k = 0; k < n; k++) {
      for (let p = 0; p < D; p++) {
        const i = k * D + p, e = eps[i], x0 = (x[i] - s * e) / a;
        out[k * D * C + p] = spec.prediction === "epsilon"
          ? e
          : spec.prediction === "sample"
          ? x0
          : a * e - s * x0;
        if (C === 2) out[k * D * 2 + D + p] = vOut; // the variance interpolation, read by DDPM only
      }
    }
    return Promise.resolve(out);
  };
}

function cfgFor(schedule: NoiseSchedule, sampler: "ddim" | "ddpm"): SamplerConfig {
  return {
    sampler,
    schedule,
    steps: sampler === "ddpm" ? schedule.T : 25,
    eta: sampler === "ddim" ? 0.5 : 0,
    spacing: "leading",
    clip: true,
    variance: "fixed_small",
    seeds: [0, 1, 2, 3],
    shape: MIX_SHAPE,
    batchSize: 3,
  };
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

for (
  const [schedule, conv] of [
    [linearSchedule(), "index"],
    [cosineSchedule(2000), "rescaled"],
    [linearSchedule(200, 5e-4, 0.1), "continuous"],
  ] as const
) {
  Deno.test(`mixture in every parameterisation gives identical samples (${schedule.name}, t ${conv})`, async () => {
    for (const sampler of ["ddim", "ddpm"] as const) {
      const cfg = cfgFor(schedule, sampler);
      const refSeen: number[] = [];
      const ref = await sample(
        networkDenoiser(
          mixtureNetwork(schedule, { prediction: "epsilon", variance: "fixed" }, "index", refSeen),
          { prediction: "epsilon", variance: "fixed" },
        ),
        cfg,
      );
      for (const spec of SPECS) {
        const seen: number[] = [];
        const got = await sample(
          networkDenoiser(mixtureNetwork(schedule, spec, conv, seen), spec, conv),
          cfg,
        );
        const err = maxDiff(got, ref);
        assert.ok(err < 2e-4, `${sampler} ${JSON.stringify(spec)} ${conv}: max |diff| ${err}`);
        assert.deepEqual(seen, refSeen.map((t) => timestepValue(t, schedule.T, conv)));
      }
    }
  });
}

Deno.test("DDPM through the loop reads the model's v: v = +1 samples as fixed_large, v = -1 as fixed_small", async () => {
  const schedule = linearSchedule(300, 4e-4, 0.06);
  const spec: OutputSpec = { prediction: "v_prediction", variance: "learned_range" };
  for (const [v, fixed] of [[1, "fixed_large"], [-1, "fixed_small"]] as const) {
    const cfg = { ...cfgFor(schedule, "ddpm"), variance: fixed };
    const eps = { prediction: "epsilon", variance: "fixed" } as const;
    const ref = await sample(networkDenoiser(mixtureNetwork(schedule, eps, "index", []), eps), cfg);
    const got = await sample(
      networkDenoiser(mixtureNetwork(schedule, spec, "index", [], v), spec),
      { ...cfg, variance: "learned" },
    );
    assert.ok(maxDiff(got, ref) < 2e-4, `v = ${v}: max |diff| ${maxDiff(got, ref)}`);
    // guidance wraps the denoiser and passes the same context on: v still reaches the step
    const wrapped = guided(networkDenoiser(mixtureNetwork(schedule, spec, "index", [], v), spec), {
      classifier: {} as never, // scale 0: never called
      direction: { kind: "joint" },
      scale: 0,
      strength: { spec: { kind: "sqrt" }, activation: 0 },
      labels: [0, 0, 0, 0],
      point: "xt",
      form: "eps",
    });
    const viaGuided = await sample(wrapped, { ...cfg, variance: "learned" });
    assert.ok(maxDiff(viaGuided, ref) < 2e-4, `guided, v = ${v}`);
  }
});

// --- the learned variance in the DDPM step (eq 15) ---

Deno.test("learned variance: v = +1 is beta_t (fixed_large), v = -1 is beta~_t (fixed_small), t = 0 adds no noise", () => {
  const s = cosineSchedule(1000);
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 999 }),
      fc.float({ min: -1, max: 1, noNaN: true }),
      fc.integer({ min: 0, max: 1e6 }),
      (t, vMid, seed) => {
        const n = 16, rng = mulberry(seed);
        const x = Float32Array.from({ length: n }, () => rng() * 2 - 1);
        const eps = Float32Array.from({ length: n }, () => rng() * 2 - 1);
        const noise = Float32Array.from({ length: n }, () => rng() * 2 - 1);
        const step = (variance: "learned" | "fixed_small" | "fixed_large", v?: number) =>
          ddpmStep({
            x,
            eps,
            schedule: s,
            t,
            variance,
            v: v === undefined ? undefined : new Float32Array(n).fill(v),
            noise,
            clip: true,
          }).x;
        const mean = step("fixed_small").map((o, i) =>
          o - (t > 0 ? Math.sqrt(posteriorVariance(s, t, "fixed_small")) * noise[i] : 0)
        );
        assert.ok(maxDiff(step("learned", 1), step("fixed_large")) < 1e-5);
        if (t > 0) assert.ok(maxDiff(step("learned", -1), step("fixed_small")) < 1e-5);
        else assert.ok(maxDiff(step("learned", -1), mean) < 1e-6, "no noise at t = 0");
        // any v: x_{t-1} - mu = exp(log Sigma / 2) z with log Sigma of eq 15
        const got = step("learned", vMid);
        const sd = t > 0 ? Math.exp(learnedLogVariance(s, t, Math.fround(vMid)) / 2) : 0;
        for (let i = 0; i < n; i++) {
          assert.ok(Math.abs(got[i] - (mean[i] + sd * noise[i])) < 1e-5, `t ${t} v ${vMid}`);
        }
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("learned variance: beta~_0 is clipped to beta~_1 (posterior_log_variance_clipped)", () => {
  const s = linearSchedule();
  const bt1 = posteriorVariance(s, 1, "fixed_small");
  assert.ok(Math.abs(learnedLogVariance(s, 0, -1) - Math.log(bt1)) < 1e-12);
  assert.ok(Math.abs(learnedLogVariance(s, 0, 1) - Math.log(s.betas[0])) < 1e-12);
  assert.ok(
    Math.abs(
      learnedLogVariance(s, 500, 0) -
        0.5 * Math.log(s.betas[500] * posteriorVariance(s, 500, "fixed_small")),
    ) < 1e-12,
  );
});

Deno.test("DDPM with variance learned on a model without v fails clearly", () => {
  const s = linearSchedule();
  assert.throws(
    () =>
      ddpmStep({
        x: new Float32Array(4),
        eps: new Float32Array(4),
        schedule: s,
        t: 10,
        variance: "learned",
        noise: new Float32Array(4),
      }),
    /variance "learned" needs the model's variance output v/,
  );
});

Deno.test("timestep conventions: index, rescaled t*1000/T, continuous (t+1)/T", () => {
  assert.equal(timestepValue(990, 1000, "index"), 990);
  assert.equal(timestepValue(3999, 4000, "rescaled"), 999.75);
  assert.equal(timestepValue(0, 4000, "rescaled"), 0);
  assert.equal(timestepValue(999, 1000, "continuous"), 1);
  assert.equal(timestepValue(0, 1000, "continuous"), 0.001);
});

Deno.test("schedules match improved-diffusion's get_named_beta_schedule (values from its numpy code)", () => {
  // numpy, improved_diffusion/gaussian_diffusion.py: linear scaled by 1000/T; cosine via
  // betas_for_alpha_bar(T, cos((t + 0.008) / 1.008 * pi / 2) ** 2, max_beta 0.999)
  const cos4000 = cosineSchedule(4000);
  const lin4000 = linearSchedule(4000, 1e-4 * 1000 / 4000, 0.02 * 1000 / 4000);
  const ref = {
    cos: [[0, 9.865818813681315e-06], [1, 1.01694148842979e-05], [2000, 0.0007889355535104503], [
      3999,
      0.999,
    ]],
    lin: [[0, 2.5e-05], [3999, 0.005]],
  };
  for (const [t, b] of ref.cos) {
    assert.ok(Math.abs(cos4000.betas[t] - b) / b < 1e-9, `cos ${t}: ${cos4000.betas[t]}`);
  }
  for (const [t, b] of ref.lin) assert.ok(Math.abs(lin4000.betas[t] - b) / b < 1e-9, `lin ${t}`);
});

/** A small deterministic PRNG for property inputs. */
function mulberry(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
