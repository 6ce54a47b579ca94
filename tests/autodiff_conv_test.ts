// appendVjp for convolutions, batch norm and pooling, against central finite differences
// (tests/_vjp_check.ts). ORT's CPU Conv, ConvTranspose, AveragePool and GlobalAveragePool are
// float32-only, so those run in float32 (step 1e-2, tolerance 1e-2 relative; they are linear in
// x, so only float32 rounding enters); BatchNormalization and MaxPool run in float64 (1e-6).
import assert from "node:assert/strict";
import fc from "fast-check";
import { float, GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, decodeModel } from "../lib/onnx/proto.ts";
import { makeTensor, tensorToFloat64 } from "../lib/onnx/tensor.ts";
import { RandomStream } from "../lib/random.ts";
import { property, randomConst, seedArb } from "./_vjp_arbitraries.ts";
import { buildCase, checkVjp, distinctValues, type VjpCase } from "./_vjp_check.ts";
import { appendVjp } from "../lib/autodiff/vjp.ts";

const F = DataType.FLOAT, D = DataType.DOUBLE;
const pair = (min: number, max: number) =>
  fc.tuple(fc.integer({ min, max }), fc.integer({ min, max }));
const quad = (min: number, max: number) =>
  fc.tuple(
    fc.integer({ min, max }),
    fc.integer({ min, max }),
    fc.integer({ min, max }),
    fc.integer({ min, max }),
  );

/** Keeps the first `n` spatial entries of per-axis pairs and the matching pads. */
function spatial<T>(v: readonly T[], n: number): T[] {
  return v.slice(0, n);
}
function padsOf(p: readonly number[], n: number): number[] {
  return [...p.slice(0, n), ...p.slice(2, 2 + n)];
}

const convCase = fc.record({
  nsp: fc.constantFrom(1, 2),
  batch: fc.integer({ min: 1, max: 2 }),
  groups: fc.integer({ min: 1, max: 2 }),
  cinPer: fc.integer({ min: 1, max: 2 }),
  coutPer: fc.integer({ min: 1, max: 2 }),
  k: pair(1, 3),
  s: pair(1, 3),
  d: pair(1, 2),
  p: quad(0, 2),
  autoPad: fc.constantFrom("NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"),
  size: pair(3, 8),
  bias: fc.boolean(),
  kernelAttr: fc.boolean(),
  weight: fc.constantFrom<WeightKind>("initializer", "constant", "computed"),
  // Spatial sizes declared symbolic: the strided backward takes its run-time (Shape) form.
  symbolic: fc.boolean(),
  opset: fc.constantFrom(9, 11, 17),
  seed: seedArb,
}).map((c) => ({
  ...c,
  // ORT's Conv refuses dilations with auto_pad SAME_*.
  d: c.autoPad.startsWith("SAME") ? [1, 1] as [number, number] : c.d,
})).filter((c) =>
  spatial(c.size, c.nsp).every((h, i) => {
    const extent = (c.k[i] - 1) * c.d[i] + 1;
    if (c.autoPad === "VALID") return h >= extent;
    if (c.autoPad === "NOTSET") return h + c.p[i] + c.p[i + 2] >= extent;
    return true;
  })
);

/**
 * How a conv weight is given: an initializer, a Constant node (both folded into a flipped
 * initializer by the stride-1 rule), or computed in the graph (flipped in the graph).
 */
type WeightKind = "initializer" | "constant" | "computed";

/** A float32 conv weight [cout, cinPer, ...kernel] of the given kind. */
function convWeight(b: GraphBuilder, dims: number[], seed: number, kind: WeightKind): string {
  const w = randomConst(b, dims, seed, F);
  if (kind === "initializer") return w;
  if (kind === "computed") return b.node("Identity", [w]);
  const t = b.initializer(w)!;
  b.graph.initializer = b.graph.initializer!.filter((i) => i !== t);
  const data = Float32Array.from(tensorToFloat64(t));
  return b.node("Constant", [], { value: makeTensor("value", t.dims!, data) });
}

interface ConvSpec {
  nsp: number;
  batch: number;
  groups: number;
  cinPer: number;
  coutPer: number;
  k: readonly number[];
  s: readonly number[];
  d: readonly number[];
  p: readonly number[];
  autoPad: string;
  size: readonly number[];
  bias: boolean;
  kernelAttr: boolean;
  weight: WeightKind;
  symbolic: boolean;
  opset: number;
  seed: number;
}

/** The finite-difference case of a Conv (x float32 [batch, groups cinPer, ...size]). */
function convVjpCase(c: ConvSpec): VjpCase {
  const n = c.nsp;
  const cin = c.groups * c.cinPer, cout = c.groups * c.coutPer;
  const kernel = spatial(c.k, n);
  const xDims = [c.batch, cin, ...spatial(c.size, n)];
  return {
    build: (b, x) => {
      const w = convWeight(b, [cout, c.cinPer, ...kernel], c.seed, c.weight);
      const inputs = c.bias ? [x, w, randomConst(b, [cout], c.seed + 1, F)] : [x, w];
      return b.node("Conv", inputs, {
        kernel_shape: c.kernelAttr ? kernel : undefined,
        strides: spatial(c.s, n),
        dilations: spatial(c.d, n),
        group: c.groups,
        auto_pad: c.autoPad === "NOTSET" ? undefined : c.autoPad,
        pads: c.autoPad === "NOTSET" ? padsOf(c.p, n) : undefined,
      });
    },
    xDims,
    declaredDims: c.symbolic ? [c.batch, cin, ...spatial(c.size, n).map((_, i) => `h${i}`)] : xDims,
    precision: "float",
    opset: c.opset,
    seed: c.seed,
  };
}

/** Op types of the case's graph (forward, objective and backward nodes). */
function opsOf(c: VjpCase): string[] {
  const { bytes } = buildCase(c, new RandomStream(c.seed));
  return decodeModel(bytes).graph.node.map((node) => node.op_type);
}

const count = (ops: readonly string[], op: string) => ops.filter((o) => o === op).length;

property(
  "vjp: Conv with strides, pads, auto_pad, dilations, groups, bias, weight kinds, static or " +
    "symbolic sizes (float32)",
  convCase,
  (c) => checkVjp(convVjpCase(c), `Conv ${JSON.stringify(c)}`),
);

/** Kernel extent per spatial axis. */
const extentOf = (c: ConvSpec) => spatial(c.k, c.nsp).map((k, i) => (k - 1) * c.d[i] + 1);

property(
  "vjp: stride-1 Conv takes the flipped-weight Conv form (groups, dilations, asymmetric pads, " +
    "SAME_*, weight kinds) (float32)",
  fc.record({
    nsp: fc.constantFrom(1, 2),
    batch: fc.integer({ min: 1, max: 2 }),
    groups: fc.integer({ min: 1, max: 3 }),
    cinPer: fc.integer({ min: 1, max: 2 }),
    coutPer: fc.integer({ min: 1, max: 3 }),
    k: pair(1, 4),
    s: fc.constant([1, 1]),
    d: pair(1, 3),
    p: quad(0, 6),
    autoPad: fc.constantFrom("NOTSET", "NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"),
    size: pair(3, 9),
    bias: fc.boolean(),
    kernelAttr: fc.boolean(),
    weight: fc.constantFrom<WeightKind>("initializer", "constant", "computed"),
    symbolic: fc.boolean(),
    opset: fc.constantFrom(9, 11, 17),
    seed: seedArb,
  }).map((c) => {
    const d = c.autoPad.startsWith("SAME") ? [1, 1] : c.d;
    // Pads up to extent - 1 per side (the flipped form); fallback cases are tested below.
    const p = c.p.map((v, i) => v % ((c.k[i % 2] - 1) * d[i % 2] + 1));
    return { ...c, d, p };
  }).filter((c) =>
    extentOf(c).every((e, i) => c.size[i] + (c.autoPad === "VALID" ? 0 : c.p[i] + c.p[i + 2]) >= e)
  ),
  async (c) => {
    const vc = convVjpCase(c);
    const ops = opsOf(vc);
    assert.equal(count(ops, "ConvTranspose"), 0, `stride 1 uses no ConvTranspose: ${ops}`);
    assert.equal(count(ops, "Pad"), 0, `stride 1 needs no Pad: ${ops}`);
    assert.equal(count(ops, "Conv"), 2, `forward Conv + adjoint Conv: ${ops}`);
    // A constant weight is flipped once at build time; a computed one in the graph.
    assert.equal(count(ops, "Slice") > 0, c.weight === "computed", `weight flip: ${ops}`);
    await checkVjp(vc, `stride-1 Conv ${JSON.stringify(c)}`);
  },
);

property(
  "vjp: stride-1 Conv with pads beyond the kernel extent: ConvTranspose with pads (float32)",
  fc.record({
    nsp: fc.constantFrom(1, 2),
    groups: fc.integer({ min: 1, max: 2 }),
    k: pair(1, 3),
    d: pair(1, 2),
    p: quad(0, 5),
    size: pair(2, 6),
    weight: fc.constantFrom<WeightKind>("initializer", "computed"),
    seed: seedArb,
  }).map((c) => ({
    ...c,
    batch: 2,
    cinPer: 2,
    coutPer: 1,
    s: [1, 1],
    autoPad: "NOTSET",
    bias: false,
    kernelAttr: false,
    symbolic: false,
    opset: 17,
    // at least one pad past extent - 1
    p: c.p.map((v, i) => i === 0 ? (c.k[0] - 1) * c.d[0] + 1 + (v % 2) : v),
  })).filter((c) => extentOf(c).every((e, i) => c.size[i] + c.p[i] + c.p[i + 2] >= e)),
  async (c) => {
    const vc = convVjpCase(c);
    const ops = opsOf(vc);
    assert.deepEqual([count(ops, "ConvTranspose"), count(ops, "Pad")], [1, 0], `${ops}`);
    await checkVjp(vc, `stride-1 Conv, large pads ${JSON.stringify(c)}`);
  },
);

property(
  "vjp: strided Conv with static sizes: one ConvTranspose with pads/output_padding, no Pad " +
    "(group 1), or for groups the zero-inserted stride-1 Conv (dilations, asymmetric pads, " +
    "SAME_*) (float32)",
  fc.record({
    nsp: fc.constantFrom(1, 2),
    batch: fc.integer({ min: 1, max: 2 }),
    groups: fc.integer({ min: 1, max: 3 }),
    cinPer: fc.integer({ min: 1, max: 2 }),
    coutPer: fc.integer({ min: 1, max: 2 }),
    k: pair(1, 4),
    s: pair(1, 4),
    d: pair(1, 3),
    p: quad(0, 3),
    autoPad: fc.constantFrom("NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"),
    size: pair(2, 11),
    bias: fc.boolean(),
    kernelAttr: fc.boolean(),
    weight: fc.constantFrom<WeightKind>("initializer", "computed"),
    opset: fc.constantFrom(9, 17),
    seed: seedArb,
  }).map((c) => ({
    ...c,
    symbolic: false,
    s: [c.s[0] === 1 ? 2 : c.s[0], c.s[1]], // strided on the first axis
    d: c.autoPad.startsWith("SAME") ? [1, 1] : c.d,
  })).filter((c) =>
    extentOf(c).every((e, i) => {
      const h = c.size[i];
      if (c.autoPad === "VALID") return h >= e;
      if (c.autoPad === "NOTSET") return h + c.p[i] + c.p[i + 2] >= e;
      // SAME_* totals below -2 are refused (sameAutoPadProblem; tested below).
      return (Math.ceil(h / c.s[i]) - 1) * c.s[i] + e - h >= -2;
    })
  ),
  async (c) => {
    const vc = convVjpCase(c);
    const ops = opsOf(vc);
    // Grouped convs whose begin pads fit the kernel take the stride-1 form (rules_conv.ts).
    const fits = c.autoPad !== "NOTSET" ||
      extentOf(c).every((e, i) => c.p[i] <= e - 1);
    if (c.groups > 1 && fits) {
      assert.equal(count(ops, "ConvTranspose"), 0, `${ops}`);
    } else {
      assert.deepEqual([count(ops, "ConvTranspose"), count(ops, "Pad")], [1, 0], `${ops}`);
    }
    await checkVjp(vc, `strided Conv, static sizes ${JSON.stringify(c)}`);
  },
);

property(
  "vjp: two chained Convs (Tanh between): the second conv's input sizes are inferred statically " +
    "(a wrong size fails the run or the gradient shape), so both take the static forms (float32)",
  fc.record({
    layers: fc.array(
      fc.record({
        k: pair(1, 3),
        s: pair(1, 3),
        p: quad(0, 2),
        autoPad: fc.constantFrom("NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"),
        d: pair(1, 2),
      }),
      { minLength: 2, maxLength: 2 },
    ),
    size: pair(5, 12),
    seed: seedArb,
  }).map((c) => ({
    ...c,
    layers: c.layers.map((l) => ({ ...l, d: l.autoPad.startsWith("SAME") ? [1, 1] : l.d })),
  })),
  async (c) => {
    const vc: VjpCase = {
      build: (b, x) => {
        let v = x;
        c.layers.forEach((l, i) => {
          if (i > 0) v = b.node("Tanh", [v]);
          v = b.node("Conv", [v, randomConst(b, [2, 2, ...l.k], c.seed + i, F)], {
            strides: l.s,
            dilations: l.d,
            auto_pad: l.autoPad === "NOTSET" ? undefined : l.autoPad,
            pads: l.autoPad === "NOTSET" ? l.p : undefined,
          });
        });
        return v;
      },
      xDims: [2, 2, ...c.size],
      precision: "float",
      seed: c.seed,
    };
    // Skip chains whose second conv does not fit its input (ORT refuses those).
    let h: number[] = [...c.size];
    for (const l of c.layers) {
      h = h.map((hi, i) => {
        const e = (l.k[i] - 1) * l.d[i] + 1;
        if (l.autoPad.startsWith("SAME")) return Math.ceil(hi / l.s[i]);
        const padded = l.autoPad === "VALID" ? hi : hi + l.p[i] + l.p[i + 2];
        return Math.floor((padded - e) / l.s[i]) + 1;
      });
      if (h.some((v) => v < 1)) return;
    }
    const ops = opsOf(vc);
    assert.equal(count(ops, "Pad"), 0, `static forms only: ${ops}`);
    await checkVjp(vc, `Conv chain ${JSON.stringify(c)}`);
  },
);

Deno.test("vjp: stride-1 Conv, fixed cases: groups with C/g != M/g, dilation, asymmetric pads, each weight kind", async () => {
  for (const weight of ["initializer", "constant", "computed"] as const) {
    for (const [nsp, autoPad] of [[2, "NOTSET"], [1, "NOTSET"], [2, "SAME_LOWER"]] as const) {
      const c: ConvSpec = {
        nsp,
        batch: 2,
        groups: 2,
        cinPer: 2,
        coutPer: 3,
        k: [3, 2],
        s: [1, 1],
        d: autoPad === "NOTSET" ? [2, 3] : [1, 1],
        p: [0, 3, 4, 1],
        autoPad,
        size: [6, 5],
        bias: true,
        kernelAttr: weight !== "computed",
        weight,
        symbolic: weight === "constant",
        opset: 17,
        seed: 11,
      };
      const ops = opsOf(convVjpCase(c));
      assert.deepEqual([count(ops, "Conv"), count(ops, "ConvTranspose")], [2, 0], `${ops}`);
      await checkVjp(convVjpCase(c), `stride-1 Conv ${JSON.stringify(c)}`);
    }
  }
});

Deno.test("vjp: strided Conv with symbolic sizes keeps the run-time form (ConvTranspose, Pad)", async () => {
  const c: ConvSpec = {
    nsp: 2,
    batch: 2,
    groups: 2,
    cinPer: 2,
    coutPer: 1,
    k: [3, 2],
    s: [2, 3],
    d: [1, 2],
    p: [1, 0, 2, 1],
    autoPad: "NOTSET",
    size: [7, 8],
    bias: true,
    kernelAttr: false,
    weight: "initializer",
    symbolic: true,
    opset: 17,
    seed: 5,
  };
  const ops = opsOf(convVjpCase(c));
  assert.deepEqual([count(ops, "ConvTranspose"), count(ops, "Pad")], [1, 1], `${ops}`);
  await checkVjp(convVjpCase(c), "strided Conv, symbolic sizes");
});

const convTransposeCase = fc.record({
  nsp: fc.constantFrom(1, 2),
  batch: fc.integer({ min: 1, max: 2 }),
  groups: fc.integer({ min: 1, max: 2 }),
  cinPer: fc.integer({ min: 1, max: 2 }),
  coutPer: fc.integer({ min: 1, max: 2 }),
  k: pair(1, 3),
  s: pair(1, 3),
  d: pair(1, 2),
  p: quad(0, 2),
  op: pair(0, 2),
  size: pair(2, 5),
  valid: fc.boolean(),
  opset: fc.constantFrom(9, 11, 17),
  seed: seedArb,
}).map((c) => ({
  ...c,
  // ORT wants output_padding below the stride.
  op: c.op.map((o, i) => o % c.s[i]) as [number, number],
})).filter((c) =>
  spatial(c.size, c.nsp).every((h, i) =>
    c.s[i] * (h - 1) + c.op[i] + (c.k[i] - 1) * c.d[i] + 1 - (c.valid ? 0 : c.p[i] + c.p[i + 2]) >=
      1
  )
);

property(
  "vjp: ConvTranspose with strides, pads, output_padding, dilations, groups (float32)",
  convTransposeCase,
  (c) => {
    const n = c.nsp;
    const cin = c.groups * c.cinPer;
    const kernel = spatial(c.k, n);
    return checkVjp({
      build: (b, x) =>
        b.node("ConvTranspose", [x, randomConst(b, [cin, c.coutPer, ...kernel], c.seed, F)], {
          strides: spatial(c.s, n),
          dilations: spatial(c.d, n),
          group: c.groups,
          output_padding: spatial(c.op, n),
          pads: c.valid ? undefined : padsOf(c.p, n),
          auto_pad: c.valid ? "VALID" : undefined,
        }),
      xDims: [c.batch, cin, ...spatial(c.size, n)],
      precision: "float",
      opset: c.opset,
      seed: c.seed,
    }, `ConvTranspose ${JSON.stringify(c)}`);
  },
);

property(
  "vjp: inference BatchNormalization (opsets 9, 14, 15, 17; rank 2-4) (float64)",
  fc.record({
    opset: fc.constantFrom(9, 14, 15, 17),
    dims: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 2, maxLength: 4 }),
    eps: fc.double({ min: 1e-5, max: 0.5, noNaN: true }),
    seed: seedArb,
  }),
  ({ opset, dims, eps, seed }) => {
    const C = dims[1];
    return checkVjp({
      build: (b, x) => {
        const variance = b.constant(
          "var",
          [C],
          Float64Array.from({ length: C }, (_, i) => 0.2 + i),
        );
        const params = [0, 1, 2].map((i) => randomConst(b, [C], seed + i, D));
        return b.node("BatchNormalization", [x, params[0], params[1], params[2], variance], {
          epsilon: float(eps),
        });
      },
      xDims: dims,
      precision: "double",
      opset,
      seed,
    }, `BatchNormalization@${opset}`);
  },
);

const poolCase: fc.Arbitrary<PoolCase> = fc.record({
  nsp: fc.constantFrom(1, 2),
  nc: pair(1, 2),
  k: pair(1, 3),
  s: pair(1, 3),
  d: pair(1, 2),
  p: quad(0, 2),
  autoPad: fc.constantFrom("NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"),
  ceil: fc.integer({ min: 0, max: 1 }),
  size: pair(3, 7),
  seed: seedArb,
}).map((c) => ({
  ...c,
  p: c.p.map((v, i) => v % c.k[i % 2]) as [number, number, number, number], // pads < kernel
}));

type PoolCase = {
  nsp: number;
  nc: [number, number];
  k: [number, number];
  s: [number, number];
  d: [number, number];
  p: [number, number, number, number];
  autoPad: string;
  ceil: number;
  size: [number, number];
  seed: number;
};

/** Pool attributes for the opset (ceil_mode from 10, dilations for MaxPool from 10, AveragePool from 19). */
function poolAttrs(c: PoolCase, opset: number, dilations: boolean) {
  const n = c.nsp;
  return {
    kernel_shape: spatial(c.k, n),
    strides: spatial(c.s, n),
    dilations: dilations ? spatial(c.d, n) : undefined,
    ceil_mode: opset >= 10 ? c.ceil : undefined,
    auto_pad: c.autoPad === "NOTSET" ? undefined : c.autoPad,
    pads: c.autoPad === "NOTSET" ? padsOf(c.p, n) : undefined,
  };
}

/**
 * Whether ORT handles the case consistently: the window fits, ceil_mode's last window starts
 * inside the input or begin pad (ONNX shape inference and the kernel disagree otherwise), and no
 * dilation with auto_pad SAME_* (same disagreement).
 */
function poolFits(c: PoolCase, dilated: boolean): boolean {
  if (dilated && c.autoPad.startsWith("SAME") && spatial(c.d, c.nsp).some((d) => d > 1)) {
    return false;
  }
  return spatial(c.size, c.nsp).every((h, i) => {
    const extent = (c.k[i] - 1) * (dilated ? c.d[i] : 1) + 1;
    // ORT's pools fail on SAME_* when the spec's total padding would be negative (k < s).
    if (c.autoPad.startsWith("SAME")) {
      return h >= extent && (Math.ceil(h / c.s[i]) - 1) * c.s[i] + extent >= h;
    }
    const [begin, end] = c.autoPad === "VALID" ? [0, 0] : [c.p[i], c.p[i + 2]];
    const padded = h + begin + end;
    if (padded < extent) return false;
    const out = Math.ceil((padded - extent) / c.s[i]) + 1;
    return !c.ceil || (out - 1) * c.s[i] < h + begin;
  });
}

property(
  "vjp: MaxPool, overlapping windows, pads, dilations, ceil_mode, auto_pad (float64)",
  fc.record({ c: poolCase, opset: fc.constantFrom(9, 11, 12, 17) }).filter(({ c, opset }) =>
    poolFits(c, opset >= 10)
  ),
  ({ c, opset }) =>
    checkVjp({
      build: (b: GraphBuilder, x: string) =>
        b.node("MaxPool", [x], poolAttrs(c, opset, opset >= 10)),
      xDims: [...c.nc, ...spatial(c.size, c.nsp)],
      precision: "double",
      opset,
      seed: c.seed,
      sample: distinctValues,
    }, `MaxPool@${opset} ${JSON.stringify(c)}`),
);

property(
  "vjp: AveragePool, count_include_pad 0/1, pads, ceil_mode, auto_pad, dilations at 19 (float32)",
  fc.record({
    c: poolCase,
    opset: fc.constantFrom(9, 11, 17, 19),
    countPad: fc.integer({ min: 0, max: 1 }),
  })
    .filter(({ c, opset }) => poolFits(c, opset >= 19)),
  ({ c, opset, countPad }) =>
    checkVjp({
      build: (b: GraphBuilder, x: string) =>
        b.node("AveragePool", [x], {
          ...poolAttrs(c, opset, opset >= 19),
          count_include_pad: countPad,
        }),
      xDims: [...c.nc, ...spatial(c.size, c.nsp)],
      precision: "float",
      opset,
      seed: c.seed,
    }, `AveragePool@${opset} count_include_pad=${countPad} ${JSON.stringify(c)}`),
);

property(
  "vjp: GlobalAveragePool (float32)",
  fc.record({
    dims: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 3, maxLength: 4 }),
    seed: seedArb,
  }),
  ({ dims, seed }) =>
    checkVjp({
      build: (b, x) => b.node("GlobalAveragePool", [x]),
      xDims: dims,
      precision: "float",
      seed,
    }, "GlobalAveragePool"),
);

property(
  "vjp: a residual block at opset 9: Conv-BN-Relu-MaxPool-Conv + skip, Relu, pool, Flatten, Gemm (float32)",
  fc.record({ batch: fc.integer({ min: 1, max: 2 }), seed: seedArb }),
  ({ batch, seed }) =>
    checkVjp({
      build: (b, x) => {
        const c1 = b.node("Conv", [
          x,
          randomConst(b, [4, 3, 3, 3], seed, F),
          randomConst(b, [4], seed + 1, F),
        ], {
          pads: [1, 1, 1, 1],
          strides: [2, 2],
        });
        const bn = b.node("BatchNormalization", [
          c1,
          ...[2, 3, 4].map((i) => randomConst(b, [4], seed + i, F)),
          b.f32("v", [1, 2, 0.5, 3]),
        ]);
        const r1 = b.node("Relu", [bn]);
        const mp = b.node("MaxPool", [r1], {
          kernel_shape: [2, 2],
          strides: [1, 1],
          pads: [0, 0, 1, 1],
        });
        const c2 = b.node("Conv", [mp, randomConst(b, [4, 4, 3, 3], seed + 5, F)], {
          pads: [1, 1, 1, 1],
        });
        const r2 = b.node("Relu", [b.node("Add", [c2, r1])]);
        const flat = b.node("Flatten", [b.node("GlobalAveragePool", [r2])], { axis: 1 });
        return b.node("Gemm", [
          flat,
          randomConst(b, [3, 4], seed + 6, F),
          randomConst(b, [3], seed + 7, F),
        ], { transB: 1 });
      },
      xDims: [batch, 3, 6, 6],
      precision: "float",
      opset: 9,
      seed,
      directions: 3,
      // Piecewise linear: a small step so that few Relu/MaxPool switches fall inside it.
      eps: 1e-3,
      tol: 2e-2,
      kinks: true,
    }, "residual block"),
);

Deno.test("vjp: a Conv with auto_pad SAME_* and a kernel far smaller than its stride is refused", () => {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input("x", F, [1, 1, 1, 8]);
  const y = b.node("Conv", [x, b.f32("w", [1], [1, 1, 1, 1])], {
    strides: [1, 4],
    auto_pad: "SAME_UPPER",
  }, { name: "pointwise" });
  assert.throws(
    () => appendVjp(b, y, b.input("w_bar", F, [1, 1, 1, 2]), x),
    /op 'Conv' \(node 'pointwise'.*auto_pad SAME_UPPER with kernel extent 1 and stride 4 on size 8 gives a negative total padding \(-3\).*explicit pads/,
  );
});
