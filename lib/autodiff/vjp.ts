/**
 * Reverse-mode differentiation of ONNX graphs, emitted as ONNX nodes appended to the same graph
 * (reverse accumulation: Griewank and Walther 2008, "Evaluating Derivatives", ch. 3; the
 * cotangent of a value with several consumers is the sum of their contributions).
 *
 * The graph is first raised to {@link BACKWARD_OPSET} (see `opset.ts`); afterwards `b.opset`
 * is 17 or the model's own opset if higher, and nodes added later must be valid at it.
 * @module
 */
import type { GraphBuilder } from "../onnx/builder.ts";
import type { GraphProto, NodeProto } from "../onnx/proto.ts";
import { sumValues } from "./_emit.ts";
import { canonicalizeLayerNorms } from "./canonical.ts";
import { BACKWARD_OPSET, upgradeOpset } from "./opset.ts";
import { describeNode, type GradRule, slotKind } from "./rule.ts";
import { GRAD_RULES, isCut, ruleFor } from "./rules.ts";

/** The nodes to differentiate and the values that depend on `wrt`. */
interface BackwardPlan {
  /** Values that depend differentiably on `wrt` (including it). */
  dependent: Set<string>;
  /** Indices into graph.node of the nodes cotangents flow through, in forward order. */
  active: number[];
}

/**
 * Appends to `b` the nodes computing the vector-Jacobian product of value `output` with
 * cotangent `cotangent` (a value already in the graph, same shape as `output`) with respect to
 * graph value `wrt`; returns the name of the gradient value (same shape as `wrt`).
 *
 * Only nodes on a differentiable path from `wrt` to `output` are differentiated: values that do
 * not depend on `wrt` (weights, shape sub-graphs through Shape, Cast to integers, comparisons)
 * need no rule. An op on such a path without a rule, or a weight of it that depends on `wrt`,
 * throws an Error naming the op, the node, its outputs and the opset; no gradient is guessed.
 * The graph is raised to opset {@link BACKWARD_OPSET} first (see `upgradeOpset`), and layer
 * normalisations spelled out op by op are rewritten to LayerNormalization (`canonical.ts`).
 *
 * @example
 * ```ts
 * const b = GraphBuilder.fromModel(decodeModel(bytes));
 * const w = b.input("w", DataType.FLOAT, [1, 10]); // cotangent of the logits
 * b.output(appendVjp(b, "logits", w, "input"), DataType.FLOAT, [1, 3, 32, 32], "grad");
 * ```
 */
export function appendVjp(b: GraphBuilder, output: string, cotangent: string, wrt: string): string {
  const known = definedValues(b.graph);
  for (const [what, name] of [["output", output], ["cotangent", cotangent], ["wrt", wrt]]) {
    if (!known.has(name)) {
      throw new Error(
        `appendVjp: ${what} '${name}' is not a value of the graph (not an input, initializer or ` +
          `node output); pass the name of an existing value`,
      );
    }
  }
  // Plan on the graph as given, so unsupported ops are reported before anything is changed.
  // Attribute checks see the opset the node will have after the upgrade.
  const modelOpset = b.opset;
  const target = Math.max(modelOpset, BACKWARD_OPSET);
  if (!planBackward(b, output, wrt, target, modelOpset).dependent.has(output)) {
    throw new Error(
      `appendVjp: output '${output}' does not depend differentiably on '${wrt}' (no path ` +
        `between them, or every path goes through shape, integer or comparison ops), so its ` +
        `gradient is zero; check the value names`,
    );
  }
  upgradeOpset(b, target);
  if (output === wrt) return b.node("Identity", [cotangent]);
  // Spelled-out layer norms become LayerNormalization (the same function; canonical.ts).
  canonicalizeLayerNorms(b);
  const plan = planBackward(b, output, wrt, b.opset, modelOpset);

  const nodes = [...b.graph.node];
  const cotangents = new Map<string, string[]>([[output, [cotangent]]]);
  for (const index of [...plan.active].reverse()) {
    const node = nodes[index];
    const rule = ruleFor(node)!;
    const dy = node.output.map((o, k) => {
      const parts = rule.nonDiffOutputs?.includes(k) ? undefined : cotangents.get(o);
      return parts ? sumValues(b, parts) : undefined;
    });
    // Every cotangent that would reach this node was folded into another node's rule (a
    // rule's `null`, e.g. SiLU's x * sigmoid(x)): nothing to differentiate here.
    if (dy.every((d) => d === undefined)) continue;
    const needs = node.input.map((v, i) =>
      !!v && plan.dependent.has(v) && slotKind(rule, i) === "diff"
    );
    const grads = rule.vjp({ b, node, opset: b.opset, dy, needs });
    needs.forEach((need, i) => {
      if (!need) return;
      const g = grads[i];
      if (g === null) return; // folded into another input's cotangent by the rule
      if (g === undefined) {
        throw new Error(
          `internal: the ${node.op_type} rule returned no cotangent for input ${i} of ${
            describeNode(node, b.opset)
          }`,
        );
      }
      const list = cotangents.get(node.input[i]) ?? [];
      list.push(g);
      cotangents.set(node.input[i], list);
    });
  }
  const parts = cotangents.get(wrt);
  if (!parts) throw new Error(`internal: no cotangent reached '${wrt}'`);
  return sumValues(b, parts);
}

/** Every value name defined in the graph: inputs, initializers, node outputs. */
function definedValues(graph: GraphProto): Set<string> {
  const names = new Set<string>(graph.input.map((v) => v.name));
  for (const t of graph.initializer ?? []) if (t.name) names.add(t.name);
  for (const n of graph.node) for (const o of n.output) if (o) names.add(o);
  return names;
}

/**
 * Finds the values depending on `wrt` (forward sweep; dependence stops at cut ops, at integer
 * inputs of ruled ops and at non-gradient outputs) and the nodes a cotangent from `output`
 * reaches (backward sweep). Throws for an active node without a rule, with an unsupported
 * attribute combination, or with a `param` input that depends on `wrt`.
 */
function planBackward(
  b: GraphBuilder,
  output: string,
  wrt: string,
  opset: number,
  modelOpset: number,
): BackwardPlan {
  const nodes = b.graph.node;
  const dependent = new Set<string>([wrt]);
  const carrying = new Set<number>();
  nodes.forEach((node, index) => {
    if (isCut(node)) return;
    const rule = ruleFor(node);
    const carries = node.input.some((v, i) =>
      !!v && dependent.has(v) && (!rule || slotKind(rule, i) !== "index")
    );
    if (!carries) return;
    carrying.add(index);
    node.output.forEach((o, k) => {
      if (o && !rule?.nonDiffOutputs?.includes(k)) dependent.add(o);
    });
  });

  // Errors name the model's own opset (the caller's view); checks see the backward opset.
  const where = (node: NodeProto) => describeNode(node, modelOpset);
  const reached = new Set<string>(dependent.has(output) ? [output] : []);
  const active: number[] = [];
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i];
    if (!carrying.has(i) || !node.output.some((o) => reached.has(o) && dependent.has(o))) continue;
    const rule = ruleFor(node);
    if (!rule) {
      throw new Error(
        `cannot differentiate ${where(node)}: no gradient rule; supported ops: ` +
          Object.keys(GRAD_RULES).sort().join(", "),
      );
    }
    const reason = rule.check?.(node, opset, b);
    if (reason) throw new Error(`cannot differentiate ${where(node)}: ${reason}`);
    node.input.forEach((v, k) => {
      if (!v || !dependent.has(v)) return;
      const kind = slotKind(rule, k);
      if (kind === "diff") reached.add(v);
      if (kind === "param") throw paramError(node, rule, k, where(node));
    });
    active.push(i);
  }
  return { dependent, active: active.reverse() };
}

function paramError(node: NodeProto, rule: GradRule, k: number, where: string): Error {
  const diff = rule.slots.map((s, i) => s === "diff" ? i : -1).filter((i) => i >= 0);
  return new Error(
    `cannot differentiate ${where}: input ${k} ('${node.input[k]}') depends on the ` +
      `differentiation variable, but only the gradient with respect to input(s) ${
        diff.join(", ")
      } ` +
      `is implemented for ${node.op_type}; differentiate with respect to a value that does not ` +
      `feed this input`,
  );
}
