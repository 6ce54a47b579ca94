/**
 * UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
 * Diffusion Models", arXiv:2302.04867): the unified predictor UniP-p and corrector UniC-p of §3
 * in their multistep, data-prediction form, with B(h) = e^h - 1 ("bh2", the paper's B_2, its
 * choice for few steps and guided sampling). The corrector reuses the model evaluation the next
 * predictor needs anyway, so UniPC-2 costs one network call per step and reaches order 3
 * (measured in tests/sampler_fast_test.ts).
 * Conventions of diffusers' UniPCMultistepScheduler (solver_order 2, predict_x0, solver_type
 * "bh2", lower_order_final, final_sigmas_type "zero"). Pure functions: the loop keeps the history.
 * Notation: x_s -> `x`, x0_hat(x_s, s) = m_0 -> `x0`, the previous grid point s_1 -> `prev`.
 * @module
 */
import { expNegH, type FloatArray, sameKind, type VpPoint, vpPoint } from "./data_prediction.ts";

/** The data prediction at the grid point before s and its abar (second-order history). */
export interface UnipcHistory {
  /** x0_hat at that point. */
  x0: FloatArray;
  /** Its abar. */
  abar: number;
}

/** Inputs of the predictor UniP s -> t. */
export interface UnipcPredictInput {
  /** x_s (VP; corrected when the corrector ran). */
  x: FloatArray;
  /** x0_hat(x_s, s), the data prediction the model gave at s. */
  x0: FloatArray;
  /** abar_s. */
  abarS: number;
  /** abar_t (1 for the clean image). */
  abarT: number;
  /** Given: UniP-2; absent: UniP-1 (= DDIM, eta 0). */
  prev?: UnipcHistory;
  /** Optional output buffer. */
  out?: FloatArray;
}

/** Inputs of the corrector UniC for the step s -> t just predicted. */
export interface UnipcCorrectInput {
  /** x_s, the point the predictor started from. */
  x: FloatArray;
  /** x0_hat at s (m_0). */
  x0: FloatArray;
  /** x0_hat at t, evaluated at the predicted x_t (the evaluation the next predictor reuses). */
  x0T: FloatArray;
  /** abar_s. */
  abarS: number;
  /** abar_t. */
  abarT: number;
  /** The history the predictor used (order 2), or absent (order 1). */
  prev?: UnipcHistory;
  /** Optional output buffer. */
  out?: FloatArray;
}

/**
 * The predictor order diffusers uses at step `i` of `steps` (solver_order 2, lower_order_final):
 * 1 at the first step (warm-up) and at the last step, 2 elsewhere. The corrector after step i
 * uses the same order as step i's predictor.
 */
export function unipcOrder(i: number, steps: number): 1 | 2 {
  return Math.min(2, steps - i, i + 1) as 1 | 2;
}

/** h, B(h) = e^{-h} - 1 in data prediction ("bh2") and the base term's coefficients. */
function base(abarS: number, abarT: number) {
  const s = vpPoint(abarS), t = vpPoint(abarT);
  const hPhi1 = expNegH(s, t) - 1; // h phi_1(-h) = e^{-h} - 1
  return { s, t, h: t.lambda - s.lambda, hPhi1, bh: hPhi1, ratio: t.sigma / s.sigma };
}

/** r_1 = (lambda_{s_1} - lambda_s) / h (negative: s_1 is noisier than s). */
function rk(s: VpPoint, prevAbar: number, h: number): number {
  return (vpPoint(prevAbar).lambda - s.lambda) / h;
}

/**
 * UniP: x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) m_0
 * [ - alpha_t B(h) rho D_1, D_1 = (m_1 - m_0) / r_1, rho = 1/2 for order 2 ].
 */
export function unipcPredict(p: UnipcPredictInput): FloatArray {
  const n = p.x.length;
  if (p.x0.length !== n) throw new Error(`unipcPredict: x0 has ${p.x0.length} values, x has ${n}`);
  const { s, t, h, hPhi1, bh, ratio } = base(p.abarS, p.abarT);
  const out = p.out ?? sameKind(p.x);
  const c0 = -t.alpha * hPhi1;
  if (!p.prev) {
    for (let i = 0; i < n; i++) out[i] = ratio * p.x[i] + c0 * p.x0[i];
    return out;
  }
  if (p.abarT === 1) {
    throw new Error("unipcPredict: the step onto the clean image (abar = 1) must be first order");
  }
  const r1 = rk(s, p.prev.abar, h);
  const c1 = -t.alpha * bh * 0.5 / r1; // coefficient of (m_1 - m_0)
  const m1 = p.prev.x0;
  for (let i = 0; i < n; i++) out[i] = ratio * p.x[i] + c0 * p.x0[i] + c1 * (m1[i] - p.x0[i]);
  return out;
}

/**
 * UniC: x_t^c = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) m_0
 *   - alpha_t B(h) (sum_k rho_k D_k + rho_t (m_t - m_0)),
 * where order 1 takes rho_t = 1/2, and order 2 solves R rho = b with R = [[1, 1], [r_1, 1]],
 * b_k = k! h phi_{k+1}(-h) / B(h) (the phi recursion h phi_{k+1} = h phi_k / hh - 1/k!).
 */
export function unipcCorrect(p: UnipcCorrectInput): FloatArray {
  const n = p.x.length;
  if (p.x0.length !== n || p.x0T.length !== n) {
    throw new Error(
      `unipcCorrect: x0 (${p.x0.length}) and x0T (${p.x0T.length}) must match x (${n})`,
    );
  }
  const { s, t, h, hPhi1, bh, ratio } = base(p.abarS, p.abarT);
  if (p.abarT === 1) throw new Error("unipcCorrect: there is no corrector onto the clean image");
  const out = p.out ?? sameKind(p.x);
  const c0 = -t.alpha * hPhi1;
  const m0 = p.x0, mt = p.x0T;
  if (!p.prev) {
    const ct = -t.alpha * bh * 0.5;
    for (let i = 0; i < n; i++) out[i] = ratio * p.x[i] + c0 * m0[i] + ct * (mt[i] - m0[i]);
    return out;
  }
  const hh = -h;
  let hPhiK = hPhi1 / hh - 1;
  const b1 = hPhiK / bh;
  hPhiK = hPhiK / hh - 1 / 2;
  const b2 = hPhiK * 2 / bh;
  const r1 = rk(s, p.prev.abar, h);
  // [[1, 1], [r1, 1]] [rho1, rhoT] = [b1, b2]
  const rho1 = (b1 - b2) / (1 - r1), rhoT = b1 - rho1;
  const c1 = -t.alpha * bh * rho1 / r1; // coefficient of (m_1 - m_0)
  const ct = -t.alpha * bh * rhoT;
  const m1 = p.prev.x0;
  for (let i = 0; i < n; i++) {
    out[i] = ratio * p.x[i] + c0 * m0[i] + c1 * (m1[i] - m0[i]) + ct * (mt[i] - m0[i]);
  }
  return out;
}
