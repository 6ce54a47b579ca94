/**
 * The differentiable resize an energy head puts in front of a classifier whose input size is not
 * the images' size (issue 13 item 5: an ImageNet classifier at 224 guiding a 32x32 or 64x64
 * denoiser, a 224 evaluator scoring 32x32 images).
 *
 * Alignment, fixed and documented: bilinear, `align_corners=False` (ONNX
 * `coordinate_transformation_mode = half_pixel`), no antialiasing, edge samples clamped: exactly
 * `torch.nn.functional.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)`
 * (antialias off, its default). Output pixel i of a 1-D resize from n to m samples reads input
 * position s = max(0, (i + 1/2) n/m - 1/2), i.e. (1 - l) x[i0] + l x[i1] with i0 = floor(s),
 * i1 = min(i0 + 1, n - 1), l = s - i0. Downsampling therefore aliases like torch's default does.
 *
 * Bilinear resizing is separable and linear: y = R_h x R_w^T per channel, with R_h [H, h] and
 * R_w [W, w] the 1-D interpolation matrices above. The graph prefix is those two MatMuls with
 * constant matrices, so its gradient (R_h^T g R_w) comes from the autodiff's MatMul rule and is
 * exact; no Resize gradient rule is involved.
 * @module
 */
import type { GraphBuilder } from "../onnx/builder.ts";

/** A resize of images [h, w] (`from`) to [H, W] (`to`), as a head stores it. */
export interface ResizeSpec {
  /** [h, w] of the head's input images. */
  from: [number, number];
  /** [H, W] the classifier is fed. */
  to: [number, number];
  /** The alignment (see the module doc); the only one there is. */
  mode: "bilinear-half-pixel";
}

/**
 * The [m, n] row-major matrix of a 1-D bilinear resize from n to m samples (half-pixel centres,
 * clamped at the edges, no antialias; the module doc gives the formula).
 */
export function bilinearMatrix(n: number, m: number): Float64Array {
  for (const [name, v] of [["input size", n], ["output size", m]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new Error(`bilinear resize: ${name} ${v} is not a positive integer`);
    }
  }
  const r = new Float64Array(m * n);
  const scale = n / m;
  for (let i = 0; i < m; i++) {
    const s = Math.max(0, (i + 0.5) * scale - 0.5);
    const i0 = Math.min(Math.floor(s), n - 1);
    const i1 = Math.min(i0 + 1, n - 1);
    const l = s - i0;
    r[i * n + i0] += 1 - l;
    r[i * n + i1] += l;
  }
  return r;
}

/**
 * Appends y = bilinear resize of `x` ([N, C, h, w]) to [N, C, H, W] onto `b`: MatMul with R_w^T
 * [w, W] on the right, then R_h [H, h] on the left (broadcast over N and C). Returns y's name
 * (`into` when given). Identity when the sizes agree. `precision` is x's element type (float32 in
 * a head; float64 for the finite-difference tests).
 */
export function appendBilinearResize(
  b: GraphBuilder,
  x: string,
  spec: Pick<ResizeSpec, "from" | "to">,
  into?: string,
  precision: "float" | "double" = "float",
): string {
  const [h, w] = spec.from, [H, W] = spec.to;
  const outputs = into === undefined ? undefined : [into];
  if (h === H && w === W) return b.node("Identity", [x], {}, { outputs });
  const rw = bilinearMatrix(w, W); // [W, w]
  const Arr = precision === "double" ? Float64Array : Float32Array;
  const rwT = new Arr(w * W);
  for (let i = 0; i < W; i++) for (let j = 0; j < w; j++) rwT[j * W + i] = rw[i * w + j];
  const rows = b.node("MatMul", [x, b.constant("resize_cols", [w, W], rwT)]); // [N, C, h, W]
  const rh = b.constant("resize_rows", [H, h], Arr.from(bilinearMatrix(h, H)));
  return b.node("MatMul", [rh, rows], {}, { outputs }); // [N, C, H, W]
}

/**
 * The same resize on typed arrays (float64 accumulation): n images [n, c, h, w] to
 * [n, c, H, W]. For checks and for tasks that resize outside a head.
 */
export function bilinearResize(
  x: Float32Array,
  n: number,
  c: number,
  spec: Pick<ResizeSpec, "from" | "to">,
): Float32Array {
  const [h, w] = spec.from, [H, W] = spec.to;
  if (x.length !== n * c * h * w) {
    throw new Error(`bilinear resize: ${x.length} values are not ${n} images of [${c},${h},${w}]`);
  }
  const rh = bilinearMatrix(h, H), rw = bilinearMatrix(w, W);
  const out = new Float32Array(n * c * H * W);
  const tmp = new Float64Array(h * W);
  for (let p = 0; p < n * c; p++) {
    const src = x.subarray(p * h * w, (p + 1) * h * w);
    tmp.fill(0);
    for (let r = 0; r < h; r++) {
      for (let i = 0; i < W; i++) {
        let s = 0;
        for (let j = 0; j < w; j++) s += src[r * w + j] * rw[i * w + j];
        tmp[r * W + i] = s;
      }
    }
    for (let i = 0; i < H; i++) {
      for (let col = 0; col < W; col++) {
        let s = 0;
        for (let r = 0; r < h; r++) s += rh[i * h + r] * tmp[r * W + col];
        out[p * H * W + i * W + col] = s;
      }
    }
  }
  return out;
}

/** Parses `H` or `H,W` (an --input-size value) into [H, W]; throws naming the flag. */
export function parseInputSize(raw: string, flag = "--input-size"): [number, number] {
  const parts = raw.split(",").map((s) => s.trim());
  const v = parts.map(Number);
  if (parts.length < 1 || parts.length > 2 || !v.every((d) => Number.isInteger(d) && d > 0)) {
    throw new Error(
      `${flag} '${raw}' is invalid: give the classifier's input size as H or H,W (positive ` +
        `integers), e.g. 224 or 224,224`,
    );
  }
  return [v[0], v[1] ?? v[0]];
}

/** The sizes {@link planResize} reconciles (the head options of the same names). */
export interface ResizeOptions {
  /** [h, w] of the images the head will take (the denoiser's); default: the classifier's size. */
  imageSize?: readonly [number, number];
  /** [H, W] to feed the classifier (--input-size); needed to resize, or when its graph leaves H, W open. */
  inputSize?: readonly [number, number];
  /** Who makes the images, for errors (e.g. "the denoiser ddpm-cifar10-small"). */
  imagesFrom?: string;
}

/**
 * Reconciles the classifier's declared input [H, W] with `opts` and returns the resize the head
 * needs (null for none). Symbolic H, W in the graph are fixed in place (to `inputSize`, else
 * `imageSize`); a static size that contradicts `inputSize` is an error, and so are images of
 * another size without `inputSize` (no silent resizing). `hw` are the positions of H and W in
 * the input's dims (by layout).
 */
export function planResize(
  dims: Array<{ dim_value?: number; dim_param?: string }>,
  hw: readonly [number, number],
  opts: ResizeOptions,
  what: string,
): ResizeSpec | null {
  const fmt = (s: readonly (number | string | undefined)[]) => s.join("x");
  const flag = (s: readonly unknown[]) => s[0] === s[1] ? `${s[0]}` : `${s[0]},${s[1]}`;
  const declared = hw.map((i) => dims[i]?.dim_value ?? dims[i]?.dim_param ?? "?");
  const target = opts.inputSize ?? opts.imageSize;
  if (opts.inputSize) {
    hw.forEach((i, k) => {
      const d = dims[i];
      if (
        typeof d?.dim_value === "number" && d.dim_value > 0 && d.dim_value !== opts.inputSize![k]
      ) {
        throw new Error(
          `${what} takes ${fmt(declared)} images but --input-size is ${fmt(opts.inputSize!)}; ` +
            `give --input-size ${
              flag(declared)
            } (or leave it out when the images are already that size)`,
        );
      }
    });
  }
  if (target) {
    hw.forEach((i, k) => {
      const d = dims[i];
      if (d && !(typeof d.dim_value === "number" && d.dim_value > 0)) {
        d.dim_value = target[k];
        delete d.dim_param;
      }
    });
  }
  if (!opts.imageSize) return null;
  const size = hw.map((i) => dims[i]?.dim_value) as [number, number];
  if (size[0] === opts.imageSize[0] && size[1] === opts.imageSize[1]) return null;
  if (!opts.inputSize) {
    throw new Error(
      `${what} takes ${fmt(size)} images but ${
        opts.imagesFrom ? `${opts.imagesFrom} makes` : "the images are"
      } ${fmt(opts.imageSize)} images; pass ` +
        `--input-size ${flag(size)} to resize them (bilinear, align_corners=False) inside the ` +
        `energy head, or use a classifier of the images' size`,
    );
  }
  return { from: [opts.imageSize[0], opts.imageSize[1]], to: size, mode: "bilinear-half-pixel" };
}
