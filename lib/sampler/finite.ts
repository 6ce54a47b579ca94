/**
 * Finding the first non-finite value of a sampling run: which network (named by its file) or which
 * arithmetic produced it, at which step and timestep. The samplers of METHOD.md §2 (eq 2.13, 2.25)
 * and guidance (Alg 6) assume finite values; once one NaN/Inf appears every later value is
 * poisoned, so the loop checks each denoiser call and each update and stops at the first.
 * @module
 */
import { NonFiniteError } from "../errors.ts";
import type { DenoiseContext, Denoiser } from "./loop.ts";

/** Index of the first NaN/Inf of `a`, or -1. */
export function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

/** "step 3/100 (t = 970)", as every report of the loop starts. */
export function stepText(ctx: Pick<DenoiseContext, "stepIndex" | "steps">, t: number): string {
  return `step ${ctx.stepIndex + 1}/${ctx.steps} (t = ${t})`;
}

/** The seed of the image holding flat index `i` of a batch array of `n` images. */
function seedAt(ctx: Pick<DenoiseContext, "n" | "seeds">, length: number, i: number): number {
  return ctx.seeds[Math.floor(i / (length / ctx.n))];
}

/** What the denoiser's input looked like, to tell a diverged network from a diverged input. */
function inputNote(x: Float32Array): string {
  let max = 0;
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]);
    if (!(a <= max)) max = a; // NaN counts as the maximum
  }
  return max > 1e4 || !Number.isFinite(max)
    ? `; its input x_t had already diverged (max |x_t| = ${max.toPrecision(3)}): an earlier ` +
      `step's update or guidance blew up; lower --scale, add --clip-grad or keep --clip true`
    : `; its input x_t was finite (max |x_t| = ${max.toPrecision(3)}): the network itself ` +
      `produced it`;
}

/**
 * Calls the denoiser (guided or not) and checks its eps. A {@link NonFiniteError} raised inside
 * (an ONNX output check naming the model file, or the guidance arithmetic) and a non-finite eps
 * returned are reported with the step, the timestep and the image's seed.
 */
export async function checkedDenoise(
  denoiser: Denoiser,
  x: Float32Array,
  t: number,
  ctx: DenoiseContext,
): Promise<Float32Array> {
  let eps: Float32Array;
  try {
    eps = await denoiser(x, t, ctx);
  } catch (e) {
    if (e instanceof NonFiniteError) {
      // an ONNX output check names the file only; the wrapped call is the denoiser's unless
      // guidance already said who ("the classifier ...", "the guidance arithmetic")
      const named = e.where.startsWith("the ");
      const where = named ? e.where : `the denoiser (${e.where})`;
      const located = /\bstep \d+\/\d+ \(t = /.test(e.message);
      throw new NonFiniteError(
        (located ? "" : `${stepText(ctx, t)}: `) + (named ? "" : "the denoiser: ") + e.message +
          (where.startsWith("the denoiser") ? inputNote(x) : ""),
        where,
        e.value,
        e.index,
      );
    }
    throw e;
  }
  const i = firstNonFinite(eps);
  if (i >= 0) {
    throw new NonFiniteError(
      `${stepText(ctx, t)}: the denoiser returned ${eps[i]} at flat index ${i} (image seed ` +
        `${seedAt(ctx, eps.length, i)})${inputNote(x)}`,
      "the denoiser",
      eps[i],
      i,
    );
  }
  return eps;
}

/** Checks x after a sampler update made from finite x_t and eps (so the update overflowed). */
export function checkUpdate(
  x: Float32Array,
  sampler: string,
  t: number,
  ctx: DenoiseContext,
): void {
  const i = firstNonFinite(x);
  if (i < 0) return;
  throw new NonFiniteError(
    `${stepText(ctx, t)}: the ${sampler} update produced ${x[i]} at flat index ${i} (image seed ` +
      `${seedAt(ctx, x.length, i)}) from finite x_t and eps: eps is too large for float32 ` +
      `(huge guidance?); lower --scale, add --clip-grad or keep --clip true`,
    `the ${sampler} update`,
    x[i],
    i,
  );
}
