// appendVjp for Einsum in the forms attention and channel mixing are exported with (batched
// products, transposes, outer products, broadcast ellipsis, implicit output), gradient of
// either operand or both (rules_linear.ts), checked against central finite differences in
// float64 (tests/_vjp_check.ts); forms without a rule (diagonals) are refused by name.
import assert from "node:assert/strict";
import fc from "fast-check";
import { appendVjp } from "../lib/autodiff/vjp.ts";
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType } from "../lib/onnx/proto.ts";
import { property, randomConst, seedArb } from "./_vjp_arbitraries.ts";
import { checkVjp } from "./_vjp_check.ts";

/** Equations with the sizes of each subscript (the ellipses broadcast: [2, 1] against [2, 3]). */
const FORMS: Array<{ eq: string; shapes: number[][] }> = [
  { eq: "bij,bjk->bik", shapes: [[2, 3, 4], [2, 4, 2]] },
  { eq: "bhqd,bhkd->bhqk", shapes: [[2, 2, 3, 4], [2, 2, 5, 4]] },
  { eq: "bhqk,bhkd->bhqd", shapes: [[1, 2, 3, 4], [1, 2, 4, 3]] },
  { eq: "ij->ji", shapes: [[3, 4]] },
  { eq: "i,j->ij", shapes: [[3], [4]] },
  { eq: "bchw,oc->bohw", shapes: [[2, 3, 2, 2], [4, 3]] },
  { eq: "...ij,...jk->...ik", shapes: [[2, 1, 2, 4], [2, 3, 4, 2]] },
  { eq: "ij,jk", shapes: [[2, 3], [3, 4]] },
  { eq: "bij,bij->bi", shapes: [[2, 3, 4], [2, 3, 4]] },
];

property(
  "vjp: Einsum (attention products, transposes, outer products, ellipsis, implicit output), " +
    "gradient of one operand or both (float64)",
  fc.record({
    form: fc.integer({ min: 0, max: FORMS.length - 1 }),
    wrt: fc.constantFrom<0 | 1 | "both">(0, 1, "both"),
    seed: seedArb,
  }),
  ({ form, wrt, seed }) => {
    const { eq, shapes } = FORMS[form];
    const slot: 0 | 1 | "both" = shapes.length === 1 ? 0 : wrt as 0 | 1 | "both";
    const same = slot === "both" && JSON.stringify(shapes[0]) === JSON.stringify(shapes[1]);
    const xDims: number[] = slot === "both" ? shapes[0] : shapes[slot];
    return checkVjp({
      build: (b, x) => {
        const inputs = shapes.map((s, i) => {
          if (slot === "both") {
            // The second operand is a function of x too (a reshaped, scaled copy when shapes differ).
            if (i === 0 || same) return i === 0 ? x : b.node("Sin", [x]);
            const n = s.reduce((a, d) => a * d, 1), m = xDims.reduce((a, d) => a * d, 1);
            if (n === m) return b.node("Reshape", [b.node("Sin", [x]), b.i64("s", s)]);
            return randomConst(b, s, seed + i, DataType.DOUBLE);
          }
          return i === slot ? x : randomConst(b, s, seed + i, DataType.DOUBLE);
        });
        return b.node("Einsum", inputs, { equation: eq });
      },
      xDims,
      precision: "double",
      opset: 17,
      seed,
    }, `Einsum ${eq} wrt ${slot}`);
  },
);

Deno.test("vjp: Einsum with a diagonal (repeated subscript) is refused, naming the op and form", () => {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input("x", DataType.FLOAT, [3, 3]);
  const y = b.node("Einsum", [x], { equation: "ii->i" }, { name: "diag" });
  const w = b.input("w", DataType.FLOAT, [3]);
  assert.throws(
    () => appendVjp(b, y, w, x),
    /cannot differentiate op 'Einsum' \(node 'diag'.*\) at opset 17: operand 0 repeats a subscript/,
  );
});
