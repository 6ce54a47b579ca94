/**
 * The energy head of a noise-aware (time-conditioned) classifier f(x_t, t), the classic
 * classifier guidance of Dhariwal and Nichol (2021, §4, Alg 1-2): the same energies and
 * objective gradient as lib/energy/head.ts (METHOD.md §3), with the timestep as a second input.
 *
 * Contract: inputs `x` float32 [N,C,H,W] in diffusion space [-1, 1], `t` int64 [N], `y` int64
 * [N], `coef` float32 [N,3], `e_star` float32 [N]; outputs `logits`, `energy_xy`, `energy_x` and
 * `grad` = d/dx sum_n a E(x,y) + b E(x) + c abs(E* - E(x)) (x in [-1, 1]). The classifier's own
 * input range ("pm1" or "01", from its manifest entry) is folded in.
 * @module
 */
import { appendVjp } from "../autodiff/vjp.ts";
import { upgradeOpset } from "../autodiff/opset.ts";
import { foldShapes } from "../autodiff/shape_fold.ts";
import { GraphBuilder } from "../onnx/builder.ts";
import { inlineModel } from "../onnx/compose.ts";
import { DataType, decodeModel, encodeModel, type ModelProto } from "../onnx/proto.ts";
import {
  loadOnnx,
  type OnnxModel,
  type ProviderChoice,
  readModelFile,
  runOnnx,
} from "../runtime/session.ts";
import type { CoefficientsArg, EnergyOutputs } from "./classifier.ts";
import { realInputs } from "./_graph.ts";

/** A classifier that also takes the timestep: energies and gradients at (x_t, t). */
export interface TimedEnergySource {
  /** Number of classes K. */
  readonly numClasses: number;
  /** As EnergySource.fromDiffusionSpace, for n images x_t in [-1, 1] at timestep t. */
  fromDiffusionSpaceAt(
    x: Float32Array,
    n: number,
    t: number,
    y: Int32Array | readonly number[],
    coef: CoefficientsArg,
    eStar?: number | Float32Array | readonly number[],
  ): Promise<EnergyOutputs>;
}

/** Builds the head of a classifier with inputs (x [N,C,H,W], t [N]) -> logits [N,K]. */
export function buildNoiseAwareHead(
  classifier: Uint8Array,
  opts: { range?: "01" | "pm1"; source?: string } = {},
): { model: ModelProto; numClasses: number; shape: [number, number, number] } {
  const src = opts.source ?? "noise-aware classifier";
  const range = opts.range ?? "pm1";
  if (range !== "01" && range !== "pm1") {
    throw new Error(`${src}: range '${range}' is not supported; use "01" or "pm1"`);
  }
  const m = decodeModel(classifier, src);
  const ins = realInputs(m.graph);
  m.graph.input = ins;
  const xIn = ins.find((v) => v.type?.tensor_type?.shape?.dim?.length === 4);
  const tIn = ins.find((v) => v !== xIn);
  const tType = tIn?.type?.tensor_type?.elem_type;
  if (ins.length !== 2 || !xIn || !tIn || (tType !== DataType.INT64 && tType !== DataType.FLOAT)) {
    throw new Error(
      `${src} is not a noise-aware classifier: expected inputs (x float32[N,C,H,W], t int64|` +
        `float32[N]), found ${ins.map((v) => v.name).join(", ")}; train one with ` +
        `weights/recipes/train_noise_aware.py`,
    );
  }
  const dims = xIn.type!.tensor_type!.shape!.dim!.map((d) => Number(d.dim_value ?? 0));
  const [C, H, W] = [dims[1], dims[2], dims[3]];
  const outDims = m.graph.output[0]?.type?.tensor_type?.shape?.dim?.map((d) =>
    Number(d.dim_value ?? 0)
  );
  const K = outDims?.[1] ?? 0;
  if (!(C > 0 && H > 0 && W > 0) || !(K >= 2)) {
    throw new Error(`${src}: needs a fixed [C,H,W] input and [N,K] logits (K >= 2)`);
  }
  const target = Math.max(17, GraphBuilder.fromModel(m).opset);
  upgradeOpset(GraphBuilder.fromModel(m), target);
  const b = new GraphBuilder({ name: "noise_aware_head", opset: 17 });
  upgradeOpset(b, target);
  const x = b.input("x", DataType.FLOAT, ["N", C, H, W]);
  const t = b.input("t", DataType.INT64, ["N"]);
  const y = b.input("y", DataType.INT64, ["N"]);
  const coef = b.input("coef", DataType.FLOAT, ["N", 3]);
  const eStar = b.input("e_star", DataType.FLOAT, ["N"]);
  const xIn01 = range === "pm1"
    ? b.node("Identity", [x])
    : b.node("Add", [b.node("Mul", [x, b.f32("half", 0.5)]), b.f32("half_b", 0.5)]);
  const tFeed = tType === DataType.FLOAT ? b.node("Cast", [t], { to: DataType.FLOAT }) : t;
  const [logits] = inlineModel(b, m, "classifier/", { [xIn.name]: xIn01, [tIn.name]: tFeed });

  // E(x,y) = -f_y, E(x) = -logsumexp f (eq 2.36-2.37; lse read off LogSoftmax as in head.ts)
  const onehot = b.node("OneHot", [y, b.i64("k", K, []), b.f32("onehot_values", [0, 1])], {
    axis: -1,
  });
  const ones = b.f32("ones_k", new Array(K).fill(1), [K, 1]);
  const rowSum = (v: string) => b.node("MatMul", [v, ones]);
  const flat = b.i64("to_vector", [-1]);
  const energyXY = b.node("Reshape", [
    b.node("Neg", [rowSum(b.node("Mul", [onehot, logits]))]),
    flat,
  ]);
  const probs = b.node("Softmax", [logits], { axis: 1 });
  const logProbs = b.node("LogSoftmax", [logits], { axis: 1 });
  const eXCol = b.node("Neg", [rowSum(b.node("Mul", [probs, b.node("Sub", [logits, logProbs])]))]);
  const energyX = b.node("Reshape", [eXCol, flat]);
  // cotangent at the logits: -a onehot(y) + (c sign(E* - E(x)) - b) softmax(f)
  const column = (i: number) =>
    b.node("Gather", [coef, b.i64(`coef_index_${i}`, [i])], { axis: 1 });
  const sign = b.node("Sign", [
    b.node("Sub", [b.node("Reshape", [eStar, b.i64("to_column", [-1, 1])]), eXCol]),
  ]);
  const w = b.node("Sub", [b.node("Mul", [column(2), sign]), column(1)]);
  const cot = b.node("Sub", [b.node("Mul", [w, probs]), b.node("Mul", [column(0), onehot])]);
  foldShapes(b, [logits, energyXY, energyX, cot]);
  let grad: string;
  try {
    grad = appendVjp(b, logits, cot, x);
  } catch (err) {
    throw new Error(`${src}: cannot build the energy gradient: ${(err as Error).message}`, {
      cause: err,
    });
  }
  b.output(logits, DataType.FLOAT, ["N", K], "logits");
  b.output(energyXY, DataType.FLOAT, ["N"], "energy_xy");
  b.output(energyX, DataType.FLOAT, ["N"], "energy_x");
  b.output(grad, DataType.FLOAT, ["N", C, H, W], "grad");
  b.dropUnusedInitializers();
  b.setMetadata("robust_guidance.kind", "noise-aware-energy-head");
  return { model: b.toModel(), numClasses: K, shape: [C, H, W] };
}

/** A loaded noise-aware head (see {@link buildNoiseAwareHead}). Not re-entrant. */
export class NoiseAwareClassifier implements TimedEnergySource {
  /** The ONNX Runtime session. */
  readonly model: OnnxModel;
  /** K. */
  readonly numClasses: number;
  /** [C, H, W]. */
  readonly shape: [number, number, number];
  /** Images per ONNX Runtime call. */
  readonly batch: number;

  /** Wraps a loaded head; prefer {@link loadNoiseAwareClassifier}. */
  constructor(model: OnnxModel, numClasses: number, shape: [number, number, number], batch = 64) {
    this.model = model;
    this.numClasses = numClasses;
    this.shape = shape;
    this.batch = batch;
  }

  /** See {@link TimedEnergySource.fromDiffusionSpaceAt}. */
  async fromDiffusionSpaceAt(
    x: Float32Array,
    n: number,
    t: number,
    y: Int32Array | readonly number[],
    coef: CoefficientsArg,
    eStar?: number | Float32Array | readonly number[],
  ): Promise<EnergyOutputs> {
    const [C, H, W] = this.shape;
    const per = C * H * W, K = this.numClasses;
    if (x.length !== n * per) {
      throw new Error(
        `x holds ${x.length} values; n=${n} images of [${C},${H},${W}] need ${n * per}`,
      );
    }
    if (y.length !== n) throw new Error(`y has ${y.length} labels for n=${n} images`);
    const perImage = coef.length === 3 * n && n > 1;
    const out: EnergyOutputs = {
      logits: new Float32Array(n * K),
      energyXY: new Float32Array(n),
      energyX: new Float32Array(n),
      grad: new Float32Array(n * per),
    };
    for (let s = 0; s < n; s += this.batch) {
      const m = Math.min(this.batch, n - s);
      const c = new Float32Array(m * 3), e = new Float32Array(m);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < 3; j++) c[i * 3 + j] = perImage ? coef[(s + i) * 3 + j] : coef[j];
        e[i] = eStar === undefined ? 0 : typeof eStar === "number" ? eStar : eStar[s + i];
        if (!Number.isInteger(y[s + i]) || y[s + i] < 0 || y[s + i] >= K) {
          throw new Error(`label y[${s + i}] = ${y[s + i]} is not a class index in [0, ${K - 1}]`);
        }
      }
      const res = await runOnnx(this.model, {
        x: { data: x.subarray(s * per, (s + m) * per), dims: [m, C, H, W] },
        t: { data: new BigInt64Array(m).fill(BigInt(t)), dims: [m] },
        y: { data: BigInt64Array.from({ length: m }, (_, i) => BigInt(y[s + i])), dims: [m] },
        coef: { data: c, dims: [m, 3] },
        e_star: { data: e, dims: [m] },
      });
      out.logits.set(res.logits.data as Float32Array, s * K);
      out.energyXY.set(res.energy_xy.data as Float32Array, s);
      out.energyX.set(res.energy_x.data as Float32Array, s);
      out.grad.set(res.grad.data as Float32Array, s * per);
    }
    return out;
  }

  /** Releases the ONNX Runtime session. */
  async release(): Promise<void> {
    await this.model.session.release();
  }
}

/** Loads a noise-aware classifier (path or bytes) as a {@link NoiseAwareClassifier}. */
export async function loadNoiseAwareClassifier(
  src: string | Uint8Array,
  opts: {
    range?: "01" | "pm1";
    provider?: ProviderChoice;
    batch?: number;
    /** Name for a model given as bytes (its path or manifest id), used in errors; default "<bytes>". */
    source?: string;
  } = {},
): Promise<NoiseAwareClassifier> {
  const source = typeof src === "string" ? src : opts.source ?? "<bytes>";
  const bytes = typeof src === "string" ? await readModelFile(src) : src;
  const head = buildNoiseAwareHead(bytes, { range: opts.range, source });
  const model = await loadOnnx(encodeModel(head.model), {
    provider: opts.provider,
    allowSpinning: false,
    source,
  });
  return new NoiseAwareClassifier(model, head.numClasses, head.shape, opts.batch ?? 64);
}
