// The `sweep` and `report` tasks end to end on a tiny grid (2 points, 2 classes x 2 seeds,
// 5 DDIM steps, a 200-image reference): resume, refusal of a changed configuration, bad input,
// and a self-contained HTML report.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { UsageError } from "../lib/errors.ts";
import { parseScales, parseSchedules, sweepPoints } from "../lib/sweep/grid.ts";
import { type SweepRow, tradeoffSeries } from "../lib/sweep/results.ts";
import { sweepTask } from "../tasks/sweep.ts";
import { buildReport, reportTask } from "../tasks/report.ts";

Deno.env.set("RG_QUIET", "1");
const DATA = fileURLToPath(
  new URL("../../shared/data/cifar10/cifar-10-binary.tar.gz", import.meta.url),
);
const tmp = await Deno.makeTempDir({ prefix: "sweep_report_test_" });
const out = `${tmp}/sweep`;
const TINY = [
  // the models are pinned (the test checks their names), not the manifest defaults
  "--model",
  "mixture-cifar10",
  "--classifiers",
  "vnncomp21-resnet4b",
  "--evaluator",
  "sri-resnet-a",
  "--directions",
  "joint,logp",
  "--scales",
  "10",
  "--schedules",
  "sqrt",
  "--seeds",
  "0-1",
  "--class",
  "airplane,ship",
  "--steps",
  "5",
  "--reference-limit",
  "200",
  "--data",
  DATA,
  "--cache",
  `${tmp}/cache`,
  "--provider",
  "cpu",
  "--out",
  out,
];

// deno-lint-ignore no-explicit-any
const readJson = async (p: string): Promise<any> => JSON.parse(await Deno.readTextFile(p));
const withoutSeconds = (rows: SweepRow[]) => rows.map(({ seconds: _s, ...r }) => r);

Deno.test("sweep: tiny grid, outputs, resume (skip, then a killed point), refusal", async () => {
  await sweepTask(TINY);
  const a = await readJson(`${out}/sweep.json`);
  assert.equal(a.task, "sweep");
  assert.equal(a.rows.length, 2);
  assert.equal(a.ranNow, 2);
  assert.deepEqual(a.rows.map((r: SweepRow) => r.direction), ["joint", "logp"]);
  assert.equal(a.config.evaluator, "sri-resnet-a");
  assert.deepEqual(a.config.classifiers, ["vnncomp21-resnet4b"]);
  assert.equal(a.metrics.fd, "FD_sri-resnet-a-penultimate");
  for (const r of a.rows as SweepRow[]) {
    assert.equal(r.n, 4);
    assert.equal(r.schedule, "sqrt");
    assert.equal(r.classifier, "vnncomp21-resnet4b");
    for (const v of [r.targetAccuracy, r.guideAccuracy, r.precision, r.recall]) {
      assert.ok(v !== null && v >= 0 && v <= 1, `${r.slug}: ${v}`);
    }
    assert.ok(r.fd !== null && r.fd > 0);
    assert.equal(r.is, null); // 4 images < --splits 10
    assert.ok(r.seconds !== null && r.seconds > 0);
    const run = await readJson(`${out}/${r.run}/run.json`);
    assert.equal(run.config.direction.kind, r.direction);
    assert.equal(run.config.steps, 5);
    assert.deepEqual(run.config.classes, ["airplane", "ship"]);
    assert.equal(run.results.targetAccuracy, r.targetAccuracy); // guide and evaluate agree
  }
  const md = await Deno.readTextFile(`${out}/sweep.md`);
  assert.match(md, /\| joint \| 10 \| sqrt \| vnncomp21-resnet4b \|/);
  const svg = await Deno.readTextFile(`${out}/tradeoff.svg`);
  assert.match(svg, /^<svg/);
  assert.match(svg, />s=10</);

  // Rerun: every point is skipped, the results are the same.
  await sweepTask(TINY);
  const b = await readJson(`${out}/sweep.json`);
  assert.equal(b.ranNow, 0);
  assert.equal(b.skipped, 2);
  assert.deepEqual(b.rows, a.rows);
  assert.equal(await Deno.readTextFile(`${out}/tradeoff.svg`), svg);

  // A point killed mid-run (no evaluate.json, an image missing) is finished by the rerun.
  const slug = a.rows[1].slug;
  await Deno.remove(`${out}/runs/${slug}/evaluate.json`);
  await Deno.remove(`${out}/runs/${slug}/images/ship/1.png`);
  await sweepTask(TINY);
  const c = await readJson(`${out}/sweep.json`);
  assert.equal(c.ranNow, 1);
  assert.deepEqual(withoutSeconds(c.rows), withoutSeconds(a.rows));

  // The fixed configuration may not change under the same --out.
  const changed = TINY.map((v) => v === "5" ? "6" : v);
  await assert.rejects(() => sweepTask(changed), UsageError);
});

Deno.test("sweep: bad lists are refused before anything runs", async () => {
  const bad: [string, string, RegExp][] = [
    ["--directions", "", /--directions '' is invalid/],
    ["--directions", "joint,,logp", /without empty items/],
    ["--directions", "joint,sideways", /'sideways' is not a direction.*logp, joint, dual, pgd/],
    ["--scales", "10,ten", /'ten' is not a finite decimal number/],
    ["--scales", "10,10", /lists '10' twice/],
    ["--schedules", "sqrt,power:", /power/],
    ["--schedules", "cubic", /unknown kind 'cubic'/],
    ["--classifiers", "no-such-net", /not a classifier of the manifest/],
    ["--seeds", "3-1", /seed/i],
  ];
  for (const [flag, value, msg] of bad) {
    const dir = `${tmp}/bad-${crypto.randomUUID().slice(0, 6)}`;
    await assert.rejects(
      () => sweepTask([flag, value, "--out", dir, "--steps", "5"]),
      (e: Error) => e instanceof UsageError && msg.test(e.message),
      `${flag} ${value}`,
    );
    await assert.rejects(() => Deno.stat(dir), Deno.errors.NotFound); // nothing was written
  }
});

Deno.test("sweep grid: schedule lists, slugs, trade-off series", () => {
  assert.deepEqual(parseSchedules(["sqrt,power:2,sigmoid:0.1,650,0.01"]), [
    "sqrt",
    "power:2",
    "sigmoid:0.1,650,0.01",
  ]);
  assert.deepEqual(parseSchedules(["sqrt;two-phase:30,11", "linear"]), [
    "sqrt",
    "two-phase:30,11",
    "linear",
  ]);
  assert.deepEqual(parseScales("3,1e1,.5"), [3, 10, 0.5]);
  const points = sweepPoints({
    directions: ["joint", "logp"],
    scales: [3, 30],
    schedules: ["sqrt", "sigmoid:0.1,650,0.01"],
    classifiers: ["vnncomp21-resnet4b", "../x/vnncomp21-resnet4b.onnx"],
  });
  assert.equal(points.length, 16);
  assert.equal(new Set(points.map((p) => p.slug)).size, 16);
  assert.equal(points[0].slug, "joint_s3_sqrt_vnncomp21-resnet4b");
  assert.ok(points.every((p) => /^[A-Za-z0-9._-]+$/.test(p.slug)));
  const row = (direction: string, scale: number, schedule: string): SweepRow => ({
    slug: `${direction}${scale}${schedule}`,
    run: "",
    direction,
    scale,
    schedule,
    classifier: "c",
    n: 4,
    targetAccuracy: scale / 100,
    guideAccuracy: null,
    fd: scale,
    is: null,
    isStd: null,
    precision: null,
    recall: null,
    seconds: null,
  });
  const series = tradeoffSeries([
    row("joint", 30, "sqrt"),
    row("joint", 3, "sqrt"),
    row("logp", 3, "sqrt"),
    row("joint", 3, "power:2"),
  ]);
  assert.deepEqual(series.map((s) => s.label), ["joint · sqrt", "logp · sqrt", "joint · power:2"]);
  assert.deepEqual(series[0].points.map((p) => p.label), ["s=3", "s=30"]); // sorted by scale
});

/** Minimal result files of the analysis tasks, in the shapes their code writes. */
async function analysisFiles(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const data = { split: "test", count: 100 };
  await Deno.writeTextFile(
    `${dir}/robust.json`,
    JSON.stringify({
      task: "robust-accuracy",
      config: { norm: "l2", steps: 20, stepRatio: 2.5, randomStart: false, data },
      table: {
        columns: ["net-a", "net-b"],
        eps: [0, 0.5],
        epsLabels: ["0", "0.5"],
        accuracy: [[0.8125, 0.75], [0.4375, 0.5]],
      },
      cells: [],
    }),
  );
  await Deno.writeTextFile(
    `${dir}/noise.json`,
    JSON.stringify({
      task: "noise-accuracy",
      config: { mode: "noise", fed: "x_t", tMax: 20, tStep: 10, data },
      grid: [{ t: 0, abar: 1 }, { t: 10, abar: 0.9 }, { t: 20, abar: 0.8 }],
      chanceThreshold: 0.16,
      curves: [{
        classifier: "net-a",
        cleanAccuracy: 0.8,
        accuracy: [0.79, 0.5, 0.125],
        chanceT: 20,
        mostPredicted: [null, null, { class: 3, name: "cat", share: 0.5 }],
      }],
    }),
  );
  await Deno.writeTextFile(
    `${dir}/energy.json`,
    JSON.stringify({
      task: "energy-curve",
      config: { fed: "x_t", data },
      grid: [{ t: 0 }, { t: 10 }],
      curves: [{
        classifier: "net-a",
        clean: { energyXY: { mean: -3.5, std: 1 }, energyX: { mean: -4.25, std: 1 } },
        points: [
          {
            t: 0,
            energyXY: { mean: -3.5, std: 1 },
            energyX: { mean: -4.25, std: 1 },
            accuracy: 0.8,
          },
          { t: 10, energyXY: { mean: -2, std: 1 }, energyX: { mean: -4, std: 1 }, accuracy: 0.6 },
        ],
      }],
    }),
  );
  await Deno.writeTextFile(`${dir}/other.json`, JSON.stringify({ task: "mystery", x: 1 }));
}

Deno.test("report: one self-contained HTML file with tables, plots and embedded grids", async () => {
  // Uses the sweep of the first test, or makes it when run alone.
  try {
    await Deno.stat(`${out}/sweep.json`);
  } catch {
    await sweepTask(TINY);
  }
  const sweep = await readJson(`${out}/sweep.json`);
  // A classifier name with markup in it must come out as text.
  const evil = `${tmp}/evil`;
  await Deno.mkdir(evil);
  await Deno.writeTextFile(
    `${evil}/stats.json`,
    JSON.stringify({
      task: "energy-stats",
      classifier: { ref: `<script>alert("x")</script>` },
      split: "train",
      count: 2,
      accuracy: 0.5,
      classes: [
        { name: "a&b", count: 1, energyX: { mean: -1, std: 0.5 }, energyXY: { mean: -2, std: 1 } },
        { name: "c", count: 1, energyX: { mean: -3, std: 0.5 }, energyXY: { mean: -4, std: 1 } },
      ],
      eStar: [-1, -3],
    }),
  );
  await analysisFiles(`${tmp}/analyses`);
  const html = `${tmp}/report.html`;
  await reportTask(["--in", out, "--in", evil, `${tmp}/analyses`, "--out", html]);
  const text = await Deno.readTextFile(html);
  assert.match(text, /^<!DOCTYPE html>/);
  // Self-contained: no URL to fetch in src/href, no scripts, no external stylesheets.
  assert.doesNotMatch(text, /(src|href)\s*=\s*["']?\s*(https?:)?\/\//i);
  assert.doesNotMatch(text, /<script/i);
  assert.doesNotMatch(text, /<link/i);
  assert.doesNotMatch(text, /url\(/i);
  assert.equal(text.match(/src="data:image\/png;base64,[A-Za-z0-9+/=]+"/g)?.length, 2);
  // Table values of the sweep, as sweep.md prints them.
  for (const r of sweep.rows as SweepRow[]) {
    assert.ok(text.includes(`${(100 * r.targetAccuracy!).toFixed(1)}%`));
    assert.ok(text.includes(`<td class="num">${r.fd!.toFixed(3)}</td>`), `FD ${r.fd}`);
  }
  assert.ok(text.includes("FD_sri-resnet-a-penultimate"));
  assert.ok(text.includes("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
  assert.ok(text.includes("a&amp;b"));
  // The analysis sections: values from the tables and inline SVG plots.
  assert.ok(text.includes("81.25%") && text.includes("43.75%"), "robust-accuracy table");
  assert.ok(text.includes("12.5%"), "noise-accuracy table");
  assert.ok(text.includes("-4.250"), "energy-curve table");
  assert.ok((text.match(/<svg /g)?.length ?? 0) >= 5, "trade-off + 4 analysis plots");
  assert.match(
    text,
    /skipped [^<]*other\.json: not a result this report knows \(task &#39;mystery/,
  );

  const built = await buildReport([`${tmp}/analyses`]);
  assert.deepEqual(built.sections.map((s) => s.title.split(" ")[0]), [
    "Energies",
    "Accuracy",
    "Robust",
  ]);
  assert.ok(built.notes.some((n) => /not among the inputs: energy-stats/.test(n)));
});

Deno.test("report: bad input", async () => {
  await assert.rejects(() => reportTask([]), /--in is required/);
  await assert.rejects(
    () => reportTask(["--in", `${tmp}/nothing-here`]),
    (e: Error) => e instanceof UsageError && /does not exist/.test(e.message),
  );
  await assert.rejects(() => reportTask(["--in", tmp, "--out", `${tmp}/r.pdf`]), /\.html/);
  await assert.rejects(() => reportTask(["--bogus"]), UsageError);
});
