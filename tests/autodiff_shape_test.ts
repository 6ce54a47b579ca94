// appendVjp for ops that move elements (reshape family, Transpose, Concat, Split, Slice, Pad,
// Gather, Tile, Expand, Identity, Dropout) across their attribute-vs-input opset variants,
// against central finite differences in float64 (tolerance 1e-6 relative; tests/_vjp_check.ts).
import assert from "node:assert/strict";
import fc from "fast-check";
import { float, type GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType, decodeModel } from "../lib/onnx/proto.ts";
import { RandomStream } from "../lib/random.ts";
import { ints, property, randomConst, seedArb, shapeArb } from "./_vjp_arbitraries.ts";
import { buildCase, checkVjp } from "./_vjp_check.ts";

const D = DataType.DOUBLE;

/** A picker: an integer in [0, 1000) to derive a choice in a range that depends on the shape. */
const pick = fc.integer({ min: 0, max: 999 });
const picks = (n: number) => fc.array(pick, { minLength: n, maxLength: n });

property(
  "vjp: Flatten, Reshape, Squeeze, Unsqueeze (axes attribute before 13, input from 13), Transpose",
  fc.record({
    op: fc.constantFrom(
      "Flatten",
      "Reshape",
      "Squeeze",
      "Unsqueeze",
      "Transpose",
      "TransposeNoPerm",
    ),
    opset: fc.constantFrom(9, 11, 13, 17),
    dims: shapeArb(1, 4),
    p: picks(4),
    seed: seedArb,
  }),
  ({ op, opset, dims, p, seed }) => {
    const r = dims.length;
    return checkVjp({
      build: (b, x) => {
        const y = b.node("Mul", [x, x]); // a nonlinearity in front, so the cotangent is not w alone
        if (op === "Flatten") return b.node("Flatten", [y], { axis: p[0] % (r + 1) });
        if (op === "Reshape") {
          return b.node("Reshape", [
            y,
            ints(b, [-1, ...dims.slice(1).reverse().slice(0, p[0] % r)]),
          ]);
        }
        if (op === "Transpose") {
          const perm = [...dims.keys()].sort((a, c) =>
            ((a * 7 + p[1]) % 11) - ((c * 7 + p[1]) % 11)
          );
          return b.node("Transpose", [y], { perm });
        }
        if (op === "TransposeNoPerm") return b.node("Transpose", [y]);
        const axes = op === "Squeeze"
          ? [...dims.keys()].filter((i) => dims[i] === 1 && p[i] % 2 === 0)
          : [p[0] % (r + 1), -1].filter((v, i, a) =>
            a.indexOf(v) === i && !(v === r && a.includes(-1))
          );
        const used = op === "Squeeze" && axes.length === 0 ? undefined : axes;
        if (opset < 13) return b.node(op, [y], { axes: used });
        return b.node(op, used ? [y, ints(b, used)] : [y]);
      },
      xDims: dims,
      precision: "double",
      opset,
      seed,
    }, `${op}@${opset}`);
  },
);

property(
  "vjp: Concat of x, a constant and relu(x) along any axis",
  fc.record({ dims: shapeArb(1, 4), p: pick, negative: fc.boolean(), seed: seedArb }),
  ({ dims, p, negative, seed }) => {
    const axis = p % dims.length;
    const other = dims.map((d, i) => (i === axis ? 1 + (p % 3) : d));
    return checkVjp({
      build: (b, x) =>
        b.node("Concat", [x, randomConst(b, other, seed, D), b.node("Relu", [x])], {
          axis: negative ? axis - dims.length : axis,
        }),
      xDims: dims,
      precision: "double",
      seed,
    }, `Concat axis ${axis}`);
  },
);

property(
  "vjp: Split (split attribute before 13, input from 13, num_outputs at 18), unused outputs",
  fc.record({
    opset: fc.constantFrom(9, 11, 13, 17, 18),
    dims: shapeArb(1, 3, 5),
    p: picks(4),
    used: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
    seed: seedArb,
  }),
  ({ opset, dims, p, used, seed }) => {
    const axis = p[0] % dims.length;
    const size = dims[axis];
    // Sizes summing to `size`, one to three parts.
    const parts = Math.min(size, 1 + (p[1] % 3));
    const cut1 = parts > 1 ? 1 + (p[2] % (size - parts + 1)) : size;
    const sizes = parts === 1
      ? [size]
      : parts === 2
      ? [cut1, size - cut1]
      : [cut1, 1, size - cut1 - 1];
    const keep = sizes.map((_, i) => used[i] || i === parts - 1);
    return checkVjp({
      build: (b, x) => {
        let outs: string[];
        if (opset >= 18 && p[3] % 2 === 0 && sizes.every((v) => v === sizes[0])) {
          outs = b.nodeN("Split", [x], { axis, num_outputs: parts }, { outputs: parts });
        } else if (opset >= 13) {
          outs = b.nodeN("Split", [x, ints(b, sizes)], { axis }, { outputs: parts });
        } else outs = b.nodeN("Split", [x], { axis, split: sizes }, { outputs: parts });
        const scaled = outs.filter((_, i) => keep[i]).map((o, i) =>
          b.node("Mul", [b.node("Mul", [o, o]), b.constant("s", [], Float64Array.of(i + 1))])
        );
        return scaled.length === 1 ? scaled[0] : b.node("Concat", scaled, { axis });
      },
      xDims: dims,
      precision: "double",
      opset,
      seed,
    }, `Split@${opset} axis ${axis} sizes ${sizes} keep ${keep}`);
  },
);

property(
  "vjp: Slice (attributes before 10, inputs from 10; negative, clamped bounds, steps from 10)",
  fc.record({
    opset: fc.constantFrom(9, 10, 11, 13, 17),
    dims: shapeArb(1, 3, 6),
    p: picks(12),
    seed: seedArb,
  }),
  ({ opset, dims, p, seed }) => {
    const r = dims.length;
    const axes = [...dims.keys()].filter((i) => p[i] % 3 !== 0);
    if (axes.length === 0) axes.push(0);
    const starts: number[] = [], ends: number[] = [], steps: number[] = [];
    for (const [j, a] of axes.entries()) {
      const d = dims[a];
      const step = opset >= 10 ? [1, 2, -1, -2, 3][p[4 + j] % 5] : 1;
      // starts/ends from -d-2 .. d+2 (out of range clamps), in the step's direction.
      const s = (p[7 + j] % (2 * d + 5)) - d - 2;
      const e = ((p[7 + j] * 13 + p[4 + j]) % (2 * d + 5)) - d - 2;
      const norm = (v: number) => (v < 0 ? v + d : v);
      const [lo, hi] = norm(s) <= norm(e) ? [s, e] : [e, s];
      starts.push(step > 0 ? lo : hi);
      ends.push(step > 0 ? hi : lo);
      steps.push(step);
    }
    const useAxes = axes.map((a) => (p[11] % 2 === 0 ? a : a - r));
    return checkVjp({
      build: (b, x) => {
        const y = b.node("Sin", [x]);
        if (opset < 10) return b.node("Slice", [y], { starts, ends, axes: useAxes });
        return b.node("Slice", [
          y,
          ints(b, starts),
          ints(b, ends),
          ints(b, useAxes),
          ints(b, steps),
        ]);
      },
      xDims: dims,
      precision: "double",
      opset,
      seed,
    }, `Slice@${opset} starts ${starts} ends ${ends} axes ${useAxes} steps ${steps}`);
  },
);

property(
  "vjp: Pad (attributes before 11, inputs from 11; constant/reflect/edge; negative pads; axes at 18)",
  fc.record({
    opset: fc.constantFrom(9, 11, 13, 17, 18),
    mode: fc.constantFrom("constant", "reflect", "edge"),
    dims: shapeArb(1, 3, 4),
    p: picks(8),
    value: fc.integer({ min: -4, max: 4 }).map((v) => v / 2),
    seed: seedArb,
  }),
  ({ opset, mode, dims, p, value, seed }) => {
    const r = dims.length;
    const pads = [...Array(2 * r).keys()].map((i) => {
      const d = dims[i % r];
      if (mode === "reflect") return p[i] % d; // reflect needs pads < size
      // Negative (cropping) pads from opset 11, in constant mode, keeping at least one element.
      const lowest = opset >= 11 && mode === "constant" ? -Math.floor((d - 1) / 2) : 0;
      return lowest + (p[i] % (3 - lowest));
    });
    const useAxes = opset >= 18 && p[7] % 2 === 0;
    return checkVjp({
      build: (b, x) => {
        const y = b.node("Mul", [x, x]);
        if (opset < 11) return b.node("Pad", [y], { pads, mode, value: float(value) });
        const fill = mode === "constant" ? b.constant("v", [], Float64Array.of(value)) : "";
        if (!useAxes) {
          return b.node("Pad", [y, ints(b, pads), fill].filter((v) => v !== ""), { mode });
        }
        // The same padding given per axis, listed in reverse order.
        const axes = [...Array(r).keys()].reverse();
        const perAxis = [...axes.map((a) => pads[a]), ...axes.map((a) => pads[a + r])];
        return b.node("Pad", [y, ints(b, perAxis), fill, ints(b, axes)], { mode });
      },
      xDims: dims,
      precision: "double",
      opset,
      seed,
    }, `Pad@${opset} ${mode} pads ${pads} axes input ${useAxes}`);
  },
);

property(
  "vjp: Gather and GatherElements with repeated and negative indices, Tile, Expand",
  fc.record({
    op: fc.constantFrom("Gather", "GatherElements", "Tile", "Expand"),
    dims: shapeArb(1, 3),
    p: picks(8),
    seed: seedArb,
  }),
  ({ op, dims, p, seed }) => {
    const r = dims.length;
    const axis = p[0] % r;
    const d = dims[axis];
    const index = (k: number) => (p[k % 8] * (k + 3)) % (2 * d) - d; // in [-d, d)
    return checkVjp({
      build: (b, x) => {
        const y = b.node("Mul", [x, x]);
        if (op === "Gather") {
          const idx = Array.from({ length: 1 + (p[1] % 4) }, (_, k) => index(k));
          return b.node("Gather", [y, ints(b, idx)], { axis: axis - (p[2] % 2) * r });
        }
        if (op === "GatherElements") {
          const shape = dims.map((n, i) => (i === axis ? 1 + (p[1] % 4) : n));
          const count = shape.reduce((a, c) => a * c, 1);
          const idx = b.constant(
            "idx",
            shape,
            BigInt64Array.from({ length: count }, (_, k) => BigInt(index(k))),
          );
          return b.node("GatherElements", [y, idx], { axis });
        }
        if (op === "Tile") {
          return b.node("Tile", [
            y,
            ints(b, dims.map((_, i) => 1 + ((p[i] + i) % 3))),
          ]);
        }
        const target = [
          1 + (p[1] % 3),
          ...dims.map((n, i) => (n === 1 && p[i + 2] % 2 === 0 ? 3 : n)),
        ];
        return b.node("Expand", [y, ints(b, target)]);
      },
      xDims: dims,
      precision: "double",
      seed,
    }, `${op} axis ${axis}`);
  },
);

property(
  "vjp: Identity and inference Dropout (ratio attribute before 12, input from 12, training_mode false)",
  fc.record({
    opset: fc.constantFrom(9, 10, 12, 13, 17),
    dims: shapeArb(1, 3),
    mask: fc.boolean(),
    seed: seedArb,
  }),
  ({ opset, dims, mask, seed }) =>
    checkVjp({
      build: (b, x) => {
        const y = b.node("Identity", [b.node("Tanh", [x])]);
        const outputs = mask ? 2 : 1;
        if (opset < 12) return b.nodeN("Dropout", [y], { ratio: float(0.3) }, { outputs })[0];
        const inputs = [y, b.constant("ratio", [], Float64Array.of(0.3))];
        if (opset >= 13) {
          const training = b.fresh("training");
          b.graph.initializer!.push({
            name: training,
            dims: [],
            data_type: DataType.BOOL,
            raw_data: Uint8Array.of(0),
          });
          inputs.push(training);
        }
        return b.nodeN("Dropout", inputs, {}, { outputs })[0];
      },
      xDims: dims,
      precision: "double",
      opset,
      seed,
    }, `Dropout@${opset}`),
);

property(
  "vjp: Slice with positive steps and Gather of one index or a run, static sizes: padded back " +
    "(no scatter), symbolic batch allowed",
  fc.record({
    op: fc.constantFrom("Slice", "GatherScalar", "GatherRun"),
    dims: shapeArb(2, 4, 6),
    p: picks(12),
    symbolicBatch: fc.boolean(),
    seed: seedArb,
  }),
  ({ op, dims, p, symbolicBatch, seed }) => {
    const r = dims.length;
    // Sliced / gathered axes other than the batch when the batch is symbolic.
    const first = symbolicBatch ? 1 : 0;
    const axis = first + (p[0] % (r - first));
    const d = dims[axis];
    const build = (b: GraphBuilder, x: string) => {
      const y = b.node("Sin", [x]);
      if (op === "Slice") {
        const step = 1 + (p[1] % 3), s = p[2] % d, e = s + 1 + (p[3] % (d - s));
        const neg = p[4] % 2 === 0;
        return b.node("Slice", [
          y,
          ints(b, [neg ? s - d : s]),
          ints(b, [p[5] % 3 === 0 ? 1e9 : e]),
          ints(b, [neg ? axis - r : axis]),
          ints(b, [step]),
        ]);
      }
      const i = p[1] % d;
      if (op === "GatherScalar") {
        return b.node("Gather", [y, b.i64("i", i - (p[2] % 2) * d, [])], { axis });
      }
      const m = 1 + (p[3] % (d - i));
      return b.node("Gather", [y, ints(b, Array.from({ length: m }, (_, k) => i + k))], { axis });
    };
    const declaredDims = dims.map((n, i) => (symbolicBatch && i === 0 ? "N" : n));
    const c = {
      build,
      xDims: dims,
      declaredDims,
      precision: "double" as const,
      seed,
    };
    const ops = decodeModel(buildCase(c, new RandomStream(seed)).bytes).graph.node.map((n) =>
      n.op_type
    );
    assert.ok(!ops.includes("ScatterElements"), `${op}: the static form has no scatter`);
    return checkVjp(c, `${op} axis ${axis} of [${dims}]`);
  },
);
