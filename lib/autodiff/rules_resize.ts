/**
 * Gradient rule for Resize (opsets 11-21) in the modes image classifiers use inside the network
 * (nearest with every nearest_mode, and linear, with every coordinate transformation but
 * tf_crop_and_resize). Resize is linear in x and separable: along each resized axis it applies
 * a fixed [out, in] interpolation matrix A. The rule builds A when the graph is built (from
 * the static input size and the constant scales or sizes, reproducing ONNX Runtime's float32
 * coordinate arithmetic so that ties round as the forward does) and applies A^T along each
 * resized axis of dY with one MatMul: dX = dY x_a A (the adjoint of a linear map is its
 * transpose). Axes with scale 1 and unchanged size are the identity in every mode.
 * @module
 */
import type { GraphBuilder } from "../onnx/builder.ts";
import { DataType, type NodeProto } from "../onnx/proto.ts";
import { intAttr, intsAttr, optionalInput, stringAttr } from "./_emit.ts";
import { staticElemType, staticShape } from "./static_info.ts";
import type { GradRule } from "./rule.ts";

const f = Math.fround;

/** Per axis of x: input and output length and the scale ONNX Runtime uses, or a reason. */
type AxisPlan = { a: number; inLen: number; outLen: number; scale: number };

/** The resized axes of a Resize node, or a string saying why they cannot be told statically. */
function resizePlan(b: GraphBuilder, node: NodeProto): AxisPlan[] | string {
  const x = node.input[0];
  const shape = staticShape(b, x);
  if (!shape) return `the shape of input '${x}' is not known statically`;
  const r = shape.length;
  const axes = (intsAttr(node, "axes") ?? Array.from({ length: r }, (_, i) => i)).map((a) =>
    a < 0 ? a + r : a
  );
  const scalesName = optionalInput(node, 2), sizesName = optionalInput(node, 3);
  const scales = scalesName ? b.constantValue(scalesName) : undefined;
  const sizes = sizesName ? b.constantValue(sizesName) : undefined;
  const useSizes = sizes !== undefined && sizes.values.length > 0;
  if (!useSizes && (scales === undefined || scales.values.length === 0)) {
    return `its scales/sizes ('${scalesName ?? ""}'/'${sizesName ?? ""}') are not constants ` +
      `(computed at run time)`;
  }
  const policy = stringAttr(node, "keep_aspect_ratio_policy", "stretch");
  if (useSizes && policy !== "stretch") {
    return `keep_aspect_ratio_policy '${policy}' is not supported (only "stretch")`;
  }
  const plans: AxisPlan[] = [];
  for (let k = 0; k < axes.length; k++) {
    const a = axes[k], inLen = shape[a];
    const outLen = useSizes ? sizes!.values[k] : undefined;
    const scale = useSizes ? undefined : f(scales!.values[k]);
    if (outLen === inLen || (scale === 1 && outLen === undefined)) continue; // identity
    if (typeof inLen !== "number") {
      return `axis ${a} of '${x}' is resized but its size (${inLen ?? "?"}) is not known ` +
        `statically`;
    }
    plans.push(
      useSizes
        ? { a, inLen, outLen: outLen!, scale: f(f(outLen!) / f(inLen)) }
        : { a, inLen, outLen: Math.floor(f(inLen * scale!)), scale: scale! },
    );
  }
  return plans;
}

/** x_original of output position `o` (ONNX Resize, float32 arithmetic as ONNX Runtime). */
function originalCoordinate(mode: string, o: number, p: AxisPlan): number {
  const { scale, inLen, outLen } = p;
  switch (mode) {
    case "half_pixel":
      return f(f(f(o + 0.5) / scale) - 0.5);
    case "pytorch_half_pixel":
      return outLen > 1 ? f(f(f(o + 0.5) / scale) - 0.5) : 0;
    case "align_corners":
      return outLen === 1 ? 0 : f(f(f(o) * (inLen - 1)) / (outLen - 1));
    case "asymmetric":
      return f(o / scale);
    case "half_pixel_symmetric": {
      const adjustment = f(outLen / f(scale * inLen));
      const offset = f(f(inLen / 2) * f(1 - adjustment));
      return f(offset + f(f(f(o + 0.5) / scale) - 0.5));
    }
  }
  throw new Error(`coordinate_transformation_mode '${mode}' is not supported`);
}

/** Nearest input index of a coordinate (ONNX Runtime's rounding per nearest_mode), clamped. */
function nearestIndex(mode: string, x: number, inLen: number): number {
  let i: number;
  if (mode === "round_prefer_floor") {
    i = x === f(Math.trunc(x) + 0.5) ? Math.floor(x) : Math.round(x);
    // C's std::round rounds half away from zero; Math.round rounds half up.
    if (x < 0 && x - Math.trunc(x) === -0.5) i = Math.trunc(x) - 1;
  } else if (mode === "round_prefer_ceil") {
    i = x < 0 ? -Math.round(-x) : Math.round(x);
  } else if (mode === "floor") i = Math.floor(x);
  else if (mode === "ceil") i = Math.ceil(x);
  else throw new Error(`nearest_mode '${mode}' is not supported`);
  return Math.min(Math.max(i, 0), inLen - 1);
}

/** The [out, in] interpolation matrix of one resized axis, row-major. */
export function resizeMatrix(node: NodeProto, p: AxisPlan): Float64Array {
  const mode = stringAttr(node, "mode", "nearest");
  const coord = stringAttr(node, "coordinate_transformation_mode", "half_pixel");
  const nearest = stringAttr(node, "nearest_mode", "round_prefer_floor");
  const A = new Float64Array(p.outLen * p.inLen);
  for (let o = 0; o < p.outLen; o++) {
    const x = originalCoordinate(coord, o, p);
    if (mode === "nearest") {
      A[o * p.inLen + nearestIndex(nearest, x, p.inLen)] = 1;
      continue;
    }
    const c = f(Math.max(0, Math.min(x, p.inLen - 1)));
    const i1 = Math.min(Math.trunc(c), p.inLen - 1), i2 = Math.min(i1 + 1, p.inLen - 1);
    let d1 = f(Math.abs(c - i1)), d2 = f(Math.abs(c - i2));
    if (i1 === i2) d1 = d2 = 0.5;
    A[o * p.inLen + i1] += d2;
    A[o * p.inLen + i2] += d1;
  }
  return A;
}

/** Resize: dX = dY with A^T applied along each resized axis (see the module doc). */
const resize: GradRule = {
  slots: ["diff", "index", "index", "index"],
  check: (node, _opset, b) => {
    const mode = stringAttr(node, "mode", "nearest");
    if (mode !== "nearest" && mode !== "linear") {
      return `mode '${mode}' is not supported (nearest and linear are)`;
    }
    const coord = stringAttr(node, "coordinate_transformation_mode", "half_pixel");
    if (coord === "tf_crop_and_resize") return "tf_crop_and_resize is not supported";
    if (intAttr(node, "antialias", 0) !== 0 && mode === "linear") {
      return "antialias=1 is not supported; export with antialias=False";
    }
    const plan = resizePlan(b, node);
    return typeof plan === "string"
      ? `${plan}; export the model with a fixed input size and constant scales or sizes`
      : undefined;
  },
  vjp: ({ b, node, dy }) => {
    const plan = resizePlan(b, node) as AxisPlan[];
    const x = node.input[0];
    const r = staticShape(b, x)!.length;
    const double = staticElemType(b, x) === DataType.DOUBLE;
    let g = dy[0]!;
    for (const p of plan) {
      const A = resizeMatrix(node, p);
      const data = double ? Float64Array.from(A) : Float32Array.from(A);
      if (p.a === r - 1) {
        g = b.node("MatMul", [g, b.constant("ad_resize", [p.outLen, p.inLen], data)]);
      } else if (p.a === r - 2) {
        const At = new Float64Array(p.inLen * p.outLen);
        for (let o = 0; o < p.outLen; o++) {
          for (let i = 0; i < p.inLen; i++) At[i * p.outLen + o] = A[o * p.inLen + i];
        }
        const t = double ? At : Float32Array.from(At);
        g = b.node("MatMul", [b.constant("ad_resize_t", [p.inLen, p.outLen], t), g]);
      } else {
        const perm = Array.from({ length: r }, (_, i) => i);
        [perm[p.a], perm[r - 1]] = [perm[r - 1], perm[p.a]];
        const moved = b.node("Transpose", [g], { perm });
        const m = b.node("MatMul", [moved, b.constant("ad_resize", [p.outLen, p.inLen], data)]);
        g = b.node("Transpose", [m], { perm });
      }
    }
    return [g];
  },
};

/** Resize rules by op type. */
export const RESIZE_RULES: Readonly<Record<string, GradRule>> = { Resize: resize };
