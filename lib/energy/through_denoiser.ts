/**
 * Gradients through the denoiser: one ONNX graph
 *   x_t -> denoiser -> x0_hat(x_t) -> (x0_hat + 1) / 2 -> classifier -> energies,
 * differentiated by lib/autodiff with respect to x_t, so that guidance methods that evaluate the
 * classifier at the predicted clean image and back-propagate through the network (DPS, Chung et
 * al. 2023; FreeDoM, Yu et al. 2023; Universal Guidance, Bansal et al. 2023; TFG, Ye et al. 2024)
 * run in ONNX Runtime like the energy head (lib/energy/head.ts) does for the thesis's method.
 *
 * x0_hat follows the model's parameterisation (METHOD.md §2; lib/models/parameterisation.ts):
 * epsilon: x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); sample: the output itself;
 * v_prediction: x0_hat = sqrt(abar_t) x_t - sqrt(1 - abar_t) v. x0_hat is not clipped (the
 * papers differentiate the unclipped prediction; clipping would zero the gradient where it acts).
 *
 * Contract (exact names):
 *
 * | name | type | meaning |
 * | --- | --- | --- |
 * | in `x_t` | float32 [N,C,H,W] | noisy images in [-1, 1] space |
 * | in `t` | int64 [N] | timestep per image |
 * | in `sqrt_abar` | float32 [N] | sqrt(abar_t) per image |
 * | in `sqrt_one_minus_abar` | float32 [N] | sqrt(1 - abar_t) per image |
 * | in `y` | int64 [N] | class per image |
 * | in `coef` | float32 [N,3] | (a, b, c) per image |
 * | in `e_star` | float32 [N] | E* per image (the dual term) |
 * | in `x0_offset` | float32 [N,C,H,W] | only with `offsetInput`: added to x0_hat before the classifier |
 * | out `eps` | float32 [N,C,H,W] | eps_hat(x_t, t) (converted from the model's prediction) |
 * | out `x0_hat` | float32 [N,C,H,W] | x0_hat(x_t, t), unclipped |
 * | out `logits` | float32 [N,K] | f((x0_hat + offset + 1) / 2) (offset 0 without `x0_offset`) |
 * | out `energy_xy`, `energy_x` | float32 [N] | E(x0_hat, y), E(x0_hat) (eq 2.36-2.37) |
 * | out `grad` | float32 [N,C,H,W] | d/dx_t sum_n a E(x0_hat,y) + b E(x0_hat) + c abs(E* - E(x0_hat)) |
 * @module
 */
import { appendVjp } from "../autodiff/vjp.ts";
import { upgradeOpset } from "../autodiff/opset.ts";
import { foldShapes } from "../autodiff/shape_fold.ts";
import { GraphBuilder } from "../onnx/builder.ts";
import { inlineModel } from "../onnx/compose.ts";
import { DataType, decodeModel, encodeModel, type ModelProto } from "../onnx/proto.ts";
import {
  type Feed,
  loadOnnx,
  type OnnxModel,
  type ProviderChoice,
  runOnnx,
  sha256Hex,
} from "../runtime/session.ts";
import type { CoefficientsArg, EnergyOutputs } from "./classifier.ts";
import { buildEnergyHead, HEAD_NAMES } from "./head.ts";
import type { InputConventions } from "./conventions.ts";
import type { ResizeOptions } from "./resize.ts";
import { realInputs } from "./_graph.ts";

/** Names of the composed graph's inputs and outputs (see the module doc). */
export const THROUGH_NAMES = {
  xt: "x_t",
  t: "t",
  sqrtAbar: "sqrt_abar",
  sqrtOneMinusAbar: "sqrt_one_minus_abar",
  y: "y",
  coef: "coef",
  eStar: "e_star",
  x0Offset: "x0_offset",
  eps: "eps",
  x0: "x0_hat",
  logits: "logits",
  energyXY: "energy_xy",
  energyX: "energy_x",
  grad: "grad",
} as const;

/** What the denoiser's first C output channels are (diffusers' `prediction_type`). */
export type ThroughPrediction = "epsilon" | "sample" | "v_prediction";

/** Options of {@link buildThroughDenoiser}. */
export interface ThroughDenoiserOptions extends ResizeOptions {
  /** The classifier's input conventions (as for an energy head). */
  conventions?: InputConventions;
  /** Logits output of a classifier with several outputs. */
  output?: string;
  /** The denoiser's parameterisation (default "epsilon"). */
  prediction?: ThroughPrediction;
  /** The denoiser outputs 2C channels (learned variance); only the first C are used. */
  learnedVariance?: boolean;
  /** Names the denoiser in errors. */
  denoiserSource?: string;
  /** Names the classifier in errors. */
  classifierSource?: string;
  /**
   * Add the input `x0_offset`, added to x0_hat before the classifier (the Gaussian smoothing
   * draw sigma z of TFG's implicit dynamics, lib/guidance/methods/core.ts); the gradient is
   * still taken with respect to x_t.
   */
  offsetInput?: boolean;
}

/** What a composed graph records about itself. */
export interface ThroughInfo {
  /** K, the number of classes. */
  numClasses: number;
  /** [C, H, W] of x_t. */
  inputShape: [number, number, number];
  /** sha256 of the denoiser's and the classifier's ONNX bytes. */
  denoiserSha256: string;
  /** sha256 of the classifier's ONNX bytes. */
  classifierSha256: string;
  /** The denoiser's parameterisation. */
  prediction: ThroughPrediction;
  /** Whether the graph has the `x0_offset` input. */
  offsetInput: boolean;
}

/**
 * Composes `denoiser` (eps/x0/v-prediction ONNX, inputs x [N,C,H,W] and t [N]) and `classifier`
 * (any classifier an energy head accepts) into one graph with the gradient of the weighted
 * energy objective at x0_hat with respect to x_t (contract in the module doc). Throws naming the
 * op when the autodiff lacks a rule on the path.
 */
export function buildThroughDenoiser(
  denoiser: Uint8Array,
  classifier: Uint8Array,
  opts: ThroughDenoiserOptions = {},
): { model: ModelProto; info: ThroughInfo } {
  const dSrc = opts.denoiserSource ?? "denoiser";
  const cSrc = opts.classifierSource ?? "classifier";
  const prediction = opts.prediction ?? "epsilon";
  const head = buildEnergyHead(classifier, {
    ...(opts.conventions ?? {}),
    output: opts.output,
    gradient: false,
    source: cSrc,
    imageSize: opts.imageSize,
    inputSize: opts.inputSize,
    imagesFrom: opts.imagesFrom,
  });
  const K = head.info.numClasses;
  const b = new GraphBuilder({ name: "through_denoiser", opset: 17 });
  const d = inlineDenoiser(b, denoiser, prediction, !!opts.learnedVariance, dSrc, [head.model]);
  const [C, H, W] = d.shape;
  const [hc, hh, hw] = head.info.inputShape;
  if (C !== hc || H !== hh || W !== hw) {
    throw new Error(
      `${dSrc} makes [${C},${H},${W}] images but ${cSrc} takes [${hc},${hh},${hw}]; pair models ` +
        `of the same image shape`,
    );
  }
  const N = THROUGH_NAMES;
  const { xt, eps, x0 } = d;
  const y = b.input(N.y, DataType.INT64, ["N"]);
  const coef = b.input(N.coef, DataType.FLOAT, ["N", 3]);
  const eStar = b.input(N.eStar, DataType.FLOAT, ["N"]);
  const x0In = opts.offsetInput
    ? b.node("Add", [x0, b.input(N.x0Offset, DataType.FLOAT, ["N", C, H, W])])
    : x0;
  const x01 = b.node("Add", [b.node("Mul", [x0In, b.f32("half", 0.5)]), b.f32("half_b", 0.5)]);
  const [logits, energyXY, energyX] = inlineModel(b, head.model, "classifier/", {
    [HEAD_NAMES.x]: x01,
    [HEAD_NAMES.y]: y,
  });

  // Cotangent at the logits of sum a E(x,y) + b E(x) + c |E* - E(x)| (as lib/energy/head.ts):
  // -a onehot(y) + (c sign(E* - E(x)) - b) softmax(f).
  const onehot = b.node(
    "OneHot",
    [y, b.i64("num_classes", K, []), b.f32("onehot_values", [0, 1])],
    {
      axis: -1,
    },
  );
  const probs = b.node("Softmax", [logits], { axis: 1 });
  const column = (i: number) =>
    b.node("Gather", [coef, b.i64(`coef_index_${i}`, [i])], { axis: 1 });
  const toCol = b.i64("to_column", [-1, 1]);
  const sign = b.node("Sign", [
    b.node("Sub", [b.node("Reshape", [eStar, toCol]), b.node("Reshape", [energyX, toCol])]),
  ]);
  const w = b.node("Sub", [b.node("Mul", [column(2), sign]), column(1)]);
  const cot = b.node("Sub", [b.node("Mul", [w, probs]), b.node("Mul", [column(0), onehot])]);
  let grad: string;
  try {
    // Shapes known before differentiation (the UNet's Shape -> ... -> Reshape sub-graphs).
    foldShapes(b, [eps, x0, logits, energyXY, energyX, cot]);
    grad = appendVjp(b, logits, cot, xt);
  } catch (err) {
    throw new Error(
      `cannot differentiate through ${dSrc} and ${cSrc}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  b.output(eps, DataType.FLOAT, ["N", C, H, W], N.eps);
  b.output(x0, DataType.FLOAT, ["N", C, H, W], N.x0);
  b.output(logits, DataType.FLOAT, ["N", K], N.logits);
  b.output(energyXY, DataType.FLOAT, ["N"], N.energyXY);
  b.output(energyX, DataType.FLOAT, ["N"], N.energyX);
  b.output(grad, DataType.FLOAT, ["N", C, H, W], N.grad);
  b.dropUnusedInitializers();
  const info: ThroughInfo = {
    numClasses: K,
    inputShape: [C, H, W],
    denoiserSha256: sha256Hex(denoiser),
    classifierSha256: sha256Hex(classifier),
    prediction,
    offsetInput: !!opts.offsetInput,
  };
  b.setMetadata("robust_guidance.kind", "through-denoiser");
  b.setMetadata("robust_guidance.through_info", JSON.stringify(info));
  return { model: b.toModel(), info };
}

/** The denoiser part shared by both graphs: inputs x_t, t, sqrt_abar, sqrt_one_minus_abar. */
interface InlinedDenoiser {
  xt: string;
  eps: string;
  x0: string;
  shape: [number, number, number];
}

/**
 * Adds the inputs x_t, t, sqrt_abar, sqrt_one_minus_abar to `b` (an empty graph), raises
 * `others` (models inlined later) and the denoiser to one opset (>= 17, the backward pass's),
 * inlines the denoiser under "denoiser/" and appends eps_hat and x0_hat of its prediction.
 */
function inlineDenoiser(
  b: GraphBuilder,
  denoiser: Uint8Array,
  prediction: ThroughPrediction,
  learnedVariance: boolean,
  dSrc: string,
  others: ModelProto[],
): InlinedDenoiser {
  if (!["epsilon", "sample", "v_prediction"].includes(prediction)) {
    throw new Error(
      `prediction '${prediction}' is not supported; use epsilon, sample or v_prediction`,
    );
  }
  const den = decodeModel(denoiser, dSrc);
  const dIn = realInputs(den.graph);
  den.graph.input = dIn;
  const xIn = dIn.find((v) => v.type?.tensor_type?.shape?.dim?.length === 4);
  const tIn = dIn.find((v) => v !== xIn);
  const tType = tIn?.type?.tensor_type?.elem_type;
  if (
    dIn.length !== 2 || !xIn || !tIn || (tType !== DataType.INT64 && tType !== DataType.FLOAT)
  ) {
    throw new Error(
      `${dSrc} is not a denoiser: expected inputs (x float32[N,C,H,W], t int64|float32[N]), found ` +
        dIn.map((v) => v.name).join(", ") +
        `; convert diffusers UNets with weights/recipes/export_diffusers_unet.py`,
    );
  }
  const dims = xIn.type!.tensor_type!.shape!.dim!.map((d) => Number(d.dim_value ?? 0));
  const [C, H, W] = [dims[1], dims[2], dims[3]];
  if (!(C > 0 && H > 0 && W > 0)) {
    throw new Error(`${dSrc}: image input '${xIn.name}' has no fixed [C,H,W]; export it with one`);
  }
  // One opset for every part and the glue (the backward pass needs >= 17 anyway).
  const parts = [den, ...others];
  const target = Math.max(17, ...parts.map((m) => GraphBuilder.fromModel(m).opset));
  for (const m of parts) upgradeOpset(GraphBuilder.fromModel(m), target);
  upgradeOpset(b, target);

  const N = THROUGH_NAMES;
  const xt = b.input(N.xt, DataType.FLOAT, ["N", C, H, W]);
  const t = b.input(N.t, DataType.INT64, ["N"]);
  const sa = b.input(N.sqrtAbar, DataType.FLOAT, ["N"]);
  const s1a = b.input(N.sqrtOneMinusAbar, DataType.FLOAT, ["N"]);
  const tFeed = tType === DataType.FLOAT ? b.node("Cast", [t], { to: DataType.FLOAT }) : t;
  const [out] = inlineModel(b, den, "denoiser/", { [xIn.name]: xt, [tIn.name]: tFeed });
  const first = learnedVariance
    ? b.node("Slice", [out, b.i64("first_c", [0]), b.i64("c", [C]), b.i64("axis1", [1])])
    : out;
  const col = b.i64("per_image", [-1, 1, 1, 1]);
  const a4 = b.node("Reshape", [sa, col]), s4 = b.node("Reshape", [s1a, col]);
  // METHOD.md §2 and lib/models/parameterisation.ts: eps_hat and x0_hat of the prediction.
  let eps: string, x0: string;
  if (prediction === "epsilon") {
    eps = first;
    x0 = b.node("Div", [b.node("Sub", [xt, b.node("Mul", [s4, eps])]), a4]);
  } else if (prediction === "sample") {
    x0 = first;
    eps = b.node("Div", [b.node("Sub", [xt, b.node("Mul", [a4, x0])]), s4]);
  } else {
    x0 = b.node("Sub", [b.node("Mul", [a4, xt]), b.node("Mul", [s4, first])]);
    eps = b.node("Add", [b.node("Mul", [s4, xt]), b.node("Mul", [a4, first])]);
  }
  return { xt, eps, x0, shape: [C, H, W] };
}

/** Everything one call returns: energies at x0_hat, eps_hat, x0_hat and the gradient at x_t. */
export interface ThroughOutputs extends EnergyOutputs {
  /** eps_hat(x_t, t), [n, C, H, W]. */
  eps: Float32Array;
  /** x0_hat(x_t, t), unclipped, [n, C, H, W]. */
  x0: Float32Array;
}

/** Options of {@link loadThroughDenoiser}. */
export interface LoadThroughOptions extends ThroughDenoiserOptions {
  /** Execution provider (default "auto"). */
  provider?: ProviderChoice;
  /** Images per ONNX Runtime call (default 16). */
  batch?: number;
  /** ONNX Runtime intra-op threads. */
  intraOpThreads?: number;
}

/**
 * A loaded composed graph: energies of the classifier at x0_hat(x_t) and their gradient with
 * respect to x_t through the denoiser. Not re-entrant: await one call before the next.
 */
export class ThroughDenoiser {
  /** What the graph records about itself. */
  readonly info: ThroughInfo;
  /** The ONNX Runtime session. */
  readonly model: OnnxModel;
  /** Images per ONNX Runtime call. */
  readonly batch: number;

  /** Wraps a loaded composed graph; prefer {@link loadThroughDenoiser}. */
  constructor(model: OnnxModel, info: ThroughInfo, batch = 16) {
    if (!Number.isInteger(batch) || batch < 1) {
      throw new Error(`batch must be a positive integer, got ${batch}`);
    }
    this.model = model;
    this.info = info;
    this.batch = batch;
  }

  /** K, the number of classes. */
  get numClasses(): number {
    return this.info.numClasses;
  }

  /**
   * For n images x_t at timestep t (abar = abar_t): eps_hat, x0_hat, the energies at x0_hat and
   * d/dx_t of sum a E(x0_hat,y) + b E(x0_hat) + c |E* - E(x0_hat)| (coef (a,b,c) for all
   * images or per image). `offset` ([n, C, H, W]) is added to x0_hat before the classifier; it
   * needs a graph built with `offsetInput` (zeros when omitted).
   */
  async run(
    x: Float32Array,
    n: number,
    t: number,
    abar: number,
    y: Int32Array | readonly number[],
    coef: CoefficientsArg,
    eStar?: number | Float32Array | readonly number[],
    offset?: Float32Array,
  ): Promise<ThroughOutputs> {
    const [C, H, W] = this.info.inputShape;
    const per = C * H * W, K = this.numClasses;
    if (offset !== undefined && (!this.info.offsetInput || offset.length !== n * per)) {
      throw new Error(
        this.info.offsetInput
          ? `x0 offset holds ${offset.length} values; n=${n} images need ${n * per}`
          : "this graph has no x0_offset input; build it with offsetInput: true",
      );
    }
    if (!Number.isInteger(n) || n < 1 || x.length !== n * per) {
      throw new Error(
        `x_t holds ${x.length} values; n=${n} images of [${C},${H},${W}] need ${n * per}`,
      );
    }
    if (!(abar > 0 && abar <= 1)) throw new Error(`abar_t = ${abar} is outside (0, 1]`);
    if (y.length !== n) throw new Error(`y has ${y.length} labels for n=${n} images`);
    for (let i = 0; i < n; i++) {
      if (!Number.isInteger(y[i]) || y[i] < 0 || y[i] >= K) {
        throw new Error(`label y[${i}] = ${y[i]} is not a class index in [0, ${K - 1}]`);
      }
    }
    const perImageCoef = coef.length === 3 * n && n > 1;
    if (!perImageCoef && coef.length !== 3) {
      throw new Error(`coef has ${coef.length} values; pass one triple or ${n} triples`);
    }
    const out: ThroughOutputs = {
      eps: new Float32Array(n * per),
      x0: new Float32Array(n * per),
      grad: new Float32Array(n * per),
      logits: new Float32Array(n * K),
      energyXY: new Float32Array(n),
      energyX: new Float32Array(n),
    };
    const sa = Math.fround(Math.sqrt(abar)), s1a = Math.fround(Math.sqrt(1 - abar));
    for (let s = 0; s < n; s += this.batch) {
      const m = Math.min(this.batch, n - s);
      const c = new Float32Array(m * 3);
      const e = new Float32Array(m);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < 3; j++) c[i * 3 + j] = perImageCoef ? coef[(s + i) * 3 + j] : coef[j];
        e[i] = eStar === undefined ? 0 : typeof eStar === "number" ? eStar : eStar[s + i];
      }
      const feeds: Record<string, Feed> = {
        [THROUGH_NAMES.xt]: { data: x.subarray(s * per, (s + m) * per), dims: [m, C, H, W] },
        [THROUGH_NAMES.t]: { data: new BigInt64Array(m).fill(BigInt(t)), dims: [m] },
        [THROUGH_NAMES.sqrtAbar]: { data: new Float32Array(m).fill(sa), dims: [m] },
        [THROUGH_NAMES.sqrtOneMinusAbar]: { data: new Float32Array(m).fill(s1a), dims: [m] },
        [THROUGH_NAMES.y]: {
          data: BigInt64Array.from({ length: m }, (_, i) => BigInt(y[s + i])),
          dims: [m],
        },
        [THROUGH_NAMES.coef]: { data: c, dims: [m, 3] },
        [THROUGH_NAMES.eStar]: { data: e, dims: [m] },
      };
      if (this.info.offsetInput) {
        feeds[THROUGH_NAMES.x0Offset] = {
          data: offset ? offset.subarray(s * per, (s + m) * per) : new Float32Array(m * per),
          dims: [m, C, H, W],
        };
      }
      const res = await runOnnx(this.model, feeds);
      const get = (k: string) => res[k].data as Float32Array;
      out.eps.set(get(THROUGH_NAMES.eps), s * per);
      out.x0.set(get(THROUGH_NAMES.x0), s * per);
      out.grad.set(get(THROUGH_NAMES.grad), s * per);
      out.logits.set(get(THROUGH_NAMES.logits), s * K);
      out.energyXY.set(get(THROUGH_NAMES.energyXY), s);
      out.energyX.set(get(THROUGH_NAMES.energyX), s);
    }
    return out;
  }

  /** Releases the ONNX Runtime session. */
  async release(): Promise<void> {
    await this.model.session.release();
  }
}

/** Composes (see {@link buildThroughDenoiser}) and loads the graph in ONNX Runtime. */
export async function loadThroughDenoiser(
  denoiser: Uint8Array,
  classifier: Uint8Array,
  opts: LoadThroughOptions = {},
): Promise<ThroughDenoiser> {
  const { model, info } = buildThroughDenoiser(denoiser, classifier, opts);
  const session = await loadOnnx(encodeModel(model), {
    provider: opts.provider,
    intraOpThreads: opts.intraOpThreads,
    allowSpinning: false,
    source: `${opts.denoiserSource ?? "denoiser"} -> ${opts.classifierSource ?? "classifier"}`,
  });
  return new ThroughDenoiser(session, info, opts.batch ?? 16);
}

/** Names of the pull-back graph's own input and output (besides x_t, t and the abar terms). */
export const PULLBACK_NAMES = { cotangent: "cot_x0", grad: "grad" } as const;

/**
 * The pull-back graph of a denoiser: inputs x_t, t, sqrt_abar, sqrt_one_minus_abar (as
 * {@link buildThroughDenoiser}) and `cot_x0` float32 [N,C,H,W]; outputs eps, x0_hat and
 * grad = (d x0_hat / d x_t)^T cot_x0, the vector-Jacobian product through the network. A method
 * that has the gradient of any objective at x0_hat (from any classifier, smoothed or not) gets
 * its gradient at x_t from this graph: d L(x0_hat(x_t)) / d x_t = J^T grad_x0 L.
 */
export function buildDenoiserPullback(
  denoiser: Uint8Array,
  opts: Pick<ThroughDenoiserOptions, "prediction" | "learnedVariance" | "denoiserSource"> = {},
): { model: ModelProto; shape: [number, number, number] } {
  const dSrc = opts.denoiserSource ?? "denoiser";
  const b = new GraphBuilder({ name: "denoiser_pullback", opset: 17 });
  const d = inlineDenoiser(
    b,
    denoiser,
    opts.prediction ?? "epsilon",
    !!opts.learnedVariance,
    dSrc,
    [],
  );
  const [C, H, W] = d.shape;
  const cot = b.input(PULLBACK_NAMES.cotangent, DataType.FLOAT, ["N", C, H, W]);
  let grad: string;
  try {
    foldShapes(b, [d.eps, d.x0, cot]);
    grad = appendVjp(b, d.x0, cot, d.xt);
  } catch (err) {
    throw new Error(`cannot differentiate through ${dSrc}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  b.output(d.eps, DataType.FLOAT, ["N", C, H, W], THROUGH_NAMES.eps);
  b.output(d.x0, DataType.FLOAT, ["N", C, H, W], THROUGH_NAMES.x0);
  b.output(grad, DataType.FLOAT, ["N", C, H, W], PULLBACK_NAMES.grad);
  b.dropUnusedInitializers();
  b.setMetadata("robust_guidance.kind", "denoiser-pullback");
  b.setMetadata("robust_guidance.denoiser_sha256", sha256Hex(denoiser));
  return { model: b.toModel(), shape: [C, H, W] };
}

/** eps_hat, x0_hat and a cotangent pulled back to x_t. */
export interface PullbackOutputs {
  /** eps_hat(x_t, t), [n, C, H, W]. */
  eps: Float32Array;
  /** x0_hat(x_t, t), unclipped, [n, C, H, W]. */
  x0: Float32Array;
  /** (d x0_hat / d x_t)^T cot, [n, C, H, W]. */
  grad: Float32Array;
}

/** What guidance methods need to back-propagate through the denoiser (tests pass exact ones). */
export interface DenoiserPullback {
  /** For n images x_t at timestep t (abar = abar_t): eps, x0_hat and J^T cot. */
  pullback(
    x: Float32Array,
    n: number,
    t: number,
    abar: number,
    cot: Float32Array,
  ): Promise<PullbackOutputs>;
}

/** A loaded pull-back graph (see {@link buildDenoiserPullback}). Not re-entrant. */
export class OnnxDenoiserPullback implements DenoiserPullback {
  /** The ONNX Runtime session. */
  readonly model: OnnxModel;
  /** [C, H, W] of x_t. */
  readonly shape: [number, number, number];
  /** Images per ONNX Runtime call. */
  readonly batch: number;

  /** Wraps a loaded pull-back graph; prefer {@link loadDenoiserPullback}. */
  constructor(model: OnnxModel, shape: [number, number, number], batch = 16) {
    this.model = model;
    this.shape = shape;
    this.batch = batch;
  }

  /** See {@link DenoiserPullback.pullback}. */
  async pullback(
    x: Float32Array,
    n: number,
    t: number,
    abar: number,
    cot: Float32Array,
  ): Promise<PullbackOutputs> {
    const [C, H, W] = this.shape;
    const per = C * H * W;
    if (x.length !== n * per || cot.length !== n * per) {
      throw new Error(
        `x_t (${x.length}) and cot_x0 (${cot.length}) must each hold n=${n} images of [${C},${H},${W}]`,
      );
    }
    if (!(abar > 0 && abar <= 1)) throw new Error(`abar_t = ${abar} is outside (0, 1]`);
    const out: PullbackOutputs = {
      eps: new Float32Array(n * per),
      x0: new Float32Array(n * per),
      grad: new Float32Array(n * per),
    };
    const sa = Math.fround(Math.sqrt(abar)), s1a = Math.fround(Math.sqrt(1 - abar));
    for (let s = 0; s < n; s += this.batch) {
      const m = Math.min(this.batch, n - s);
      const res = await runOnnx(this.model, {
        [THROUGH_NAMES.xt]: { data: x.subarray(s * per, (s + m) * per), dims: [m, C, H, W] },
        [THROUGH_NAMES.t]: { data: new BigInt64Array(m).fill(BigInt(t)), dims: [m] },
        [THROUGH_NAMES.sqrtAbar]: { data: new Float32Array(m).fill(sa), dims: [m] },
        [THROUGH_NAMES.sqrtOneMinusAbar]: { data: new Float32Array(m).fill(s1a), dims: [m] },
        [PULLBACK_NAMES.cotangent]: {
          data: cot.subarray(s * per, (s + m) * per),
          dims: [m, C, H, W],
        },
      });
      out.eps.set(res[THROUGH_NAMES.eps].data as Float32Array, s * per);
      out.x0.set(res[THROUGH_NAMES.x0].data as Float32Array, s * per);
      out.grad.set(res[PULLBACK_NAMES.grad].data as Float32Array, s * per);
    }
    return out;
  }

  /** Releases the ONNX Runtime session. */
  async release(): Promise<void> {
    await this.model.session.release();
  }
}

/** Builds (see {@link buildDenoiserPullback}) and loads a denoiser's pull-back graph. */
export async function loadDenoiserPullback(
  denoiser: Uint8Array,
  opts: Pick<
    LoadThroughOptions,
    "prediction" | "learnedVariance" | "denoiserSource" | "provider" | "batch" | "intraOpThreads"
  > = {},
): Promise<OnnxDenoiserPullback> {
  const { model, shape } = buildDenoiserPullback(denoiser, opts);
  const session = await loadOnnx(encodeModel(model), {
    provider: opts.provider,
    intraOpThreads: opts.intraOpThreads,
    allowSpinning: false,
    source: `${opts.denoiserSource ?? "denoiser"} (pull-back)`,
  });
  return new OnnxDenoiserPullback(session, shape, opts.batch ?? 16);
}
