// The evaluation experiments (METHOD.md §5 items 1, 3, 4, 5): PGD against closed forms and its
// ball/box invariants, the noised classifier views, accuracy/chance helpers, the line plot, and
// the robust-accuracy, noise-accuracy and energy-curve tasks end to end on a tiny linear
// CIFAR-shaped classifier and a synthetic 20-image test batch (plus one run on the real data).
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  crossEntropyGradient,
  type LossGradient,
  madryStepSize,
  pgdAttack,
  projectL2,
  projectLinf,
  randomStart,
  stepL2,
  stepLinf,
} from "../lib/attacks/pgd.ts";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import {
  chanceThreshold,
  countCorrect,
  firstAtOrBelow,
  tallyPredictions,
} from "../lib/eval/accuracy.ts";
import { classifierView, curveGrid } from "../lib/eval/noised_views.ts";
import { linePlotSvg } from "../lib/plot/line_svg.ts";
import { RandomStream } from "../lib/random.ts";
import { linearSchedule } from "../lib/schedule.ts";
import { UsageError } from "../tasks/_args.ts";
import { energyCurveTask } from "../tasks/energy_curve.ts";
import { noiseAccuracyTask } from "../tasks/noise_accuracy.ts";
import { parseEpsList, robustAccuracyTask } from "../tasks/robust_accuracy.ts";
import { linearHeadClosedForm, tinyLinear } from "./_energy_models.ts";

Deno.env.set("RG_QUIET", "1");

function l2(a: Float32Array, b: Float32Array, from: number, to: number): number {
  let s = 0;
  for (let j = from; j < to; j++) s += (a[j] - b[j]) ** 2;
  return Math.sqrt(s);
}

function linf(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let j = 0; j < a.length; j++) m = Math.max(m, Math.abs(a[j] - b[j]));
  return m;
}

/** Images near mid-grey (0.5 +- 0.1), so small steps never touch the [0, 1] box. */
function midGrey(n: number, D: number, seed: number): Float32Array {
  const rng = new RandomStream(seed);
  return new Float32Array(n * D).map(() => 0.4 + 0.2 * rng.uniform());
}

// --- PGD ---------------------------------------------------------------------------------

for (
  const [name, alpha, eps] of [["inside the ball", 0.05, 0.5], ["projected", 0.8, 0.3]] as const
) {
  Deno.test(`PGD-L2, 1 step from x on a linear classifier reaches the closed form (${name})`, async () => {
    const m = tinyLinear({ seed: 3 }); // 3x4x5 -> 7 classes, logits = W x + b in [0, 1] space
    const D = m.C * m.H * m.W, n = 4;
    const clf = await loadEnergyClassifier(m.bytes, { conventions: {}, provider: "cpu" });
    try {
      const x0 = midGrey(n, D, 5);
      const y = Int32Array.from([0, 3, 6, 2]);
      const r = await pgdAttack(crossEntropyGradient(clf), x0, n, y, {
        norm: "l2",
        eps,
        steps: 1,
        stepSize: alpha,
        randomStart: false,
      });
      assert.equal(r.evaluations, 2);
      // d(-log p(y|x))/dx = W^T (softmax(Wx + b) - onehot(y)), in float64.
      const ref = linearHeadClosedForm(m, {}, x0, n, [...y], new Array(n).fill([1, -1, 0]).flat(), [
        0,
        0,
        0,
        0,
      ]);
      const radius = Math.min(alpha, eps);
      for (let i = 0; i < n; i++) {
        const g = ref.grad.subarray(i * D, (i + 1) * D);
        const gn = Math.sqrt(g.reduce((a, v) => a + v * v, 0));
        for (let d = 0; d < D; d++) {
          const want = x0[i * D + d] + radius * g[d] / gn;
          assert.ok(want > 0 && want < 1, "test point must stay inside the box");
          assert.ok(
            Math.abs(r.adversarial[i * D + d] - want) < 1e-5,
            `image ${i} pixel ${d}: ${r.adversarial[i * D + d]} vs closed form ${want}`,
          );
        }
        assert.ok(Math.abs(l2(r.adversarial, x0, i * D, (i + 1) * D) - radius) < 1e-5);
      }
    } finally {
      await clf.release();
    }
  });
}

/** A random loss surface that asserts every queried iterate lies in the ball and the box. */
function checkingOracle(
  x0: Float32Array,
  n: number,
  norm: "l2" | "linf",
  eps: number,
  K: number,
  seed: number,
): { oracle: LossGradient; calls: () => number } {
  const D = x0.length / n, rng = new RandomStream(seed);
  let calls = 0;
  const oracle: LossGradient = (x) => {
    calls++;
    for (let j = 0; j < x.length; j++) assert.ok(x[j] >= 0 && x[j] <= 1, `x[${j}] = ${x[j]}`);
    for (let i = 0; i < n; i++) {
      const dist = norm === "l2"
        ? l2(x, x0, i * D, (i + 1) * D)
        : linf(x.subarray(i * D, (i + 1) * D), x0.subarray(i * D, (i + 1) * D));
      assert.ok(dist <= eps * (1 + 1e-6) + 1e-7, `${norm} distance ${dist} > eps ${eps}`);
    }
    return Promise.resolve({
      logits: new Float32Array(n * K).map(() => rng.normal()),
      loss: new Float32Array(n).map(() => rng.normal()),
      grad: new Float32Array(n * D).map(() => rng.normal() * (rng.uniform() < 0.1 ? 0 : 1)),
    });
  };
  return { oracle, calls: () => calls };
}

Deno.test("PGD iterates never leave the eps ball (L2, L-inf) nor the [0, 1] box", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom("l2" as const, "linf" as const),
      fc.double({ min: 0, max: 3, noNaN: true }),
      fc.double({ min: 0.1, max: 5, noNaN: true }),
      fc.boolean(),
      fc.integer({ min: 0, max: 1000 }),
      async (norm, eps, ratio, start, seed) => {
        const n = 3, D = 48, rng = new RandomStream(seed);
        // Pixels at the box's edges too, so that clipping matters.
        const x0 = new Float32Array(n * D).map(() => {
          const u = rng.uniform();
          return u < 0.2 ? 0 : u > 0.8 ? 1 : u;
        });
        const { oracle, calls } = checkingOracle(x0, n, norm, eps, 10, seed);
        const r = await pgdAttack(oracle, x0, n, Int32Array.from([1, 2, 3]), {
          norm,
          eps,
          steps: 6,
          stepSize: madryStepSize(eps, 6, ratio),
          randomStart: start,
        }, [seed, seed + 1, seed + 2]);
        assert.equal(calls(), 7);
        assert.equal(r.evaluations, 7);
        for (let i = 0; i < n; i++) {
          const d = norm === "l2"
            ? l2(r.adversarial, x0, i * D, (i + 1) * D)
            : linf(r.adversarial.subarray(i * D, (i + 1) * D), x0.subarray(i * D, (i + 1) * D));
          assert.ok(d <= eps * (1 + 1e-6) + 1e-7);
        }
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("PGD returns the largest-loss iterate (use_best) and counts every-iterate correctness", async () => {
  const x0 = new Float32Array([0.5, 0.5]);
  const seen: Float32Array[] = [];
  const losses = [1, 5, 2, 4];
  // Iterate 1 has the largest loss but is correctly classified (class 0); iterate 3 is not.
  const preds = [0, 0, 0, 1];
  const oracle: LossGradient = (x) => {
    const it = seen.length;
    seen.push(Float32Array.from(x));
    return Promise.resolve({
      logits: new Float32Array(preds[it] === 0 ? [1, 0] : [0, 1]),
      loss: new Float32Array([losses[it]]),
      grad: new Float32Array([1, 0]),
    });
  };
  const r = await pgdAttack(oracle, x0, 1, Int32Array.from([0]), {
    norm: "linf",
    eps: 0.3,
    steps: 3,
    stepSize: 0.1,
    randomStart: false,
  });
  assert.equal(seen.length, 4);
  assert.deepEqual(r.adversarial, seen[1]);
  assert.deepEqual([...r.loss], [5]);
  assert.deepEqual([...r.logits], [1, 0]);
  assert.deepEqual([...r.correctEveryIterate], [0]);
  assert.ok(Math.abs(seen[3][0] - 0.8) < 1e-6, "three sign steps of 0.1, capped at eps 0.3");
});

Deno.test("projections: identity inside, onto the sphere outside; L-inf clamps per pixel", () => {
  const x0 = new Float32Array([0.5, 0.5, 0.5, 0.5]);
  const inside = new Float32Array([0.6, 0.5, 0.5, 0.5]);
  projectL2(inside, x0, 1, 4, 0.2);
  assert.deepEqual([...inside], [...new Float32Array([0.6, 0.5, 0.5, 0.5])]);
  const out = new Float32Array([0.8, 0.9, 0.5, 0.5]); // delta (0.3, 0.4), norm 0.5
  projectL2(out, x0, 1, 4, 0.25);
  assert.ok(Math.abs(out[0] - 0.65) < 1e-6 && Math.abs(out[1] - 0.7) < 1e-6);
  const box = new Float32Array([0.9, 0.1, 0.52, 1.5]);
  projectLinf(box, x0, 0.1);
  assert.deepEqual([...box].map((v) => Number(v.toFixed(6))), [0.6, 0.4, 0.52, 0.6]);
  const x = new Float32Array([0.5, 0.5]);
  stepL2(x, new Float32Array([3, 4]), 1, 2, 1);
  assert.ok(Math.abs(x[0] - 1.1) < 1e-6 && Math.abs(x[1] - 1.3) < 1e-6);
  const s = new Float32Array([0.5, 0.5, 0.5]);
  stepLinf(s, new Float32Array([-2, 0, 1e-9]), 0.1);
  assert.deepEqual([...s].map((v) => Number(v.toFixed(6))), [0.4, 0.5, 0.6]);
});

Deno.test("random starts are per-image seeded and lie in the ball", () => {
  const n = 2, D = 3072, x0 = midGrey(n, D, 1);
  const a = randomStart(x0, n, D, "l2", 0.5, [7, 8]);
  const b = randomStart(x0.subarray(D), 1, D, "l2", 0.5, [8]);
  assert.deepEqual(a.subarray(D), b, "image 1 depends on its seed only");
  const r = l2(a, x0, 0, D);
  assert.ok(r <= 0.5 + 1e-6 && r > 0.49, `uniform-ball radius in 3072-d ~ eps, got ${r}`);
  const c = randomStart(x0, n, D, "linf", 8 / 255, [7, 8]);
  assert.ok(linf(c, x0) <= 8 / 255 + 1e-7 && linf(c, x0) > 7 / 255);
  assert.throws(() => randomStart(x0, n, D, "l2", 0.5, [1]), /2 images/);
});

Deno.test("PGD at eps 0 returns the clean image: accuracy = clean accuracy", async () => {
  const m = tinyLinear({ seed: 4, K: 5 });
  const D = m.C * m.H * m.W, n = 12;
  const clf = await loadEnergyClassifier(m.bytes, { conventions: {}, provider: "cpu" });
  try {
    const x0 = midGrey(n, D, 9);
    const y = Int32Array.from({ length: n }, (_, i) => i % 5);
    for (const norm of ["l2", "linf"] as const) {
      const r = await pgdAttack(crossEntropyGradient(clf), x0, n, y, {
        norm,
        eps: 0,
        steps: 20,
        stepSize: 0.1,
        randomStart: true,
      }, Array.from({ length: n }, (_, i) => i));
      assert.deepEqual(r.adversarial, x0);
      const clean = await clf.forward(x0, n, y);
      assert.equal(countCorrect(r.logits, y, n, 5), countCorrect(clean.logits, y, n, 5));
      assert.equal(
        r.correctEveryIterate.reduce((a, b) => a + b, 0),
        countCorrect(clean.logits, y, n, 5),
      );
    }
    // A real attack never increases the accuracy at the selected iterate on a linear model.
    const clean = countCorrect((await clf.forward(x0, n, y)).logits, y, n, 5);
    const r = await pgdAttack(crossEntropyGradient(clf), x0, n, y, {
      norm: "l2",
      eps: 1,
      steps: 10,
      stepSize: madryStepSize(1, 10),
      randomStart: false,
    });
    assert.ok(countCorrect(r.logits, y, n, 5) <= clean);
  } finally {
    await clf.release();
  }
  await assert.rejects(
    () =>
      pgdAttack(
        () => Promise.reject(new Error("unreachable")),
        new Float32Array([1.5]),
        1,
        Int32Array.from([0]),
        {
          norm: "l2",
          eps: 0.1,
          steps: 1,
          stepSize: 0.1,
          randomStart: false,
        },
      ),
    /outside \[0, 1\]/,
  );
});

// --- views, accuracy, plot ---------------------------------------------------------------

Deno.test("curve grid: t = 0..1000 step 10 is 101 points, t = 1000 uses index 999", () => {
  const s = linearSchedule();
  const g = curveGrid(s, 1000, 10);
  assert.equal(g.length, 101);
  assert.deepEqual(g[100], { t: 1000, index: 999, abar: s.alphasCumprod[999] });
  assert.deepEqual(g[0], { t: 0, index: 0, abar: s.alphasCumprod[0] });
  assert.equal(curveGrid(s, 300, 100).length, 4);
  assert.throws(() => curveGrid(s, 1001, 10), /\[0, 1000\]/);
  assert.throws(() => curveGrid(s, 100, 0), /positive integer/);
});

Deno.test("classifier views: noise = (x_t + 1) / 2 unclipped; darkness pm1 fades to grey, 01 to black", () => {
  const x0 = new Float32Array([-1, 0, 1, 0.5]);
  const eps = new Float32Array([3, -3, 0, 1]);
  const out = new Float32Array(4);
  classifierView("noise", x0, 0.25, out, { eps });
  // x_t = 0.5 x0 + sqrt(0.75) eps
  const xt = [...x0].map((v, i) => 0.5 * v + Math.sqrt(0.75) * eps[i]);
  xt.forEach((v, i) => assert.ok(Math.abs(out[i] - (v + 1) / 2) < 1e-6));
  assert.ok(out[0] > 1 && out[1] < 0, "noised values outside [0, 1] are kept");
  classifierView("noise", x0, 0.25, out, { eps, clip: true });
  assert.ok(out.every((v) => v >= 0 && v <= 1));
  classifierView("darken-pm1", x0, 0.25, out);
  assert.deepEqual([...out], [0.25, 0.5, 0.75, 0.625]);
  classifierView("darken-01", x0, 0.25, out);
  assert.deepEqual([...out], [0, 0.25, 0.5, 0.375]);
  classifierView("darken-pm1", x0, 1, out);
  assert.deepEqual([...out], [0, 0.5, 1, 0.75], "abar 1 is the clean image");
  assert.throws(() => classifierView("noise", x0, 0.5, out), /noise needs eps/);
});

Deno.test("accuracy helpers: argmax count, prediction tally, chance threshold, first t at chance", () => {
  const logits = new Float32Array([1, 2, 0, 5, 1, 1, 0, 0, 0]);
  assert.equal(countCorrect(logits, [1, 0, 0], 3, 3), 3, "ties go to the first class");
  const h = new Float64Array(3);
  tallyPredictions(logits, 3, 3, h);
  assert.deepEqual([...h], [2, 1, 0]);
  assert.ok(Math.abs(chanceThreshold(1000, 10) - (0.1 + 2 * Math.sqrt(0.09 / 1000))) < 1e-12);
  assert.equal(firstAtOrBelow([0, 10, 20, 30], [0.8, 0.3, 0.11, 0.2], 0.119), 20);
  assert.equal(firstAtOrBelow([0, 10], [0.8, 0.3], 0.119), null);
});

Deno.test("line plot: one polyline per series, reference lines, clear errors", () => {
  const svg = linePlotSvg([
    { label: "a", x: [0, 1, 2], y: [0.9, 0.5, 0.1] },
    { label: "b <&>", x: [0, 2], y: [0.8, 0.2], dashed: true },
  ], { xLabel: "t", yLabel: "accuracy", yRange: [0, 1], hlines: [{ y: 0.1, label: "chance" }] });
  assert.equal(svg.match(/<polyline/g)?.length, 2);
  assert.match(svg, /b &lt;&amp;&gt;/);
  assert.match(svg, /stroke-dasharray="2 3"/);
  assert.throws(() => linePlotSvg([], { xLabel: "", yLabel: "" }), /no series/);
  assert.throws(
    () => linePlotSvg([{ label: "c", x: [0, 1], y: [1] }], { xLabel: "", yLabel: "" }),
    /'c' has 2 x and 1 y/,
  );
});

Deno.test("--eps lists: numbers and fractions, errors name the bad item", () => {
  assert.deepEqual(parseEpsList("0, 0.25,2/255").values, [0, 0.25, 2 / 255]);
  assert.deepEqual(parseEpsList("0,8/255").labels, ["0", "8/255"]);
  assert.throws(
    () => parseEpsList("0,abc"),
    (e) => e instanceof UsageError && /'abc'/.test(e.message),
  );
  assert.throws(() => parseEpsList("0,-1"), UsageError);
  assert.throws(() => parseEpsList("0.5,1/2"), /repeats/);
});

// --- tasks end to end ----------------------------------------------------------------------

/** A temp dir with a synthetic 20-image test_batch.bin and CIFAR-shaped linear classifiers. */
async function fixture(): Promise<{ dir: string; model: string; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "analyses_" });
  const rng = new RandomStream(11);
  const rec = new Uint8Array(20 * 3073);
  for (let i = 0; i < 20; i++) {
    rec[i * 3073] = i % 10;
    for (let j = 1; j < 3073; j++) rec[i * 3073 + j] = Math.floor(rng.uniform() * 256);
  }
  await Deno.writeFile(`${dir}/test_batch.bin`, rec);
  const model = `${dir}/linear10.onnx`;
  await Deno.writeFile(model, tinyLinear({ C: 3, H: 32, W: 32, K: 10, seed: 2 }).bytes);
  await Deno.writeFile(
    `${dir}/linear10b.onnx`,
    tinyLinear({ C: 3, H: 32, W: 32, K: 10, seed: 8 }).bytes,
  );
  await Deno.writeFile(`${dir}/linear7.onnx`, tinyLinear({ C: 3, H: 32, W: 32, K: 7 }).bytes);
  await Deno.writeFile(`${dir}/small.onnx`, tinyLinear({ K: 10 }).bytes);
  return { dir, model, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

/** Runs a task with stderr/stdout captured; returns the captured lines. */
async function quiet(run: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const [err, log] = [console.error, console.log];
  console.error = console.log = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    await run();
  } finally {
    [console.error, console.log] = [err, log];
  }
  return lines;
}

Deno.test("tasks on 20 images: robust-accuracy, noise-accuracy, darkness, energy-curve outputs", async () => {
  const { dir, model, cleanup } = await fixture();
  try {
    const common = ["--data", dir, "--limit", "20", "--range", "01", "--threads", "1"];
    const two = ["--classifier", model, "--classifier", `${dir}/linear10b.onnx`];
    // robust-accuracy, L2 and L-inf, two columns.
    await quiet(() =>
      robustAccuracyTask([
        ...common,
        ...two,
        "--eps",
        "0,0.5,2",
        "--steps",
        "3",
        "--random-start",
        "--out",
        `${dir}/ra.json`,
      ])
    );
    const ra = JSON.parse(await Deno.readTextFile(`${dir}/ra.json`));
    assert.equal(ra.task, "robust-accuracy");
    assert.deepEqual(ra.table.eps, [0, 0.5, 2]);
    assert.equal(ra.table.columns.length, 2);
    assert.equal(ra.table.accuracy.length, 3);
    assert.equal(ra.config.data.count, 20);
    assert.equal(ra.config.data.limit, 20);
    assert.match(ra.config.classifiers[0].sha256, /^[0-9a-f]{64}$/);
    assert.equal(ra.config.steps, 3);
    assert.equal(ra.config.randomStart, true);
    for (const c of ra.cells) assert.ok(c.accuracyEveryIterate <= c.accuracy);
    assert.ok(ra.table.accuracy[2][0] <= ra.table.accuracy[0][0]);
    assert.equal((await Deno.readTextFile(`${dir}/ra.svg`)).match(/<polyline/g)?.length, 2);

    // eps-0 accuracy = clean accuracy computed directly.
    const clf = await loadEnergyClassifier(await Deno.readFile(model), { conventions: {} });
    const bytes = await Deno.readFile(`${dir}/test_batch.bin`);
    const x = new Float32Array(20 * 3072), y: number[] = [];
    for (let i = 0; i < 20; i++) {
      y.push(bytes[i * 3073]);
      for (let j = 0; j < 3072; j++) x[i * 3072 + j] = bytes[i * 3073 + 1 + j] / 255;
    }
    const clean = countCorrect((await clf.forward(x, 20, y)).logits, y, 20, 10) / 20;
    await clf.release();
    assert.equal(ra.table.accuracy[0][0], clean);

    await quiet(() =>
      robustAccuracyTask([
        ...common,
        "--classifier",
        model,
        "--norm",
        "linf",
        "--steps",
        "2",
        "--out",
        `${dir}/li.json`,
      ])
    );
    const li = JSON.parse(await Deno.readTextFile(`${dir}/li.json`));
    assert.deepEqual(li.table.epsLabels, ["0", "2/255", "4/255", "8/255"]);

    // noise-accuracy: tiny t grid; clean accuracy matches robust-accuracy's eps 0.
    const lines = await quiet(() =>
      noiseAccuracyTask([
        ...common,
        "--classifier",
        model,
        "--t-max",
        "1000",
        "--t-step",
        "500",
        "--out",
        `${dir}/na.json`,
      ])
    );
    const na = JSON.parse(await Deno.readTextFile(`${dir}/na.json`));
    assert.deepEqual(na.grid.map((g: { t: number }) => g.t), [0, 500, 1000]);
    assert.equal(na.grid[2].index, 999);
    assert.equal(na.curves[0].cleanAccuracy, clean);
    assert.equal(na.curves[0].accuracy.length, 3);
    assert.equal(na.curves[0].mostPredicted.length, 3);
    assert.equal(na.config.clip, false);
    assert.match(na.config.fed, /not clipped/);
    assert.ok(Math.abs(na.chanceThreshold - chanceThreshold(20, 10)) < 1e-12);
    assert.ok(lines.some((l) => /at chance .* from t = /.test(l)));
    assert.equal((await Deno.readTextFile(`${dir}/na.svg`)).match(/<polyline/g)?.length, 1);

    // darkness, t step 100 by default: a fade; at abar 1 it would be the clean image.
    await quiet(() =>
      noiseAccuracyTask([
        ...common,
        "--classifier",
        model,
        "--darkness",
        "--darken-in",
        "01",
        "--t-max",
        "200",
        "--out",
        `${dir}/dk.json`,
      ])
    );
    const dk = JSON.parse(await Deno.readTextFile(`${dir}/dk.json`));
    assert.equal(dk.config.view, "darken-01");
    assert.deepEqual(dk.grid.map((g: { t: number }) => g.t), [0, 100, 200]);

    // energy-curve.
    await quiet(() =>
      energyCurveTask([
        ...common,
        "--classifier",
        model,
        "--t-max",
        "20",
        "--t-step",
        "10",
        "--clip",
        "--out",
        `${dir}/ec.json`,
      ])
    );
    const ec = JSON.parse(await Deno.readTextFile(`${dir}/ec.json`));
    assert.equal(ec.curves[0].points.length, 3);
    assert.equal(ec.curves[0].clean.accuracy, clean);
    const p = ec.curves[0].points[0];
    assert.ok(Number.isFinite(p.energyXY.mean) && p.energyX.mean <= p.energyXY.mean);
    assert.equal((await Deno.readTextFile(`${dir}/ec.svg`)).match(/<polyline/g)?.length, 2);
  } finally {
    await cleanup();
  }
});

Deno.test("tasks reject bad input with errors naming the value and the fix", async () => {
  const { dir, model, cleanup } = await fixture();
  try {
    const base = ["--data", dir, "--limit", "4", "--range", "01", "--out", `${dir}/x.json`];
    const cases: Array<[(a: string[]) => Promise<void>, string[], RegExp]> = [
      [robustAccuracyTask, ["--classifier", model, "--norm", "l3"], /--norm 'l3' is invalid/],
      [
        robustAccuracyTask,
        ["--classifier", model, "--eps", "0,x"],
        /--eps '0,x' is invalid at 'x'/,
      ],
      [robustAccuracyTask, ["--classifier", model, "--steps", "0"], /--steps '0' is invalid/],
      [robustAccuracyTask, ["--classifier", model, "--bogus"], /Known flags/],
      [robustAccuracyTask, ["--classifier", `${dir}/linear7.onnx`], /7 classes; CIFAR-10 has 10/],
      [noiseAccuracyTask, ["--classifier", `${dir}/small.onnx`], /takes 3x4x5 images/],
      [noiseAccuracyTask, ["--classifier", model, "--classifier", model], /given twice/],
      [noiseAccuracyTask, ["--classifier", model, "--t-max", "2000"], /--t-max '2000' is invalid/],
      [noiseAccuracyTask, ["--classifier", model, "--darken-in", "01"], /needs --darkness/],
      [energyCurveTask, ["--classifier", model, "--t-step", "0"], /--t-step '0' is invalid/],
      [energyCurveTask, ["--classifier", model, "--split", "val"], /--split 'val' is invalid/],
    ];
    for (const [task, args, re] of cases) {
      await assert.rejects(() => quiet(() => task([...base, ...args])), UsageError, String(args));
      await assert.rejects(() => quiet(() => task([...base, ...args])), re);
    }
    await assert.rejects(
      () => energyCurveTask(["--classifier", model, "--range", "01", "--out", `${dir}/x.txt`]),
      /must end in \.json/,
    );
    await assert.rejects(
      () =>
        quiet(() =>
          noiseAccuracyTask(["--classifier", model, "--range", "01", "--data", `${dir}/nope`])
        ),
      /does not exist.*cifar-10-binary\.tar\.gz/,
    );
    await assert.rejects(
      () => quiet(() => robustAccuracyTask(["--classifier", `${dir}/missing.onnx`, "--data", dir])),
      /model file not found/,
    );
  } finally {
    await cleanup();
  }
});

Deno.test("robust-accuracy on the real test split and the three shared classifiers (--limit 20)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "analyses_real_" });
  try {
    await quiet(() =>
      robustAccuracyTask([
        "--limit",
        "20",
        "--eps",
        "0,0.5",
        "--steps",
        "2",
        "--out",
        `${dir}/r.json`,
      ])
    );
    const r = JSON.parse(await Deno.readTextFile(`${dir}/r.json`));
    assert.deepEqual(r.table.columns, ["vnncomp21-resnet2b", "vnncomp21-resnet4b", "sri-resnet-a"]);
    for (let c = 0; c < 3; c++) {
      assert.ok(r.table.accuracy[0][c] >= 0.5, `clean accuracy of ${r.table.columns[c]}`);
      assert.ok(r.table.accuracy[1][c] < r.table.accuracy[0][c], "PGD lowers accuracy");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
