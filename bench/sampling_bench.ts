// Sampling throughput (`deno task bench`). One iteration = one denoiser call at batch B
// ("call") or one whole DDIM step: call + the pure step function ("step"), so
// calls/s = iter/s, images/s through a 100-step DDIM sample = B * iter/s of "step" / 100.
import { loadOnnx } from "../lib/runtime/session.ts";
import { onnxDenoiser } from "../lib/models/onnx_denoiser.ts";
import { ddimStep } from "../lib/sampler/ddim.ts";
import { linearSchedule } from "../lib/schedule.ts";
import { RandomStream } from "../lib/random.ts";
import type { DenoiseContext } from "../lib/sampler/loop.ts";

const schedule = linearSchedule();
const shape = { c: 3, h: 32, w: 32 };
const per = 3 * 32 * 32;
const models = {
  "mixture-cifar10": "../weights/mixture_cifar10.onnx",
  "tiny-unet": "../weights/testing/tiny_unet.onnx",
};

for (const [name, rel] of Object.entries(models)) {
  const model = await loadOnnx(new URL(rel, import.meta.url).pathname, { provider: "auto" });
  for (const batch of [1, 16, 64]) {
    const den = onnxDenoiser(model, batch);
    const x = new RandomStream(batch).fillNormal(new Float32Array(batch * per));
    const ctx = {
      n: batch,
      shape,
      seeds: [],
      items: [],
      stepIndex: 0,
      steps: 100,
      schedule,
    } as DenoiseContext;
    const out = new Float32Array(batch * per), x0 = new Float32Array(batch * per);
    Deno.bench(`${name} denoiser call, batch ${batch}`, {
      group: `${name} b${batch}`,
      baseline: true,
    }, async () => {
      await den(x, 500, ctx);
    });
    Deno.bench(
      `${name} DDIM step (call + update), batch ${batch}`,
      { group: `${name} b${batch}` },
      async () => {
        const eps = await den(x, 500, ctx);
        ddimStep({
          x,
          eps,
          abarT: schedule.alphasCumprod[500],
          abarPrev: schedule.alphasCumprod[490],
          eta: 0,
          out,
          x0Out: x0,
        });
      },
    );
  }
}
