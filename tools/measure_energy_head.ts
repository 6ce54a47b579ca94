/**
 * Measures the energy head on the three real robust CIFAR-10 classifiers in ../shared/models
 * and writes tests/fixtures/energy_head_real_models.json:
 * - logits of the head vs the classifier run one image at a time (max |diff|, batch 1 and 64);
 * - the gradient vs the float64 torch.autograd reference of
 *   tests/fixtures/autodiff/energy_real_models.ref.json (weights/recipes/energy_head_parity.py);
 * - the gradient vs central finite differences along random directions, for the three named
 *   objectives (cross-entropy, joint, dual lambda = 0.15) on real test images, with a target
 *   class y = (label + 5) mod 10 (a class the image is not, as in guidance; for the true class
 *   of a confidently classified image the cross-entropy gradient is ~1e-3 and float32
 *   differences cannot resolve it);
 * - time per image at batch 64, forward-only head vs full head, and their ratio, both through
 *   the adapter (what guidance pays) and for the bare ONNX Runtime session run.
 *
 *   deno run -A tools/measure_energy_head.ts [--images 4] [--directions 32] [--reps 5]
 * @module
 */
import { parseArgs } from "node:util";
import { compareLogits, directionalGradCheck, type GradCheckResult } from "../lib/energy/check.ts";
import { type Coefficients, loadEnergyClassifier, OBJECTIVES } from "../lib/energy/classifier.ts";
import { CIFAR10_NORMALISATION } from "../lib/energy/conventions.ts";
import { compileEnergyHead } from "../lib/energy/head.ts";
import { imagesToFloat, loadCifar10 } from "../lib/data/cifar10.ts";
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { loadOnnx, type OnnxModel, sha256Hex } from "../lib/runtime/session.ts";
import { Buffer } from "node:buffer";
import * as ort from "onnxruntime-node";

const MODELS = ["vnncomp21_resnet2b", "vnncomp21_resnet4b", "sri_resnet_a"];
const OUT = new URL("../tests/fixtures/energy_head_real_models.json", import.meta.url);
const CIFAR = new URL("../../shared/data/cifar10/cifar-10-binary.tar.gz", import.meta.url);
const REF = new URL("../tests/fixtures/autodiff/energy_real_models.ref.json", import.meta.url);

function f32(b64: string): Float32Array {
  const bytes = Buffer.from(b64, "base64");
  return new Float32Array(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  );
}

/** max |a - b| / max |b| and |a - b| / |b|. */
function relErrors(a: Float32Array, b: Float32Array): { relMax: number; relL2: number } {
  let num = 0, den = 0, n2 = 0, d2 = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
    n2 += (a[i] - b[i]) ** 2;
    d2 += b[i] ** 2;
  }
  return { relMax: num / den, relL2: Math.sqrt(n2 / d2) };
}

/** Milliseconds per bare session run with the given feeds. */
function sessionMs(
  model: OnnxModel,
  feeds: Record<string, ort.Tensor>,
  reps: number,
): Promise<number> {
  return timeIt(() => model.session.run(feeds), reps);
}

/** Mean milliseconds per call of `fn` over `reps` calls after one warm-up call. */
async function timeIt(fn: () => Promise<unknown>, reps: number): Promise<number> {
  await fn();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await fn();
  return (performance.now() - t0) / reps;
}

async function measureModel(
  name: string,
  x64: Float32Array,
  labels: number[],
  opts: { images: number; directions: number; reps: number },
) {
  const bytes = await Deno.readFile(new URL(`../../shared/models/${name}.onnx`, import.meta.url));
  const conv = CIFAR10_NORMALISATION;
  const raw = await loadOnnx(bytes, { provider: "cpu" });
  const head = await loadEnergyClassifier(bytes, { conventions: conv, provider: "cpu" });
  const fwd = await loadEnergyClassifier(compileEnergyHead(bytes, { ...conv, gradient: false }), {
    provider: "cpu",
  });
  const shape = head.info.inputShape, D = head.imageSize, n = 64;

  const l64 = await compareLogits(
    raw,
    conv,
    x64,
    n,
    shape,
    (await head.forward(x64, n, labels)).logits,
  );
  const x1 = x64.subarray(0, D);
  const l1 = await compareLogits(
    raw,
    conv,
    x1,
    1,
    shape,
    (await head.forward(x1, 1, [labels[0]])).logits,
  );

  const ref = JSON.parse(await Deno.readTextFile(REF));
  const m = ref.models[name];
  if (m.sha256 !== sha256Hex(bytes)) throw new Error(`${name}: reference made from another file`);
  const refOut = await head.energies(
    f32(ref.x_b64),
    ref.x_shape[0],
    m.y,
    Float32Array.from(m.coef),
    m.e_star,
  );
  const autograd = {
    images: ref.x_shape[0],
    grad: relErrors(refOut.grad, f32(m.grad_b64)),
    logitsMaxAbsDiff: Math.max(...refOut.logits.map((v, i) => Math.abs(v - f32(m.logits_b64)[i]))),
  };

  const objectives: Record<string, Coefficients> = {
    crossEntropy: OBJECTIVES.crossEntropy,
    joint: OBJECTIVES.joint,
    dual_0_15: OBJECTIVES.dual(0.15),
  };
  const fd: Record<string, GradCheckResult[]> = {};
  for (const [oname, coef] of Object.entries(objectives)) {
    fd[oname] = [];
    for (let i = 0; i < opts.images; i++) {
      const xi = x64.slice(i * D, (i + 1) * D);
      const target = (labels[i] + 5) % 10;
      const eX = (await head.forward(xi, 1, [target])).energyX[0];
      fd[oname].push(
        await directionalGradCheck(head, xi, target, coef, eX + (i % 2 ? 1 : -1), {
          directions: opts.directions,
          seed: i,
        }),
      );
    }
  }
  const all = Object.values(fd).flat();

  const ones = new Float32Array(n * 3).fill(1);
  const forwardMs = await timeIt(() => fwd.forward(x64, n, labels), opts.reps);
  const headMs = await timeIt(() => head.energies(x64, n, labels, ones, 0), opts.reps);
  const xT = new ort.Tensor("float32", x64, [n, ...shape]);
  const yT = new ort.Tensor("int64", BigInt64Array.from(labels.map(BigInt)), [n]);
  const fwdSessionMs = await sessionMs(fwd.model, { x: xT, y: yT }, opts.reps);
  const headSessionMs = await sessionMs(head.model, {
    x: xT,
    y: yT,
    coef: new ort.Tensor("float32", ones, [n, 3]),
    e_star: new ort.Tensor("float32", new Float32Array(n), [n]),
  }, opts.reps);
  return {
    model: `../shared/models/${name}.onnx`,
    sha256: sha256Hex(bytes),
    batchRewrites: head.info.batchRewrites,
    logits: {
      batch1MaxAbsDiff: l1.maxAbsDiff,
      batch64MaxAbsDiff: l64.maxAbsDiff,
      maxAbsLogit: l64.maxAbsLogit,
    },
    float64Autograd: autograd,
    finiteDifferences: {
      step: all[0].step,
      directions: opts.directions,
      images: opts.images,
      minCosine: Math.min(...all.map((r) => r.cosine)),
      maxRelError: Math.max(...all.map((r) => r.relError)),
      maxAlongGradRelError: Math.max(...all.map((r) => r.alongGradRelError)),
      perObjective: Object.fromEntries(
        Object.entries(fd).map(([k, rs]) => [
          k,
          rs.map((r) => ({
            cosine: r.cosine,
            relError: r.relError,
            alongGradRelError: r.alongGradRelError,
            gradNorm: r.gradNorm,
          })),
        ]),
      ),
    },
    timing: {
      batch: n,
      forwardMsPerImage: forwardMs / n,
      headMsPerImage: headMs / n,
      ratio: headMs / forwardMs,
      sessionForwardMsPerImage: fwdSessionMs / n,
      sessionHeadMsPerImage: headSessionMs / n,
      sessionRatio: headSessionMs / fwdSessionMs,
    },
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      images: { type: "string", default: "4" },
      directions: { type: "string", default: "32" },
      reps: { type: "string", default: "5" },
    },
    strict: true,
  });
  const opts = {
    images: Number(values.images),
    directions: Number(values.directions),
    reps: Number(values.reps),
  };
  for (const [k, v] of Object.entries(opts)) {
    if (!Number.isInteger(v) || v < 1) {
      throw new Error(`--${k} '${v}' is invalid: use a positive integer`);
    }
  }
  const test = await loadCifar10(CIFAR.pathname, "test", { limit: 64 });
  const x64 = imagesToFloat(test.images, "01");
  const labels = Array.from(test.labels);
  const results: Record<string, unknown> = {};
  for (const name of MODELS) {
    const r = await measureModel(name, x64, labels, opts);
    results[name] = r;
    console.log(
      `${name}: logits max|diff| b1 ${r.logits.batch1MaxAbsDiff.toExponential(2)} b64 ` +
        `${r.logits.batch64MaxAbsDiff.toExponential(2)}; vs float64 autograd rel ` +
        `${r.float64Autograd.grad.relMax.toExponential(2)}; FD min cos ${
          r.finiteDifferences.minCosine.toFixed(6)
        } ` +
        `max rel ${r.finiteDifferences.maxRelError.toExponential(2)} along-grad ` +
        `${r.finiteDifferences.maxAlongGradRelError.toExponential(2)}; ms/img fwd ` +
        `${r.timing.forwardMsPerImage.toFixed(3)} head ${
          r.timing.headMsPerImage.toFixed(3)
        } ratio ` +
        `${r.timing.ratio.toFixed(2)} (bare session ${r.timing.sessionRatio.toFixed(2)})`,
    );
  }
  await writeJsonAtomic(OUT.pathname, {
    description:
      "energy head vs the real classifiers (tools/measure_energy_head.ts): logits vs the " +
      "classifier run one image at a time; gradient vs central finite differences of the head's " +
      "own float32 energies along random unit directions (step in [0,1] L2 units) on CIFAR-10 test " +
      "images 0..images-1 with target y = (label + 5) mod 10, E* = E(x) +- 1; gradient vs the " +
      "float64 torch.autograd reference (tests/fixtures/autodiff/energy_real_models.ref.json); " +
      "timing on CPU at batch 64 (forward-only head vs full head; adapter call and bare session run)",
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    cpus: navigator.hardwareConcurrency,
    results,
  });
  console.log(`wrote ${OUT.pathname}`);
}
