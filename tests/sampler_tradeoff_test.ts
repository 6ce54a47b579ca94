// The sampler trade-off's pure parts: the (sampler, calls) grid, rows, the default-change rule.
import assert from "node:assert/strict";
import {
  defaultVerdict,
  stepsForCalls,
  tradeoffMarkdown,
  tradeoffPoints,
  type TradeoffRow,
  tradeoffSvg,
} from "../lib/sweep/sampler_tradeoff.ts";

Deno.test("the grid: Heun takes the largest 2 steps - 1 <= calls; DDIM's top budget repeats on other seeds", () => {
  assert.equal(stepsForCalls("heun", 20), 10);
  assert.equal(stepsForCalls("heun", 25), 13);
  assert.equal(stepsForCalls("dpmpp-2m", 15), 15);
  const pts = tradeoffPoints(["ddim", "heun"], [10, 20, 100]);
  assert.deepEqual(
    pts.map((p) => `${p.slug}:${p.calls}:${p.seedSet}`),
    [
      "ddim-10:10:main",
      "ddim-20:20:main",
      "ddim-100:100:main",
      "heun-5:9:main",
      "heun-10:19:main",
      "heun-50:99:main",
      "ddim-100-repeat:100:repeat",
    ],
  );
});

function row(
  sampler: string,
  calls: number,
  acc: number,
  fd: number,
  seedSet = "main",
): TradeoffRow {
  return {
    sampler,
    steps: calls,
    calls,
    slug: `${sampler}-${calls}${seedSet === "repeat" ? "-repeat" : ""}`,
    seedSet: seedSet as "main" | "repeat",
    n: 500,
    targetAccuracy: acc,
    fd,
    precision: 0.5,
    recall: 0.5,
    secondsPerImage: calls / 100,
  };
}

Deno.test("the default changes only for a fast sampler within 2 points and within the FD spread", () => {
  const base = [row("ddim", 100, 0.80, 10.0), row("ddim", 100, 0.79, 10.6, "repeat")];
  const yes = defaultVerdict([
    ...base,
    row("dpmpp-2m", 20, 0.785, 10.5),
    row("unipc", 15, 0.70, 10.1),
  ]);
  assert.equal(yes.fdSpread!.toFixed(2), "0.60");
  assert.deepEqual(yes.qualifying.map((r) => r.slug), ["dpmpp-2m-20"]);
  assert.match(yes.text, /dpmpp-2m at 20 calls .* qualifies/);
  // accuracy 2.5 points lower, or FD outside the spread, or more than 20 calls: no change
  const no = defaultVerdict([
    ...base,
    row("dpmpp-2m", 20, 0.775, 10.1),
    row("unipc", 20, 0.80, 10.7),
    row("heun", 25, 0.80, 10.0),
  ]);
  assert.equal(no.qualifying.length, 0);
  assert.match(no.text, /the default stays DDIM-100/);
  assert.match(defaultVerdict([row("ddim", 100, 0.8, 10)]).text, /no verdict/);
  const md = tradeoffMarkdown([...base, row("dpmpp-2m", 20, 0.785, 10.5)], "about");
  assert.match(md, /\| dpmpp-2m \| 20 \| 20 \| main \| 500 \| 78\.5% \| 10\.50 \|/);
  const svg = tradeoffSvg([...base, row("dpmpp-2m", 20, 0.785, 10.5)], "t")!;
  assert.match(svg, /^<svg/);
  assert.ok(svg.includes("dpmpp-2m") && svg.includes("Frechet distance"));
});

Deno.test("report: tradeoff.json is a section with its table, figure and verdict", async () => {
  const { classifyJson } = await import("../tasks/report.ts");
  const { samplerTradeoffSection } = await import("../lib/report/tradeoff_section.ts");
  const rows = [
    row("ddim", 100, 0.8, 10),
    row("ddim", 100, 0.79, 10.6, "repeat"),
    row("unipc", 20, 0.8, 10.2),
  ];
  const json = {
    task: "sampler-tradeoff",
    config: {
      samplers: ["ddim", "unipc"],
      calls: [20, 100],
      seeds: "0-49",
      repeatSeeds: "100000-100049",
    },
    rows,
    verdict: { text: defaultVerdict(rows).text },
  };
  assert.equal(classifyJson(json), "sampler-tradeoff");
  assert.equal(classifyJson({ task: "sampler-tradeoff", evaluator: "x" }), "ignore"); // config.json
  const s = samplerTradeoffSection(json, "out/x/tradeoff.json");
  assert.match(s.html, /<svg/);
  assert.match(s.html, /unipc at 20 calls/);
  assert.throws(
    () => samplerTradeoffSection({ task: "sampler-tradeoff" }, "f.json"),
    /f\.json: tradeoff\.json has no 'rows'/,
  );
});
