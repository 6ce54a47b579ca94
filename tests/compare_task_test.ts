// The `compare` task end to end at a tiny size (issue 15 item 4): three methods on the exact
// mixture denoiser, 2 classes, one validation seed and two test seeds per class, 5 DDIM steps, a
// 200-image reference; outputs, tuning on validation seeds only, resume, refusal of bad input.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { UsageError } from "../lib/errors.ts";
import { compareTask, SELECTION_RULE, selectPoint } from "../tasks/compare.ts";
import { wilsonInterval } from "../lib/compare/results.ts";
import { buildReport } from "../tasks/report.ts";

Deno.env.set("RG_QUIET", "1");
const DATA = fileURLToPath(
  new URL("../../shared/data/cifar10/cifar-10-binary.tar.gz", import.meta.url),
);
const tmp = await Deno.makeTempDir({ prefix: "compare_task_test_" });
const out = `${tmp}/compare`;
const TINY = [
  "--methods=thesis,dps,mpgd",
  "--model=mixture-cifar10",
  "--classifier=cifar10-resnet16-l2-0.5",
  "--evaluator=cifar10-vgg64-eval",
  "--val-seeds=100",
  "--test-seeds=0-1",
  "--class=airplane,ship",
  "--steps=5",
  "--grid=thesis:scale=5|10|20;dps:zeta=0.3|1;mpgd:c=0.5",
  "--reference-limit=200",
  `--data=${DATA}`,
  `--cache=${tmp}/cache`,
  "--provider=cpu",
  `--out=${out}`,
];

// deno-lint-ignore no-explicit-any
const readJson = async (p: string): Promise<any> => JSON.parse(await Deno.readTextFile(p));

Deno.test("compare: tiny run, outputs, tuning on validation seeds, resume", async () => {
  await compareTask(TINY);
  const a = await readJson(`${out}/compare.json`);
  assert.equal(a.task, "compare");
  assert.deepEqual(a.rows.map((r: { method: string }) => r.method), [
    "thesis",
    "dps",
    "mpgd",
    "unguided",
  ]);
  assert.deepEqual(a.ranNow, { validation: 5, test: 3 }); // thesis 3 + dps 2 grid values; mpgd fixed
  // the unguided reference: same n, distinct seeds, the guide's eta (0.5), evaluated, no accuracy
  const ung = a.rows.at(-1);
  assert.equal(ung.n, 4);
  assert.equal(ung.targetAccuracy, null);
  assert.ok(Number.isFinite(ung.fd) && ung.fd > 0);
  const ungRun = await readJson(`${out}/test/unguided/run.json`);
  assert.equal(ungRun.config?.eta ?? ungRun.eta, 0.5);
  // every validation point is evaluated at the validation n, with its own unguided reference
  assert.equal(a.tuning.length, 5);
  for (const q of a.tuning) {
    assert.equal(q.n, 2);
    assert.ok(Number.isFinite(q.fd) && q.fd > 0, `${q.method} ${q.value}: fd ${q.fd}`);
  }
  assert.equal(a.unguidedValidation.n, 2);
  assert.match(await Deno.readTextFile(`${out}/pareto_val.svg`), /^<svg/);
  for (const r of a.rows.slice(0, 3)) {
    assert.equal(r.n, 4);
    assert.ok(r.targetAccuracy >= 0 && r.targetAccuracy <= 1);
    assert.ok(r.interval[0] <= r.targetAccuracy && r.targetAccuracy <= r.interval[1]);
    assert.ok(Number.isFinite(r.fd) && r.fd > 0);
    assert.ok(r.secondsPerImage > 0);
  }
  const dps = a.rows.find((r: { method: string }) => r.method === "dps");
  assert.deepEqual(dps.calls, { denoiser: 5, denoiserVjp: 5, classifier: 5 });
  assert.equal(a.rows.find((r: { method: string }) => r.method === "mpgd").tuned, null);
  // the chosen value follows the selection rule on the validation points
  const val = a.tuning.filter((p: { method: string }) => p.method === "dps");
  assert.equal(dps.tuned.value, selectPoint(val, a.unguidedValidation.fd)!.value);
  assert.equal(a.selection, SELECTION_RULE);
  // validation runs used the validation seeds only, test runs the test seeds
  const valRun = await readJson(`${out}/val/dps-zeta-1/run.json`);
  assert.equal(valRun.config.seeds, "100");
  assert.equal((await readJson(`${out}/test/dps/run.json`)).config.seeds, "0-1");
  const md = await Deno.readTextFile(`${out}/compare.md`);
  assert.match(md, /\| dps \| zeta=(0\.3|1) \(val/);
  assert.match(md, /## Validation grid \(seeds 100 per class\)/);
  assert.match(md, /\| unguided \| - \| n\/a \|/);
  const svg = await Deno.readTextFile(`${out}/pareto.svg`);
  assert.match(svg, /^<svg/);
  assert.equal((svg.match(/fill-opacity="0.7"/g) ?? []).length, 3); // one cost-sized marker each

  // the report renders the comparison as one section (its run folders are not listed apart)
  const report = await buildReport([out]);
  assert.deepEqual(report.sections.map((x) => x.title), ["Guidance methods compared"]);
  assert.match(report.sections[0].html, /Tuning on the validation seeds/);
  assert.match(report.sections[0].html, /Validation grid: target accuracy vs FD/);

  // resume: nothing left to run, same rows
  await compareTask(TINY);
  const b = await readJson(`${out}/compare.json`);
  assert.deepEqual(b.ranNow, { validation: 0, test: 0 });
  assert.deepEqual(
    b.rows.map((r: { fd: number }) => r.fd),
    a.rows.map((r: { fd: number }) => r.fd),
  );
  // a changed fixed setting is refused
  await assert.rejects(() => compareTask([...TINY, "--eta=0.3"]), UsageError);
});

Deno.test("compare: bad input is refused before any model runs", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["--methods=thesis,nope"], /--method 'nope' is invalid/],
    [["--val-seeds=0-3", "--test-seeds=2-5"], /share seeds/],
    [["--grid=dps:zeta=a|b"], /every value must be a number/],
    [["--grid=tfg:rho=1", "--methods=dps"], /not in --methods/],
    [["--fixed=dps:zeta=1"], /the parameter --grid tunes/],
    [["--grid=tfg:recur=0|1", "--methods=tfg"], /recur=0 must be >= 1/],
    [
      ["--evaluator=cifar10-resnet16-l2-0.5", "--classifier=cifar10-resnet16-l2-0.5"],
      /independent/,
    ],
  ];
  for (const [flags, re] of cases) {
    await assert.rejects(
      () => compareTask([...flags, `--out=${tmp}/bad`, "--methods=dps", ...flags]),
      (e: Error) => e instanceof UsageError && re.test(e.message),
      flags.join(" "),
    );
  }
  const [lo, hi] = wilsonInterval(5, 10);
  assert.ok(Math.abs(lo - 0.2366) < 1e-3 && Math.abs(hi - 0.7634) < 1e-3); // Wilson 1927, 95%
});

Deno.test("compare: tuning picks the lowest FD among accuracies within a standard error of the best, at an FD no worse than unguided", () => {
  const q = (value: number, acc: number | null, fd: number, n = 100) => ({
    method: "m",
    param: "s",
    value,
    validationAccuracy: acc,
    fd,
    n,
  });
  // best 0.9 at n = 100: standard error 0.03, so 0.87 ties with it and 0.8 does not
  const pts = [q(1, 0.8, 10), q(3, 0.87, 22), q(10, 0.9, 21), q(30, 0.93, 30), q(100, null, 5)];
  assert.equal(selectPoint(pts, 25)!.value, 10); // 30 is over the unguided FD; 3 and 10 tie
  assert.equal(selectPoint(pts, 40)!.value, 30); // best 0.93, se 0.0255: 0.90 does not tie
  assert.equal(selectPoint(pts, 5)!.value, 30); // none within: every scored point
  assert.equal(selectPoint([...pts, q(300, 0.91, 25)], 40)!.value, 300); // 0.91 ties 0.93
  assert.equal(selectPoint([q(1, 1, 30, 50), q(2, 0.98, 20, 50)], 99)!.value, 2); // se >= 1/n
  assert.equal(selectPoint([q(1, 1, 30, 50), q(2, 0.96, 20, 50)], 99)!.value, 1);
  assert.equal(selectPoint([q(1, null, 3)], 5), undefined);
});
