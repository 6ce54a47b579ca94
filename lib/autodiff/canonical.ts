/**
 * Canonical forms before differentiation. Exporters at opsets below 17 spell layer
 * normalisation out as seven ops, (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps); ONNX
 * Runtime fuses them back into one kernel for the forward pass, but differentiated op by op
 * they cost two dozen backward nodes, and reading their intermediates keeps the runtime from
 * fusing the forward. This pass rewrites each such chain into the LayerNormalization op
 * (opset 17; unit scale, no bias; the exporter's own affine Mul/Add after it stay as they are),
 * which computes the same function and has one gradient rule (rules_norm.ts).
 * @module
 */
import type { GraphBuilder } from "../onnx/builder.ts";
import { float } from "../onnx/builder.ts";
import type { NodeProto } from "../onnx/proto.ts";
import { filledLike, i64Const, intAttr, intsAttr } from "./_emit.ts";
import { staticRank, staticShape } from "./static_info.ts";

function isDefault(n: NodeProto): boolean {
  return !n.domain || n.domain === "ai.onnx";
}

/**
 * Rewrites every spelled-out layer normalisation over trailing axes in the graph of `b`
 * (opset >= 17) into LayerNormalization; returns how many it rewrote.
 */
export function canonicalizeLayerNorms(b: GraphBuilder): number {
  if (b.opset < 17) return 0;
  const g = b.graph;
  const producer = new Map<string, NodeProto>();
  const readers = new Map<string, number>();
  for (const n of g.node) {
    for (const o of n.output) if (o) producer.set(o, n);
    for (const i of n.input) if (i) readers.set(i, (readers.get(i) ?? 0) + 1);
  }
  for (const o of g.output) readers.set(o.name, (readers.get(o.name) ?? 0) + 1);
  const only = (v: string, count = 1) => readers.get(v) === count;
  const constScalar = (v: string) => {
    const c = b.constantValue(v);
    return c && c.values.length === 1 ? c.values[0] : undefined;
  };
  const meanAxes = (n: NodeProto | undefined, x: string): number[] | undefined => {
    if (!n || !isDefault(n) || n.op_type !== "ReduceMean" || n.input[0] !== x) return undefined;
    if (intAttr(n, "keepdims", 1) !== 1) return undefined;
    const axes = intsAttr(n, "axes") ??
      (n.input[1] ? Array.from(b.constantValue(n.input[1])?.values ?? []) : undefined);
    const r = staticRank(b, x);
    if (!axes || axes.length === 0 || r === undefined) return undefined;
    return axes.map((a) => (a < 0 ? a + r : a)).sort((p, q) => p - q);
  };
  const removed = new Set<NodeProto>();
  let count = 0;
  for (const div of g.node) {
    // n = Div(d, s), s = Sqrt(Add(v, eps)), v = ReduceMean(Pow(d, 2) | Mul(d, d)), d = Sub(x, m),
    // m = ReduceMean(x), over the same trailing axes.
    if (!isDefault(div) || div.op_type !== "Div" || removed.has(div)) continue;
    const [d, s] = div.input;
    const sqrt = producer.get(s), sub = producer.get(d);
    if (sqrt?.op_type !== "Sqrt" || sub?.op_type !== "Sub" || !only(s)) continue;
    const add = producer.get(sqrt.input[0]);
    if (add?.op_type !== "Add" || !only(sqrt.input[0])) continue;
    const [va, vb] = add.input;
    const epsFirst = constScalar(va) !== undefined;
    const v = epsFirst ? vb : va, eps = constScalar(epsFirst ? va : vb);
    const varMean = producer.get(v);
    if (eps === undefined || !varMean || !only(v)) continue;
    const sq = producer.get(varMean.input[0]);
    if (!sq || !only(varMean.input[0])) continue;
    const squares = (sq.op_type === "Pow" && sq.input[0] === d && constScalar(sq.input[1]) === 2) ||
      (sq.op_type === "Mul" && sq.input[0] === d && sq.input[1] === d);
    // d is read by the square (twice for Mul(d, d)) and the Div only.
    if (!squares || !only(d, sq.op_type === "Mul" ? 3 : 2)) continue;
    const [x, m] = sub.input;
    const mean = producer.get(m);
    if (!mean || !only(m)) continue;
    const axes1 = meanAxes(mean, x), axes2 = meanAxes(varMean, varMean.input[0]);
    const r = staticRank(b, x);
    if (!axes1 || !axes2 || r === undefined || JSON.stringify(axes1) !== JSON.stringify(axes2)) {
      continue;
    }
    // Trailing axes only (LayerNormalization normalises axis..rank-1), with static sizes.
    if (!axes1.every((a, i) => a === r - axes1.length + i)) continue;
    const dims = staticShape(b, x)?.slice(axes1[0]);
    if (!dims || !dims.every((k) => typeof k === "number")) continue;
    const first = g.node.length;
    const ones = filledLike(b, i64Const(b, dims as number[]), 1, x);
    b.node("LayerNormalization", [x, ones], {
      axis: axes1[0] - r,
      epsilon: float(eps),
    }, { outputs: [div.output[0]], name: div.name ? `${div.name}_layernorm` : undefined });
    const added = g.node.splice(first);
    g.node.splice(g.node.indexOf(div), 1, ...added);
    for (const n of [mean, sub, sq, varMean, add, sqrt]) removed.add(n);
    count++;
  }
  g.node = g.node.filter((n) => !removed.has(n));
  return count;
}
