/**
 * Adapter: an ONNX diffusion network as a {@link Denoiser} (which returns eps). Contract (manifest
 * kind "denoiser"): one float32 image input [N,C,H,W] in [-1, 1], one timestep input (int64 or
 * float32; [N] per image, or a scalar [] / [1] shared by the batch), first output [N,C',H,W].
 * What the output means (eps, v, x0; C' = C, or 2C with a learned variance) and which timestep
 * value the network was trained on (index, rescaled, continuous) come from the model's
 * {@link ScheduleSpec}; the image shape comes from the graph. Everything is checked at load
 * ({@link inspectDenoiser}), before any sampling starts.
 * @module
 */
import type { Denoiser, ImageShape } from "../sampler/loop.ts";
import { type OnnxModel, runOnnx } from "../runtime/session.ts";
import { abarAt, type ScheduleSpec, type TimestepConvention, timestepValue } from "../schedule.ts";
import { convertOutput, outputChannels, type OutputSpec } from "./parameterisation.ts";

/** Names and kinds of a denoiser model's inputs and output. */
export interface DenoiserIO {
  /** Name of the image input, float32 [N, C, H, W] in [-1, 1]. */
  x: string;
  /** Name of the timestep input. */
  t: string;
  /** Element type of the timestep input. */
  tType: "int64" | "float32";
  /** True when the timestep input is a scalar ([] or [1] with a batch dimension elsewhere). */
  tScalar: boolean;
  /** Name of the (first) output, [N, C', H, W]. */
  eps: string;
}

/** Finds the image and timestep inputs; throws with the model's signature when it is not a denoiser. */
export function denoiserIO(model: OnnxModel): DenoiserIO {
  const sig = model.inputs.map((i) => `${i.name} ${i.type}[${i.shape}]`).join(", ");
  const x = model.inputs.find((i) => i.shape.length === 4 && i.type === "float32");
  const t = model.inputs.find((i) => i !== x && i.shape.length <= 1);
  if (model.inputs.length !== 2 || !x || !t || (t.type !== "int64" && t.type !== "float32")) {
    throw new Error(
      `${model.source} is not a denoiser: expected inputs (x float32[N,C,H,W], t int64|float32[N]), ` +
        `found ${sig}; convert diffusers UNets with weights/recipes/export_diffusers_unet.py, ` +
        `ADM checkpoints with weights/recipes/export_adm.py`,
    );
  }
  const out = model.outputs[0];
  if (!out || out.shape.length !== 4) {
    throw new Error(
      `${model.source} is not a denoiser: its first output should be [N,C,H,W], found ${
        model.outputs.map((o) => `${o.name}[${o.shape}]`).join(", ")
      }`,
    );
  }
  // a scalar t: rank 0, or a fixed [1] while the image batch is not fixed at 1
  const tScalar = t.shape.length === 0 ||
    (t.shape[0] === 1 && x.shape[0] !== 1);
  return {
    x: x.name,
    t: t.name,
    tType: t.type as "int64" | "float32",
    tScalar,
    eps: out.name,
  };
}

/** What {@link inspectDenoiser} settles about a denoiser before it runs. */
export interface DenoiserSetup {
  /** Input and output names. */
  io: DenoiserIO;
  /** C, H, W of the images (from the graph; dynamic H/W from `imageSize`). */
  shape: ImageShape;
  /** What the output holds. */
  output: OutputSpec;
  /** Which timestep value the network is given. */
  timestep: TimestepConvention;
  /** Decisions the user should see (e.g. a learned variance read from the output channels). */
  notes: string[];
}

/** Options of {@link inspectDenoiser}. */
export interface InspectOptions {
  /** The model's schedule spec (manifest, --scheduler-config or the default). */
  spec?: ScheduleSpec;
  /** C, H, W declared by the manifest, checked against the graph. */
  declaredShape?: readonly number[];
  /** H, W for a graph whose image size is dynamic (--image-size). */
  imageSize?: readonly [number, number];
  /** Name of the image-size flag, for error messages. */
  imageSizeFlag?: string;
}

const dimText = (d: number | string | undefined) => (typeof d === "number" && d > 0 ? d : "?");

/**
 * Reads a denoiser's image shape from its graph and checks its output channels and timestep
 * input against the declared parameterisation. When the graph leaves the output channels
 * symbolic, one batch-1 forward finds them. Throws naming the file, what it has and the fix.
 */
export async function inspectDenoiser(
  model: OnnxModel,
  opts: InspectOptions = {},
): Promise<DenoiserSetup> {
  const io = denoiserIO(model);
  const src = model.source;
  const flag = opts.imageSizeFlag ?? "--image-size";
  const xInfo = model.inputs.find((i) => i.name === io.x)!;
  const [, gc, gh, gw] = xInfo.shape;
  const fixed = (d: number | string | undefined) => typeof d === "number" && d > 0;
  const declared = opts.declaredShape;
  const notes: string[] = [];
  // C: the graph's, else the manifest's, else 3
  const c = fixed(gc) ? gc as number : declared?.[0] ?? 3;
  let h: number, w: number;
  if (fixed(gh) && fixed(gw)) {
    h = gh as number;
    w = gw as number;
    if (opts.imageSize && (opts.imageSize[0] !== h || opts.imageSize[1] !== w)) {
      throw new Error(
        `${flag} ${opts.imageSize.join("x")} disagrees with ${src}, whose input '${io.x}' is ` +
          `[N,${gc},${gh},${gw}]: drop ${flag} (it is for models with a dynamic image size)`,
      );
    }
  } else if (opts.imageSize) {
    [h, w] = opts.imageSize;
    for (const [d, v] of [[gh, h], [gw, w]] as const) {
      if (fixed(d) && d !== v) {
        throw new Error(
          `${flag} ${opts.imageSize.join("x")} disagrees with ${src}: [N,${gc},${gh},${gw}]`,
        );
      }
    }
  } else if (declared) {
    [, h, w] = declared;
  } else {
    throw new Error(
      `${src} has a dynamic image size (input '${io.x}' is [${xInfo.shape.join(",")}]): pass ` +
        `${flag} HxW (e.g. ${flag} 64x64), the size the model was trained at`,
    );
  }
  if (declared && (declared[0] !== c || declared[1] !== h || declared[2] !== w)) {
    throw new Error(
      `the manifest declares input shape [${declared}] for ${src}, but its graph says ` +
        `[N,${dimText(gc)},${dimText(gh)},${dimText(gw)}]: fix the manifest entry's input.shape`,
    );
  }
  // timestep convention vs the input's element type
  const timestep = opts.spec?.timestep ?? "index";
  const T = opts.spec?.T ?? 1000;
  if (io.tType === "int64" && timestep !== "index" && !(timestep === "rescaled" && T === 1000)) {
    throw new Error(
      `${src} takes an int64 timestep '${io.t}', but its timestep convention is '${timestep}' ` +
        `(non-integer values for T = ${T}): declare timestep "index", or export t as float32`,
    );
  }
  // output channels vs the declared parameterisation
  const outInfo = model.outputs.find((o) => o.name === io.eps)!;
  let outC = outInfo.shape[1];
  if (!fixed(outC)) outC = await probeOutputChannels(model, io, { c, h, w });
  const prediction = opts.spec?.prediction_type ?? "epsilon";
  let variance = opts.spec?.variance_type;
  const oc = outC as number;
  if (variance === undefined) {
    if (oc === 2 * c) {
      variance = "learned_range";
      notes.push(
        `${src} outputs ${oc} channels for ${c} image channels: read as ${prediction} + learned ` +
          `variance (learned_range, Nichol and Dhariwal 2021); declare variance_type to override`,
      );
    } else variance = "fixed";
  }
  const output: OutputSpec = { prediction, variance };
  const want = outputChannels(output, c);
  if (oc !== want) {
    throw new Error(
      `${src} outputs ${oc} channels, but its declared parameterisation (prediction_type ` +
        `${prediction}, variance_type ${variance}) needs ${want} for ${c} image channels` +
        (oc === 2 * c
          ? `: it looks like a learned-variance model; declare variance_type "learned_range"`
          : oc === c && variance === "learned_range"
          ? `: it has no variance channels; declare variance_type "fixed"`
          : ""),
    );
  }
  return { io, shape: { c, h, w }, output, timestep, notes };
}

/** Output channels of a model whose graph leaves them symbolic: one batch-1 forward at t = 0. */
async function probeOutputChannels(
  model: OnnxModel,
  io: DenoiserIO,
  shape: ImageShape,
): Promise<number> {
  const per = shape.c * shape.h * shape.w;
  const res = await runOnnx(model, {
    [io.x]: { data: new Float32Array(per), dims: [1, shape.c, shape.h, shape.w] },
    [io.t]: timestepFeed(io, [0], 1),
  });
  const dims = res[io.eps].dims;
  if (dims.length !== 4 || dims[2] !== shape.h || dims[3] !== shape.w) {
    throw new Error(
      `${model.source} given [1,${shape.c},${shape.h},${shape.w}] returned [${dims}]: the image ` +
        `size is wrong for this model (check --image-size)`,
    );
  }
  return dims[1];
}

function timestepFeed(io: DenoiserIO, values: number[], n: number) {
  const data = io.tType === "int64"
    ? BigInt64Array.from(values.map((v) => BigInt(v)))
    : Float32Array.from(values);
  if (io.tScalar) {
    return { data: data.subarray(0, 1) as Float32Array | BigInt64Array, dims: [] as number[] };
  }
  return { data, dims: [n] };
}

/**
 * Pixels per UNet run at most (one 256x256 image): a guided batch of larger images is run through
 * the UNet a few images at a time. Results do not change; the activations do: the ADM 256x256 UNet
 * at a guided batch of 4 peaks at 8.2 GiB RSS run 4 at a time and 4.3 GiB run 1 at a time, and
 * is no slower (bench/NOTES.md, "Beyond 32x32").
 */
export const MAX_PIXELS_PER_RUN = 256 * 256;

/**
 * Wraps an ONNX denoiser; `batch` bounds the images per ORT run (it does not change results),
 * and so does `maxPixels` (default {@link MAX_PIXELS_PER_RUN}).
 * Without `setup` the model is read as eps prediction with the index timestep (the old
 * contract). With a setup, the output is converted to eps (lib/models/parameterisation.ts) and a
 * learned variance is handed to the DDPM step through `ctx.v`.
 */
export function onnxDenoiser(
  model: OnnxModel,
  batch = 64,
  setup?: DenoiserSetup,
  maxPixels = MAX_PIXELS_PER_RUN,
): Denoiser {
  const io = setup?.io ?? denoiserIO(model);
  const output: OutputSpec = setup?.output ?? { prediction: "epsilon", variance: "fixed" };
  const d0 = model.inputs.find((i) => i.name === io.x)!.shape[0];
  const fb = typeof d0 === "number" && d0 > 0 ? d0 : undefined;
  const net: Network = async (x, tv, n, shape) => {
    const per = shape.c * shape.h * shape.w;
    const step = fb ??
      Math.max(1, Math.min(batch, Math.floor(maxPixels / (shape.h * shape.w))));
    const perOut = outputChannels(output, shape.c) * shape.h * shape.w;
    if (fb !== undefined && n % fb !== 0) {
      throw new Error(`model ${model.source} has a fixed batch of ${fb}; ${n} items do not divide`);
    }
    const out = new Float32Array(n * perOut);
    for (let s = 0; s < n; s += step) {
      const e = Math.min(n, s + step);
      const res = await runOnnx(model, {
        [io.x]: { data: x.subarray(s * per, e * per), dims: [e - s, shape.c, shape.h, shape.w] },
        [io.t]: timestepFeed(io, new Array(e - s).fill(tv), e - s),
      });
      const o = res[io.eps].data as Float32Array;
      if (o.length !== (e - s) * perOut) {
        throw new Error(
          `${model.source} returned ${o.length} values for ${e - s} images of ` +
            `[${shape.c},${shape.h},${shape.w}] (expected ${perOut} each: ${output.prediction}` +
            `${output.variance === "learned_range" ? " + learned variance" : ""})`,
        );
      }
      out.set(o, s * perOut);
    }
    return out;
  };
  return networkDenoiser(net, output, setup?.timestep ?? "index");
}

/**
 * A raw diffusion network: its output for n images x_t (NCHW) at the timestep value `tv` (what
 * the network was trained on, see {@link timestepValue}), outputChannels(spec, C) per pixel.
 */
export type Network = (
  x: Float32Array,
  tv: number,
  n: number,
  shape: ImageShape,
) => Promise<Float32Array>;

/**
 * A {@link Denoiser} (eps) from a raw network of any parameterisation and timestep convention:
 * the one place where network outputs become eps (and x0_hat, via convertOutput), and a learned
 * variance is handed on through `ctx.v`.
 */
export function networkDenoiser(
  net: Network,
  output: OutputSpec,
  timestep: TimestepConvention = "index",
): Denoiser {
  return async (x, t, ctx) => {
    const tv = timestep === "index" ? t : timestepValue(t, ctx.schedule.T, timestep);
    const out = await net(x, tv, ctx.n, ctx.shape);
    if (output.prediction === "epsilon" && output.variance === "fixed") return out;
    const c = convertOutput(out, x, abarAt(ctx.schedule, t), output, ctx.n);
    if (c.v) ctx.v = c.v;
    return c.eps;
  };
}

/**
 * The local folder of a model location (a path or file: URL), where ONNX Runtime looks for the
 * model's external-data files; undefined for remote models.
 */
export function modelFolder(location: string): string | undefined {
  if (location.startsWith("file:")) return new URL(".", location).pathname;
  if (/^https?:/.test(location)) return undefined;
  const i = location.lastIndexOf("/");
  return i < 0 ? "." : location.slice(0, i) || "/";
}
