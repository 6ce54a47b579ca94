/**
 * The gradient-rule table, keyed by op type, and the ops whose outputs carry no gradient.
 * @module
 */
import type { NodeProto } from "../onnx/proto.ts";
import { DataType } from "../onnx/proto.ts";
import { intAttr } from "./_emit.ts";
import type { GradRule } from "./rule.ts";
import { ACTIVATION_RULES } from "./rules_activation.ts";
import { CONV_RULES } from "./rules_conv.ts";
import { ELEMENTWISE_RULES } from "./rules_elementwise.ts";
import { LINEAR_RULES } from "./rules_linear.ts";
import { NORM_RULES } from "./rules_norm.ts";
import { POOL_RULES } from "./rules_pool.ts";
import { REDUCE_RULES } from "./rules_reduce.ts";
import { RESIZE_RULES } from "./rules_resize.ts";
import { SHAPE_RULES } from "./rules_shape.ts";

/** Every gradient rule, by ONNX op type (default domain). */
export const GRAD_RULES: Readonly<Record<string, GradRule>> = {
  ...ACTIVATION_RULES,
  ...CONV_RULES,
  ...ELEMENTWISE_RULES,
  ...LINEAR_RULES,
  ...NORM_RULES,
  ...POOL_RULES,
  ...REDUCE_RULES,
  ...RESIZE_RULES,
  ...SHAPE_RULES,
};

/**
 * Ops whose outputs do not depend differentiably on their inputs: shape and size queries,
 * comparisons and logic, index-valued ops, constants and random generators (whose outputs
 * depend on their inputs' shapes or on sampling only), and the piecewise-constant
 * roundings (their derivative is 0 wherever it exists, as in PyTorch). Dependence through them
 * stops, so shape sub-graphs (Shape -> Gather -> Concat -> Reshape) need no rule.
 */
export const CUT_OPS: ReadonlySet<string> = new Set([
  "And",
  "ArgMax",
  "ArgMin",
  "Bernoulli",
  "BitShift",
  "BitwiseAnd",
  "BitwiseNot",
  "BitwiseOr",
  "BitwiseXor",
  "Ceil",
  "Constant",
  "ConstantOfShape",
  "Equal",
  "EyeLike",
  "Floor",
  "Greater",
  "GreaterOrEqual",
  "IsInf",
  "IsNaN",
  "Less",
  "LessOrEqual",
  "Multinomial",
  "NonZero",
  "Not",
  "Or",
  "RandomNormal",
  "RandomNormalLike",
  "RandomUniform",
  "RandomUniformLike",
  "Round",
  "Shape",
  "Sign",
  "Size",
  "Xor",
]);

const FLOAT_TYPES: ReadonlySet<number> = new Set([DataType.FLOAT, DataType.DOUBLE, 10, 16]);

/** Whether `node`'s outputs carry no gradient (a cut op, or a Cast to a non-float type). */
export function isCut(node: NodeProto): boolean {
  if (node.domain && node.domain !== "ai.onnx") return false;
  if (node.op_type === "Cast") return !FLOAT_TYPES.has(intAttr(node, "to", 0));
  return CUT_OPS.has(node.op_type);
}

/** The rule for `node`, or undefined (custom domains never have one). */
export function ruleFor(node: NodeProto): GradRule | undefined {
  if (node.domain && node.domain !== "ai.onnx") return undefined;
  return Object.hasOwn(GRAD_RULES, node.op_type) ? GRAD_RULES[node.op_type] : undefined;
}
