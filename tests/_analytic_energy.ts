// Energy sources with closed-form gradients, for guidance tests (no ONNX involved).
import type { EnergySource } from "../lib/guidance/directions.ts";
import type { CoefficientsArg, EnergyOutputs } from "../lib/energy/classifier.ts";

/**
 * logits_k(x) = -|x - c_k|^2 / 2 + b_k in diffusion space (a quadratic classifier), so
 * grad E(x, y) = x - c_y, grad E(x) = x - sum_k p_k c_k. Computes the head's objective gradient
 * d/dx sum_n (a E(x,y) + b E(x) + c |e* - E(x)|) exactly as the ONNX head does.
 */
export class QuadraticEnergy implements EnergySource {
  calls = 0;
  constructor(readonly centres: Float64Array[], readonly bias: number[] = centres.map(() => 0)) {}
  get numClasses() {
    return this.centres.length;
  }
  logits(x: Float32Array, n: number): Float64Array {
    const k = this.numClasses, per = x.length / n;
    const out = new Float64Array(n * k);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < k; j++) {
        let d = 0;
        for (let p = 0; p < per; p++) d += (x[i * per + p] - this.centres[j][p]) ** 2;
        out[i * k + j] = -d / 2 + this.bias[j];
      }
    }
    return out;
  }
  fromDiffusionSpace(
    x: Float32Array,
    n: number,
    y: Int32Array | readonly number[],
    coef: CoefficientsArg,
    eStar?: number | Float32Array | readonly number[],
  ): Promise<EnergyOutputs> {
    this.calls++;
    const k = this.numClasses, per = x.length / n;
    const lg = this.logits(x, n);
    const out: EnergyOutputs = {
      logits: Float32Array.from(lg),
      energyXY: new Float32Array(n),
      energyX: new Float32Array(n),
      grad: new Float32Array(x.length),
    };
    for (let i = 0; i < n; i++) {
      const row = lg.subarray(i * k, (i + 1) * k);
      const m = Math.max(...row);
      const z = row.reduce((s, v) => s + Math.exp(v - m), 0);
      const p = Array.from(row, (v) => Math.exp(v - m) / z);
      const ex = -(m + Math.log(z)), exy = -row[y[i]];
      out.energyX[i] = ex;
      out.energyXY[i] = exy;
      const [a, b, c] = coef.length === 3 ? coef : [coef[i * 3], coef[i * 3 + 1], coef[i * 3 + 2]];
      const es = eStar === undefined ? 0 : typeof eStar === "number" ? eStar : eStar[i];
      const sign = Math.sign(es - ex);
      for (let q = 0; q < per; q++) {
        const xv = x[i * per + q];
        const gxy = xv - this.centres[y[i]][q]; // grad E(x,y)
        let mean = 0;
        for (let j = 0; j < k; j++) mean += p[j] * this.centres[j][q];
        const gx = xv - mean; // grad E(x)
        // d/dx c |e* - E(x)| = -c sign(e* - E(x)) grad E(x)
        out.grad[i * per + q] = a * gxy + b * gx - c * sign * gx;
      }
    }
    return Promise.resolve(out);
  }
}
