// The guidance methods of issue 15 (thesis, mpgd, dps, freedom, ugd, tfg, noise-aware) on the
// exact mixture denoiser with the mixture's own class posterior as the classifier: each moves
// samples into the requested component, each has its identity (zero strength = unguided), TFG
// reduces to its special cases, and recurrence with zero rounds is the plain step.
import assert from "node:assert/strict";
import {
  buildMixtureClassifier,
  buildMixtureDenoiser,
  type GaussianMixture,
  mixtureResponsibilities,
} from "../lib/models/mixture.ts";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { loadDenoiserPullback } from "../lib/energy/through_denoiser.ts";
import type { TimedEnergySource } from "../lib/energy/noise_aware.ts";
import { loadOnnx } from "../lib/runtime/session.ts";
import { onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import { sample, type SamplerConfig } from "../lib/sampler/loop.ts";
import { abarAt, linearSchedule } from "../lib/schedule.ts";
import { buildMethod, METHOD_NAMES, resolveMethod } from "../lib/guidance/methods/registry.ts";
import type { MethodEnv } from "../lib/guidance/methods/env.ts";
import { stepGridFor } from "../lib/guidance/methods/step_grid.ts";
import { recurrent } from "../lib/guidance/recurrence.ts";
import { parseParamText } from "../lib/guidance/methods/params.ts";
import {
  countingDenoiser,
  countingPullback,
  countingSource,
  newCallCounts,
} from "../lib/guidance/methods/counting.ts";
import { MIX_SHAPE, testMixture } from "./_mixture_fixture.ts";

const schedule = linearSchedule();
const mix = testMixture();
const mixBytes = buildMixtureDenoiser(mix, schedule, MIX_SHAPE);
const denoiser = onnxDenoiser(await loadOnnx(mixBytes, { provider: "cpu" }), 512);
const pullback = await loadDenoiserPullback(mixBytes, { batch: 512 });
const classifier = await loadEnergyClassifier(buildMixtureClassifier(mix, MIX_SHAPE), {
  conventions: { range: "pm1" },
  batch: 512,
});

/** The mixture's exact noisy posterior log p(k | x_t) and its gradient (Dhariwal-Nichol's p_phi). */
class MixturePosterior implements TimedEnergySource {
  constructor(readonly m: GaussianMixture) {}
  get numClasses() {
    return this.m.k;
  }
  fromDiffusionSpaceAt(
    x: Float32Array,
    n: number,
    t: number,
    y: readonly number[] | Int32Array,
    coef: readonly number[] | Float32Array,
  ) {
    const { k, dim } = this.m, abar = abarAt(schedule, t), sa = Math.sqrt(abar);
    const r = mixtureResponsibilities(this.m, x, n, abar);
    const grad = new Float32Array(x.length);
    const logits = new Float32Array(n * k), exy = new Float32Array(n), ex = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < k; j++) logits[i * k + j] = Math.log(r[i * k + j] + 1e-300);
      exy[i] = -logits[i * k + y[i]];
      // grad log N_j(x_t) = -(x_t - sqrt(abar) mu_j) / v_j; grad of -log p(y|x) = -(g_y - sum r_j g_j)
      for (let p = 0; p < dim; p++) {
        const g = (j: number) =>
          -(x[i * dim + p] - sa * this.m.means[j * dim + p]) /
          (abar * this.m.variances[j] + 1 - abar);
        let mean = 0;
        for (let j = 0; j < k; j++) mean += r[i * k + j] * g(j);
        const [a, b] = [coef[0], coef[1]];
        // a E(x,y) + b E(x) with E(x,y) = -log p(y|x) + const: only a, b = -a (logp) are used here
        grad[i * dim + p] = -(a + b === 0 ? g(y[i]) - mean : g(y[i]));
      }
    }
    return Promise.resolve({ logits, energyXY: exy, energyX: ex, grad });
  }
}

const perClass = 20;
const labels = [0, 1, 2].flatMap((k) => Array.from({ length: perClass }, () => k));
const cfg: SamplerConfig = {
  sampler: "ddim",
  schedule,
  steps: 20,
  eta: 0.5,
  spacing: "leading",
  clip: false,
  variance: "fixed_small",
  seeds: labels.map((_, i) => i),
  shape: MIX_SHAPE,
  batchSize: 60,
};

function env(over: Partial<MethodEnv> = {}): MethodEnv {
  return {
    denoiser,
    classifier,
    pullback,
    timedClassifier: new MixturePosterior(mix),
    labels,
    grid: stepGridFor(cfg, "test"),
    ...over,
  };
}

function hitRate(images: Float32Array): number {
  const r = mixtureResponsibilities(mix, images, labels.length, 1);
  let hits = 0;
  labels.forEach((y, i) => {
    const best = [0, 1, 2].reduce((a, j) => (r[i * 3 + j] > r[i * 3 + a] ? j : a), 0);
    if (best === y) hits++;
  });
  return hits / labels.length;
}

async function run(name: string, params: Record<string, number | string> = {}, e = env()) {
  return await sample(buildMethod(e, resolveMethod(name, params)), cfg);
}

const unguided = await sample(denoiser, cfg);
const base = hitRate(unguided);

// Strengths that guide the 192-d mixture (the class posterior's gradients are large: |x - mu|/v).
const STRONG: Record<string, Record<string, number | string>> = {
  thesis: { scale: 0.05 },
  mpgd: { c: 0.01 },
  dps: { zeta: 0.05 },
  freedom: { rho: 0.05, repeats: 1 },
  ugd: { s: 0.05, mu: 0.01, m: 1, k: 1 },
  tfg: { rho: 0.05, mu: 0.01, sigma: 0.01, samples: 2, recur: 2 },
  "noise-aware": { scale: 2 },
};

for (const name of METHOD_NAMES) {
  Deno.test(`${name} moves mixture samples into the requested component`, async () => {
    const images = await run(name, STRONG[name]);
    const rate = hitRate(images);
    console.log(
      `${name}: ${(rate * 100).toFixed(0)}% in the requested component (unguided ${
        (base * 100).toFixed(0)
      }%)`,
    );
    assert.ok(images.every(Number.isFinite));
    assert.ok(rate >= 0.9 && rate > base + 0.3, `${name}: hit rate ${rate} vs unguided ${base}`);
  });
}

Deno.test("zero strength is the unguided sampler, exactly, for every method", async () => {
  const zero: Record<string, Record<string, number>> = {
    thesis: { scale: 0 },
    mpgd: { c: 0 },
    dps: { zeta: 0 },
    freedom: { rho: 0, repeats: 0 },
    ugd: { s: 0, mu: 0 },
    tfg: { rho: 0, mu: 0 },
    "noise-aware": { scale: 0 },
  };
  for (const name of METHOD_NAMES) {
    assert.deepEqual(await run(name, zero[name]), unguided, name);
  }
});

Deno.test("special cases (Ye et al. 2024 §3.2): tfg(rho = 0, one iteration) = mpgd, freedom(r = 0) = dps", async () => {
  // MPGD = TFG with rho = 0, one x0 iteration, sigma = 0, one recurrence (same mu schedule)
  const mpgd = await run("mpgd", { c: 0.01, schedule: "increase" });
  const tfg = await run("tfg", {
    rho: 0,
    mu: 0.01,
    iters: 1,
    sigma: 0,
    recur: 1,
    mu_schedule: "increase",
  });
  assert.deepEqual(tfg, mpgd);
  // FreeDoM without time travel is DPS's update (both: x_{t-1} = x'_{t-1} + rho grad_{x_t} log p)
  assert.deepEqual(
    await run("freedom", { rho: 0.05, repeats: 0 }),
    await run("dps", { zeta: 0.05 }),
  );
  // no smoothing (sigma = 0): the number of Monte-Carlo draws does not matter
  const one = await run("tfg", { rho: 0.05, mu: 0.01, sigma: 0, samples: 1 });
  assert.deepEqual(await run("tfg", { rho: 0.05, mu: 0.01, sigma: 0, samples: 3 }), one);
  assert.notDeepEqual(one, unguided);
});

Deno.test("recurrence with zero rounds is the wrapped denoiser; with rounds it is per-image", async () => {
  const grid = stepGridFor(cfg, "test");
  const plain = recurrent(denoiser, {
    rounds: () => 0,
    nextT: (i) => grid.pairs[i][1],
    eta: 0.5,
    clip: false,
  });
  assert.deepEqual(await sample(plain, cfg), unguided);
  const twice = recurrent(denoiser, {
    rounds: () => 2,
    nextT: (i) => grid.pairs[i][1],
    eta: 0.5,
    clip: false,
  });
  const all = await sample(twice, cfg);
  const half = await sample(twice, { ...cfg, seeds: cfg.seeds.slice(0, 7), batchSize: 3 });
  for (let i = 0; i < half.length; i++) assert.ok(Math.abs(half[i] - all[i]) < 1e-5);
  assert.notDeepEqual(all, unguided);
});

Deno.test("call counts: DPS runs one pull-back and one classifier call per image and step", async () => {
  const counts = newCallCounts();
  const e = env({
    denoiser: countingDenoiser(denoiser, counts),
    classifier: countingSource(classifier, counts),
    pullback: countingPullback(pullback, counts),
  });
  await sample(buildMethod(e, resolveMethod("dps", { zeta: 0.05 })), cfg);
  const n = labels.length, steps = cfg.steps;
  assert.deepEqual(counts, { denoiser: n * steps, denoiserVjp: n * steps, classifier: n * steps });
});

Deno.test("method parameters: unknown names and bad values are errors naming them", () => {
  assert.throws(
    () => resolveMethod("dps", { rho: 1 }),
    /--method dps has no parameter 'rho'; its parameters are zeta, objective/,
  );
  assert.throws(() => resolveMethod("tfg", parseParamText("recur=0")), /recur=0 must be >= 1/);
  assert.throws(
    () => resolveMethod("tfg", parseParamText("rho_schedule=up")),
    /use one of increase, decrease, constant/,
  );
  assert.throws(() => resolveMethod("nope"), /--method 'nope' is invalid: use one of thesis, mpgd/);
  assert.throws(() => parseParamText("rho"), /is not name=value/);
  assert.throws(() => stepGridFor({ ...cfg, sampler: "heun" }, "dps"), /needs a one-step sampler/);
  assert.equal(resolveMethod("tfg", parseParamText("rho=2")).params.rho, 2);
});

Deno.test("noise-aware energy head: gradient at (x_t, t) matches float64 autograd", async () => {
  const { Buffer } = await import("node:buffer");
  const { loadNoiseAwareClassifier } = await import("../lib/energy/noise_aware.ts");
  const dir = new URL("./fixtures/through_denoiser/", import.meta.url);
  const ref = JSON.parse(await Deno.readTextFile(new URL("noise_aware_tiny.ref.json", dir)));
  const bytes = (b64: string) => {
    const b = Buffer.from(b64, "base64");
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  };
  const x = new Float32Array(bytes(ref.x));
  const g = new Float64Array(bytes(ref.grad));
  const head = await loadNoiseAwareClassifier(new URL("noise_aware_tiny.onnx", dir).pathname);
  const per = x.length / 2;
  for (let k = 0; k < 2; k++) {
    const out = await head.fromDiffusionSpaceAt(x.subarray(k * per, (k + 1) * per), 1, ref.t, [
      ref.y[k],
    ], ref.coef[k]);
    let num = 0, den = 0;
    for (let i = 0; i < per; i++) {
      num += (out.grad[i] - g[k * per + i]) ** 2;
      den += g[k * per + i] ** 2;
    }
    const err = Math.sqrt(num / den);
    console.log(`noise-aware head image ${k}: grad rel L2 error ${err.toExponential(2)}`);
    assert.ok(err <= 1e-4, `rel error ${err}`);
    assert.ok(Math.abs(out.energyXY[0] - ref.energy_xy[k]) < 1e-4);
  }
  await head.release();
});
