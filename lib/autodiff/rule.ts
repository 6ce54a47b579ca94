/**
 * The shape of a gradient rule: which inputs of an op carry gradients, and the function that
 * appends the op's vector-Jacobian product (reverse mode, Griewank and Walther 2008, ch. 3) as
 * ONNX nodes. Rules live in the `rules_*.ts` files and are looked up by op type in `rules.ts`.
 * @module
 */
import type { GraphBuilder } from "../onnx/builder.ts";
import type { NodeProto } from "../onnx/proto.ts";

/**
 * How one input of an op takes part in differentiation:
 * - `diff`: the rule returns the input's cotangent;
 * - `index`: an integer input (shape, axes, indices, pads): its gradient is zero by definition,
 *   so dependence on `wrt` through it is ignored;
 * - `param`: a float input (a weight, a bound) whose gradient the rule does not implement; if it
 *   depends on `wrt`, differentiation stops with an error instead of returning a wrong gradient.
 */
export type SlotKind = "diff" | "index" | "param";

/** What a rule sees while its backward nodes are appended. */
export interface VjpContext {
  /** The builder of the graph being extended (backward nodes are appended to it). */
  readonly b: GraphBuilder;
  /** The forward node being differentiated. */
  readonly node: NodeProto;
  /** Default-domain opset of the graph (already raised to the backward opset). */
  readonly opset: number;
  /** Cotangent of each output of `node`; undefined where none flows back (unused output). */
  readonly dy: readonly (string | undefined)[];
  /** Whether input i needs a cotangent (it is a `diff` input that depends on `wrt`). */
  readonly needs: readonly boolean[];
}

/** A gradient rule for one op type. */
export interface GradRule {
  /** Kind of each input slot, by position. */
  readonly slots: readonly SlotKind[];
  /** Kind of the slots after `slots` (variadic ops: Concat, Sum). Default "index". */
  readonly rest?: SlotKind;
  /** Outputs that carry no gradient (MaxPool indices, Dropout mask). */
  readonly nonDiffOutputs?: readonly number[];
  /**
   * Why this node cannot be differentiated (an unsupported attribute combination), or
   * undefined when it can. Called before anything is appended.
   */
  readonly check?: (node: NodeProto, opset: number, b: GraphBuilder) => string | undefined;
  /**
   * Appends the backward nodes; returns the cotangent of every input i with `needs[i]`, or
   * `null` for an input whose contribution the rule has already folded into another input's
   * cotangent (x * sigmoid(x): the whole SiLU derivative goes to x, none through sigmoid(x)).
   */
  readonly vjp: (ctx: VjpContext) => readonly (string | undefined | null)[];
}

/** The kind of input slot `i` of a node handled by `rule`. */
export function slotKind(rule: GradRule, i: number): SlotKind {
  return i < rule.slots.length ? rule.slots[i] : rule.rest ?? "index";
}

/** "op 'Conv' (node 'Conv_0', outputs 17) at opset 9", for error messages. */
export function describeNode(node: NodeProto, opset: number): string {
  const name = node.name ? `node '${node.name}'` : "unnamed node";
  return `op '${node.op_type}' (${name}, outputs ${node.output.join(",")}) at opset ${opset}`;
}
