/**
 * Adapter: an ONNX eps-prediction model as a {@link Denoiser}. Contract (manifest kind
 * "denoiser"): one float32 image input [N,C,H,W] in [-1, 1], one timestep input [N] (int64 or
 * float32, discovered from the model), first output eps [N,C,H,W].
 * @module
 */
import type { Denoiser } from "../sampler/loop.ts";
import { fixedBatch, type OnnxModel, runBatched } from "../runtime/session.ts";

/** Names of a denoiser model's image and timestep inputs and its eps output. */
export interface DenoiserIO {
  /** Name of the image input, float32 [N, C, H, W] in [-1, 1]. */
  x: string;
  /** Name of the timestep input, [N]. */
  t: string;
  /** Element type of the timestep input. */
  tType: "int64" | "float32";
  /** Name of the eps output, [N, C, H, W]. */
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
        `found ${sig}; convert diffusers UNets with weights/recipes/export_diffusers_unet.py`,
    );
  }
  const out = model.outputs[0];
  if (!out || out.shape.length !== 4) {
    throw new Error(
      `${model.source} is not a denoiser: its first output should be eps [N,C,H,W], found ${
        model.outputs.map((o) => `${o.name}[${o.shape}]`).join(", ")
      }`,
    );
  }
  return { x: x.name, t: t.name, tType: t.type as "int64" | "float32", eps: out.name };
}

/** Wraps an ONNX denoiser; `batch` bounds the images per ORT run (it does not change results). */
export function onnxDenoiser(model: OnnxModel, batch = 64): Denoiser {
  const io = denoiserIO(model);
  const fb = fixedBatch(model);
  return async (x, t, ctx) => {
    const { n, shape } = ctx;
    const tArr = io.tType === "int64"
      ? new BigInt64Array(n).fill(BigInt(t))
      : new Float32Array(n).fill(t);
    const out = await runBatched(
      model,
      {
        [io.x]: { data: x, dims: [n, shape.c, shape.h, shape.w] },
        [io.t]: { data: tArr, dims: [n] },
      },
      n,
      fb ?? batch,
    );
    return out[io.eps].data as Float32Array;
  };
}
