// Shared set-up of the hardening tests (issue 12): running mod.ts as a user does, and small model
// files (linear classifiers of any input shape, a toy denoiser of any image size) on disk.
import { GraphBuilder } from "../lib/onnx/builder.ts";
import { DataType } from "../lib/onnx/proto.ts";
import { tinyLinear } from "./_energy_models.ts";

export const root = new URL("../", import.meta.url).pathname;

/** Runs `deno run -A mod.ts <args>` in the repository root. */
export async function cli(args: string[], opts: { cwd?: string; script?: string } = {}) {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", opts.script ?? "mod.ts", ...args],
    cwd: opts.cwd ?? root,
    stdout: "piped",
    stderr: "piped",
    env: { RG_QUIET: "1", NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
}

/** A linear classifier file with input [1, C, H, W] and K classes (a raw classifier). */
export async function linearClassifier(dir: string, C: number, H: number, W: number, K = 10) {
  const path = `${dir}/linear_${C}x${H}x${W}_k${K}.onnx`;
  await Deno.writeFile(path, tinyLinear({ C, H, W, K, seed: 3 }).bytes);
  return path;
}

/** A toy eps model eps = 0.1 x with a static image input [N, C, H, W] and t int64 [N]. */
export function toyDenoiser(C: number, H: number, W: number): Uint8Array {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input("x", DataType.FLOAT, ["N", C, H, W]);
  const t = b.input("t", DataType.INT64, ["N"]);
  const tf = b.node("Cast", [t], { to: DataType.FLOAT });
  const zero = b.node("Mul", [tf, b.f32("zero", 0)]);
  const eps = b.node("Add", [
    b.node("Mul", [x, b.f32("k", 0.1)]),
    b.node("Unsqueeze", [zero, b.i64("axes", [1, 2, 3])]),
  ]);
  b.output(eps, DataType.FLOAT, ["N", C, H, W], "eps");
  return b.toBytes();
}

/** The guide flags of a fast run (mixture denoiser, 2 steps, 2 seeds, one class). */
export const FAST_GUIDE = [
  "guide",
  "--model",
  "mixture-cifar10",
  "--class",
  "0",
  "--seeds",
  "0-1",
  "--steps",
  "2",
  "--evaluator",
  "none",
];

/** The sample flags of a fast run. */
export const FAST_SAMPLE = ["sample", "--model", "mixture-cifar10", "--steps", "2"];

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
