/**
 * The classifier adapter: an energy head (or a raw classifier, compiled into one in memory)
 * behind one call that takes images and returns logits, the JEM energies and the gradient of a
 * weighted energy objective (METHOD.md §3-4). Guidance code calls {@link EnergyClassifier.fromDiffusionSpace}
 * with diffusion-space images in [-1, 1] and never sees a normalisation, layout or batch limit.
 * @module
 */
import { decodeModel, encodeModel } from "../onnx/proto.ts";
import { RandomStream } from "../random.ts";
import { probabilityProblem } from "./check.ts";
import {
  type Feed,
  loadOnnx,
  type OnnxModel,
  type ProviderChoice,
  readModelFile,
  runOnnx,
} from "../runtime/session.ts";
import {
  buildEnergyHead,
  HEAD_NAMES,
  type HeadInfo,
  type InputConventions,
  readHeadInfo,
} from "./head.ts";

/** Objective weights (a, b, c) of a E(x,y) + b E(x) + c abs(E* - E(x)), the head's `coef`. */
export type Coefficients = readonly [number, number, number];

/** The named objectives of METHOD.md §4 as head coefficients. */
export const OBJECTIVES = {
  /** -log p(y|x) = E(x,y) - E(x) (eq 2.38); its negative gradient is `logp` guidance (Alg 6). */
  crossEntropy: [1, -1, 0] as Coefficients,
  /** E(x,y) alone; its negative gradient is `joint` guidance (§4.6). */
  joint: [1, 0, 0] as Coefficients,
  /** E(x,y) + lambda abs(E*_y - E(x)) (§4.8, eq 4.5-4.6); thesis lambda = 0.15. */
  dual: (lambda: number): Coefficients => [1, 0, lambda],
} as const;

/** Logits and energies of a batch (row-major, n rows). */
export interface ForwardOutputs {
  /** f(x), [n, K]. */
  logits: Float32Array;
  /** E(x,y) = -f(x)[y], [n]. */
  energyXY: Float32Array;
  /** E(x) = -logsumexp f(x), [n]. */
  energyX: Float32Array;
}

/** {@link ForwardOutputs} plus the objective's gradient with respect to the input images. */
export interface EnergyOutputs extends ForwardOutputs {
  /** d/dx of sum_n a E(x_n,y_n) + b E(x_n) + c abs(E*_n - E(x_n)), [n, C, H, W]. */
  grad: Float32Array;
}

/** Options of {@link loadEnergyClassifier}. */
export interface LoadEnergyClassifierOptions {
  /**
   * Input conventions of a raw classifier (required for one, even if `{}`: no silent
   * defaults); must match the stored ones when the model is already a head.
   */
  conventions?: InputConventions;
  /** Logits output of a raw classifier with several outputs. */
  output?: string;
  /** Execution provider (default "auto": CUDA when installed, else CPU, reported). */
  provider?: ProviderChoice;
  /** Images per ONNX Runtime call (default 64); any n is split into chunks of this size. */
  batch?: number;
  /** ONNX Runtime intra-op threads (default: its own choice, all cores). */
  intraOpThreads?: number;
  /**
   * Let ORT's idle intra-op workers spin (default false). Guidance runs the head between denoiser
   * calls; spinning workers would take the cores from the next denoiser run (bench/NOTES.md:
   * guided step 0.8x PyTorch with spinning, 1.2-2.3x without). Pass true when the head runs alone
   * in a tight loop (PGD attacks, say) and every ms of its own latency counts.
   */
  allowSpinning?: boolean;
  /**
   * [h, w] of the images the classifier will see (the denoiser's). A raw classifier of another
   * input size needs `inputSize` (a bilinear resize goes in front, lib/energy/resize.ts); without
   * it, or for a head compiled for another size, loading fails naming both sizes.
   */
  imageSize?: readonly [number, number];
  /** [H, W] to feed a raw classifier (--input-size): the resize target; fixes symbolic H, W. */
  inputSize?: readonly [number, number];
  /**
   * Receives what compiling a raw classifier did that the user should know (HeadInfo.notes:
   * logits read from before a final softmax, float16 widened to float32). Default: printed on
   * stderr, prefixed with the source.
   */
  onNote?: (note: string) => void;
  /** Who makes the images, for the size errors (e.g. "the denoiser ddpm-cifar10-small"). */
  imagesFrom?: string;
  /** Names the model in errors and notes when it is given as bytes (a path names itself). */
  source?: string;
}

/** Per-call coefficients: one triple for every image, or n triples flattened ([n, 3]). */
export type CoefficientsArg = Coefficients | Float32Array | readonly number[];

/**
 * A loaded energy head. Create with {@link loadEnergyClassifier}. Methods are not re-entrant
 * (input buffers are reused between calls): await one call before the next.
 */
export class EnergyClassifier {
  /** What the head says about itself (K, C/H/W, conventions, source sha256). */
  readonly info: HeadInfo;
  /** The ONNX Runtime session and its provider. */
  readonly model: OnnxModel;
  /** Images per ONNX Runtime call. */
  readonly batch: number;
  private yBuf: BigInt64Array;
  private coefBuf: Float32Array;
  private eStarBuf: Float32Array;
  private x01Buf = new Float32Array(0);

  /** Wraps a loaded head; prefer {@link loadEnergyClassifier}. */
  constructor(model: OnnxModel, info: HeadInfo, batch = 64) {
    if (!Number.isInteger(batch) || batch < 1) {
      throw new Error(`batch must be a positive integer, got ${batch}`);
    }
    this.model = model;
    this.info = info;
    this.batch = batch;
    this.yBuf = new BigInt64Array(batch);
    this.coefBuf = new Float32Array(batch * 3);
    this.eStarBuf = new Float32Array(batch);
  }

  /** K, the number of classes. */
  get numClasses(): number {
    return this.info.numClasses;
  }

  /** C * H * W, the values of one image. */
  get imageSize(): number {
    const [c, h, w] = this.info.inputShape;
    return c * h * w;
  }

  /**
   * Logits, energies and the objective's gradient for `n` images `x01` in [0, 1], [n, C, H, W].
   * `coef` = (a, b, c) for all images or per image ([n, 3]); `eStar` (per image or one number)
   * is needed only when some c != 0. The gradient is with respect to x01.
   */
  async energies(
    x01: Float32Array,
    n: number,
    y: Int32Array | readonly number[],
    coef: CoefficientsArg,
    eStar?: number | Float32Array | readonly number[],
  ): Promise<EnergyOutputs> {
    if (!this.info.gradient) {
      throw new Error(
        `${this.model.source} is a forward-only energy head (no 'grad' output); compile it ` +
          `with gradient: true (the default) to get gradients, or call forward()`,
      );
    }
    this.checkImages(x01, n);
    this.checkLabels(y, n);
    const perImage = checkCoefficients(coef, n);
    const hasDual = perImage
      ? coef.some((v, i) => i % 3 === 2 && v !== 0)
      : (coef as Coefficients)[2] !== 0;
    if (hasDual && eStar === undefined) {
      throw new Error(
        `coef has c != 0 (the abs(E* - E(x)) term) but no eStar was given; pass eStar`,
      );
    }
    if (eStar !== undefined && typeof eStar !== "number" && eStar.length !== n) {
      throw new Error(
        `eStar has ${eStar.length} values for n=${n} images; pass one per image or a number`,
      );
    }
    const out = this.allocate(n, true) as EnergyOutputs;
    for (let s = 0; s < n; s += this.batch) {
      const m = Math.min(this.batch, n - s);
      for (let i = 0; i < m; i++) {
        this.yBuf[i] = BigInt(y[s + i]);
        for (let j = 0; j < 3; j++) {
          this.coefBuf[i * 3 + j] = perImage ? coef[(s + i) * 3 + j] : coef[j];
        }
        this.eStarBuf[i] = eStar === undefined
          ? 0
          : typeof eStar === "number"
          ? eStar
          : eStar[s + i];
      }
      const res = await runOnnx(this.model, {
        ...this.imageFeeds(x01, s, m),
        [HEAD_NAMES.coef]: { data: this.coefBuf.subarray(0, m * 3), dims: [m, 3] },
        [HEAD_NAMES.eStar]: { data: this.eStarBuf.subarray(0, m), dims: [m] },
      });
      this.collect(out, res, s);
      out.grad.set(res[HEAD_NAMES.grad].data as Float32Array, s * this.imageSize);
    }
    return out;
  }

  /**
   * As {@link energies} for diffusion-space images x in [-1, 1]: evaluates at x01 = (x + 1) / 2
   * and returns the gradient with respect to x, i.e. the [0, 1] gradient times 1/2 (chain rule).
   */
  async fromDiffusionSpace(
    x: Float32Array,
    n: number,
    y: Int32Array | readonly number[],
    coef: CoefficientsArg,
    eStar?: number | Float32Array | readonly number[],
  ): Promise<EnergyOutputs> {
    this.checkImages(x, n);
    if (this.x01Buf.length < x.length) this.x01Buf = new Float32Array(x.length);
    const x01 = this.x01Buf.subarray(0, x.length);
    for (let i = 0; i < x.length; i++) x01[i] = (x[i] + 1) * 0.5;
    const out = await this.energies(x01, n, y, coef, eStar);
    for (let i = 0; i < out.grad.length; i++) out.grad[i] *= 0.5;
    return out;
  }

  /**
   * Logits and energies only. On a head compiled with a gradient the backward pass still runs
   * (with coef 0); load a forward-only head when speed matters.
   */
  async forward(
    x01: Float32Array,
    n: number,
    y: Int32Array | readonly number[],
  ): Promise<ForwardOutputs> {
    this.checkImages(x01, n);
    this.checkLabels(y, n);
    const out = this.allocate(n, false);
    this.coefBuf.fill(0);
    this.eStarBuf.fill(0);
    for (let s = 0; s < n; s += this.batch) {
      const m = Math.min(this.batch, n - s);
      for (let i = 0; i < m; i++) this.yBuf[i] = BigInt(y[s + i]);
      const feeds: Record<string, Feed> = this.imageFeeds(x01, s, m);
      if (this.info.gradient) {
        feeds[HEAD_NAMES.coef] = { data: this.coefBuf.subarray(0, m * 3), dims: [m, 3] };
        feeds[HEAD_NAMES.eStar] = { data: this.eStarBuf.subarray(0, m), dims: [m] };
      }
      this.collect(out, await runOnnx(this.model, feeds), s);
    }
    return out;
  }

  /** Releases the ONNX Runtime session; the classifier cannot be used afterwards. */
  async release(): Promise<void> {
    await this.model.session.release();
  }

  /** The `x` and `y` feeds of images s..s+m-1 (views, no copy of x). */
  private imageFeeds(x01: Float32Array, s: number, m: number): Record<string, Feed> {
    const size = this.imageSize;
    return {
      [HEAD_NAMES.x]: {
        data: x01.subarray(s * size, (s + m) * size),
        dims: [m, ...this.info.inputShape],
      },
      [HEAD_NAMES.y]: { data: this.yBuf.subarray(0, m), dims: [m] },
    };
  }

  /** Fresh output arrays for n images. */
  private allocate(n: number, grad: boolean): ForwardOutputs | EnergyOutputs {
    const out: ForwardOutputs = {
      logits: new Float32Array(n * this.numClasses),
      energyXY: new Float32Array(n),
      energyX: new Float32Array(n),
    };
    return grad ? { ...out, grad: new Float32Array(n * this.imageSize) } : out;
  }

  /** Copies one chunk's logits and energies into `out` at image s. */
  private collect(out: ForwardOutputs, res: Awaited<ReturnType<typeof runOnnx>>, s: number): void {
    out.logits.set(res[HEAD_NAMES.logits].data as Float32Array, s * this.numClasses);
    out.energyXY.set(res[HEAD_NAMES.energyXY].data as Float32Array, s);
    out.energyX.set(res[HEAD_NAMES.energyX].data as Float32Array, s);
  }

  /** Throws unless x holds n images of the head's shape. */
  private checkImages(x: Float32Array, n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new Error(`n must be a positive integer, got ${n}`);
    if (x.length !== n * this.imageSize) {
      throw new Error(
        `images hold ${x.length} values but n=${n} images of [${this.info.inputShape}] need ` +
          `${n * this.imageSize}; pass a Float32Array of shape [n, C, H, W]`,
      );
    }
  }

  /** Throws unless y holds n class indices in [0, K). */
  private checkLabels(y: Int32Array | readonly number[], n: number): void {
    if (y.length !== n) {
      throw new Error(`y has ${y.length} labels for n=${n} images; pass one per image`);
    }
    for (let i = 0; i < n; i++) {
      const v = y[i];
      if (!Number.isInteger(v) || v < 0 || v >= this.numClasses) {
        throw new Error(`label y[${i}] = ${v} is not a class index in [0, ${this.numClasses - 1}]`);
      }
    }
  }
}

/** True when coef is per image ([n, 3]); throws on a wrong length. */
function checkCoefficients(coef: CoefficientsArg, n: number): boolean {
  if (coef.length === 3 * n) return true; // for n = 1 both readings agree
  if (coef.length === 3) return false;
  throw new Error(
    `coef has ${coef.length} values; pass one (a, b, c) triple for all images or ${n} triples ([n, 3])`,
  );
}

/**
 * Loads an energy head from a path or bytes. A raw classifier is compiled into a head in
 * memory with `opts.conventions` (required for it: `{}` means [0, 1] NCHW, no normalisation).
 */
export async function loadEnergyClassifier(
  src: string | Uint8Array,
  opts: LoadEnergyClassifierOptions = {},
): Promise<EnergyClassifier> {
  const source = typeof src === "string" ? src : opts.source ?? "<bytes>";
  const bytes = typeof src === "string" ? await readModelFile(src) : src;
  const stored = readHeadInfo(decodeModel(bytes, source));
  let headBytes = bytes;
  let info: HeadInfo;
  if (stored) {
    if (opts.conventions) assertSameConventions(stored, opts.conventions, source);
    const [, h, w] = stored.inputShape;
    if (opts.imageSize && (opts.imageSize[0] !== h || opts.imageSize[1] !== w)) {
      throw new Error(
        `${source} is an energy head for ${h}x${w} images but ${
          opts.imagesFrom ? `${opts.imagesFrom} makes` : "the images are"
        } ${
          opts.imageSize.join("x")
        } images; compile the head from its classifier with --input-size ` +
          `(deno task energy-head), or pass the raw classifier with --input-size`,
      );
    }
    info = stored;
  } else {
    if (!opts.conventions) {
      throw new Error(
        `${source} is a raw classifier, not an energy head; pass its input conventions ` +
          `({ mean, std, layout, range }; {} for [0, 1] NCHW without normalisation) or compile ` +
          `a head first with 'deno task energy-head'`,
      );
    }
    const built = buildEnergyHead(bytes, {
      ...opts.conventions,
      output: opts.output,
      source,
      imageSize: opts.imageSize,
      inputSize: opts.inputSize,
      imagesFrom: opts.imagesFrom,
    });
    info = built.info;
    headBytes = encodeModel(built.model);
    const say = opts.onNote ?? ((note: string) => console.error(`${source}: ${note}`));
    for (const note of info.notes) say(note);
  }
  const model = await loadOnnx(headBytes, {
    provider: opts.provider,
    intraOpThreads: opts.intraOpThreads,
    allowSpinning: opts.allowSpinning ?? false,
    source,
  });
  const clf = new EnergyClassifier(model, info, opts.batch ?? 64);
  if (!stored && info.outputKind === "logits") await refuseProbabilities(clf, source, opts.output);
  return clf;
}

/**
 * A raw classifier whose output could not be traced back to logits but holds probabilities
 * on test images (lib/energy/check.ts probabilityProblem) is refused: its energies would be
 * meaningless. Two random images, one forward pass.
 */
async function refuseProbabilities(
  clf: EnergyClassifier,
  source: string,
  output: string | undefined,
): Promise<void> {
  const rng = new RandomStream(7);
  const x = new Float32Array(2 * clf.imageSize).map(() => rng.uniform());
  const problem = probabilityProblem((await clf.forward(x, 2, [0, 0])).logits, 2);
  if (!problem) return;
  await clf.release();
  throw new Error(
    `${source}: the output ${output ? `'${output}' ` : ""}holds ${problem} on two random ` +
      `images, not logits, and no final Softmax/LogSoftmax could be traced back ` +
      `to the logits in the graph; the energies E(x,y) = -f_y and E(x) = -logsumexp f need the ` +
      `logits: pass the logits output (--output NAME) or export the classifier without its ` +
      `final softmax`,
  );
}

function assertSameConventions(info: HeadInfo, conv: InputConventions, source: string): void {
  const want = {
    mean: conv.mean ? [...conv.mean] : null,
    std: conv.std ? [...conv.std] : null,
    layout: conv.layout ?? "nchw",
    range: conv.range ?? "01",
  };
  const have = { mean: info.mean, std: info.std, layout: info.layout, range: info.range };
  if (JSON.stringify(want) !== JSON.stringify(have)) {
    throw new Error(
      `${source} is an energy head compiled with conventions ${JSON.stringify(have)}, but ` +
        `${
          JSON.stringify(want)
        } were given; drop the conventions option (a head has them built in)`,
    );
  }
}
