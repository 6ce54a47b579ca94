/**
 * Feature networks for the metrics: any single-input ONNX classifier (or feature extractor)
 * rewritten into a graph `x -> (logits, features)` that takes images in [0, 1], NCHW, any batch.
 * The input convention (range, mean/std, layout) and the dynamic batch are folded in exactly as
 * for the energy head (it is built by {@link buildEnergyHead} without a backward pass, then
 * pruned), and one value of the classifier is exposed as the extra output `features`, flattened
 * to [N, D]:
 *
 * - by default the classifier's penultimate activation, the input of the final Gemm/MatMul that
 *   produces the logits (for sri-resnet-a: the 100-d ReLU after the first fully connected layer);
 * - or any value of the graph by name (a graph output such as an Inception `pool3`, or an
 *   intermediate activation).
 *
 * The off-the-shelf classifiers have a logits output only; this is how an intermediate
 * activation becomes available to the Frechet distance and precision/recall.
 * @module
 */
import { buildEnergyHead, HEAD_META_PREFIX, HEAD_NAMES } from "../energy/head.ts";
import type { InputConventions } from "../energy/conventions.ts";
import { renameValue, valueNames } from "../energy/_graph.ts";
import { GraphBuilder, nodeLabel } from "../onnx/builder.ts";
import {
  DataType,
  decodeModel,
  encodeModel,
  type ModelProto,
  type NodeProto,
} from "../onnx/proto.ts";
import {
  loadOnnx,
  type OnnxModel,
  type ProviderChoice,
  runOnnx,
  sha256Hex,
} from "../runtime/session.ts";
import type { ResizeOptions, ResizeSpec } from "../energy/resize.ts";

/** Input and output names of a feature network. */
export const FEATURE_NAMES = {
  /** float32 [N, C, H, W] images in [0, 1]. */
  x: HEAD_NAMES.x,
  /** float32 [N, K], the classifier's logits. */
  logits: HEAD_NAMES.logits,
  /** float32 [N, D], the exposed activation, flattened per image. */
  features: "features",
} as const;

/** The layer name reported for the default feature value. */
export const PENULTIMATE = "penultimate";

/** Options of {@link buildFeatureModel}. */
export interface FeatureModelOptions extends InputConventions, ResizeOptions {
  /**
   * Name of the value to expose (a graph output or any intermediate value); default: the input
   * of the final Gemm/MatMul that produces the logits.
   */
  features?: string;
  /** The logits output when the model has several 2-D outputs. */
  logits?: string;
  /** Names the model in error messages (a path, say). */
  source?: string;
}

/** What a feature network computes. */
export interface FeatureModelInfo {
  /** [C, H, W] of the input `x`. */
  inputShape: [number, number, number];
  /** K, the width of the logits. */
  numClasses: number;
  /** The exposed value's name in the source model. */
  featureValue: string;
  /** {@link PENULTIMATE} for the default, else the value's name: use it in metric names. */
  layer: string;
  /** sha256 of the source model's bytes. */
  sourceSha256: string;
  /** The bilinear resize in front of the network (--input-size), or null. */
  resize: ResizeSpec | null;
}

/**
 * Rewrites a classifier into a feature network (see the module doc). The source model is not
 * modified.
 *
 * @throws when the model is not a single-input image classifier, the named value does not exist
 *   or is not computed from the image, or no final Gemm/MatMul is found (then name the value).
 */
export function buildFeatureModel(
  classifier: Uint8Array,
  opts: FeatureModelOptions = {},
): { model: ModelProto; info: FeatureModelInfo } {
  const source = opts.source ?? "classifier";
  const { model, info: head } = buildEnergyHead(classifier, {
    mean: opts.mean,
    std: opts.std,
    layout: opts.layout,
    range: opts.range,
    output: opts.logits,
    gradient: false,
    source,
    imageSize: opts.imageSize,
    inputSize: opts.inputSize,
    imagesFrom: opts.imagesFrom,
  });
  const g = model.graph;
  const io = JSON.parse(
    (model.metadata_props ?? []).find((e) => e.key === `${HEAD_META_PREFIX}classifier_io`)
      ?.value ?? "{}",
  ) as { input?: string; output?: string };
  if (!io.output) throw new Error(`${source}: the compiled graph lost its logits value`);
  const producers = new Map<string, NodeProto>();
  for (const n of g.node) for (const o of n.output) producers.set(o, n);

  let value: string;
  if (opts.features === undefined) {
    value = penultimate(io.output, producers, source);
  } else {
    value = opts.features;
    // The head renames classifier values that collide with its own names.
    if ((Object.values(HEAD_NAMES) as string[]).includes(value)) value = `${value}_classifier`;
    if (!producers.has(value)) {
      const outputs = decodeOutputs(classifier).join(", ");
      throw new Error(
        `${source}: no value named '${opts.features}' is computed from the image; name a graph ` +
          `output (${outputs}) or a node output of the model (e.g. from onnx.helper or Netron)`,
      );
    }
  }

  // Drop the energy outputs and the label input; keep logits, add features.
  g.output = g.output.filter((v) => v.name === FEATURE_NAMES.logits);
  g.input = g.input.filter((v) => v.name === FEATURE_NAMES.x);
  if (valueNames(g).has(FEATURE_NAMES.features)) {
    const alt = `${FEATURE_NAMES.features}_classifier`;
    renameValue(g, FEATURE_NAMES.features, alt);
    if (value === FEATURE_NAMES.features) value = alt;
  }
  const b = GraphBuilder.fromModel(model);
  b.node("Flatten", [value], { axis: 1 }, { outputs: [FEATURE_NAMES.features] });
  b.output(FEATURE_NAMES.features, DataType.FLOAT, ["N", "D"]);
  prune(model);
  b.setMetadata(`${HEAD_META_PREFIX}kind`, "feature-model");
  b.setMetadata(`${HEAD_META_PREFIX}feature_value`, value);
  const info: FeatureModelInfo = {
    inputShape: head.inputShape,
    numClasses: head.numClasses,
    featureValue: opts.features ?? value,
    layer: opts.features === undefined ? PENULTIMATE : opts.features,
    sourceSha256: sha256Hex(classifier),
    resize: head.resize,
  };
  return { model, info };
}

/** The input of the final Gemm/MatMul behind `logits` (through Identity/Reshape/bias Add). */
function penultimate(
  logits: string,
  producers: Map<string, NodeProto>,
  source: string,
): string {
  let v = logits;
  for (let hops = 0; hops < 16; hops++) {
    const node = producers.get(v);
    if (!node) break;
    if (node.op_type === "Gemm" || node.op_type === "MatMul") return node.input[0];
    if (node.op_type === "Add") {
      const mm = node.input.find((i) => {
        const p = producers.get(i);
        return p && (p.op_type === "MatMul" || p.op_type === "Gemm");
      });
      if (mm) {
        v = mm;
        continue;
      }
    }
    if (["Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"].includes(node.op_type)) {
      v = node.input[0];
      continue;
    }
    throw new Error(
      `${source}: the logits come from ${nodeLabel(node)}, not from a final Gemm/MatMul, so ` +
        `there is no penultimate activation to expose; name the feature value explicitly ` +
        `(--features-output <value name>)`,
    );
  }
  throw new Error(
    `${source}: no final Gemm/MatMul found behind the logits '${logits}'; name the feature ` +
      `value explicitly (--features-output <value name>)`,
  );
}

/** Removes nodes, initializers and value hints that no graph output depends on. */
function prune(model: ModelProto): void {
  const g = model.graph;
  const needed = new Set(g.output.map((v) => v.name));
  const keep = new Array<boolean>(g.node.length).fill(false);
  for (let i = g.node.length - 1; i >= 0; i--) {
    const n = g.node[i];
    if (!n.output.some((o) => needed.has(o))) continue;
    keep[i] = true;
    for (const v of n.input) if (v) needed.add(v);
  }
  g.node = g.node.filter((_, i) => keep[i]);
  g.initializer = (g.initializer ?? []).filter((t) => needed.has(t.name ?? ""));
  g.value_info = (g.value_info ?? []).filter((v) => needed.has(v.name));
}

/** Output names of a model's bytes, for error messages. */
function decodeOutputs(bytes: Uint8Array): string[] {
  return decodeModel(bytes).graph.output.map((v) => v.name);
}

/** A loaded feature network. */
export interface FeatureNetwork {
  /** The ONNX Runtime session of the rewritten graph. */
  model: OnnxModel;
  /** What it computes. */
  info: FeatureModelInfo;
}

/**
 * Builds and loads a feature network.
 * @example
 * ```ts
 * const net = await loadFeatureNetwork(await Deno.readFile("../shared/models/sri_resnet_a.onnx"),
 *   { mean: [0.4914, 0.4822, 0.4465], std: [0.2471, 0.2435, 0.2616] });
 * const { features, logits, dim } = await extractFeatures(net, bytes, n);
 * ```
 */
export async function loadFeatureNetwork(
  classifier: Uint8Array,
  opts: FeatureModelOptions & { provider?: ProviderChoice; intraOpThreads?: number } = {},
): Promise<FeatureNetwork> {
  const { model, info } = buildFeatureModel(classifier, opts);
  const session = await loadOnnx(encodeModel(model), {
    provider: opts.provider,
    intraOpThreads: opts.intraOpThreads,
    source: opts.source,
  });
  return { model: session, info };
}

/** Features and logits of n images. */
export interface ExtractedFeatures {
  /** [n, dim] row-major. */
  features: Float32Array;
  /** Feature dimension D. */
  dim: number;
  /** [n, K] row-major. */
  logits: Float32Array;
  /** K. */
  numClasses: number;
}

/**
 * Runs n images through the network in batches. `images` are bytes 0..255, [n, C, H, W] (CHW
 * planes per image, as CIFAR-10 stores them); each batch is converted to x = byte / 255.
 *
 * @param opts.batch images per ONNX Runtime call (default 100).
 * @param opts.onProgress called with the images done so far.
 */
export async function extractFeatures(
  net: FeatureNetwork,
  images: Uint8Array,
  n: number,
  opts: { batch?: number; onProgress?: (done: number) => void } = {},
): Promise<ExtractedFeatures> {
  const [C, H, W] = net.info.inputShape;
  const size = C * H * W;
  if (!Number.isInteger(n) || n < 1 || images.length !== n * size) {
    throw new Error(
      `extractFeatures: ${images.length} bytes are not n = ${n} images of [${C},${H},${W}] ` +
        `(${n * size} bytes)`,
    );
  }
  const batch = opts.batch ?? 100;
  const K = net.info.numClasses;
  const logits = new Float32Array(n * K);
  let features = new Float32Array(0);
  let dim = 0;
  const x = new Float32Array(Math.min(batch, n) * size);
  for (let s = 0; s < n; s += batch) {
    const m = Math.min(batch, n - s);
    const chunk = x.subarray(0, m * size);
    for (let i = 0; i < m * size; i++) chunk[i] = images[s * size + i] / 255;
    const out = await runOnnx(net.model, {
      [FEATURE_NAMES.x]: { data: chunk, dims: [m, C, H, W] },
    });
    const f = out[FEATURE_NAMES.features].data as Float32Array;
    if (s === 0) {
      dim = f.length / m;
      features = new Float32Array(n * dim);
    }
    features.set(f, s * dim);
    logits.set(out[FEATURE_NAMES.logits].data as Float32Array, s * K);
    opts.onProgress?.(s + m);
  }
  return { features, dim, logits, numClasses: K };
}
