// Guidance directions and the guided denoiser against their formulas (METHOD.md §4).
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  baseDirection,
  directionFromFlags,
  guidanceDirection,
} from "../lib/guidance/directions.ts";
import { type GuidanceConfig, guided } from "../lib/guidance/guided.ts";
import { DEFAULT_STRENGTH } from "../lib/guidance/strength.ts";
import {
  type DenoiseContext,
  type Denoiser,
  sample,
  type SamplerConfig,
} from "../lib/sampler/loop.ts";
import { linearSchedule } from "../lib/schedule.ts";
import { RandomStream } from "../lib/random.ts";
import { mixtureEps } from "../lib/models/mixture.ts";
import { QuadraticEnergy } from "./_analytic_energy.ts";
import { MIX_SHAPE, testMixture } from "./_mixture_fixture.ts";

const D = 6;
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-4) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol * (1 + Math.abs(b[i])), `[${i}] ${a[i]} vs ${b[i]}`);
  }
};
const vecArb = (n: number) =>
  fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: n, maxLength: n }).map((a) =>
    Float32Array.from(a)
  );
const centresArb = fc.array(vecArb(D), { minLength: 3, maxLength: 3 }).map((cs) =>
  cs.map((c) => Float64Array.from(c))
);

function softmaxMean(clf: QuadraticEnergy, x: Float32Array): Float64Array {
  const lg = clf.logits(x, 1);
  const m = Math.max(...lg), z = lg.reduce((s, v) => s + Math.exp(v - m), 0);
  const mean = new Float64Array(D);
  clf.centres.forEach((c, j) => c.forEach((v, q) => mean[q] += Math.exp(lg[j] - m) / z * v));
  return mean;
}

Deno.test("logp = grad log p(y|x) = grad E(x) - grad E(x,y); joint = -grad E(x,y)", async () => {
  await fc.assert(
    fc.asyncProperty(centresArb, vecArb(D), fc.nat(2), async (cs, x, y) => {
      const clf = new QuadraticEnergy(cs);
      const mean = softmaxMean(clf, x);
      const logp = await baseDirection({ kind: "logp" }, clf, x, 1, [y]);
      // grad log p(y|x) = (c_y - x) - (mean - x) = c_y - mean
      close(logp.g, Array.from(cs[y], (c, q) => c - mean[q]));
      const joint = await baseDirection({ kind: "joint" }, clf, x, 1, [y]);
      close(joint.g, Array.from(cs[y], (c, q) => c - x[q]));
    }),
    { numRuns: 50 },
  );
});

Deno.test("dual = -grad [E(x,y) + lambda |Estar_y - E(x)|] (eq 4.5-4.6)", async () => {
  await fc.assert(
    fc.asyncProperty(
      centresArb,
      vecArb(D),
      fc.nat(2),
      fc.double({ min: 0, max: 2, noNaN: true }),
      fc.double({ min: -5, max: 5, noNaN: true }),
      async (cs, x, y, lambda, es) => {
        const clf = new QuadraticEnergy(cs);
        const eStar = [es, es + 1, es - 1];
        const r = await baseDirection({ kind: "dual", lambda, eStar }, clf, x, 1, [y]);
        const mean = softmaxMean(clf, x);
        const sign = Math.sign(eStar[y] - r.energyX[0]);
        // -grad: (c_y - x) + lambda sign(E* - E) (x - mean)
        close(r.g, Array.from(x, (v, q) => cs[y][q] - v + lambda * sign * (v - mean[q])));
      },
    ),
    { numRuns: 50 },
  );
});

Deno.test("pgd: n normalised energy-descent steps, then -grad E at the end point (Alg 8)", async () => {
  const cs = [new Float64Array(D).fill(1), new Float64Array(D).fill(-1), new Float64Array(D)];
  const clf = new QuadraticEnergy(cs);
  const x = Float32Array.from([0.5, -0.2, 0.3, 0.1, 0, 0.9]);
  const gamma = 0.05, steps = 3;
  const r = await baseDirection({ kind: "pgd", steps, gamma, literal: false }, clf, x, 1, [0]);
  // grad E(x, 0) = x - c_0; each step moves gamma along -(x - c_0)/|x - c_0| (a straight line)
  const xi = Float64Array.from(x);
  for (let k = 0; k < steps; k++) {
    const d = Array.from(xi, (v, q) => v - cs[0][q]);
    const nrm = Math.hypot(...d);
    d.forEach((v, q) => xi[q] -= gamma * v / nrm);
  }
  close(r.g, Array.from(xi, (v, q) => cs[0][q] - v));
  // energies are reported at the evaluation point x
  close(r.energyXY, [Array.from(x, (v) => (v - 1) ** 2).reduce((a, b) => a + b) / 2]);
  const lit = await baseDirection({ kind: "pgd", steps: 1, gamma, literal: true }, clf, x, 1, [0]);
  const d = Array.from(x, (v, q) => v - cs[0][q]), nrm = Math.hypot(...d);
  close(lit.g, Array.from(x, (v, q) => cs[0][q] - ((1 + gamma) * v - gamma * d[q] / nrm)));
  const zero = await baseDirection({ kind: "pgd", steps: 0, gamma, literal: false }, clf, x, 1, [
    0,
  ]);
  close(zero.g, (await baseDirection({ kind: "joint" }, clf, x, 1, [0])).g);
});

Deno.test("accumulate(n, alpha) sums the direction over x_{i+1} = x_i + alpha g(x_i) (§4.3)", async () => {
  await fc.assert(
    fc.asyncProperty(
      centresArb,
      vecArb(D),
      fc.integer({ min: 1, max: 5 }),
      fc.double({ min: 0, max: 0.5, noNaN: true }),
      async (cs, x, n, alpha) => {
        const clf = new QuadraticEnergy(cs);
        const r = await guidanceDirection({ kind: "joint" }, { n, alpha }, clf, x, 1, [1]);
        // joint: g(x) = c - x; x_{i+1} = x_i + alpha (c - x_i) => (c - x_i) = (1 - alpha)^i (c - x_0)
        const geo = Array.from({ length: n }, (_, i) => (1 - alpha) ** i).reduce((a, b) => a + b);
        close(
          r.g,
          Array.from(x, (v, q) => geo * (cs[1][q] - v)),
          1e-4,
        );
      },
    ),
    { numRuns: 40 },
  );
});

Deno.test("directions validate their flags", () => {
  assert.throws(
    () => directionFromFlags("dual", {}),
    /needs class-wise energy statistics.*energy-stats/,
  );
  assert.throws(
    () => directionFromFlags("sideways", {}),
    /--direction 'sideways' is invalid: use one of logp, joint, dual, pgd/,
  );
  assert.deepEqual(directionFromFlags("pgd", { pgdSteps: 2, gamma: 0.3 }), {
    kind: "pgd",
    steps: 2,
    gamma: 0.3,
    literal: false,
  });
});

// ---- the guided denoiser ----

const schedule = linearSchedule();
const mix = testMixture();
const exact: Denoiser = (x, t, ctx) =>
  Promise.resolve(Float32Array.from(mixtureEps(mix, x, ctx.n, schedule.alphasCumprod[t])));
const centres = Array.from(
  { length: 3 },
  (_, k) => mix.means.slice(k * mix.dim, (k + 1) * mix.dim),
);
const baseCfg = (over: Partial<GuidanceConfig> = {}): GuidanceConfig => ({
  classifier: new QuadraticEnergy(centres),
  direction: { kind: "joint" },
  scale: 2,
  strength: DEFAULT_STRENGTH,
  labels: [0, 1, 2, 0, 1, 2],
  point: "xt",
  form: "eps",
  ...over,
});
const samplerCfg = (over: Partial<SamplerConfig> = {}): SamplerConfig => ({
  sampler: "ddim",
  schedule,
  steps: 20,
  eta: 0.5,
  spacing: "leading",
  clip: false,
  variance: "fixed_small",
  seeds: [0, 1, 2, 3, 4, 5],
  shape: MIX_SHAPE,
  batchSize: 4,
  ...over,
});

Deno.test("guided eps = eps - s w(t) g with w(t) = sqrt(1 - abar_t) (Alg 6)", async () => {
  const clf = new QuadraticEnergy(centres);
  const den = guided(exact, baseCfg({ classifier: clf, scale: 3 }));
  const n = 2, x = new RandomStream(1).fillNormal(new Float32Array(n * mix.dim));
  const ctx: DenoiseContext = {
    n,
    shape: MIX_SHAPE,
    seeds: [0, 1],
    items: [1, 2],
    stepIndex: 3,
    steps: 20,
    schedule,
  };
  const got = await den(x, 500, ctx);
  const eps = await exact(x, 500, ctx);
  const g = (await baseDirection({ kind: "joint" }, clf, x, n, [1, 2])).g;
  const w = Math.sqrt(1 - schedule.alphasCumprod[500]);
  close(got, Array.from(eps, (e, i) => e - 3 * w * g[i]), 1e-5);
});

Deno.test("scale 0 and activation 1 reproduce the unguided sampler exactly", async () => {
  const unguided = await sample(exact, samplerCfg());
  for (
    const cfg of [
      baseCfg({ scale: 0 }),
      baseCfg({ strength: { spec: { kind: "sqrt" }, activation: 1 } }),
    ]
  ) {
    const clf = cfg.classifier as QuadraticEnergy;
    const images = await sample(guided(exact, cfg), samplerCfg());
    assert.deepEqual(images, unguided);
    assert.equal(clf.calls, 0, "the classifier is not even called");
  }
  // and guidance on does change them
  assert.notDeepEqual(await sample(guided(exact, baseCfg()), samplerCfg()), unguided);
});

Deno.test("guidance at x0_hat evaluates the classifier at the clipped predicted clean image", async () => {
  const seen: Float32Array[] = [];
  const clf = new QuadraticEnergy(centres);
  const spy = {
    numClasses: 3,
    fromDiffusionSpace: (
      x: Float32Array,
      ...rest: Parameters<QuadraticEnergy["fromDiffusionSpace"]> extends [unknown, ...infer R] ? R
        : never
    ) => {
      seen.push(Float32Array.from(x));
      return clf.fromDiffusionSpace(x, ...rest);
    },
  };
  const den = guided(exact, baseCfg({ classifier: spy, point: "x0" }));
  const n = 1, x = new RandomStream(3).fillNormal(new Float32Array(mix.dim));
  const ctx: DenoiseContext = {
    n,
    shape: MIX_SHAPE,
    seeds: [0],
    items: [0],
    stepIndex: 5,
    steps: 20,
    schedule,
  };
  const eps = await exact(x, 300, ctx);
  await den(x, 300, ctx);
  const a = schedule.alphasCumprod[300];
  close(
    seen[0],
    Array.from(
      x,
      (v, i) => Math.min(1, Math.max(-1, (v - Math.sqrt(1 - a) * eps[i]) / Math.sqrt(a))),
    ),
    1e-5,
  );
});

Deno.test("mean-shift form moves the DDPM mean by s w(t) sigma_t^2 g (Dhariwal and Nichol)", async () => {
  const { ddpmStep } = await import("../lib/sampler/ddpm.ts");
  const clf = new QuadraticEnergy(centres);
  const x = new RandomStream(4).fillNormal(new Float32Array(mix.dim));
  const ctx: DenoiseContext = {
    n: 1,
    shape: MIX_SHAPE,
    seeds: [0],
    items: [2],
    stepIndex: 100,
    steps: 1000,
    schedule,
  };
  const t = 400, z = new Float32Array(mix.dim);
  const epsHat = await guided(exact, baseCfg({ classifier: clf, form: "mean-shift", scale: 2 }))(
    x,
    t,
    ctx,
  );
  const eps = await exact(x, t, ctx);
  const g = (await baseDirection({ kind: "joint" }, clf, x, 1, [2])).g;
  const shifted = ddpmStep({ x, eps: epsHat, schedule, t, variance: "fixed_small", noise: z }).x;
  const w = Math.sqrt(1 - schedule.alphasCumprod[t]);
  const meanShift = Float32Array.from(g, (v) => 2 * w * v);
  const want = ddpmStep({ x, eps, schedule, t, variance: "fixed_small", noise: z, meanShift }).x;
  close(shifted, want, 1e-4);
});

Deno.test("gradient-norm clipping and NaN gradients", async () => {
  const clf = new QuadraticEnergy(centres);
  let norms: Float64Array | undefined;
  const den = guided(
    exact,
    baseCfg({ classifier: clf, clipGradNorm: 0.5, onStep: (i) => norms = i.gradNorm }),
  );
  const x = new RandomStream(5).fillNormal(new Float32Array(mix.dim));
  const ctx: DenoiseContext = {
    n: 1,
    shape: MIX_SHAPE,
    seeds: [0],
    items: [0],
    stepIndex: 1,
    steps: 20,
    schedule,
  };
  const got = await den(x, 900, ctx);
  const eps = await exact(x, 900, ctx);
  const w = Math.sqrt(1 - schedule.alphasCumprod[900]);
  const applied = Math.hypot(...Array.from(got, (v, i) => (eps[i] - v) / (2 * w)));
  assert.ok(
    norms![0] > 0.5 && Math.abs(applied - 0.5) < 1e-3,
    `applied |g| ${applied}, raw ${norms![0]}`,
  );
  const nan = {
    numClasses: 3,
    fromDiffusionSpace: async (...a: Parameters<QuadraticEnergy["fromDiffusionSpace"]>) => {
      const o = await clf.fromDiffusionSpace(...a);
      o.grad[7] = NaN;
      return o;
    },
  };
  await assert.rejects(
    () => guided(exact, baseCfg({ classifier: nan }))(x, 900, ctx),
    /guidance gradient holds NaN at step 2\/20 \(t = 900, image 0\)/,
  );
  assert.throws(
    () => guided(exact, baseCfg({ clipGradNorm: 0 })),
    /gradient-norm clip 0 is invalid/,
  );
});
