/**
 * Task `energy-head`: compiles an off-the-shelf classifier into an energy head (logits, E(x,y),
 * E(x) and the gradient of a E(x,y) + b E(x) + c |E* - E(x)|; METHOD.md §3-4,
 * lib/energy/head.ts), checks it against the classifier on a small random batch, and writes it
 * atomically.
 *   deno task energy-head --model in.onnx --out head.onnx [--mean r,g,b --std r,g,b]
 *     [--layout nchw|nhwc] [--range 01|pm1] [--output NAME] [--forward-only]
 *     [--image-size h[,w] --input-size H[,W]]   (a head for hxw images that resizes them to the
 *     classifier's HxW: lib/energy/resize.ts)
 * @module
 */
import { compareLogits } from "../lib/energy/check.ts";
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import type { InputConventions } from "../lib/energy/conventions.ts";
import { buildEnergyHead, type HeadInfo } from "../lib/energy/head.ts";
import { float32Classifier } from "../lib/energy/precision.ts";
import { bilinearResize, parseInputSize } from "../lib/energy/resize.ts";
import { writeFileAtomic } from "../lib/io/png.ts";
import { encodeModel, type ModelProto } from "../lib/onnx/proto.ts";
import { RandomStream } from "../lib/random.ts";
import { loadOnnx, readModelFile, sha256Hex } from "../lib/runtime/session.ts";
import { choiceFlag, parseFlags, UsageError } from "./_args.ts";

const USAGE = "usage: energy-head --model in.onnx --out head.onnx [--mean r,g,b --std r,g,b] " +
  "[--layout nchw|nhwc] [--range 01|pm1] [--output NAME] [--forward-only] " +
  "[--image-size h[,w] (the images the head takes) --input-size H[,W] (the classifier's; a " +
  "bilinear resize, align_corners=False, goes in front)]";

/** Parses a comma-separated list of finite numbers given to `--name`. */
export function numberListFlag(name: string, raw: string | undefined): number[] | undefined {
  if (raw === undefined) return undefined;
  const parts = raw.split(",").map((s) => s.trim());
  const values = parts.map(Number);
  if (parts.some((p) => p === "") || !values.every(Number.isFinite)) {
    throw new UsageError(
      `--${name} '${raw}' is invalid: use comma-separated numbers, one per channel ` +
        `(e.g. --${name} ${name === "std" ? "0.2471,0.2435,0.2616" : "0.4914,0.4822,0.4465"})`,
    );
  }
  return values;
}

/** Op types of a graph with their counts, most frequent first: "Conv 21, Relu 8". */
export function opCounts(model: ModelProto): string {
  const counts = new Map<string, number>();
  for (const n of model.graph.node) counts.set(n.op_type, (counts.get(n.op_type) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([op, c]) => `${op} ${c}`).join(", ");
}

/** Runs the `energy-head` task. */
export async function energyHeadTask(args: string[]): Promise<void> {
  const f = parseFlags("energy-head", args, {
    model: { type: "string" },
    out: { type: "string" },
    mean: { type: "string" },
    std: { type: "string" },
    layout: { type: "string" },
    range: { type: "string" },
    output: { type: "string" },
    "forward-only": { type: "boolean" },
    "image-size": { type: "string" },
    "input-size": { type: "string" },
    help: { type: "boolean" },
  });
  if (f.help) {
    console.log(USAGE);
    return;
  }
  if (!f.model) {
    throw new UsageError(`energy-head: --model is required (the classifier .onnx). ${USAGE}`);
  }
  if (!f.out) {
    throw new UsageError(`energy-head: --out is required (where to write the head). ${USAGE}`);
  }
  if (!f.out.endsWith(".onnx")) {
    throw new UsageError(
      `--out '${f.out}' is invalid: the head is an ONNX file; end the name with .onnx`,
    );
  }
  const conv: InputConventions = {
    mean: numberListFlag("mean", f.mean),
    std: numberListFlag("std", f.std),
    layout: choiceFlag("layout", f.layout, ["nchw", "nhwc"] as const, "nchw"),
    range: choiceFlag("range", f.range, ["01", "pm1"] as const, "01"),
  };
  if ((conv.mean === undefined) !== (conv.std === undefined)) {
    throw new UsageError(
      `--${conv.mean ? "mean" : "std"} was given without --${
        conv.mean ? "std" : "mean"
      }; pass both ` +
        `(--std 1,1,1 for mean-only)`,
    );
  }

  const [imageSize, inputSize] = (["image-size", "input-size"] as const).map((flag) => {
    try {
      return f[flag] === undefined ? undefined : parseInputSize(f[flag], `--${flag}`);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  });
  if (inputSize && !imageSize) {
    throw new UsageError(
      `--input-size needs --image-size: the size of the images the head will take (the ` +
        `denoiser's), which it resizes to the classifier's --input-size`,
    );
  }

  const source = await readModelFile(f.model);
  const t0 = performance.now();
  let built;
  try {
    built = buildEnergyHead(source, {
      ...conv,
      output: f.output,
      gradient: !f["forward-only"],
      source: f.model,
      imageSize,
      inputSize,
    });
  } catch (e) {
    if (/ images but |--input-size/.test((e as Error).message)) {
      throw new UsageError((e as Error).message);
    }
    throw e;
  }
  const { model, info } = built;
  const bytes = encodeModel(model);
  for (const note of info.notes) console.error(`energy-head: ${f.model}: ${note}`);
  const check = await checkAgainstClassifier(
    float32Classifier(source),
    bytes,
    info,
    conv,
    f.model,
  );
  await writeFileAtomic(f.out, bytes);
  const [C, H, W] = info.inputShape;
  console.log(
    `energy-head: wrote ${f.out} (${(bytes.length / 1e6).toFixed(2)} MB, ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s): K=${info.numClasses}, x [N,${C},${H},${W}] ${info.layout} range ${info.range}` +
      `${
        info.mean ? ` mean [${info.mean}] std [${info.std}]` : ""
      }, ${model.graph.node.length} nodes ` +
      `(${opCounts(model)}), ${info.batchRewrites.length} batch rewrite(s)${
        info.resize
          ? `, bilinear resize ${info.resize.from.join("x")} -> ${info.resize.to.join("x")}`
          : ""
      }, batch-${check.n} logits ` +
      `max |diff| vs classifier ${check.maxDiff.toExponential(1)}, sha256 ${sha256Hex(bytes)}`,
  );
}

/**
 * Runs the head on a small random batch at once and the classifier one image at a time (it may
 * have a fixed batch of 1) on the same images, and compares logits. Throws when they disagree.
 */
async function checkAgainstClassifier(
  classifier: Uint8Array,
  head: Uint8Array,
  info: HeadInfo,
  conv: InputConventions,
  /** The classifier's file, for errors. */
  file: string,
): Promise<{ n: number; maxDiff: number }> {
  const shape = info.inputShape;
  const n = 4, size = shape[0] * shape[1] * shape[2];
  const rng = new RandomStream(0);
  const x = new Float32Array(n * size).map(() => rng.uniform());
  const clf = await loadEnergyClassifier(head, {
    provider: "cpu",
    source: `the energy head of ${file}`,
  });
  const logits = (await clf.forward(x, n, new Array(n).fill(0))).logits;
  const raw = await loadOnnx(classifier, { provider: "cpu", source: file });
  // a head that resizes: the classifier gets the same resize, done in TypeScript
  const r = info.resize;
  const { maxAbsDiff, maxAbsLogit } = await compareLogits(
    raw,
    conv,
    r ? bilinearResize(x, n, shape[0], r) : x,
    n,
    r ? [shape[0], ...r.to] : shape,
    logits,
    info.outputKind,
  );
  if (!(maxAbsDiff <= 1e-4 * Math.max(1, maxAbsLogit))) {
    throw new Error(
      `the compiled head disagrees with the classifier on a batch of ${n}: max |logit diff| ` +
        `${maxAbsDiff} (logits up to ${maxAbsLogit}); the batch rewrite may be wrong for this ` +
        `graph. Re-export the classifier with a dynamic batch (dynamic_axes={'input': {0: 'N'}})`,
    );
  }
  return { n, maxDiff: maxAbsDiff };
}
