// The fused route of the methods through the denoiser (one ONNX graph x_t -> denoiser -> x0_hat
// (+ smoothing draw) -> classifier -> gradient at x_t, lib/guidance/methods/core.ts) against the
// pull-back route (denoiser forward, classifier at x0_hat, J^T cot graph), on the exact mixture
// denoiser and its class posterior: same images for every method, same call counts.
import assert from "node:assert/strict";
import { buildMixtureClassifier, buildMixtureDenoiser } from "../lib/models/mixture.ts";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { loadDenoiserPullback, loadThroughDenoiser } from "../lib/energy/through_denoiser.ts";
import { loadOnnx } from "../lib/runtime/session.ts";
import { onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import { sample, type SamplerConfig } from "../lib/sampler/loop.ts";
import { abarAt, linearSchedule } from "../lib/schedule.ts";
import { coreTerms } from "../lib/guidance/methods/core.ts";
import { buildMethod, resolveMethod } from "../lib/guidance/methods/registry.ts";
import type { MethodEnv } from "../lib/guidance/methods/env.ts";
import { stepGridFor } from "../lib/guidance/methods/step_grid.ts";
import {
  countingDenoiser,
  countingPullback,
  countingSource,
  countingThrough,
  newCallCounts,
} from "../lib/guidance/methods/counting.ts";
import { MIX_SHAPE, testMixture } from "./_mixture_fixture.ts";

const schedule = linearSchedule();
const mix = testMixture();
const mixBytes = buildMixtureDenoiser(mix, schedule, MIX_SHAPE);
const clfBytes = buildMixtureClassifier(mix, MIX_SHAPE);
const denoiser = onnxDenoiser(await loadOnnx(mixBytes, { provider: "cpu" }), 64);
const pullback = await loadDenoiserPullback(mixBytes, { batch: 64 });
const classifier = await loadEnergyClassifier(clfBytes, {
  conventions: { range: "pm1" },
  batch: 64,
});
const fused = await loadThroughDenoiser(mixBytes, clfBytes, {
  conventions: { range: "pm1" },
  batch: 64,
});
const fusedOffset = await loadThroughDenoiser(mixBytes, clfBytes, {
  conventions: { range: "pm1" },
  batch: 64,
  offsetInput: true,
});

const labels = [0, 1, 2].flatMap((k) => Array.from({ length: 6 }, () => k));
const cfg: SamplerConfig = {
  sampler: "ddim",
  schedule,
  steps: 12,
  eta: 0.5,
  spacing: "leading",
  clip: false,
  variance: "fixed_small",
  seeds: labels.map((_, i) => 100 + i),
  shape: MIX_SHAPE,
  batchSize: 18,
};

function env(route: "fused" | "pullback", counts = newCallCounts(), offset = false): MethodEnv {
  return {
    denoiser: countingDenoiser(denoiser, counts),
    classifier: countingSource(classifier, counts),
    ...(route === "fused"
      ? { through: countingThrough(offset ? fusedOffset : fused, counts) }
      : { pullback: countingPullback(pullback, counts) }),
    labels,
    grid: stepGridFor(cfg, "test"),
  };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const CASES: [string, Record<string, number | string>][] = [
  ["dps", { zeta: 0.05 }],
  ["dps", { zeta: 0.05, objective: "joint" }],
  ["freedom", { rho: 0.05, repeats: 1 }],
  ["ugd", { s: 0.05, mu: 0.01, m: 2, k: 2 }],
  ["tfg", { rho: 0.05, mu: 0.01, sigma: 0, samples: 1 }],
  ["tfg", { rho: 0.05, mu: 0.01, sigma: 0.1, samples: 1, recur: 2 }],
];

for (const [name, params] of CASES) {
  Deno.test(`${name} ${JSON.stringify(params)}: fused graph = pull-back route`, async () => {
    const method = resolveMethod(name, params);
    const offset = Number(params.sigma ?? 0) > 0;
    const [cf, cp] = [newCallCounts(), newCallCounts()];
    const viaFused = await sample(buildMethod(env("fused", cf, offset), method), cfg);
    const viaPullback = await sample(buildMethod(env("pullback", cp), method), cfg);
    const unguided = await sample(denoiser, cfg);
    const diff = maxAbsDiff(viaFused, viaPullback);
    const moved = maxAbsDiff(viaPullback, unguided);
    console.log(
      `${name}: max |fused - pull-back| ${diff.toExponential(2)}, guidance moved ${moved}`,
    );
    assert.ok(moved > 0.05, `the guidance should move the samples (moved ${moved})`);
    // float32 rounding (x0_hat in the graph vs in TypeScript) grows over 12 guided steps with
    // time travel; a wrong gradient or draw would differ by about `moved`
    assert.ok(diff <= 2e-3 * moved, `fused and pull-back differ by ${diff}`);
    // one fused run counts as the pull-back route's forward + classifier + pull-back; the
    // x0-space iterations (mu != 0) add their own classifier call on the fused route
    const n = labels.length;
    assert.equal(cf.denoiser, cp.denoiser);
    assert.equal(cf.denoiserVjp, cp.denoiserVjp);
    const x0Steps = Number(params.mu ?? 0) !== 0 ? (cp.denoiserVjp / n) * n : 0;
    assert.equal(cf.classifier, cp.classifier + x0Steps);
  });
}

Deno.test("one step: eps, x0_hat, the gradient at x_t and Delta_0 agree between the routes", async () => {
  const n = 6, per = MIX_SHAPE.c * MIX_SHAPE.h * MIX_SHAPE.w;
  const x = new Float32Array(n * per).map((_, i) => Math.sin(i * 12.9898) * 1.3);
  const y = [0, 1, 2, 0, 1, 2], seeds = [5, 6, 7, 8, 9, 10];
  for (const [t, sigma] of [[700, 0], [300, 0.1], [40, 0]]) {
    const abarT = Number(abarAt(schedule, t)), abarPrev = Number(abarAt(schedule, t - 30));
    const step = { t, abarT, abarPrev, y, seeds, stepIndex: 3 };
    const p = {
      rho: 0.05,
      mu: 0.01,
      iters: 2,
      sigma,
      samples: 1,
      objective: "logp" as const,
    };
    const fwd = (at: Float32Array) =>
      denoiser(
        at,
        t,
        {
          n,
          shape: MIX_SHAPE,
          items: [0, 1, 2, 3, 4, 5],
          seeds,
          stepIndex: 3,
          steps: 12,
          schedule,
        },
      );
    const a = await coreTerms(
      x,
      n,
      step,
      p,
      fwd,
      undefined,
      classifier,
      sigma ? fusedOffset : fused,
    );
    const b = await coreTerms(x, n, step, p, fwd, pullback, classifier);
    for (const k of ["eps", "x0", "gradXt", "delta0"] as const) {
      let num = 0, den = 0;
      for (let i = 0; i < x.length; i++) {
        num += (a[k][i] - b[k][i]) ** 2;
        den += b[k][i] ** 2;
      }
      const rel = Math.sqrt(num / den);
      console.log(`t=${t} sigma=${sigma} ${k}: rel L2 ${rel.toExponential(2)}`);
      assert.ok(den > 0 && rel <= 1e-5, `t=${t} ${k}: relative difference ${rel}`);
    }
  }
});

Deno.test("fused route: an offset needs the x0_offset input; several draws need the pull-back", async () => {
  const method = resolveMethod("tfg", { rho: 0.05, mu: 0, sigma: 0.1, samples: 1 });
  await assert.rejects(
    () => sample(buildMethod(env("fused"), method), cfg),
    /no x0_offset input; build it with offsetInput: true/,
  );
  const many = resolveMethod("tfg", { rho: 0.05, mu: 0, sigma: 0.1, samples: 2 });
  await assert.rejects(
    () => sample(buildMethod(env("fused", newCallCounts(), true), many), cfg),
    /neither a pull-back graph nor a fused graph \(with at most one smoothing draw\)/,
  );
});

// the third is saved as torch.onnx.export(..., "m.onnx", dynamo=True) saves it: weights in
// m.onnx.data beside it (before session 6, `guide --classifier m.onnx` refused it)
for (
  const fixture of [
    "vit_dynamo_op20",
    "preact_resnet_gn_dynamo_op21",
    "preact_resnet_gn_dynamo_op23_extdata",
    "vit_dynamo_op24",
    "convnext_dynamo_op25",
  ]
) {
  Deno.test(`guide --method dps with a dynamo classifier above the denoiser's opset (${fixture}) takes the fused graph`, async () => {
    const { guideTask } = await import("../tasks/guide.ts");
    Deno.env.set("RG_QUIET", "1");
    const out = await Deno.makeTempDir({ prefix: "methods_fused_test_" });
    const said: string[] = [];
    const error = console.error;
    console.error = (...a: unknown[]) => void said.push(a.join(" "));
    try {
      await guideTask([
        "--model=mixture-cifar10",
        `--classifier=${new URL(`./fixtures/zoo/${fixture}.onnx`, import.meta.url).pathname}`,
        "--range=01",
        "--method=dps",
        "--method-params=zeta=0.5",
        "--class=0",
        "--seeds=0-1",
        "--steps=2",
        "--evaluator=none",
        "--provider=cpu",
        `--out=${out}/run`,
      ]);
    } finally {
      console.error = error;
    }
    // the denoiser (opset 17) is raised to the classifier's opset (lib/autodiff/opset.ts); before
    // session 5 this fell back to the pull-back route
    const route = said.find((l) => l.includes("takes the gradient through the denoiser"));
    assert.match(route ?? "", /by one fused graph/, said.join("\n"));
    const run = JSON.parse(await Deno.readTextFile(`${out}/run/run.json`));
    assert.deepEqual(run.callsPerImage, { denoiser: 2, denoiserVjp: 2, classifier: 2 });
    await Deno.remove(out, { recursive: true });
  });
}

// A real dynamo export above the denoiser's opset: the fused graph raises the default DDPM (opset 17)
// to the classifier's opset (20: a ViT; 21: a GroupNormalization-21 ResNet) and must still give
// the pull-back route's gradient at x_t.
for (const fixture of ["vit_dynamo_op20", "preact_resnet_gn_dynamo_op21"]) {
  Deno.test(`one step with ${fixture}: the gradient at x_t agrees between the routes`, async () => {
    const den = await Deno.readFile(
      new URL("../weights/denoisers/ddpm-cifar10-small.onnx", import.meta.url),
    );
    const clf = await Deno.readFile(new URL(`./fixtures/zoo/${fixture}.onnx`, import.meta.url));
    const conventions = { range: "01" as const };
    const n = 3, shape = { c: 3, h: 32, w: 32 }, per = 3 * 32 * 32;
    const realClassifier = await loadEnergyClassifier(clf, { conventions, batch: n });
    const raised = await loadThroughDenoiser(den, clf, { conventions, batch: n });
    const back = await loadDenoiserPullback(den, { batch: n });
    const plain = onnxDenoiser(await loadOnnx(den, { provider: "cpu" }), n);
    const x = new Float32Array(n * per).map((_, i) => Math.sin(i * 12.9898) * 1.1);
    const y = [0, 3, 7], seeds = [1, 2, 3];
    const t = 400;
    const step = {
      t,
      abarT: Number(abarAt(schedule, t)),
      abarPrev: Number(abarAt(schedule, t - 30)),
      y,
      seeds,
      stepIndex: 1,
    };
    const p = { rho: 0.05, mu: 0, iters: 1, sigma: 0, samples: 1, objective: "logp" as const };
    const fwd = (at: Float32Array) =>
      plain(at, t, { n, shape, items: [0, 1, 2], seeds, stepIndex: 1, steps: 10, schedule });
    const a = await coreTerms(x, n, step, p, fwd, undefined, realClassifier, raised);
    const b = await coreTerms(x, n, step, p, fwd, back, realClassifier);
    let num = 0, den2 = 0;
    for (let i = 0; i < x.length; i++) {
      num += (a.gradXt[i] - b.gradXt[i]) ** 2;
      den2 += b.gradXt[i] ** 2;
    }
    const rel = Math.sqrt(num / den2);
    console.log(`${fixture}: gradient at x_t, rel L2 fused vs pull-back ${rel.toExponential(2)}`);
    assert.ok(den2 > 0 && rel <= 1e-4, `relative difference ${rel}`);
  });
}
