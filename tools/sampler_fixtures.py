#!/usr/bin/env python3
"""Parity fixtures for the fast samplers (run by hand, writes tests/fixtures/samplers/*.json).

    .venv/bin/python tools/sampler_fixtures.py

For each diffusers scheduler the toolkit matches (DPMSolverMultistepScheduler, dpmsolver++ 2M
midpoint; UniPCMultistepScheduler, bh2; HeunDiscreteScheduler with Karras sigmas), on the
google/ddpm-cifar10-32 schedule (linear betas 1e-4..0.02, T = 1000), with and without x0
clipping (DPM-Solver++ / UniPC: thresholding with sample_max_value 1.0, which clamps x0 to
[-1, 1]; Heun: clip_sample), the script drives the scheduler with a fixed, seeded model (see `run`: the exact eps of a fixed image plus one seeded
perturbation per network call) and records: the timesteps and sigmas it chose, x_T, the model
(c, its sigma per call, the perturbations) and the sample after every `step` call.
tests/sampler_fast_test.ts runs the same model through the toolkit's step functions and compares
every step (max abs error <= 1e-5).

Samples are stored in the scheduler's own space: VP x_t for the multistep solvers (their
`scale_model_input` is the identity), VE z = x_t / sqrt(abar_t) for Heun (the test converts).
"""

import json
import os

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, HeunDiscreteScheduler, UniPCMultistepScheduler
import diffusers

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "samplers")
SHAPE = (2, 3, 4, 4)  # two images of 3x4x4: small, but several values clip and several do not
BASE = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


def flat(t: torch.Tensor) -> list:
    # float32 values, written with the 9 significant digits that round-trip a float32
    return [float("%.9g" % v) for v in t.detach().to(torch.float64).flatten()]


def float64_sigmas(sched, steps: int) -> None:
    """Replaces the scheduler's float32 sigmas by the same formulas in float64.

    diffusers computes abar with a float32 cumprod and stores its sigmas as float32; its step
    coefficients (lambda, e^{-h}) then carry ~1e-6 relative error per step, which compounds to
    ~4e-5 over 8-20 steps (measured against the float64 toolkit). The fixtures run diffusers' own
    step code on float64 sigmas from its own formulas, so the comparison tests the algorithm, not
    the rounding of its coefficients.
    """
    betas = torch.linspace(BASE["beta_start"], BASE["beta_end"], BASE["num_train_timesteps"],
                           dtype=torch.float64)
    abar = torch.cumprod(1.0 - betas, dim=0).numpy()
    full = np.sqrt((1.0 - abar) / abar)
    if isinstance(sched, HeunDiscreteScheduler):
        # Karras et al. eq 5 between the end sigmas (diffusers' _convert_to_karras)
        sig = sched._convert_to_karras(in_sigmas=np.array([full[-1], full[0]]), num_inference_steps=steps)
        sig = torch.from_numpy(np.concatenate([sig, [0.0]]))
        sched.sigmas = torch.cat([sig[:1], sig[1:-1].repeat_interleave(2), sig[-1:]])
    else:
        ts = sched.timesteps.numpy()
        sched.sigmas = torch.from_numpy(np.concatenate([full[ts], [0.0]]))


def run(name: str, sched, steps: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    sched.set_timesteps(steps)
    float64_sigmas(sched, steps)
    timesteps = [float(t) for t in sched.timesteps]
    x = torch.randn(SHAPE, generator=g, dtype=torch.float32) * float(sched.init_noise_sigma)
    x_t = x.clone()
    # The model: eps_k(x) = (x - alpha_k c) / sigma_k + 0.3 alpha_k n_k, the exact eps of a fixed
    # image c (uniform in [-1.2, 1.2], so some x0 clip) plus a seeded perturbation n_k ~ N(0, I)
    # that moves x0_hat by 0.3 sigma_k n_k. The test computes the same eps from its own x: with a
    # replayed eps that ignored x, float32 rounding of x would grow by alpha_0 / alpha_T ~ 150
    # over the run (each step maps a change dx to (alpha_t / alpha_s) dx when eps is held fixed).
    c = torch.rand(SHAPE, generator=g, dtype=torch.float32) * 2.4 - 1.2
    eps_seq, samples, model_inputs = [], [], []
    for k, t in enumerate(sched.timesteps):
        model_in = sched.scale_model_input(x, t)
        sig = float(sched.sigmas[k])  # the VE sigma of call k (Heun repeats its inner sigmas)
        alpha = (1.0 + sig * sig) ** -0.5
        n_k = torch.randn(SHAPE, generator=g, dtype=torch.float32)
        eps = (model_in - alpha * c) / (sig * alpha) + 0.3 * alpha * n_k
        eps_seq.append(flat(n_k))
        model_inputs.append(flat(model_in))
        x = sched.step(eps, t, x).prev_sample
        samples.append(flat(x))
    return {
        "name": name,
        "scheduler": type(sched).__name__,
        "config": {k: (v if not isinstance(v, float) or np.isfinite(v) else str(v))
                   for k, v in dict(sched.config).items() if not k.startswith("_")},
        "steps": steps,
        "shape": list(SHAPE),
        "timesteps": timesteps,
        "sigmas": [float(s) for s in sched.sigmas],
        "xT": flat(x_t),
        "c": flat(c),
        "modelSigmas": [float(sched.sigmas[k]) for k in range(len(sched.timesteps))],
        "perturbations": eps_seq,
        # the denoiser's input (only Heun's differs from the sample: z / sqrt(sigma^2 + 1))
        **({"modelInputs": model_inputs} if isinstance(sched, HeunDiscreteScheduler) else {}),
        "samples": samples,
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
    }


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    cases = []
    for clip in (False, True):
        tag = "clip" if clip else "noclip"
        thr = dict(thresholding=clip, sample_max_value=1.0, dynamic_thresholding_ratio=0.995)
        for steps in (8, 20):
            cases.append((f"dpmpp-2m-{steps}-{tag}", DPMSolverMultistepScheduler(
                **BASE, **thr, algorithm_type="dpmsolver++", solver_order=2,
                solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero",
                timestep_spacing="linspace"), steps))
            cases.append((f"unipc-{steps}-{tag}", UniPCMultistepScheduler(
                **BASE, **thr, solver_order=2, solver_type="bh2", predict_x0=True,
                lower_order_final=True, final_sigmas_type="zero", timestep_spacing="linspace"),
                steps))
            cases.append((f"heun-{steps}-{tag}", HeunDiscreteScheduler(
                **BASE, use_karras_sigmas=True, clip_sample=clip, clip_sample_range=1.0,
                timestep_spacing="linspace"), steps))
    for i, (name, sched, steps) in enumerate(cases):
        fx = run(name, sched, steps, seed=100 + i)
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(fx, f, separators=(",", ":"))
        print(f"wrote {name}.json: {len(fx['perturbations'])} calls, timesteps {fx['timesteps'][:4]}...")


if __name__ == "__main__":
    main()
