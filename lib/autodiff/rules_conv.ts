/**
 * Gradient rules for Conv, ConvTranspose and inference BatchNormalization.
 *
 * Conv and ConvTranspose are adjoint linear maps for the same weights, strides, dilations and
 * groups (Dumoulin and Visin 2016, "A guide to convolution arithmetic", §4), so the input
 * gradient of one is the other. For Conv the cheapest exact form is picked from what is known
 * when the graph is built: at stride 1 the adjoint is itself a Conv (flipped weights, §4.1),
 * which runtimes run much faster than ConvTranspose; with static pads and input sizes the
 * padding goes into ConvTranspose's own pads/output_padding; otherwise the transposed conv is
 * taken without pads (its "full" result) and cropped or zero-padded with one Pad whose amounts
 * come from Shape(x), which covers asymmetric pads, auto_pad SAME_* and the rows a strided conv
 * never reads, for any (dynamic) input size.
 * @module
 */
import type { GraphBuilder } from "../onnx/builder.ts";
import { DataType, type NodeProto } from "../onnx/proto.ts";
import {
  castLike,
  constLike,
  floatAttr,
  i64Const,
  i64Fill,
  intAttr,
  intsAttr,
  optionalInput,
  spatialShape,
  stringAttr,
} from "./_emit.ts";
import { type StaticDim, staticElemType, staticRank, staticShape } from "./static_info.ts";
import { describeNode, type GradRule, type VjpContext } from "./rule.ts";

/** Number of spatial axes of a conv/pool node: from its attributes, weight, or input rank. */
export function spatialRank(ctx: VjpContext): number {
  const { b, node } = ctx;
  const fromAttr = ["kernel_shape", "strides", "dilations"].map((a) => intsAttr(node, a)?.length)
    .find((n) => n !== undefined && n > 0) ?? (intsAttr(node, "pads")?.length ?? 0) / 2;
  if (fromAttr > 0) return fromAttr;
  const w = optionalInput(node, 1);
  const rw = w === undefined ? undefined : staticRank(b, w);
  if (rw !== undefined && node.op_type.startsWith("Conv")) return rw - 2;
  const rx = staticRank(b, node.input[0]);
  if (rx !== undefined) return rx - 2;
  throw new Error(
    `cannot differentiate ${
      describeNode(node, ctx.opset)
    }: the number of spatial axes is unknown; ` +
      `give the node a kernel_shape attribute or declare the input shape in graph.value_info`,
  );
}

/** Attribute `name` (a list of `n` ints), or `fill` repeated. */
export function listAttr(node: NodeProto, name: string, n: number, fill: number): number[] {
  const v = intsAttr(node, name);
  return v && v.length > 0 ? v : Array(n).fill(fill);
}

/** The kernel extent per spatial axis, (k - 1) d + 1, as an int64 [n] tensor. */
export function kernelExtent(
  b: GraphBuilder,
  kernel: string,
  dilations: readonly number[],
): string {
  const d = i64Const(b, dilations);
  return b.node("Add", [
    b.node("Mul", [b.node("Sub", [kernel, i64Const(b, 1, [])]), d]),
    i64Const(b, 1, []),
  ]);
}

/**
 * Begin pads of a conv/pool per spatial axis as an int64 [n] tensor: the `pads` attribute,
 * zeros for VALID, or for SAME_UPPER / SAME_LOWER the ONNX rule computed from Shape(x) at run
 * time: total = max(0, (ceil(H / s) - 1) s + extent - H), begin = total / 2 (UPPER, rounded
 * down) or total - total / 2 (LOWER). (ONNX Runtime follows it while the unclamped total is
 * >= -2; the conv rule refuses kernels small enough to go below, see `sameAutoPadProblem`.)
 */
export function beginPads(
  b: GraphBuilder,
  node: NodeProto,
  x: string,
  n: number,
  kernel: () => string,
): { begin: string; total?: string } {
  const autoPad = stringAttr(node, "auto_pad", "NOTSET");
  if (autoPad === "NOTSET") {
    return { begin: i64Const(b, listAttr(node, "pads", 2 * n, 0).slice(0, n)) };
  }
  if (autoPad === "VALID") {
    return { begin: i64Const(b, Array(n).fill(0)), total: i64Const(b, Array(n).fill(0)) };
  }
  const s = i64Const(b, listAttr(node, "strides", n, 1));
  const h = spatialShape(b, x);
  const one = i64Const(b, 1, []);
  const outSize = b.node("Div", [b.node("Sub", [b.node("Add", [h, s]), one]), s]); // ceil(H / s)
  const extent = kernelExtent(b, kernel(), listAttr(node, "dilations", n, 1));
  const need = b.node("Sub", [
    b.node("Add", [b.node("Mul", [b.node("Sub", [outSize, one]), s]), extent]),
    h,
  ]);
  const total = b.node("Max", [need, i64Const(b, 0, [])]);
  const half = b.node("Div", [total, i64Const(b, 2, [])]);
  if (autoPad === "SAME_UPPER") return { begin: half, total };
  if (autoPad === "SAME_LOWER") return { begin: b.node("Sub", [total, half]), total };
  throw new Error(
    `node '${node.name ?? ""}' (${node.op_type}) has auto_pad '${autoPad}'; ONNX allows NOTSET, ` +
      `VALID, SAME_UPPER or SAME_LOWER`,
  );
}

/**
 * Why a Conv's auto_pad SAME_* cannot be differentiated exactly, or undefined. The ONNX rule
 * clamps the total padding at 0; ONNX Runtime does not, and for totals below -2 (a kernel
 * extent at least 3 smaller than the stride: total >= extent - stride) its windows start at
 * offsets that follow neither the rule nor any formula its source states (measured: 1x1, stride
 * 4, H = 8 samples rows 1 and 5). Such convs are refused rather than given a wrong gradient.
 */
export function sameAutoPadProblem(b: GraphBuilder, node: NodeProto): string | undefined {
  const autoPad = stringAttr(node, "auto_pad", "NOTSET");
  if (autoPad !== "SAME_UPPER" && autoPad !== "SAME_LOWER") return undefined;
  const w = optionalInput(node, 1);
  const n = (intsAttr(node, "strides") ?? []).length ||
    (w ? (staticRank(b, w) ?? 2) - 2 : 0);
  const strides = listAttr(node, "strides", n, 1);
  const kernel = intsAttr(node, "kernel_shape") ??
    (w ? staticShape(b, w)?.slice(2) as number[] | undefined : undefined);
  const dilations = listAttr(node, "dilations", n, 1);
  const h = staticShape(b, node.input[0])?.slice(2);
  for (let i = 0; i < n; i++) {
    const k = kernel?.[i];
    if (typeof k !== "number") return undefined;
    const extent = (k - 1) * dilations[i] + 1, s = strides[i], hi = h?.[i];
    const total = typeof hi === "number" ? (Math.ceil(hi / s) - 1) * s + extent - hi : extent - s; // the smallest total over input sizes
    if (total < -2) {
      return `auto_pad ${autoPad} with kernel extent ${extent} and stride ${s}${
        typeof hi === "number" ? ` on size ${hi}` : ""
      } gives a negative total padding (${total}) that ONNX Runtime applies differently from ` +
        `the ONNX rule; export the conv with explicit pads`;
    }
  }
  return undefined;
}

/** Pad `v` ([N, C, spatial...]) by int64 [n] tensors `begin` and `end` (negative crops). */
export function padSpatial(b: GraphBuilder, v: string, begin: string, end: string): string {
  const zeros2 = i64Const(b, [0, 0]);
  const pads = b.node("Concat", [zeros2, begin, zeros2, end], { axis: 0 });
  return b.node("Pad", [v, pads]);
}

/**
 * Begin and end pads of a conv per spatial axis as numbers, when they can be told statically:
 * always for NOTSET and VALID; for SAME_* when every stride is 1 (total = extent - 1) or the
 * input's spatial sizes `h` are known (the ONNX rule, as in {@link beginPads}).
 */
export function staticPads(
  node: NodeProto,
  n: number,
  extent: readonly number[],
  h: readonly StaticDim[] | undefined,
): { begin: number[]; end: number[] } | undefined {
  const autoPad = stringAttr(node, "auto_pad", "NOTSET");
  if (autoPad === "NOTSET") {
    const pads = listAttr(node, "pads", 2 * n, 0);
    return { begin: pads.slice(0, n), end: pads.slice(n, 2 * n) };
  }
  if (autoPad === "VALID") return { begin: Array(n).fill(0), end: Array(n).fill(0) };
  if (autoPad !== "SAME_UPPER" && autoPad !== "SAME_LOWER") return undefined;
  const strides = listAttr(node, "strides", n, 1);
  const total: number[] = [];
  for (let i = 0; i < n; i++) {
    const hi = h?.[i];
    if (strides[i] === 1) total.push(extent[i] - 1);
    else if (typeof hi === "number") {
      total.push(Math.max(0, (Math.ceil(hi / strides[i]) - 1) * strides[i] + extent[i] - hi));
    } else return undefined;
  }
  const small = total.map((t) => Math.floor(t / 2));
  const begin = autoPad === "SAME_UPPER" ? small : total.map((t, i) => t - small[i]);
  return { begin, end: total.map((t, i) => t - begin[i]) };
}

/** The kernel's spatial sizes, from kernel_shape or the weight's static shape. */
function staticKernel(
  b: GraphBuilder,
  node: NodeProto,
  w: string,
  n: number,
): number[] | undefined {
  const attr = intsAttr(node, "kernel_shape");
  if (attr && attr.length === n) return attr;
  const dims = staticShape(b, w)?.slice(2);
  return dims?.length === n && dims.every((d) => typeof d === "number")
    ? dims as number[]
    : undefined;
}

/**
 * The values of `w` when it is a float32/float64 constant (an initializer that is not also a
 * graph input, which a caller could override, or a Constant node's output); else undefined.
 */
function constantWeight(
  b: GraphBuilder,
  w: string,
): { dims: number[]; values: Float64Array; type: number } | undefined {
  const isConstantNode = b.graph.node.some((m) => m.op_type === "Constant" && m.output[0] === w);
  const type = b.initializer(w)?.data_type ?? (isConstantNode ? staticElemType(b, w) : undefined);
  if (b.graph.input.some((v) => v.name === w)) return undefined;
  if (type !== DataType.FLOAT && type !== DataType.DOUBLE) return undefined;
  const value = b.constantValue(w);
  return value && { ...value, type };
}

/** A constant of element type `type` (float32 or float64) with the given values. */
function floatConstant(
  b: GraphBuilder,
  hint: string,
  dims: readonly number[],
  type: number,
  values: ArrayLike<number>,
): string {
  return b.constant(
    hint,
    dims,
    type === DataType.FLOAT ? Float32Array.from(values) : Float64Array.from(values),
  );
}

const flipped = new WeakMap<GraphBuilder, Map<string, string>>();

/**
 * The weight of the adjoint conv of a stride-1 conv with weight `w` ([M, C/g, k...], `group`
 * g): in and out channels swapped within each group and every spatial axis reversed, shape
 * [C, M/g, k...], so that W'[gi C/g + c, m, k'] = W[gi M/g + m, c, K - 1 - k']. Computed once
 * as an initializer when `w` is a float32/float64 constant (not overridable as a graph input);
 * otherwise built in the graph (Reshape, Transpose, Slice with step -1).
 */
function flippedWeight(b: GraphBuilder, w: string, group: number, n: number): string {
  let cache = flipped.get(b);
  if (!cache) flipped.set(b, cache = new Map());
  const key = `${w}/${group}`;
  const hit = cache.get(key);
  if (hit && b.initializer(hit)) return hit;
  const value = constantWeight(b, w);
  if (value && value.dims.length === n + 2) {
    const [M, Cg, ...k] = value.dims;
    const P = k.reduce((a, v) => a * v, 1), Mg = M / group;
    const out = new Float64Array(M * Cg * P);
    for (let gi = 0; gi < group; gi++) {
      for (let c = 0; c < Cg; c++) {
        for (let m = 0; m < Mg; m++) {
          const to = ((gi * Cg + c) * Mg + m) * P, from = ((gi * Mg + m) * Cg + c) * P;
          for (let p = 0; p < P; p++) out[to + p] = value.values[from + P - 1 - p];
        }
      }
    }
    const name = floatConstant(b, `${w}_adjoint`, [group * Cg, Mg, ...k], value.type, out);
    cache.set(key, name);
    return name;
  }
  const spatialAxes = Array.from({ length: n }, (_, i) => i + 2);
  let swapped: string;
  if (group === 1) {
    swapped = b.node("Transpose", [w], { perm: [1, 0, ...spatialAxes] });
  } else {
    // [M, C/g, k...] -> [g, M/g, C/g, k...] -> [g, C/g, M/g, k...] -> [C, M/g, k...]
    const shape = b.node("Shape", [w]);
    const m = b.node("Slice", [shape, i64Const(b, [0]), i64Const(b, [1])]);
    const mg = b.node("Div", [m, i64Const(b, [group])]);
    const grouped = b.node("Reshape", [
      w,
      b.node("Concat", [i64Const(b, [group]), mg, b.node("Shape", [w], { start: 1 })], {
        axis: 0,
      }),
    ]);
    const t = b.node("Transpose", [grouped], { perm: [0, 2, 1, ...spatialAxes.map((a) => a + 1)] });
    swapped = b.node("Reshape", [
      t,
      b.node("Concat", [i64Const(b, [-1]), mg, spatialShape(b, w)], { axis: 0 }),
    ]);
  }
  return b.node("Slice", [
    swapped,
    i64Const(b, Array(n).fill(-1)),
    i64Const(b, Array(n).fill(-(2 ** 63))),
    i64Const(b, spatialAxes),
    i64Const(b, Array(n).fill(-1)),
  ]);
}

/**
 * Conv: dX is the adjoint (transposed) conv of dY with the same weights, strides, dilations and
 * group, cut to the input: dX[j] = F[j + pad_begin] for j < H, where F (size
 * s (out - 1) + (k - 1) d + 1 per axis) is the unpadded transposed conv, zero beyond its end.
 * The cheapest exact form is chosen from what is known statically:
 * - stride 1 with known pads p_b, p_e <= extent - 1: a plain Conv of dY with the flipped weight
 *   ({@link flippedWeight}) and pads extent - 1 - p (the correlation/convolution identity);
 *   runtimes run Conv much faster than ConvTranspose;
 * - known pads and (for strides > 1) known input sizes H: one ConvTranspose with those pads as
 *   its begin pads and the end fixed by pads/output_padding so that the size is exactly H;
 * - otherwise ConvTranspose without pads, then one Pad (negative amounts crop) computed from
 *   Shape(x) at run time, which covers any dynamic input size.
 */
const conv: GradRule = {
  slots: ["diff", "param", "param"],
  check: (node, _opset, b) => sameAutoPadProblem(b, node),
  vjp: (ctx) => {
    const { b, node, dy } = ctx;
    const [x, w] = node.input;
    const g = dy[0]!;
    const n = spatialRank(ctx);
    const strides = listAttr(node, "strides", n, 1);
    const dilations = listAttr(node, "dilations", n, 1);
    const group = intAttr(node, "group", 1);
    const kernel = staticKernel(b, node, w, n);
    const h = staticShape(b, x)?.slice(2);
    const extent = kernel?.map((k, i) => (k - 1) * dilations[i] + 1);
    const pads = extent && staticPads(node, n, extent, h);
    if (extent && pads) {
      const unit = strides.every((s) => s === 1);
      if (unit && extent.every((e, i) => pads.begin[i] <= e - 1 && pads.end[i] <= e - 1)) {
        return [b.node("Conv", [g, flippedWeight(b, w, group, n)], {
          dilations,
          group,
          kernel_shape: kernel,
          pads: [
            ...pads.begin.map((p, i) => extent[i] - 1 - p),
            ...pads.end.map((p, i) => extent[i] - 1 - p),
          ],
        })];
      }
      const hs = h?.length === n && h.every((v) => typeof v === "number")
        ? h as number[]
        : undefined;
      if (group > 1 && hs && kernel) {
        const stuffed = stuffedConvAdjoint(ctx, {
          n,
          strides,
          dilations,
          group,
          kernel,
          extent,
          pads,
          hs,
        });
        if (stuffed) return [stuffed];
      }
      if (unit || hs) {
        // Output size s (out - 1) + extent - p_b - end + output_padding must be H: with
        // out - 1 = floor((H + p_b + p_e - extent) / s) that is end - output_padding = p_e - r,
        // r the remainder (0 <= r < s), so output_padding < s as ONNX Runtime requires.
        // r: the trailing padded rows no window reaches (also SAME_* with a total clipped at 0).
        const r = unit ? Array(n).fill(0) : hs!.map((hi, i) => {
          const span = hi + pads.begin[i] + pads.end[i] - extent[i];
          return span - Math.floor(span / strides[i]) * strides[i];
        });
        const end = pads.end.map((p, i) => Math.max(0, p - r[i]));
        const outputPadding = pads.end.map((p, i) => Math.max(0, r[i] - p));
        return [b.node("ConvTranspose", [g, w], {
          strides,
          dilations,
          group,
          kernel_shape: kernel,
          pads: [...pads.begin, ...end],
          output_padding: outputPadding.some((v) => v > 0) ? outputPadding : undefined,
        })];
      }
    }
    const full = b.node("ConvTranspose", [g, w], { strides, dilations, group });
    const { begin } = beginPads(b, node, x, n, () => spatialShape(b, w));
    // end = H - (full - begin): negative cuts, positive appends zeros (rows no window reads).
    const end = b.node("Sub", [spatialShape(b, x), b.node("Sub", [spatialShape(b, full), begin])]);
    return [padSpatial(b, full, b.node("Neg", [begin]), end)];
  },
};

/**
 * The adjoint of a strided grouped (depthwise) Conv as a stride-1 Conv: dY is spread out with
 * s - 1 zeros after every entry along each strided axis (the transposed conv's "zero
 * insertion", Dumoulin and Visin 2016, §4.5; a nearest Resize times a 0/1 mask), then
 * correlated with the flipped weight
 * ({@link flippedWeight}) at the same dilation, with begin pads extent - 1 - p_b and the end
 * chosen (negative: cropped) so the result has x's size H. ONNX Runtime's grouped
 * ConvTranspose runs one small GEMM per group; its depthwise Conv is vectorised, so this form
 * is much faster for MobileNet/EfficientNet-style depthwise convs. Needs static sizes (dY's
 * channel and spatial sizes, x's spatial sizes); undefined otherwise.
 */
function stuffedConvAdjoint(
  ctx: VjpContext,
  c: {
    n: number;
    strides: number[];
    dilations: number[];
    group: number;
    kernel: number[];
    extent: number[];
    pads: { begin: number[]; end: number[] };
    hs: number[];
  },
): string | undefined {
  const { b, node, dy } = ctx;
  const [, w] = node.input;
  const gs = staticShape(b, node.output[0]);
  if (!gs || gs.length !== c.n + 2 || !gs.slice(1).every((d) => typeof d === "number")) {
    return undefined;
  }
  const begin = c.extent.map((e, i) => e - 1 - c.pads.begin[i]);
  // float32 only (ONNX Runtime has no float64 Resize).
  if (begin.some((p) => p < 0) || staticElemType(b, node.input[0]) !== DataType.FLOAT) {
    return undefined;
  }
  // Zero insertion: nearest Resize by the strides (asymmetric, floor: position j takes
  // dY[floor(j / s)]) times a 0/1 mask that keeps the positions j = o s. Measured 4x faster in
  // ONNX Runtime than a Pad-based spread or a grouped ConvTranspose.
  const cur = [...gs];
  const spatial = gs.slice(2) as number[];
  const big = spatial.map((o, i) => o * c.strides[i]);
  for (let i = 0; i < c.n; i++) cur[i + 2] = big[i];
  const count = big.reduce((a, d) => a * d, 1);
  const mask = new Float64Array(count);
  for (let j = 0; j < count; j++) {
    let rem = j, keep = true;
    for (let i = c.n - 1; i >= 0; i--) {
      if ((rem % big[i]) % c.strides[i] !== 0) keep = false;
      rem = Math.floor(rem / big[i]);
    }
    mask[j] = keep ? 1 : 0;
  }
  const scales = b.constant("ad_stride_scales", [c.n + 2], Float32Array.from([1, 1, ...c.strides]));
  const upsampled = b.node("Resize", [dy[0]!, "", scales], {
    mode: "nearest",
    coordinate_transformation_mode: "asymmetric",
    nearest_mode: "floor",
  });
  const maskValue = Float32Array.from(mask);
  const v = b.node("Mul", [upsampled, b.constant("ad_stride_mask", [1, 1, ...big], maskValue)]);
  // Conv output size Z + begin + end - extent + 1 = H, Z = O s (with the s - 1 trailing zeros).
  const end = c.hs.map((h, i) => h - (cur[i + 2] as number) - begin[i] + c.extent[i] - 1);
  const out = b.node("Conv", [v, flippedWeight(b, w, c.group, c.n)], {
    dilations: c.dilations,
    group: c.group,
    kernel_shape: c.kernel,
    pads: [...begin, ...end.map((e) => Math.max(0, e))],
  });
  if (end.every((e) => e >= 0)) return out;
  return padSpatial(
    b,
    out,
    i64Const(b, Array(c.n).fill(0)),
    i64Const(b, end.map((e) => Math.min(0, e))),
  );
}

/**
 * ConvTranspose: Y[j] = F[j + pad_begin] where F is the unpadded transposed conv of X (size
 * s (H - 1) + (k - 1) d + 1, zero beyond: output_padding only appends). So
 * dX = Conv(dF, W) with dF = dY shifted back by the begin pads and cut or zero-extended to F's size.
 * auto_pad SAME_* and output_shape are not supported (their pad split is runtime-specific).
 */
const convTranspose: GradRule = {
  slots: ["diff", "param", "param"],
  check: (node) => {
    const autoPad = stringAttr(node, "auto_pad", "NOTSET");
    if (autoPad !== "NOTSET" && autoPad !== "VALID") {
      return `auto_pad '${autoPad}' is not supported; use explicit pads`;
    }
    if (intsAttr(node, "output_shape")?.length) {
      return "the output_shape attribute is not supported; use pads and output_padding";
    }
    return undefined;
  },
  vjp: (ctx) => {
    const { b, node, dy } = ctx;
    const [x, w] = node.input;
    const g = dy[0]!;
    const n = spatialRank(ctx);
    const strides = listAttr(node, "strides", n, 1);
    const dilations = listAttr(node, "dilations", n, 1);
    const begin = i64Const(
      b,
      stringAttr(node, "auto_pad", "NOTSET") === "VALID"
        ? Array(n).fill(0)
        : listAttr(node, "pads", 2 * n, 0).slice(0, n),
    );
    const extent = kernelExtent(b, spatialShape(b, w), dilations);
    const h = spatialShape(b, x);
    const fullSize = b.node("Add", [
      b.node("Mul", [b.node("Sub", [h, i64Const(b, 1, [])]), i64Const(b, strides)]),
      extent,
    ]);
    const end = b.node("Sub", [fullSize, b.node("Add", [begin, spatialShape(b, g)])]);
    const dF = padSpatial(b, g, begin, end);
    return [b.node("Conv", [dF, w], { strides, dilations, group: intAttr(node, "group", 1) })];
  },
};

/**
 * Inference BatchNormalization, y = scale (x - mean) / sqrt(var + eps) + B per channel (axis 1):
 * dX = dY scale / sqrt(var + eps), the factor reshaped to [C, 1, ..., 1] (rank(x) - 1 axes).
 */
const batchNorm: GradRule = {
  slots: ["diff", "param", "param", "param", "param"],
  nonDiffOutputs: [1, 2, 3, 4],
  check: (node) =>
    intAttr(node, "training_mode", 0) !== 0
      ? "training_mode=1 (batch statistics) is not supported; export the model in eval mode"
      : undefined,
  vjp: ({ b, node, dy }) => {
    const [x, scale, , , variance] = node.input;
    const eps = floatAttr(node, "epsilon", 1e-5);
    const factor = b.node("Div", [
      scale,
      b.node("Sqrt", [b.node("Add", [variance, constLike(b, eps, variance)])]),
    ]);
    // [C] -> [C, 1, ..., 1] with rank(x) - 2 trailing ones, built from Shape(x) at run time.
    const rank = b.node("Shape", [b.node("Shape", [x])]);
    const ones = b.node("ConstantOfShape", [b.node("Sub", [rank, i64Const(b, [2])])], {
      value: i64Fill(1),
    });
    const shape = b.node("Concat", [i64Const(b, [-1]), ones], { axis: 0 });
    const perChannel = castLike(b, b.node("Reshape", [factor, shape]), x);
    return [b.node("Mul", [dy[0]!, perChannel])];
  },
};

/** Conv-family rules by op type. */
export const CONV_RULES: Readonly<Record<string, GradRule>> = {
  BatchNormalization: batchNorm,
  Conv: conv,
  ConvTranspose: convTranspose,
};
