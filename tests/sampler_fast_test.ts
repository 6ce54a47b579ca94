// The fast samplers (DPM-Solver++(2M), UniPC-2 bh2, Heun on Karras sigmas): parity with the
// diffusers schedulers of the same name on the same eps model (the exact eps of a fixed image
// plus one seeded perturbation per call; fixtures written by tools/sampler_fixtures.py from
// PyTorch), and convergence at each solver's order against the exact probability-flow ODE
// solution of a Gaussian mixture (its exact denoiser).
import assert from "node:assert/strict";
import fc from "fast-check";
import { type GaussianMixture, gaussianMixture, mixtureEps } from "../lib/models/mixture.ts";
import { RandomStream } from "../lib/random.ts";
import { type FloatArray, x0FromEps } from "../lib/sampler/data_prediction.ts";
import { dpmpp2mStep } from "../lib/sampler/dpmpp_2m.ts";
import type { DenoiseContext, Denoiser } from "../lib/sampler/loop.ts";
import { sample } from "../lib/sampler/loop.ts";
import { networkCalls, solveBatch, type SolverKind } from "../lib/sampler/solver_loop.ts";
import { unipcPredict } from "../lib/sampler/unipc.ts";
import { linearSchedule } from "../lib/schedule.ts";
import { karrasSigmas, sigmaOfAbar, timestepGrid } from "../lib/timesteps.ts";

const S = linearSchedule(1000, 1e-4, 0.02);
const FIX = new URL("./fixtures/samplers/", import.meta.url);

interface Fixture {
  name: string;
  config: { thresholding?: boolean; clip_sample?: boolean };
  steps: number;
  shape: number[];
  timesteps: number[];
  sigmas: number[];
  xT: number[];
  c: number[];
  modelSigmas: number[];
  perturbations: number[][];
  modelInputs?: number[][];
  samples: number[][];
}

async function fixture(name: string): Promise<Fixture> {
  return JSON.parse(await Deno.readTextFile(new URL(`${name}.json`, FIX)));
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const ctxBase = (n: number): Omit<DenoiseContext, "stepIndex" | "steps"> => ({
  n,
  shape: { c: 3, h: 4, w: 4 },
  seeds: [0, 1].slice(0, n),
  items: [0, 1].slice(0, n),
  schedule: S,
});

/**
 * The fixture's model at call k: eps = (x - alpha_k c) / sigma_k + 0.3 alpha_k n_k (VE sigma_k,
 * alpha_k = 1 / sqrt(1 + sigma_k^2)), checking the timestep it is asked for.
 */
function replay(fx: Fixture, checkInput?: (k: number, x: Float32Array) => void): Denoiser {
  let k = 0;
  return (x, t) => {
    const sig = fx.modelSigmas[k], alpha = 1 / Math.sqrt(1 + sig * sig), nk = fx.perturbations[k];
    const eps = Float32Array.from(
      x,
      (v, i) => (v - alpha * fx.c[i]) / (sig * alpha) + 0.3 * alpha * nk[i],
    );
    const expectT = fx.timesteps[k];
    assert.ok(
      Math.abs(t - expectT) < 1e-3,
      `${fx.name}: call ${k} at t = ${t}, diffusers ${expectT}`,
    );
    checkInput?.(k, x);
    k++;
    return Promise.resolve(eps);
  };
}

const TOL = 1e-5;
const CASES = [8, 20].flatMap((n) => ["noclip", "clip"].map((c) => `${n}-${c}`));

for (const kind of ["dpmpp-2m", "unipc"] as const) {
  Deno.test(`${kind}: every step matches diffusers on the same eps sequence (max abs <= 1e-5)`, async () => {
    for (const c of CASES) {
      const fx = await fixture(`${kind}-${c}`);
      const clip = fx.config.thresholding === true;
      const grid = timestepGrid(1000, fx.steps, "linspace-open");
      assert.deepEqual(grid, fx.timesteps, `${fx.name}: grid`);
      const got: FloatArray[] = [];
      const out = await solveBatch(
        replay(fx),
        { kind, schedule: S, grid, clip, ctx: ctxBase(2) },
        Float32Array.from(fx.xT),
        { onStep: (ev) => void got.push(Float32Array.from(ev.x)) },
      );
      assert.equal(got.length, fx.steps);
      let worst = 0;
      got.forEach((x, i) => worst = Math.max(worst, maxAbs(x, fx.samples[i])));
      assert.ok(worst <= TOL, `${fx.name}: max abs error ${worst} over the steps`);
      assert.ok(maxAbs(out, fx.samples[fx.steps - 1]) <= TOL);
      // the clip case really clips: without clipping the same run ends elsewhere
      if (clip) {
        const unclipped = await solveBatch(
          replay(fx),
          { kind, schedule: S, grid, clip: false, ctx: ctxBase(2) },
          Float32Array.from(fx.xT),
        );
        assert.ok(maxAbs(unclipped, fx.samples[fx.steps - 1]) > 1e-2);
      }
    }
  });
}

Deno.test("heun: Karras sigmas, model inputs and every step match diffusers' HeunDiscreteScheduler", async () => {
  for (const c of CASES) {
    const fx = await fixture(`heun-${c}`);
    const n = fx.steps;
    // diffusers' sigmas: [s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0]; its Karras grid is eq 5 unrounded
    const sig = [fx.sigmas[0], ...Array.from({ length: n - 1 }, (_, i) => fx.sigmas[1 + 2 * i])];
    const karras = karrasSigmas(
      sigmaOfAbar(S.alphasCumprod[0]),
      sigmaOfAbar(S.alphasCumprod[999]),
      n,
    );
    sig.forEach((s, i) => assert.ok(Math.abs(s / karras[i] - 1) < 2e-6, `${fx.name}: sigma ${i}`));
    // drive the solver on diffusers' own (fractional) timesteps and sigmas
    const grid = [
      fx.timesteps[0],
      ...Array.from({ length: n - 1 }, (_, i) => fx.timesteps[1 + 2 * i]),
    ];
    const abarOf = (t: number) => t === -1 ? 1 : 1 / (1 + sig[grid.indexOf(t)] ** 2);
    const xT = Float64Array.from(fx.xT, (z) => z * Math.sqrt(abarOf(grid[0])));
    let worstIn = 0;
    const den = replay(fx, (k, x) => worstIn = Math.max(worstIn, maxAbs(x, fx.modelInputs![k])));
    const got: number[] = [];
    await solveBatch(
      den,
      {
        kind: "heun",
        schedule: S,
        grid,
        clip: fx.config.clip_sample === true,
        ctx: ctxBase(2),
        abarOf,
      },
      xT,
      {
        onStep: (ev) => {
          // compare in the toolkit's VP space x = z sqrt(abar) (z itself is ~150 at the start,
          // where a float32 ulp is ~1e-5)
          const a = Math.sqrt(abarOf(ev.tPrev));
          const z = fx.samples[ev.stepIndex === n - 1 ? 2 * n - 2 : 2 * ev.stepIndex + 1];
          const ref = z.map((v) => v * a);
          got.push(maxAbs(ev.x, ref));
        },
      },
    );
    assert.equal(got.length, n);
    assert.ok(worstIn <= TOL, `${fx.name}: model inputs differ by ${worstIn}`);
    assert.ok(Math.max(...got) <= TOL, `${fx.name}: max abs error ${Math.max(...got)}`);
  }
});

Deno.test("grids: linspace-open is diffusers' multistep linspace; karras rounds to distinct timesteps", () => {
  assert.deepEqual(timestepGrid(1000, 10, "linspace-open"), [
    999,
    899,
    799,
    699,
    599,
    500,
    400,
    300,
    200,
    100,
  ]);
  const g = timestepGrid(1000, 20, "karras", S.alphasCumprod);
  assert.equal(g[0], 999);
  assert.equal(g[19], 0);
  assert.throws(() => timestepGrid(1000, 20, "karras"), /needs the schedule/);
  assert.throws(() => timestepGrid(1000, 100, "karras", S.alphasCumprod), /repeats timestep/);
  assert.equal(networkCalls("heun", 10), 19);
  assert.equal(networkCalls("unipc", 10), 10);
});

Deno.test("UniP-2 (bh2) equals DPM-Solver++(2M) midpoint: the same second-order term", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.integer({ min: 100, max: 990 }),
      (seed, t) => {
        const rng = new RandomStream(seed);
        const v = () => Float64Array.from({ length: 12 }, () => rng.normal());
        const x = v(), x0 = v(), m1 = v();
        const [a1, a0, aT] = [S.alphasCumprod[t + 9], S.alphasCumprod[t], S.alphasCumprod[t - 40]];
        const prev = { x0: m1, abar: a1 };
        const p = dpmpp2mStep({ x, x0, abarS: a0, abarT: aT, prev });
        const u = unipcPredict({ x, x0, abarS: a0, abarT: aT, prev });
        assert.ok(maxAbs(p, u) < 1e-12);
      },
    ),
    { numRuns: 20 },
  );
});

// ---- convergence at the solver's order against the exact ODE solution ----

/** A continuous VP schedule (Song et al. 2021: beta(tau) linear 0.1..20 on tau in [0, 1]). */
const abarOfTau = (tau: number) => Math.exp(-(0.1 * tau + (20 - 0.1) * tau * tau / 2));
const lambdaOfAbar = (a: number) => 0.5 * Math.log(a / (1 - a));
/** abar of a half log-SNR lambda. */
const abarOfLambda = (l: number) => 1 / (1 + Math.exp(-2 * l));

const LMIN = lambdaOfAbar(abarOfTau(1)), LMAX = lambdaOfAbar(abarOfTau(2e-3));

function smallMixture(seed: number): GaussianMixture {
  const rng = new RandomStream(seed);
  const d = 6;
  const means = Array.from({ length: 3 * d }, () => 0.6 * rng.normal());
  return gaussianMixture(means, [0.3, 0.3, 0.4], [0.04, 0.08, 0.06]);
}

/** Exact eps of the mixture as a float64 denoiser on grid labels. */
function mixtureDenoiser(m: GaussianMixture, abarOf: (t: number) => number): Denoiser {
  return (x, t, ctx) =>
    Promise.resolve(mixtureEps(m, x, ctx.n, abarOf(t)) as unknown as Float32Array);
}

/**
 * The exact solution at lambda = LMAX, denoised: RK4 with 4000 steps on dz/du = z - D(z),
 * z = x / alpha, u = log(sigma / alpha) = -lambda (the VE form of the probability-flow ODE),
 * then D(z) at the end (what every solver's last step onto the clean image returns).
 */
function reference(m: GaussianMixture, xT: Float64Array, n: number): Float64Array {
  const steps = 4000;
  const dz = (z: Float64Array, u: number) => {
    const a = abarOfLambda(-u), sa = Math.sqrt(a);
    const x = z.map((v) => v * sa);
    const x0 = x0FromEps(x, mixtureEps(m, x, n, a), a, false);
    return z.map((v, i) => v - x0[i]);
  };
  let z = xT.map((v) => v / Math.sqrt(abarOfLambda(LMIN)));
  const u0 = -LMIN, u1 = -LMAX, hu = (u1 - u0) / steps;
  for (let i = 0; i < steps; i++) {
    const u = u0 + i * hu;
    const k1 = dz(z, u);
    const k2 = dz(z.map((v, j) => v + hu / 2 * k1[j]), u + hu / 2);
    const k3 = dz(z.map((v, j) => v + hu / 2 * k2[j]), u + hu / 2);
    const k4 = dz(z.map((v, j) => v + hu * k3[j]), u + hu);
    z = z.map((v, j) => v + hu / 6 * (k1[j] + 2 * k2[j] + 2 * k3[j] + k4[j]));
  }
  const a = abarOfLambda(LMAX), x = z.map((v) => v * Math.sqrt(a));
  return x0FromEps(x, mixtureEps(m, x, n, a), a, false) as Float64Array;
}

async function solveOn(
  kind: SolverKind,
  m: GaussianMixture,
  xT: Float64Array,
  n: number,
  steps: number,
) {
  // grid labels steps-1..0 on a uniform lambda grid from LMIN to LMAX, then the clean image
  const grid = Array.from({ length: steps }, (_, i) => steps - 1 - i);
  const abarOf = (t: number) =>
    t === -1 ? 1 : abarOfLambda(LMIN + (steps - 1 - t) * (LMAX - LMIN) / (steps - 1));
  return await solveBatch(
    mixtureDenoiser(m, abarOf),
    {
      kind,
      schedule: S,
      grid,
      clip: false,
      ctx: { ...ctxBase(n), shape: { c: 6, h: 1, w: 1 } },
      abarOf,
    },
    xT.slice(),
  );
}

const ORDERS: Record<SolverKind, number> = { "dpmpp-2m": 2, unipc: 3, heun: 2 };

for (const kind of ["dpmpp-2m", "unipc", "heun"] as const) {
  Deno.test(`${kind}: the error against the exact ODE solution shrinks at order ${ORDERS[kind]}`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 2 ** 31 - 1 }), async (seed) => {
        const m = smallMixture(seed);
        const n = 3;
        const rng = new RandomStream(seed ^ 0x5bd1e995);
        const xT = Float64Array.from({ length: n * m.dim }, () => rng.normal());
        const ref = reference(m, xT, n);
        const errs: number[] = [];
        for (const steps of [40, 80, 160]) {
          errs.push(maxAbs(await solveOn(kind, m, xT, n, steps), ref));
        }
        const slopes = [Math.log2(errs[0] / errs[1]), Math.log2(errs[1] / errs[2])];
        // measured on 25 mixtures: 1.80-2.06 (2M), 2.85-3.35 (UniPC), 1.83-2.06 (Heun)
        assert.ok(
          slopes[1] > ORDERS[kind] - 0.35 && slopes[1] < ORDERS[kind] + 0.5,
          `${kind}: errors ${errs.map((e) => e.toExponential(2))} give orders ${
            slopes.map((s) => s.toFixed(2))
          }`,
        );
      }),
      { numRuns: 3 },
    );
  });
}

Deno.test("sample(): each solver runs through the loop, tells the denoiser its call index, and is batch-invariant", async () => {
  const m = smallMixture(7);
  for (const sampler of ["dpmpp-2m", "unipc", "heun"] as const) {
    const run = async (batchSize: number) => {
      const seen: Array<[number, number, number]> = [];
      const den: Denoiser = (x, t, ctx) => {
        seen.push([ctx.stepIndex, ctx.steps, t]);
        return Promise.resolve(Float32Array.from(mixtureEps(m, x, ctx.n, S.alphasCumprod[t])));
      };
      const spacing = sampler === "heun" ? "karras" as const : "linspace-open" as const;
      const x = await sample(den, {
        sampler,
        schedule: S,
        steps: 6,
        eta: 0,
        spacing,
        clip: true,
        variance: "fixed_small",
        seeds: [3, 4, 5],
        shape: { c: 6, h: 1, w: 1 },
        batchSize,
      });
      return { x, seen };
    };
    const a = await run(3), b = await run(1);
    const calls = networkCalls(sampler, 6);
    assert.equal(a.seen.length, calls);
    a.seen.forEach(([i, steps], k) => {
      assert.equal(i, k);
      assert.equal(steps, calls);
    });
    assert.ok(
      a.x.every((v) => v >= -1 - 1e-6 && v <= 1 + 1e-6),
      `${sampler}: clipped x0 ends in [-1, 1]`,
    );
    assert.ok(maxAbs(a.x, b.x) < 1e-6, `${sampler}: batch size changed the images`);
  }
});

Deno.test("sampler flags: per-sampler default steps and spacing, eta 0, --eta refused for solvers", async () => {
  const { samplerConfigFromFlags } = await import("../tasks/_sampler_flags.ts");
  const spec = { type: "linear" as const, clip_sample: true };
  const cfg = (f: Record<string, string>) =>
    samplerConfigFromFlags(f, S, spec, { c: 3, h: 32, w: 32 }, [0], 0.5);
  const d = cfg({ sampler: "dpmpp-2m" }),
    u = cfg({ sampler: "unipc" }),
    h = cfg({ sampler: "heun" });
  assert.deepEqual([d.steps, d.spacing, d.eta], [20, "linspace-open", 0]);
  assert.deepEqual([u.steps, u.spacing], [20, "linspace-open"]);
  assert.deepEqual([h.steps, h.spacing], [10, "karras"]);
  assert.deepEqual([cfg({}).sampler, cfg({}).steps, cfg({}).eta], ["ddim", 100, 0.5]);
  assert.throws(() => cfg({ sampler: "unipc", eta: "0.5" }), /deterministic ODE solver/);
  assert.throws(() => cfg({ sampler: "euler" }), /--sampler 'euler' is invalid/);
});
