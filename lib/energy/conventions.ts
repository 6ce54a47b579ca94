/**
 * Classifier input conventions relative to images in [0, 1], NCHW: pixel range, per-channel
 * normalisation and layout. The energy head folds them into its graph; {@link toClassifierInput}
 * applies them in TypeScript, to feed a raw classifier the same input (checks, benchmarks).
 * @module
 */

/** How a classifier wants its input, relative to images x in [0, 1], NCHW. */
export interface InputConventions {
  /** Per-channel mean subtracted after the range map: (x' - mean) / std. Needs `std`. */
  mean?: readonly number[];
  /** Per-channel std (all > 0). Needs `mean`. */
  std?: readonly number[];
  /** Layout of the classifier input (default "nchw"). */
  layout?: "nchw" | "nhwc";
  /** Pixel range the classifier wants (default "01"); "pm1" maps x' = 2x - 1 first. */
  range?: "01" | "pm1";
}

/**
 * The normalisation of the shared CIFAR-10 classifiers (../shared/README.md): x in [0, 1],
 * NCHW, (x - mean) / std with these per-channel values.
 */
export const CIFAR10_NORMALISATION: Readonly<Required<Pick<InputConventions, "mean" | "std">>> = {
  mean: [0.4914, 0.4822, 0.4465],
  std: [0.2471, 0.2435, 0.2616],
};

/**
 * Maps n images x01 ([n, C, H, W], in [0, 1]) to what the classifier wants:
 * x' = x (or 2x - 1 for "pm1"), then (x' - mean_c) / std_c, then NHWC order when asked.
 * The same map the head's graph applies (in float64, rounded once to float32).
 */
export function toClassifierInput(
  x01: Float32Array,
  n: number,
  shape: readonly [number, number, number],
  conv: InputConventions,
): Float32Array {
  const [C, H, W] = shape;
  const size = C * H * W;
  if (x01.length !== n * size) {
    throw new Error(`x01 holds ${x01.length} values; ${n} images of [${shape}] need ${n * size}`);
  }
  const [s, o] = conv.range === "pm1" ? [2, -1] : [1, 0];
  const out = new Float32Array(x01.length);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < C; c++) {
      const mean = conv.mean?.[c] ?? 0, std = conv.std?.[c] ?? 1;
      for (let p = 0; p < H * W; p++) {
        const v = (s * x01[i * size + c * H * W + p] + o - mean) / std;
        out[i * size + (conv.layout === "nhwc" ? p * C + c : c * H * W + p)] = v;
      }
    }
  }
  return out;
}
