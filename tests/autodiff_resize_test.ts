// appendVjp for Resize (rules_resize.ts): nearest (every nearest_mode) and linear, every
// coordinate transformation but tf_crop_and_resize, scales or sizes, up- and downsampling,
// opsets 11-19, checked against central finite differences in float32 (ONNX Runtime has no
// float64 Resize). Resize is linear, so the differences are exact up to rounding: a wrong
// interpolation weight or a tie rounded the other way fails. Run-time sizes are refused.
import assert from "node:assert/strict";
import fc from "fast-check";
import { appendVjp } from "../lib/autodiff/vjp.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType } from "../lib/onnx/proto.ts";
import { property, seedArb } from "./_vjp_arbitraries.ts";
import { checkVjp } from "./_vjp_check.ts";

const COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"];
const NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"];

property(
  "vjp: Resize nearest/linear, coordinate modes, nearest modes, scales or sizes, opsets 11-19 " +
    "(float32)",
  fc.record({
    mode: fc.constantFrom("nearest", "linear"),
    coord: fc.constantFrom(...COORDS, "half_pixel_symmetric"),
    nearest: fc.constantFrom(...NEAREST),
    opset: fc.constantFrom(11, 13, 18, 19),
    bySizes: fc.boolean(),
    hw: fc.tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 2, max: 5 })),
    scale: fc.tuple(
      fc.constantFrom(0.5, 0.75, 1, 1.5, 2, 3),
      fc.constantFrom(0.5, 0.6, 1.25, 2, 2.5),
    ),
    channelScale: fc.boolean(),
    seed: seedArb,
  }),
  ({ mode, coord, nearest, opset, bySizes, hw: [h, w], scale, channelScale, seed }) => {
    const coordinate = coord === "half_pixel_symmetric" && opset < 19 ? "half_pixel" : coord;
    // Nearest also resizes the channel axis (a Transpose around the MatMul in the rule).
    const cs = mode === "nearest" && channelScale ? 2 : 1;
    const dims = [2, 2, h, w];
    // A scale that empties an axis (1 row x 0.5) has no output to differentiate: scale it up.
    const scales = [1, cs, ...scale.map((sc, i) => [h, w][i] * sc < 1 ? 1 : sc)];
    const sizes = dims.map((d, i) => Math.max(1, Math.floor(d * scales[i])));
    return checkVjp(
      {
        build: (b, x) => {
          const empty = () => b.constant("empty", [0], new Float32Array(0));
          const sc = bySizes ? (opset < 13 ? empty() : "") : b.f32("scales", scales, [4]);
          const inputs = [x, opset < 13 ? empty() : "", sc];
          if (bySizes) inputs.push(b.i64("sizes", sizes));
          return b.node("Resize", inputs, {
            mode,
            coordinate_transformation_mode: coordinate,
            nearest_mode: mode === "nearest" ? nearest : undefined,
          });
        },
        xDims: dims,
        precision: "float",
        opset,
        seed,
        directions: 3,
      },
      `Resize@${opset} ${mode} ${coordinate} ${nearest} ${
        bySizes ? `sizes ${sizes}` : `scales ${scales}`
      }`,
    );
  },
  30,
);

Deno.test("vjp: Resize with run-time sizes or cubic mode is refused, naming the op and why", () => {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input("x", DataType.FLOAT, [1, 1, "H", "W"]);
  const sizes = b.node("Shape", [b.input("other", DataType.FLOAT, [1, 1, 4, 4])]);
  const y = b.node("Resize", [x, "", "", sizes], { mode: "linear" }, { name: "up" });
  const w = b.input("w", DataType.FLOAT, [1, 1, 4, 4]);
  assert.throws(
    () => appendVjp(b, y, w, x),
    /op 'Resize' \(node 'up'.*at opset 13: .*not constants/,
  );
  const c = new GraphBuilder({ opset: 13 });
  const x2 = c.input("x", DataType.FLOAT, [1, 1, 2, 2]);
  const y2 = c.node("Resize", [x2, "", c.f32("s", [1, 1, 2, 2], [4])], { mode: "cubic" }, {
    name: "cub",
  });
  assert.throws(
    () => appendVjp(c, y2, c.input("w", DataType.FLOAT, [1, 1, 4, 4]), x2),
    /op 'Resize' \(node 'cub'.*mode 'cubic' is not supported/,
  );
});
