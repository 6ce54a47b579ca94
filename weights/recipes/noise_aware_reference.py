#!/usr/bin/env python3
"""A tiny random-weight noise-aware classifier (train_noise_aware.NoiseAwareResNet, width 4) and
the float64 torch.autograd gradient of its energy objective with respect to x_t, for
tests/methods_test.ts (lib/energy/noise_aware.ts's head). Writes
tests/fixtures/through_denoiser/noise_aware_tiny.{onnx,ref.json}.

Usage (repository root): .venv/bin/python weights/recipes/noise_aware_reference.py
"""

from __future__ import annotations

import base64
import json
import os
import sys

import numpy as np
import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _conversion_common import export_onnx  # noqa: E402
from through_denoiser_reference import objective, run_onnx64  # noqa: E402
from train_noise_aware import NoiseAwareResNet  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "through_denoiser")


def main() -> None:
    torch.manual_seed(0)
    model = NoiseAwareResNet(4).eval()
    path = os.path.join(OUT, "noise_aware_tiny.onnx")
    export_onnx(model, (torch.zeros(2, 3, 32, 32), torch.tensor([0, 500])), path, ["x", "t"], ["logits"],
                {"x": {0: "N"}, "t": {0: "N"}, "logits": {0: "N"}})
    m = onnx.load(path)
    rng = np.random.default_rng(16)
    x32 = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    t = np.array([100, 100], dtype=np.int64)
    y = np.array([2, 7], dtype=np.int64)
    coef = np.array([[1, -1, 0], [1, 0, 0]], dtype=np.float64)
    x = torch.from_numpy(x32.astype(np.float64)).requires_grad_(True)
    logits = list(run_onnx64(m, {"x": x, "t": torch.from_numpy(t)}).values())[0]
    with torch.no_grad():
        ref32 = model(torch.from_numpy(x32), torch.from_numpy(t))
    total, e_xy, e_x = objective(logits, torch.from_numpy(y), torch.from_numpy(coef), torch.zeros(2, dtype=torch.float64))
    (grad,) = torch.autograd.grad(total, x)
    ref = {
        "recipe": "weights/recipes/noise_aware_reference.py",
        "t": int(t[0]), "y": y.tolist(), "coef": coef.tolist(),
        "x": base64.b64encode(x32.tobytes()).decode(),
        "logits": logits.detach().reshape(-1).tolist(),
        "logits_torch_f32_max_abs_diff": float((logits.detach().float() - ref32).abs().max()),
        "energy_xy": e_xy.detach().tolist(), "energy_x": e_x.detach().tolist(),
        "grad": base64.b64encode(grad.numpy().astype("<f8").tobytes()).decode(),
    }
    with open(os.path.join(OUT, "noise_aware_tiny.ref.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes); interpreter vs torch f32 logits "
          f"{ref['logits_torch_f32_max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
