/**
 * The energy head: an off-the-shelf classifier compiled into one ONNX graph that returns its
 * logits, the two JEM energies and the input gradient of a weighted energy objective
 * (METHOD.md §3-4). The classifier's input convention (range, mean/std, layout) and a dynamic
 * batch are folded in, so the head always takes float32 [N,C,H,W] images in [0, 1].
 *
 * Contract (exact names):
 *
 * | name | type | meaning |
 * | --- | --- | --- |
 * | in `x` | float32 [N,C,H,W] | images in [0, 1] |
 * | in `y` | int64 [N] | class per image |
 * | in `coef` | float32 [N,3] | (a, b, c) per image |
 * | in `e_star` | float32 [N] | target energy E* per image (the dual term) |
 * | out `logits` | float32 [N,K] | f(x) |
 * | out `energy_xy` | float32 [N] | E(x,y) = -f(x)[y] (eq 2.36) |
 * | out `energy_x` | float32 [N] | E(x) = -logsumexp_k f(x)[k] (eq 2.37) |
 * | out `grad` | float32 [N,C,H,W] | d/dx sum_n a E(x,y) + b E(x) + c abs(E* - E(x)) |
 *
 * coef (1,-1,0) gives the cross-entropy -log p(y|x) (eq 2.38, the `logp` guidance of Alg 6 with
 * the sign flipped), (1,0,0) the joint energy (§4.6), (1,0,lambda) the dual objective
 * (§4.8, eq 4.5-4.6). A forward-only head (`gradient: false`, for benchmarks) has only `x`, `y`
 * and the three forward outputs.
 * @module
 */
import { foldShapes, inferAll } from "../autodiff/shape_fold.ts";
import { appendVjp } from "../autodiff/vjp.ts";
import { GraphBuilder } from "../onnx/builder.ts";
import {
  DataType,
  decodeModel,
  encodeModel,
  type ModelProto,
  type ValueInfoProto,
} from "../onnx/proto.ts";
import { sha256Hex } from "../runtime/session.ts";
import { realInputs, renameValue, valueNames } from "./_graph.ts";
import { type BatchRewrite, makeBatchDynamic } from "./dynamic_batch.ts";
import { type LogitsTrace, traceLogits } from "./logits.ts";
import { widenToFloat32 } from "./precision.ts";
import type { InputConventions } from "./conventions.ts";
import { appendBilinearResize, planResize, type ResizeOptions, type ResizeSpec } from "./resize.ts";

export type { InputConventions } from "./conventions.ts";

/** Version of the head contract, stored in the model's metadata. */
export const HEAD_VERSION = 1;

/** Metadata key prefix of everything the head stores about itself. */
export const HEAD_META_PREFIX = "robust_guidance.";

/** Names of the head's inputs and outputs (see the module doc). */
export const HEAD_NAMES = {
  x: "x",
  y: "y",
  coef: "coef",
  eStar: "e_star",
  logits: "logits",
  energyXY: "energy_xy",
  energyX: "energy_x",
  grad: "grad",
} as const;

/** Options of {@link compileEnergyHead}. */
export interface EnergyHeadOptions extends InputConventions, ResizeOptions {
  /** Name of the logits output when the classifier has several 2-D outputs. */
  output?: string;
  /** Build the backward pass (default true). false: forward-only head (x, y; no grad). */
  gradient?: boolean;
  /** Names the model in error messages (a path, say). */
  source?: string;
}

/** What a head says about itself (stored as metadata_props; see {@link readHeadInfo}). */
export interface HeadInfo {
  /** Contract version ({@link HEAD_VERSION}). */
  version: number;
  /** K, the number of classes. */
  numClasses: number;
  /** [C, H, W] of the head input `x`. */
  inputShape: [number, number, number];
  /** Per-channel mean folded into the head, or null for none. */
  mean: number[] | null;
  /** Per-channel std folded into the head, or null for none. */
  std: number[] | null;
  /** Layout the classifier wants (the head's `x` is always NCHW). */
  layout: "nchw" | "nhwc";
  /** Pixel range the classifier wants (the head's `x` is always [0, 1]). */
  range: "01" | "pm1";
  /** sha256 of the classifier's ONNX bytes. */
  sourceSha256: string;
  /** Whether the head has the `grad` output (and the `coef`, `e_star` inputs). */
  gradient: boolean;
  /** Reshape constants rewritten to make the batch dynamic. */
  batchRewrites: BatchRewrite[];
  /** The bilinear resize from `inputShape`'s H, W to the classifier's (lib/energy/resize.ts), or null. */
  resize: ResizeSpec | null;
  /**
   * What the classifier's chosen output holds: its logits, or probabilities (a final Softmax
   * or LogSoftmax) whose input the head took as the logits (lib/energy/logits.ts).
   */
  outputKind: LogitsTrace["kind"];
  /** Reduced-precision types the classifier used ("float16", "bfloat16"); the head runs float32. */
  widenedFrom: string[];
  /** What the head did that the user should know (one sentence each), for printing. */
  notes: string[];
}

/** A compiled head: the model value and its {@link HeadInfo}. */
export interface CompiledHead {
  /** The head as a model value. */
  model: ModelProto;
  /** What it stores about itself. */
  info: HeadInfo;
}

/**
 * Compiles `classifier` (ONNX bytes or a decoded model, left unchanged) into an energy head and
 * returns its ONNX bytes. See the module doc for the contract; throws with a clear message when
 * the model is not a single-input classifier, the conventions do not fit it, or the backward
 * pass meets an operator the autodiff does not support.
 */
export function compileEnergyHead(
  classifier: ModelProto | Uint8Array,
  opts: EnergyHeadOptions = {},
): Uint8Array {
  return encodeModel(buildEnergyHead(classifier, opts).model);
}

/** As {@link compileEnergyHead}, returning the model value and its info instead of bytes. */
export function buildEnergyHead(
  classifier: ModelProto | Uint8Array,
  opts: EnergyHeadOptions = {},
): CompiledHead {
  const source = opts.source ?? "classifier";
  const bytes = classifier instanceof Uint8Array ? classifier : encodeModel(classifier);
  // Decoding our own encoding doubles as a deep copy: the caller's model is never edited.
  const model = decodeModel(bytes, source);
  const g = model.graph;
  const notes: string[] = [];
  const widenedFrom = widenToFloat32(g);
  if (widenedFrom.length > 0) {
    notes.push(
      `the classifier computes in ${widenedFrom.join(" and ")}; the head computes in float32 ` +
        `(weights widened exactly; lib/energy/precision.ts gives the tolerance)`,
    );
  }
  const layout = opts.layout ?? "nchw";
  const range = opts.range ?? "01";
  if (layout !== "nchw" && layout !== "nhwc") {
    throw new Error(`layout '${layout}' is not supported; use "nchw" or "nhwc"`);
  }
  if (range !== "01" && range !== "pm1") {
    throw new Error(`range '${range}' is not supported; use "01" ([0, 1]) or "pm1" ([-1, 1])`);
  }

  // Old exporters list every initializer as a graph input too; those are weights, not inputs.
  const inputs = realInputs(g);
  if (inputs.length !== 1) {
    throw new Error(
      `${source}: model has ${inputs.length} inputs (${inputs.map((v) => v.name).join(", ")}); ` +
        `an energy head needs a single image input [N,C,H,W]; export the classifier with the ` +
        `image as its only input (fold the others in as constants)`,
    );
  }
  g.input = inputs;
  declareOutputShapes(model);
  const logitsInfo = pickLogits(g.output, opts.output, source);
  // images of another size: a bilinear resize in front (issue 13 item 5), never a silent one
  const resize = planResize(
    inputs[0].type?.tensor_type?.shape?.dim ?? [],
    layout === "nchw" ? [2, 3] : [1, 2],
    opts,
    `${source} (input '${inputs[0].name}')`,
  );
  const [C, H, W] = imageShape(inputs[0], layout, source);
  const [h, w] = resize ? resize.from : [H, W];
  const K = logitsInfo.dims[1];
  const { mean, std } = checkNormalisation(opts, C);

  // The head's own names must be free: rename classifier values that use them.
  const taken = valueNames(g);
  for (const name of Object.values(HEAD_NAMES)) {
    if (!taken.has(name)) continue;
    let alt = `${name}_classifier`;
    for (let i = 2; taken.has(alt); i++) alt = `${name}_classifier_${i}`;
    renameValue(g, name, alt);
    taken.add(alt);
  }
  const clsIn = g.input[0].name;
  const probe = GraphBuilder.fromModel(model);
  const trace = traceLogits(g, logitsInfo.info.name, probe.opset, (name) => {
    const c = probe.constantValue(name);
    return c ? [...c.values] : undefined;
  }, source);
  if (trace.note) notes.push(trace.note);
  const clsOut = trace.logits;
  // Removing weights from the inputs needs IR >= 4 (earlier IRs required them listed).
  if ((model.ir_version ?? 0) < 4) model.ir_version = 4;

  const b = GraphBuilder.fromModel(model);
  const batchRewrites = makeBatchDynamic(b, clsIn);
  g.input = [];
  g.output = [];

  const x = b.input(HEAD_NAMES.x, DataType.FLOAT, ["N", C, h, w]);
  const firstNew = g.node.length;
  const xr = resize ? appendBilinearResize(b, x, resize) : x;
  appendInputConvention(b, xr, clsIn, { mean, std, layout, range }, C);
  g.node.unshift(...g.node.splice(firstNew)); // the classifier consumes clsIn: keep topological

  const gradient = opts.gradient ?? true;
  const y = b.input(HEAD_NAMES.y, DataType.INT64, ["N"]);
  const coef = gradient ? b.input(HEAD_NAMES.coef, DataType.FLOAT, ["N", 3]) : "";
  const eStar = gradient ? b.input(HEAD_NAMES.eStar, DataType.FLOAT, ["N"]) : "";
  b.output(clsOut, DataType.FLOAT, ["N", K], HEAD_NAMES.logits);
  const e = appendEnergies(b, clsOut, y, K);
  b.output(e.energyXY, DataType.FLOAT, ["N"], HEAD_NAMES.energyXY);
  b.output(e.energyX, DataType.FLOAT, ["N"], HEAD_NAMES.energyX);
  // Shapes known before differentiation: every value's shape from x's [N,C,H,W], shape
  // sub-graphs folded, value_info rewritten (the batch rewrite dropped the exporter's).
  foldShapes(b, [clsOut]);
  if (gradient) {
    const cot = appendLogitCotangent(b, e, coef, eStar);
    let grad: string;
    try {
      grad = appendVjp(b, clsOut, cot, x);
    } catch (err) {
      throw new Error(
        `${source}: cannot build the energy gradient: ${(err as Error).message}`,
        { cause: err },
      );
    }
    b.output(grad, DataType.FLOAT, ["N", C, h, w], HEAD_NAMES.grad);
  }
  b.dropUnusedInitializers();

  const info: HeadInfo = {
    version: HEAD_VERSION,
    numClasses: K,
    inputShape: [C, h, w],
    mean,
    std,
    layout,
    range,
    sourceSha256: sha256Hex(bytes),
    gradient,
    batchRewrites,
    resize,
    outputKind: trace.kind,
    widenedFrom,
    notes,
  };
  writeHeadInfo(b, info, clsIn, clsOut);
  return { model, info };
}

/**
 * Outputs exported without a declared shape or type get the ones shape inference finds
 * (lib/autodiff/shape_fold.ts), so that a classifier whose exporter left its logits' shape
 * out is still read as [N, K].
 */
function declareOutputShapes(model: ModelProto): void {
  const g = model.graph;
  const missing = g.output.filter((v) =>
    !v.type?.tensor_type?.shape || !v.type.tensor_type.elem_type
  );
  if (missing.length === 0) return;
  const known = inferAll(GraphBuilder.fromModel(model));
  for (const v of missing) {
    const k = known.get(v.name);
    const tt = v.type?.tensor_type ?? {};
    if (!tt.elem_type && k?.type) tt.elem_type = k.type;
    if (!tt.shape && k?.shape) {
      tt.shape = {
        dim: k.shape.map((d) =>
          typeof d === "number"
            ? { dim_value: d }
            : typeof d === "string"
            ? { dim_param: d.replace(/^param:/, "") }
            : {}
        ),
      };
    }
    v.type = { ...(v.type ?? {}), tensor_type: tt };
  }
}

/** The logits output: the one 2-D float output, or `wanted`. Throws naming what was found. */
function pickLogits(
  outputs: readonly ValueInfoProto[],
  wanted: string | undefined,
  source: string,
): { info: ValueInfoProto; dims: [number | string, number] } {
  const describe = (v: ValueInfoProto) => `'${v.name}' ${shapeText(v)}`;
  let chosen: ValueInfoProto | undefined;
  if (wanted !== undefined) {
    chosen = outputs.find((v) => v.name === wanted);
    if (!chosen) {
      throw new Error(
        `${source}: no output named '${wanted}'; its outputs are ${
          outputs.map(describe).join(", ")
        }`,
      );
    }
  } else if (outputs.length === 1) {
    chosen = outputs[0];
  } else {
    const twoD = outputs.filter((v) => dimsOf(v)?.length === 2);
    if (twoD.length !== 1) {
      throw new Error(
        `${source}: cannot tell which output holds the logits among ` +
          `${outputs.map(describe).join(", ")}; pass the logits output's name (option 'output')`,
      );
    }
    chosen = twoD[0];
  }
  const dims = dimsOf(chosen);
  const type = chosen.type?.tensor_type?.elem_type;
  if (!dims || dims.length !== 2 || type !== DataType.FLOAT) {
    const what = !dims
      ? "no declared shape"
      : dims.length !== 2
      ? `rank ${dims.length} ${shapeText(chosen)}`
      : `element type ${type}, not float32`;
    throw new Error(
      `${source}: not a classifier: output '${chosen.name}' has ${what}; an energy head needs ` +
        `float32 logits of shape [N,K]`,
    );
  }
  const K = dims[1];
  if (typeof K !== "number" || K < 2) {
    throw new Error(
      `${source}: logits output '${chosen.name}' ${shapeText(chosen)} has no fixed class ` +
        `count K >= 2; export the classifier with a static number of classes`,
    );
  }
  return { info: chosen, dims: [dims[0], K] };
}

/** [C, H, W] of the classifier input, read in its layout; all must be fixed sizes. */
function imageShape(
  input: ValueInfoProto,
  layout: "nchw" | "nhwc",
  source: string,
): [number, number, number] {
  const dims = dimsOf(input);
  const type = input.type?.tensor_type?.elem_type;
  if (type !== DataType.FLOAT) {
    throw new Error(
      `${source}: input '${input.name}' has element type ${type}; an energy head needs a ` +
        `float32 image input`,
    );
  }
  if (!dims || dims.length !== 4) {
    throw new Error(
      `${source}: input '${input.name}' has ${
        dims ? `rank ${dims.length} ${shapeText(input)}` : "no shape"
      }; ` +
        `an energy head needs an image input of rank 4 (${
          layout === "nchw" ? "[N,C,H,W]" : "[N,H,W,C]"
        })`,
    );
  }
  const chw = layout === "nchw" ? [dims[1], dims[2], dims[3]] : [dims[3], dims[1], dims[2]];
  if (!chw.every((d) => typeof d === "number" && d > 0)) {
    throw new Error(
      `${source}: input '${input.name}' ${shapeText(input)} has symbolic image dimensions; ` +
        `export the classifier with a fixed channel count and image size, or say the size to ` +
        `run it at (--input-size H,W; option inputSize)`,
    );
  }
  return chw as [number, number, number];
}

/** Validates mean/std against the channel count C. */
function checkNormalisation(
  opts: InputConventions,
  C: number,
): { mean: number[] | null; std: number[] | null } {
  const { mean, std } = opts;
  if ((mean === undefined) !== (std === undefined)) {
    throw new Error(
      `${mean ? "mean" : "std"} was given without ${mean ? "std" : "mean"}; pass both ` +
        `(std 1,...,1 for mean-only, mean 0,...,0 for std-only)`,
    );
  }
  if (!mean || !std) return { mean: null, std: null };
  for (const [name, v] of [["mean", mean], ["std", std]] as const) {
    if (v.length !== C) {
      throw new Error(
        `${name} has ${v.length} values [${v}] but the classifier input has C=${C} channels; ` +
          `pass one ${name} per channel (${C} values)`,
      );
    }
    if (!v.every(Number.isFinite)) throw new Error(`${name} [${v}] holds a non-finite value`);
  }
  if (!std.every((s) => s > 0)) throw new Error(`std [${std}] must be > 0 in every channel`);
  return { mean: [...mean], std: [...std] };
}

/**
 * Appends x (NCHW, [0, 1]) -> classifier input `into`: x' = s x + o per the range (s=2, o=-1
 * for pm1), then (x' - mean) / std, folded into one per-channel affine map x*scale + shift,
 * then a Transpose to NHWC when the classifier wants it.
 */
function appendInputConvention(
  b: GraphBuilder,
  x: string,
  into: string,
  conv: { mean: number[] | null; std: number[] | null; layout: string; range: string },
  C: number,
): void {
  const [s, o] = conv.range === "pm1" ? [2, -1] : [1, 0];
  const scale = Array.from({ length: C }, (_, c) => s / (conv.std?.[c] ?? 1));
  const shift = Array.from(
    { length: C },
    (_, c) => (o - (conv.mean?.[c] ?? 0)) / (conv.std?.[c] ?? 1),
  );
  const steps: Array<(v: string, outputs?: string[]) => string> = [];
  if (scale.some((v) => v !== 1)) {
    steps.push((v, outputs) =>
      b.node("Mul", [v, b.f32("input_scale", scale, [1, C, 1, 1])], {}, { outputs })
    );
  }
  if (shift.some((v) => v !== 0)) {
    steps.push((v, outputs) =>
      b.node("Add", [v, b.f32("input_shift", shift, [1, C, 1, 1])], {}, { outputs })
    );
  }
  if (conv.layout === "nhwc") {
    steps.push((v, outputs) => b.node("Transpose", [v], { perm: [0, 2, 3, 1] }, { outputs }));
  }
  if (steps.length === 0) steps.push((v, outputs) => b.node("Identity", [v], {}, { outputs }));
  let v = x;
  steps.forEach((step, i) => v = step(v, i === steps.length - 1 ? [into] : undefined));
}

/** Values the energy nodes produce. */
interface EnergyValues {
  logits: string;
  /** onehot(y) [N,K] */
  onehot: string;
  /** softmax(logits) [N,K] */
  probs: string;
  /** E(x) as [N,1] */
  energyXCol: string;
  energyXY: string;
  energyX: string;
}

/**
 * E(x,y) = -f(x)[y] and E(x) = -logsumexp_k f(x)[k] (eq 2.36-2.37). logsumexp is read off
 * LogSoftmax, which ONNX Runtime computes max-shifted: f_k - logsoftmax_k = logsumexp f for
 * every k, averaged with weights softmax_k so that classes far below the maximum (whose
 * difference loses digits) do not count. Uses only ops whose meaning is the same in opsets 9-18
 * (row sums are MatMul with ones), since the backward pass may raise the graph's opset.
 */
function appendEnergies(b: GraphBuilder, logits: string, y: string, K: number): EnergyValues {
  const onehot = b.node(
    "OneHot",
    [y, b.i64("num_classes", K, []), b.f32("onehot_values", [0, 1])],
    {
      axis: -1,
    },
  );
  const ones = b.f32("ones_k", new Array(K).fill(1), [K, 1]);
  const rowSum = (v: string) => b.node("MatMul", [v, ones]); // [N,K] -> [N,1]
  const flat = b.i64("to_vector", [-1]);
  const energyXY = b.node("Reshape", [
    b.node("Neg", [rowSum(b.node("Mul", [onehot, logits]))]),
    flat,
  ]);
  const probs = b.node("Softmax", [logits], { axis: 1 });
  const logProbs = b.node("LogSoftmax", [logits], { axis: 1 });
  const lse = rowSum(b.node("Mul", [probs, b.node("Sub", [logits, logProbs])]));
  const energyXCol = b.node("Neg", [lse]);
  const energyX = b.node("Reshape", [energyXCol, flat]);
  return { logits, onehot, probs, energyXCol, energyXY, energyX };
}

/**
 * The cotangent of sum_n a E(x,y) + b E(x) + c abs(E* - E(x)) at the logits, per row:
 * -a onehot(y) - b softmax(f) + c sign(E* - E(x)) softmax(f). sign(0) = 0: exactly at
 * E(x) = E* the abs term contributes nothing (its subgradient's midpoint).
 */
function appendLogitCotangent(
  b: GraphBuilder,
  e: EnergyValues,
  coef: string,
  eStar: string,
): string {
  const column = (i: number) =>
    b.node("Gather", [coef, b.i64(`coef_index_${i}`, [i])], { axis: 1 });
  const [ca, cb, cc] = [column(0), column(1), column(2)]; // each [N,1]
  const eStarCol = b.node("Reshape", [eStar, b.i64("to_column", [-1, 1])]);
  const sign = b.node("Sign", [b.node("Sub", [eStarCol, e.energyXCol])]);
  const probWeight = b.node("Sub", [b.node("Mul", [cc, sign]), cb]); // c sign - b
  return b.node("Sub", [b.node("Mul", [probWeight, e.probs]), b.node("Mul", [ca, e.onehot])]);
}

function writeHeadInfo(b: GraphBuilder, info: HeadInfo, clsIn: string, clsOut: string): void {
  const p = HEAD_META_PREFIX;
  b.setMetadata(`${p}kind`, "energy-head");
  b.setMetadata(`${p}head_version`, String(info.version));
  b.setMetadata(`${p}num_classes`, String(info.numClasses));
  b.setMetadata(`${p}input_shape`, JSON.stringify(info.inputShape));
  b.setMetadata(`${p}mean`, JSON.stringify(info.mean));
  b.setMetadata(`${p}std`, JSON.stringify(info.std));
  b.setMetadata(`${p}layout`, info.layout);
  b.setMetadata(`${p}range`, info.range);
  b.setMetadata(`${p}source_sha256`, info.sourceSha256);
  b.setMetadata(`${p}gradient`, String(info.gradient));
  b.setMetadata(`${p}batch_rewrites`, JSON.stringify(info.batchRewrites));
  b.setMetadata(`${p}resize`, JSON.stringify(info.resize));
  b.setMetadata(`${p}classifier_io`, JSON.stringify({ input: clsIn, output: clsOut }));
  b.setMetadata(`${p}output_kind`, info.outputKind);
  b.setMetadata(`${p}widened_from`, JSON.stringify(info.widenedFrom));
  b.setMetadata(`${p}notes`, JSON.stringify(info.notes));
  b.setMetadata(
    `${p}objective`,
    "grad = d/dx sum_n a E(x,y) + b E(x) + c |e_star - E(x)|, coef = (a,b,c), sign(0) = 0; " +
      "E(x,y) = -logits[y], E(x) = -logsumexp(logits); x in [0,1] NCHW",
  );
}

/** The {@link HeadInfo} stored in a head's metadata, or undefined when `model` is not a head. */
export function readHeadInfo(model: ModelProto): HeadInfo | undefined {
  const meta = new Map((model.metadata_props ?? []).map((e) => [e.key, e.value]));
  const get = (k: string) => meta.get(HEAD_META_PREFIX + k);
  if (get("kind") !== "energy-head") return undefined;
  const version = Number(get("head_version"));
  if (version !== HEAD_VERSION) {
    throw new Error(
      `energy head version ${get("head_version")} is not supported (this toolkit reads version ` +
        `${HEAD_VERSION}); recompile the head with 'deno task energy-head'`,
    );
  }
  return {
    version,
    numClasses: Number(get("num_classes")),
    inputShape: JSON.parse(get("input_shape") ?? "null"),
    mean: JSON.parse(get("mean") ?? "null"),
    std: JSON.parse(get("std") ?? "null"),
    layout: get("layout") as HeadInfo["layout"],
    range: get("range") as HeadInfo["range"],
    sourceSha256: get("source_sha256") ?? "",
    gradient: get("gradient") === "true",
    batchRewrites: JSON.parse(get("batch_rewrites") ?? "[]"),
    resize: JSON.parse(get("resize") ?? "null"),
    outputKind: (get("output_kind") ?? "logits") as HeadInfo["outputKind"],
    widenedFrom: JSON.parse(get("widened_from") ?? "[]"),
    notes: JSON.parse(get("notes") ?? "[]"),
  };
}

function dimsOf(v: ValueInfoProto): Array<number | string> | undefined {
  const shape = v.type?.tensor_type?.shape;
  if (!shape) return undefined;
  return (shape.dim ?? []).map((d) => d.dim_value ?? d.dim_param ?? "?");
}

function shapeText(v: ValueInfoProto): string {
  const dims = dimsOf(v);
  return dims ? `[${dims.join(",")}]` : "[?]";
}
