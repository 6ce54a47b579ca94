/**
 * Outputs that are not logits. The JEM energies (METHOD.md §2, eq 2.36-2.37) read a
 * classifier's logits f(x); a classifier exported with its final softmax returns
 * probabilities p = softmax(f) instead, and reading p as logits makes every energy meaningless
 * (E(x,y) = -p_y). Logits are only defined up to a per-image shift, but the energies are not
 * (E(x) = -logsumexp f moves with it), so the head must use the classifier's own f: the input
 * of the final Softmax or LogSoftmax (Identity and float Casts after it allowed; also
 * Log(Softmax(f)) and the spelled-out softmax exp(f) / sum exp(f), with or without the max
 * subtracted). Outputs that are probabilities of another kind (a final Sigmoid), or a softmax
 * over the wrong axis, are refused with the reason and what to pass instead.
 * @module
 */
import { getAttr } from "../onnx/builder.ts";
import type { GraphProto, NodeProto } from "../onnx/proto.ts";

/** What the chosen output holds and where the head takes its logits from. */
export interface LogitsTrace {
  /** The value the head uses as logits. */
  logits: string;
  /** What the chosen output was: "logits", or how it was computed from the logits. */
  kind: "logits" | "softmax" | "logsoftmax";
  /** A sentence for the user, when the logits are not the output itself. */
  note?: string;
}

function producerMap(g: GraphProto): Map<string, NodeProto> {
  const m = new Map<string, NodeProto>();
  for (const n of g.node) for (const o of n.output) if (o) m.set(o, n);
  return m;
}

function isDefault(n: NodeProto): boolean {
  return !n.domain || n.domain === "ai.onnx";
}

/** Axis of a softmax-like node over an [N, K] value: 1 (or -1) is the class axis. */
function onClassAxis(n: NodeProto, opset: number): boolean {
  const axis = Number(getAttr(n, "axis", opset >= 13 ? -1 : 1));
  return axis === 1 || axis === -1;
}

/** Axes of a reduction node as constants from the graph, or undefined. */
function reductionAxes(
  n: NodeProto,
  constant: (name: string) => number[] | undefined,
): number[] | undefined {
  const attr = getAttr<number[] | undefined>(n, "axes", undefined);
  if (Array.isArray(attr)) return attr.map(Number);
  return n.input[1] ? constant(n.input[1]) : undefined;
}

/**
 * Where the logits of output `output` ([N, K]) come from (see the module doc). Throws, naming
 * the output, the op and the fix, when it holds probabilities that cannot be traced back.
 * `constant` reads a constant value (an initializer or Constant node) by name.
 */
export function traceLogits(
  g: GraphProto,
  output: string,
  opset: number,
  constant: (name: string) => number[] | undefined,
  source: string,
): LogitsTrace {
  const producer = producerMap(g);
  let v = output;
  let n = producer.get(v);
  const passThrough = (m: NodeProto | undefined) =>
    m && isDefault(m) && (m.op_type === "Identity" || m.op_type === "Cast");
  while (passThrough(n)) {
    v = n!.input[0];
    n = producer.get(v);
  }
  if (!n || !isDefault(n)) return { logits: output, kind: "logits" };
  const said = (what: string, from: string) =>
    `output '${output}' is ${what} of '${from}' (node '${n!.name ?? ""}'); the head uses ` +
    `'${from}' as the logits (E(x,y) = -f_y, E(x) = -logsumexp f)`;
  const wrongAxis = () =>
    new Error(
      `${source}: output '${output}' is a ${n!.op_type} (node '${n!.name ?? ""}') that is not ` +
        `over the class axis, so the logits cannot be read back from it; export the classifier ` +
        `without its final softmax (return the logits), or pass the logits output (option 'output')`,
    );
  if (n.op_type === "Softmax" || n.op_type === "LogSoftmax") {
    if (!onClassAxis(n, opset)) throw wrongAxis();
    const kind = n.op_type === "Softmax" ? "softmax" : "logsoftmax";
    return { logits: n.input[0], kind, note: said(n.op_type, n.input[0]) };
  }
  if (n.op_type === "Log") {
    const s = producer.get(n.input[0]);
    if (s && isDefault(s) && s.op_type === "Softmax") {
      if (!onClassAxis(s, opset)) throw wrongAxis();
      return { logits: s.input[0], kind: "logsoftmax", note: said("Log(Softmax)", s.input[0]) };
    }
  }
  if (n.op_type === "Div") {
    // exp(t) / sum_k exp(t): both sides from the same Exp, the sum over the class axis.
    const num = producer.get(n.input[0]), den = producer.get(n.input[1]);
    const sumOfExp = den && isDefault(den) && den.op_type === "ReduceSum" &&
      den.input[0] === num?.output[0] && num?.op_type === "Exp";
    const axes = sumOfExp ? reductionAxes(den!, constant) : undefined;
    if (sumOfExp && axes && axes.length === 1 && (axes[0] === 1 || axes[0] === -1)) {
      let logits = num!.input[0];
      // exp(f - max f) / sum: the shift is not part of the logits.
      const sub = producer.get(logits);
      const max = sub && sub.op_type === "Sub" ? producer.get(sub.input[1]) : undefined;
      if (sub && max && max.op_type === "ReduceMax" && max.input[0] === sub.input[0]) {
        logits = sub.input[0];
      }
      return { logits, kind: "softmax", note: said("exp / sum exp (a softmax)", logits) };
    }
  }
  if (n.op_type === "Sigmoid") {
    throw new Error(
      `${source}: output '${output}' is a Sigmoid (node '${n.name ?? ""}'): per-class ` +
        `probabilities, not softmax logits, so the energies E(x,y) = -f_y and ` +
        `E(x) = -logsumexp f would be meaningless; pass the logits output (option 'output', ` +
        `--output) of a classifier trained with softmax cross-entropy, or export it without ` +
        `the final sigmoid`,
    );
  }
  return { logits: output, kind: "logits" };
}
