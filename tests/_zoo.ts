// The classifier zoo's fixtures (weights/recipes/export_zoo.py, issue 13 item 6): reading them,
// running them through the energy head, and measuring the head against their float64
// references. Used by tests/classifier_zoo_test.ts and tools/zoo_table.ts.
import {
  type EnergyClassifier,
  type LoadEnergyClassifierOptions,
  OBJECTIVES,
} from "../lib/energy/classifier.ts";
import type { InputConventions } from "../lib/energy/head.ts";
import { f32 } from "./_base64.ts";
import { resolveModel } from "../lib/weights.ts";

/** One zoo fixture (`tests/fixtures/zoo/<name>.ref.json`). */
export interface ZooFixture {
  name: string;
  family: string;
  architecture: string;
  exporter: "legacy" | "dynamo";
  opset: number;
  dynamic_batch: boolean;
  dtype: "float32" | "float16" | "bfloat16";
  output_kind: "logits" | "softmax";
  model: string;
  /** The external-data file beside `model`, for a fixture saved by torch with external data. */
  external_data?: string;
  conventions: InputConventions;
  /** [H, W] the classifier takes. */
  input_size: [number, number];
  /** Side of the fixture's images when they differ from input_size (resized inside the head). */
  resize_from: number | null;
  num_classes: number;
  node_count: number;
  ops: Record<string, number>;
  tolerance: number;
  x_shape: [number, number, number, number];
  x_b64: string;
  y: number[];
  dual_lambda: number;
  e_star: number[];
  logits_b64: string;
  energy_xy: number[];
  energy_x: number[];
  grad_joint_b64: string;
  grad_logp_b64: string;
  grad_dual_b64: string;
}

/** The folder of the zoo's fixtures. */
export const ZOO_DIR = new URL("./fixtures/zoo/", import.meta.url);

/** Names of every zoo fixture, sorted. */
export function zooNames(): string[] {
  const names: string[] = [];
  for (const e of Deno.readDirSync(ZOO_DIR)) {
    if (e.isFile && e.name.endsWith(".ref.json")) names.push(e.name.slice(0, -".ref.json".length));
  }
  return names.sort();
}

/**
 * Reads fixture `name` and its ONNX bytes as a task resolves a model given by path (lib/weights.ts
 * `resolveModel`): a fixture saved with external data (`fx.external_data`) comes back inlined.
 */
export async function readZooFixture(
  name: string,
): Promise<{ fx: ZooFixture; bytes: Uint8Array }> {
  const fx: ZooFixture = JSON.parse(await Deno.readTextFile(new URL(`${name}.ref.json`, ZOO_DIR)));
  const { bytes } = await resolveModel(new URL(fx.model, ZOO_DIR).pathname);
  return { fx, bytes };
}

/** The loadEnergyClassifier options a fixture needs: its conventions, and sizes for a resize. */
export function zooLoadOptions(fx: ZooFixture): LoadEnergyClassifierOptions {
  const [, , h, w] = fx.x_shape;
  return {
    conventions: fx.conventions,
    provider: "cpu",
    intraOpThreads: 1,
    ...(fx.resize_from ? { imageSize: [h, w] as const, inputSize: fx.input_size } : {}),
  };
}

/** max |a - b| / max |b|: the relative error the zoo's acceptance bound (1e-4) is stated in. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0, den = 1e-12;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    num = Number.isNaN(d) ? Infinity : Math.max(num, d);
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

/** Relative errors of one head run against a fixture's references. */
export interface ZooErrors {
  logits: number;
  energyXY: number;
  energyX: number;
  gradJoint: number;
  gradLogp: number;
  gradDual: number;
}

/**
 * Runs the fixture's images through `clf` once, as a batch of 3n images (the n images under
 * the joint, logp and dual objectives, per-image coefficients), and returns the relative errors
 * of the logits, both energies and the three input gradients against the float64 references.
 */
export async function zooErrors(clf: EnergyClassifier, fx: ZooFixture): Promise<ZooErrors> {
  const n = fx.x_shape[0];
  const x = f32(fx.x_b64);
  const size = x.length / n;
  const objectives = [
    OBJECTIVES.joint,
    OBJECTIVES.crossEntropy,
    OBJECTIVES.dual(fx.dual_lambda),
  ];
  const m = objectives.length * n;
  const xs = new Float32Array(m * size);
  const ys: number[] = [];
  const coef = new Float32Array(m * 3);
  const eStar = new Float32Array(m);
  objectives.forEach((c, o) => {
    xs.set(x, o * n * size);
    for (let i = 0; i < n; i++) {
      ys.push(fx.y[i]);
      coef.set(c, (o * n + i) * 3);
      eStar[o * n + i] = fx.e_star[i];
    }
  });
  const out = await clf.energies(xs, m, ys, coef, eStar);
  const K = clf.numClasses;
  const rows = (a: Float32Array, o: number, w: number) => a.subarray(o * n * w, (o + 1) * n * w);
  const worst = (f: (o: number) => number) => Math.max(...objectives.map((_, o) => f(o)));
  return {
    logits: worst((o) => relError(rows(out.logits, o, K), f32(fx.logits_b64))),
    energyXY: worst((o) => relError(rows(out.energyXY, o, 1), fx.energy_xy)),
    energyX: worst((o) => relError(rows(out.energyX, o, 1), fx.energy_x)),
    gradJoint: relError(rows(out.grad, 0, size), f32(fx.grad_joint_b64)),
    gradLogp: relError(rows(out.grad, 1, size), f32(fx.grad_logp_b64)),
    gradDual: relError(rows(out.grad, 2, size), f32(fx.grad_dual_b64)),
  };
}
