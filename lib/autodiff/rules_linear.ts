/**
 * Gradient rules for the matrix products MatMul (numpy semantics, batched and broadcast, with
 * the 1-D special cases) and Gemm (Y = alpha op(A) op(B) + beta C). For Y = A B:
 * dA = dY B^T and dB = A^T dY, summed back over broadcast batch axes (Giles 2008, "Collected
 * matrix derivative results for forward and reverse mode AD", §2.2).
 * @module
 */
import { float } from "../onnx/builder.ts";
import {
  constLike,
  floatAttr,
  i64Const,
  intAttr,
  optionalInput,
  stringAttr,
  swapLastTwo,
  unbroadcast,
} from "./_emit.ts";
import { broadcastDims, type StaticDim, staticRank, staticShape } from "./static_info.ts";
import { describeNode, type GradRule, type VjpContext } from "./rule.ts";

function rankOrThrow(ctx: VjpContext, i: number): number {
  const name = ctx.node.input[i];
  const r = staticRank(ctx.b, name);
  if (r === undefined) {
    throw new Error(
      `cannot differentiate ${
        describeNode(ctx.node, ctx.opset)
      }: the rank of input ${i} ('${name}') ` +
        `is not known statically (MatMul's gradient differs for 1-D operands); declare its shape ` +
        `in graph.value_info`,
    );
  }
  if (r < 1) {
    throw new Error(
      `${describeNode(ctx.node, ctx.opset)}: input '${name}' is a scalar; MatMul needs rank >= 1`,
    );
  }
  return r;
}

/** MatMul: dA = dY B^T, dB = A^T dY (1-D operands handled as numpy does: promoted, then dropped). */
const matmul: GradRule = {
  slots: ["diff", "diff"],
  vjp: (ctx) => {
    const { b, node, dy, needs } = ctx;
    const [a, bm] = node.input;
    const g = dy[0]!;
    const [ra, rb] = [rankOrThrow(ctx, 0), rankOrThrow(ctx, 1)];
    let da: string | undefined, db: string | undefined;
    if (ra === 1 && rb === 1) { // y = sum_k a_k b_k (a scalar)
      if (needs[0]) da = b.node("Mul", [g, bm]);
      if (needs[1]) db = b.node("Mul", [g, a]);
    } else if (ra === 1) { // y[..., n] = sum_k a_k B[..., k, n]
      if (needs[0]) {
        const last = i64Const(b, [-1]);
        da = b.node("Squeeze", [b.node("MatMul", [bm, b.node("Unsqueeze", [g, last])]), last]);
      }
      if (needs[1]) {
        db = b.node("Mul", [
          b.node("Unsqueeze", [a, i64Const(b, [-1])]),
          b.node("Unsqueeze", [g, i64Const(b, [-2])]),
        ]);
      }
    } else if (rb === 1) { // y[..., m] = sum_k A[..., m, k] b_k
      if (needs[0]) da = b.node("Mul", [b.node("Unsqueeze", [g, i64Const(b, [-1])]), bm]);
      if (needs[1]) {
        const second = i64Const(b, [-2]);
        db = b.node("Squeeze", [b.node("MatMul", [b.node("Unsqueeze", [g, second]), a]), second]);
      }
    } else {
      if (needs[0]) da = b.node("MatMul", [g, swapLastTwo(b, bm, rb)]);
      if (needs[1]) db = b.node("MatMul", [swapLastTwo(b, a, ra), g]);
      // dA is [batch..., m, k] and dB [batch..., k, n], batch the broadcast of both operands'
      // batch axes: known statically where the operands' shapes are.
      const [sa, sb] = [staticShape(b, a), staticShape(b, bm)];
      if (sa && sb) {
        const batch: StaticDim[] = broadcastDims([sa.slice(0, -2), sb.slice(0, -2)]);
        return [
          da && unbroadcast(b, da, a, [...batch, ...sa.slice(-2)]),
          db && unbroadcast(b, db, bm, [...batch, ...sb.slice(-2)]),
        ];
      }
    }
    return [da && unbroadcast(b, da, a), db && unbroadcast(b, db, bm)];
  },
};

/**
 * Gemm: Y = alpha op(A) op(B) + beta C. With P = op(A), Q = op(B): dP = alpha dY Q^T and
 * dQ = alpha P^T dY; transposing back gives the four cases below, each one Gemm.
 */
const gemm: GradRule = {
  slots: ["diff", "diff", "diff"],
  vjp: ({ b, node, dy, needs }) => {
    const [a, bm] = node.input;
    const c = optionalInput(node, 2);
    const g = dy[0]!;
    const alpha = float(floatAttr(node, "alpha", 1));
    const beta = floatAttr(node, "beta", 1);
    const ta = intAttr(node, "transA", 0), tb = intAttr(node, "transB", 0);
    let da: string | undefined, db: string | undefined, dc: string | undefined;
    if (needs[0]) {
      da = ta === 0
        ? b.node("Gemm", [g, bm], { alpha, transB: 1 - tb }) // dA = dY op(B)^T
        : b.node("Gemm", [bm, g], { alpha, transA: tb, transB: 1 }); // dA = op(B) dY^T
    }
    if (needs[1]) {
      db = tb === 0
        ? b.node("Gemm", [a, g], { alpha, transA: 1 - ta }) // dB = op(A)^T dY
        : b.node("Gemm", [g, a], { alpha, transA: 1, transB: ta }); // dB = dY^T op(A)
    }
    if (needs[2] && c !== undefined) {
      const scaled = beta === 1 ? g : b.node("Mul", [g, constLike(b, beta, g)]);
      dc = unbroadcast(b, scaled, c, node.output[0]);
    }
    return [da, db, dc];
  },
};

/** An einsum equation split into operand terms and the output term (ellipsis as "..."). */
export interface EinsumEquation {
  /** Subscripts of each operand; "..." is one token. */
  inputs: string[][];
  /** Subscripts of the output (implicit form: letters used once, sorted, after "..."). */
  output: string[];
}

/** Parses an Einsum equation ("bhqd,bhkd->bhqk", "ij,jk", "...ij,...jk->...ik"). */
export function parseEinsum(equation: string): EinsumEquation {
  const tokens = (term: string) =>
    term.replaceAll("...", ".").split("").map((t) => t === "." ? "..." : t);
  const [lhs, rhs] = equation.replaceAll(" ", "").split("->");
  const inputs = lhs.split(",").map(tokens);
  let output: string[];
  if (rhs !== undefined) output = tokens(rhs);
  else {
    const counts = new Map<string, number>();
    for (const t of inputs.flat()) counts.set(t, (counts.get(t) ?? 0) + 1);
    const once = [...counts].filter(([t, n]) => n === 1 && t !== "...").map(([t]) => t).sort();
    output = [...(counts.has("...") ? ["..."] : []), ...once];
  }
  return { inputs, output };
}

/**
 * Why operand `i` of an einsum has no gradient rule here, or undefined: its cotangent is itself
 * an einsum of dY with the other operands, output subscripts = operand i's, which needs every
 * subscript of operand i to appear once in it and somewhere in dY or the other operands.
 */
function einsumOperandProblem(eq: EinsumEquation, i: number): string | undefined {
  const term = eq.inputs[i];
  if (new Set(term).size !== term.length) {
    return `operand ${i} repeats a subscript (a diagonal, '${term.join("")}')`;
  }
  const elsewhere = new Set([...eq.output, ...eq.inputs.filter((_, j) => j !== i).flat()]);
  const alone = term.filter((t) => !elsewhere.has(t));
  return alone.length > 0
    ? `subscript(s) ${alone.join(", ")} of operand ${i} are summed within that operand only`
    : undefined;
}

/**
 * Einsum: dX_i = einsum(dY, X_j (j != i); "out,terms_j->term_i") (the product rule applied to a
 * multilinear map: X_i's cotangent contracts dY with every other operand), then summed back
 * over broadcast ellipsis axes. Covers the forms attention uses (batched products, transposed
 * operands, outer products); diagonals and operand-only sums are refused.
 */
const einsum: GradRule = {
  slots: [],
  rest: "diff",
  check: (node) => {
    const eq = parseEinsum(stringAttr(node, "equation", ""));
    if (eq.inputs.length !== node.input.length) {
      return `the equation has ${eq.inputs.length} operand terms for ${node.input.length} inputs`;
    }
    for (let i = 0; i < node.input.length; i++) {
      if (!node.input[i]) continue;
      const problem = einsumOperandProblem(eq, i);
      if (problem) return `${problem}; no einsum gradient rule for this form`;
    }
    return undefined;
  },
  vjp: ({ b, node, dy, needs }) => {
    const eq = parseEinsum(stringAttr(node, "equation", ""));
    const text = (t: string[]) => t.join("");
    return node.input.map((x, i) => {
      if (!needs[i]) return undefined;
      const others = node.input.map((v, j) => [v, j] as const).filter(([, j]) => j !== i);
      const equation = `${
        [
          eq.output,
          ...others.map(([, j]) => eq.inputs[j]),
        ].map(text).join(",")
      }` +
        `->${text(eq.inputs[i])}`;
      const d = b.node("Einsum", [dy[0]!, ...others.map(([v]) => v)], { equation });
      return eq.inputs[i].includes("...") ? unbroadcast(b, d, x) : d;
    });
  },
};

/** Matrix-product rules by op type. */
export const LINEAR_RULES: Readonly<Record<string, GradRule>> = {
  Einsum: einsum,
  Gemm: gemm,
  MatMul: matmul,
};
