// Property tests of the guidance strength schedules (METHOD.md §4, eq 4.4, §4.3, §4.5, §4.7).
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  formatStrength,
  fractionToSteps,
  guidanceFactor,
  parseStrength,
  sigmoidWeight,
  type StrengthSpec,
  strengthWeight,
  THESIS_STRENGTHS,
} from "../lib/guidance/strength.ts";
import { strengthPlotSvg } from "../lib/guidance/strength_svg.ts";
import { linearSchedule } from "../lib/schedule.ts";
import { timestepGrid } from "../lib/timesteps.ts";
import { UsageError } from "../tasks/_args.ts";
import { strengthPlotTask } from "../tasks/strength_plot.ts";

const S = linearSchedule();
const close = (a: number, b: number, tol = 1e-12) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} != ${b}`);

const tArb = fc.integer({ min: 0, max: S.T - 1 });
const pos = (max: number) => fc.double({ min: 1e-6, max, noNaN: true });
const stepArb = fc.integer({ min: 1, max: 200 }).chain((steps) =>
  fc.tuple(fc.constant(steps), fc.integer({ min: 0, max: steps - 1 }))
);

const specArb: fc.Arbitrary<StrengthSpec> = fc.oneof(
  fc.constant({ kind: "sqrt" as const }),
  fc.constant({ kind: "linear" as const }),
  fc.constant({ kind: "constant" as const }),
  pos(1e6).map((p) => ({ kind: "power" as const, p })),
  fc.record({
    kind: fc.constant("sigmoid" as const),
    y0: fc.double({ min: 0, max: 1, noNaN: true, noDefaultInfinity: true }),
    t0: fc.double({ min: 0, max: S.T, noNaN: true, noDefaultInfinity: true }),
    k: pos(10),
  }).map((r) => ({ ...r })), // fc.record builds null-prototype objects
  fc.record({
    kind: fc.constant("two-phase" as const),
    s1: fc.double({ min: 0, max: 1e4, noNaN: true }),
    s2: fc.double({ min: 0, max: 1e4, noNaN: true }),
    switchAt: fc.oneof(fc.constant(0.5), fc.double({ min: 1e-6, max: 1 - 1e-6, noNaN: true })),
  }).map((r) => ({ ...r })),
);

Deno.test("each weight kind matches its formula at random t", () => {
  fc.assert(
    fc.property(
      tArb,
      stepArb,
      pos(10),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.integer({ min: 0, max: 1000 }),
      pos(1),
      (t, [steps, i], p, y0, t0, k) => {
        const abar = S.alphasCumprod[t];
        const w = (spec: StrengthSpec) => strengthWeight(spec, t, i, steps, S);
        close(w({ kind: "sqrt" }), Math.sqrt(1 - abar)); // Alg 6
        close(w({ kind: "power", p }), (1 - abar) ** p); // §4.7
        close(w({ kind: "sigmoid", y0, t0, k }), (1 - y0) / (1 + Math.exp(-k * (t - t0))) + y0);
        close(w({ kind: "linear" }), t / 999); // Fig 4.17
        assert.equal(w({ kind: "constant" }), 1);
      },
    ),
    { numRuns: 300 },
  );
  // linear runs from 1 at pure noise to 0 at the clean end.
  assert.equal(strengthWeight({ kind: "linear" }, 999, 0, 1, S), 1);
  assert.equal(strengthWeight({ kind: "linear" }, 0, 0, 1, S), 0);
});

Deno.test("sqrt equals power:0.5", () => {
  fc.assert(
    fc.property(tArb, (t) => {
      const a = strengthWeight({ kind: "sqrt" }, t, 0, 1, S);
      const b = strengthWeight(parseStrength("power:0.5"), t, 0, 1, S);
      close(a, b, 1e-15);
    }),
    { numRuns: 200 },
  );
});

Deno.test("sigmoid (eq 4.4): increasing in t, limits y0 and 1, (1 + y0)/2 at t0", () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0, max: 0.99, noNaN: true }),
      fc.double({ min: 0, max: 1000, noNaN: true }),
      fc.double({ min: 1e-3, max: 1, noNaN: true }),
      fc.double({ min: -2000, max: 2000, noNaN: true }),
      fc.double({ min: 1e-3, max: 500, noNaN: true }),
      (y0, t0, k, t, dt) => {
        const f = (u: number) => sigmoidWeight(u, y0, t0, k);
        assert.ok(f(t + dt) >= f(t), `not monotone at t=${t}, dt=${dt}`);
        close(f(t0), (1 + y0) / 2, 1e-15);
        assert.equal(f(-Infinity), y0);
        assert.equal(f(Infinity), 1);
        close(f(t0 - 1e6 / k), y0, 1e-12);
        close(f(t0 + 1e6 / k), 1, 1e-12);
        // Strictly increasing where it is not saturated in floating point.
        if (Math.abs(k * (t - t0)) < 5 && k * dt > 1e-3) assert.ok(f(t + dt) > f(t));
      },
    ),
    { numRuns: 300 },
  );
  const spec = parseStrength("sigmoid:0.1,650,0.01");
  close(strengthWeight(spec, 650, 0, 1, S), 0.55);
});

Deno.test("activation 1 gives factor 0 on every step, for every kind", () => {
  fc.assert(
    fc.property(specArb, fc.integer({ min: 1, max: 100 }), pos(100), (spec, steps, scale) => {
      const grid = timestepGrid(S.T, steps, "leading");
      grid.forEach((t, i) =>
        assert.equal(guidanceFactor({ spec, activation: 1 }, scale, t, i, steps, S), 0)
      );
    }),
    { numRuns: 100 },
  );
});

Deno.test("activation 0 with constant gives the scale on every step", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 100 }),
      fc.double({ min: -100, max: 100, noNaN: true }),
      (steps, scale) => {
        const grid = timestepGrid(S.T, steps, "leading");
        const sched = { spec: { kind: "constant" as const }, activation: 0 };
        grid.forEach((t, i) => assert.equal(guidanceFactor(sched, scale, t, i, steps, S), scale));
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("activation switches guidance on at step ceil(activation * steps)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 100 }), fc.nat(), (steps, r) => {
      const off = r % (steps + 1); // 0..steps steps without guidance
      const activation = off / steps;
      const grid = timestepGrid(S.T, steps, "leading");
      const sched = { spec: { kind: "sqrt" as const }, activation };
      grid.forEach((t, i) => {
        const g = guidanceFactor(sched, 4, t, i, steps, S);
        if (i < off) assert.equal(g, 0);
        else close(g, 4 * Math.sqrt(1 - S.alphasCumprod[t]));
      });
    }),
    { numRuns: 200 },
  );
  // §4.3: 20% of 100 steps off; 0.7 * 10 = 7.000000000000001 still means 7 steps.
  assert.equal(fractionToSteps(0.2, 100), 20);
  assert.equal(fractionToSteps(0.7, 10), 7);
  assert.equal(fractionToSteps(0.25, 10), 3);
});

Deno.test("two-phase switches exactly at the switch step and ignores the scale (§4.5)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 200 }),
      fc.nat(),
      fc.double({ min: 0, max: 100, noNaN: true }),
      fc.double({ min: 0, max: 100, noNaN: true }),
      pos(50),
      (steps, r, s1, s2, scale) => {
        const n1 = 1 + (r % (steps - 1)); // first phase: steps 0..n1-1, n1 in 1..steps-1
        const spec = parseStrength(`two-phase:${s1},${s2},${n1 / steps}`);
        const grid = timestepGrid(S.T, steps, "leading");
        grid.forEach((t, i) => {
          const g = guidanceFactor({ spec, activation: 0 }, scale, t, i, steps, S);
          assert.equal(g, i < n1 ? s1 : s2, `step ${i} of ${steps}, switch at ${n1}`);
        });
      },
    ),
    { numRuns: 200 },
  );
  // The thesis's 30 then 11 over 100 steps: steps 0..49 at 30, 50..99 at 11.
  const spec = parseStrength("two-phase:30,11");
  assert.equal(strengthWeight(spec, 500, 49, 100, S), 30);
  assert.equal(strengthWeight(spec, 490, 50, 100, S), 11);
});

Deno.test("parseStrength(formatStrength(s)) deep-equals s", () => {
  fc.assert(
    fc.property(specArb, (spec) => {
      assert.deepEqual(parseStrength(formatStrength(spec)), spec);
    }),
    { numRuns: 500 },
  );
  for (const s of THESIS_STRENGTHS) assert.equal(formatStrength(parseStrength(s)), s);
  assert.deepEqual(parseStrength(" sigmoid: 0.1, 650, 0.01 "), {
    kind: "sigmoid",
    y0: 0.1,
    t0: 650,
    k: 0.01,
  });
});

Deno.test("malformed strength strings throw a UsageError naming the string", () => {
  const cases: Array<[string, RegExp]> = [
    ["sigmoid:1,2", /takes 3 numbers/],
    ["power:-1", /p = -1 must be > 0/],
    ["power:x", /'x' is not a finite decimal/],
    ["power:0x10", /not a finite decimal/],
    ["power", /takes p after a colon/],
    ["foo", /unknown kind 'foo'/],
    ["two-phase:30", /takes 2 or 3 numbers/],
    ["two-phase:30,11,1", /switch = 1 must be in \(0, 1\)/],
    ["sigmoid:2,650,0.01", /y0 = 2 must be in \[0, 1\]/],
    ["sigmoid:0.1,1200,0.01", /t0 = 1200 must be in \[0, T = 1000\]/],
    ["sigmoid:0.1,650,0", /k = 0 must be > 0/],
    ["sqrt:2", /takes no parameters/],
    ["", /is empty/],
  ];
  for (const [text, why] of cases) {
    assert.throws(() => parseStrength(text), (e: unknown) => {
      assert.ok(e instanceof UsageError, `'${text}' threw ${e}`);
      assert.ok(e.message.includes(`'${text}'`), `message does not name '${text}': ${e.message}`);
      assert.match(e.message, why);
      assert.match(e.message, /sigmoid:0\.1,650,0\.01/); // lists the valid forms
      return true;
    });
  }
});

Deno.test("strengthPlotSvg: one polyline per curve, labels, escaping, length checks", () => {
  const steps = timestepGrid(S.T, 20, "leading");
  const curves = THESIS_STRENGTHS.map((s) => {
    const spec = parseStrength(s);
    return {
      label: s,
      values: steps.map((t, i) => guidanceFactor({ spec, activation: 0.2 }, 1, t, i, 20, S)),
      axis: spec.kind === "two-phase" ? "right" as const : "left" as const,
    };
  });
  curves.push({ label: "a<b & c", values: steps.map(() => 0.5), axis: "left" });
  const svg = strengthPlotSvg(curves, { steps, title: "Fig 4.10" });
  assert.ok(svg.startsWith("<svg"));
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  assert.equal(svg.match(/<polyline/g)?.length, curves.length);
  assert.equal(svg.match(/<\/polyline>/g)?.length, curves.length);
  for (const s of THESIS_STRENGTHS) assert.ok(svg.includes(s), `label ${s} missing`);
  assert.ok(svg.includes("a&lt;b &amp; c") && !svg.includes("a<b"));
  assert.ok(svg.includes("Fig 4.10"));
  assert.throws(() => strengthPlotSvg([{ label: "x", values: [1] }], { steps }), /'x' has 1/);
  assert.throws(
    () => strengthPlotSvg([{ label: "n", values: [NaN, 1] }], { steps: [1, 0] }),
    /'n' value 0 is NaN/,
  );
});

Deno.test("strength-plot task writes the SVG; bad flags are UsageErrors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/s.svg`;
    const log = console.log;
    console.log = () => {};
    try {
      await strengthPlotTask(["--schedule", "sqrt", "--schedule", "two-phase:30,11", "--out", out]);
    } finally {
      console.log = log;
    }
    const svg = await Deno.readTextFile(out);
    assert.equal(svg.match(/<polyline/g)?.length, 2);
    // Default: the thesis's 8 schedules; sqrt and power:0.5 coincide and share one curve.
    console.log = () => {};
    try {
      await strengthPlotTask(["--out", out, "--activation", "0.2", "--scale", "4"]);
    } finally {
      console.log = log;
    }
    const all = await Deno.readTextFile(out);
    assert.equal(all.match(/<polyline/g)?.length, THESIS_STRENGTHS.length - 1);
    assert.ok(all.includes("sqrt = power:0.5"));
    await assert.rejects(() => strengthPlotTask(["--schedule", "power:x"]), UsageError);
    await assert.rejects(() => strengthPlotTask(["--activation", "1.5"]), UsageError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
