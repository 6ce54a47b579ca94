#!/usr/bin/env python3
"""Float64 PyTorch-autograd references for gradients through the denoiser (issue 15, item 1).

The toolkit composes one ONNX graph x_t -> denoiser -> x0_hat -> [0, 1] -> classifier -> energy
and differentiates it with lib/autodiff (lib/energy/through_denoiser.ts). This script computes
the same gradient, d/dx_t sum_n a_n E(x0_hat_n, y_n) + b_n E(x0_hat_n) + c_n |E*_n - E(x0_hat_n)|
with x0_hat = (x_t - sqrt(1 - abar_t) eps(x_t, t)) / sqrt(abar_t) (METHOD.md §2), in float64
with torch.autograd, by running the ONNX graphs themselves in a small float64 torch interpreter
(the ops the project's denoisers and classifiers use). No checkpoint is needed, so it works for
the default DDPM (whose PyTorch checkpoint is not committed) as well as for the tiny UNet; for the
tiny UNet the interpreter is also cross-checked against diffusers' UNet2DModel rebuilt by
export_tiny_unet.py (same seed, float64).

Writes tests/fixtures/through_denoiser/<name>.ref.json: inputs (x_t base64 float32, t, abar, y,
coef, e_star) and the float64 reference (eps, energies, grad, base64 float64).

Usage (repository root):
  .venv/bin/python weights/recipes/through_denoiser_reference.py
"""

from __future__ import annotations

import base64
import json
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "through_denoiser")
CLASSIFIER = "weights/classifiers/cifar10-resnet16-l2-0.5.onnx"
CASES = {
    "tiny_unet": "weights/testing/tiny_unet.onnx",
    "ddpm_small": "weights/denoisers/ddpm-cifar10-small.onnx",
}
BETAS = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
ABAR = np.cumprod(1 - BETAS)


def attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else v


def run_onnx64(model: onnx.ModelProto, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Evaluates `model` with float tensors in float64 (integers stay int64), differentiably."""
    env: dict[str, torch.Tensor] = {}
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        env[init.name] = torch.from_numpy(a.astype(np.float64) if a.dtype.kind == "f" else a.astype(np.int64))
    env.update(feeds)
    for node in model.graph.node:
        a = attrs(node)
        x = [env[i] if i else None for i in node.input]
        op = node.op_type
        out: list[torch.Tensor]
        if op == "Constant":
            v = numpy_helper.to_array(a["value"])
            out = [torch.from_numpy(v.astype(np.float64) if v.dtype.kind == "f" else v.astype(np.int64))]
        elif op in ("Add", "Sub", "Mul", "Div"):
            f = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op]
            if not x[0].is_floating_point() and not x[1].is_floating_point() and op == "Div":
                out = [torch.div(x[0], x[1], rounding_mode="trunc")]
            else:
                out = [f(x[0], x[1])]
        elif op == "Cast":
            to = a["to"]
            out = [x[0].double() if to in (1, 10, 11, 16) else x[0].long() if to in (6, 7) else x[0].bool()]
        elif op == "Identity":
            out = [x[0]]
        elif op == "Shape":
            out = [torch.tensor(list(x[0].shape), dtype=torch.int64)]
        elif op == "Gather":
            axis = a.get("axis", 0)
            idx = x[1]
            idx = torch.where(idx < 0, idx + x[0].shape[axis], idx)
            out = [torch.index_select(x[0], axis, idx.reshape(-1)).reshape(
                x[0].shape[:axis] + idx.shape + x[0].shape[axis + 1:])]
        elif op == "Unsqueeze":
            y = x[0]
            axes = sorted(int(v) for v in x[1].reshape(-1))
            r = y.dim() + len(axes)
            for ax in sorted(v % r for v in axes):
                y = y.unsqueeze(ax)
            out = [y]
        elif op == "Squeeze":
            y = x[0]
            for ax in sorted((int(v) % y.dim() for v in x[1].reshape(-1)), reverse=True):
                y = y.squeeze(ax)
            out = [y]
        elif op == "Concat":
            out = [torch.cat(x, dim=a["axis"])]
        elif op == "Reshape":
            shape = [int(v) for v in x[1]]
            shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            out = [x[0].reshape(shape)]
        elif op == "Flatten":
            ax = a.get("axis", 1)
            out = [x[0].reshape(int(np.prod(x[0].shape[:ax])), -1)]
        elif op == "Transpose":
            out = [x[0].permute(a["perm"])]
        elif op == "ConstantOfShape":
            v = numpy_helper.to_array(a["value"]).reshape(-1)[0] if "value" in a else 0.0
            dt = torch.float64 if isinstance(v, (float, np.floating)) else torch.int64
            out = [torch.full([int(s) for s in x[0]], float(v) if dt == torch.float64 else int(v), dtype=dt)]
        elif op == "Slice":
            y = x[0]
            starts, ends = x[1].tolist(), x[2].tolist()
            axes = x[3].tolist() if len(x) > 3 and x[3] is not None else list(range(len(starts)))
            steps = x[4].tolist() if len(x) > 4 and x[4] is not None else [1] * len(starts)
            idx = [slice(None)] * y.dim()
            for s, e, ax, st in zip(starts, ends, axes, steps):
                if st != 1:
                    raise SystemExit("Slice with step != 1 is not supported by this interpreter")
                n = y.shape[ax]
                s = max(0, min(n, s + n if s < 0 else s))
                e = max(0, min(n, e + n if e < 0 else e))
                idx[ax] = slice(s, e)
            out = [y[tuple(idx)]]
        elif op in ("Sin", "Cos", "Sigmoid", "Sqrt", "Relu", "Exp", "Neg", "Tanh", "Erf"):
            f = {"Sin": torch.sin, "Cos": torch.cos, "Sigmoid": torch.sigmoid, "Sqrt": torch.sqrt,
                 "Relu": torch.relu, "Exp": torch.exp, "Neg": torch.neg, "Tanh": torch.tanh, "Erf": torch.erf}[op]
            out = [f(x[0])]
        elif op == "Conv":
            w = x[1]
            pads = a.get("pads", [0] * (2 * (w.dim() - 2)))
            if pads[:2] != pads[2:]:
                raise SystemExit("asymmetric Conv pads are not supported by this interpreter")
            out = [F.conv2d(x[0], w, x[2] if len(x) > 2 else None, stride=a.get("strides", 1),
                            padding=pads[:2], dilation=a.get("dilations", 1), groups=a.get("group", 1))]
        elif op == "Gemm":
            A = x[0].T if a.get("transA", 0) else x[0]
            B = x[1].T if a.get("transB", 0) else x[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(x) > 2 and x[2] is not None:
                y = y + a.get("beta", 1.0) * x[2]
            out = [y]
        elif op == "MatMul":
            out = [torch.matmul(x[0], x[1])]
        elif op == "Softmax":
            out = [torch.softmax(x[0], dim=a.get("axis", -1))]
        elif op == "InstanceNormalization":
            out = [F.instance_norm(x[0], weight=x[1], bias=x[2], eps=a.get("epsilon", 1e-5))]
        elif op == "Resize":
            if _s(a.get("mode", "nearest")) != "nearest" or _s(a.get("nearest_mode", "round_prefer_floor")) != "floor" \
                    or _s(a.get("coordinate_transformation_mode", "half_pixel")) != "asymmetric":
                raise SystemExit(f"Resize {a} is not supported by this interpreter")
            scales = x[2].tolist()
            if scales[:2] != [1.0, 1.0] or any(s != int(s) for s in scales):
                raise SystemExit(f"Resize scales {scales} are not supported by this interpreter")
            out = [x[0].repeat_interleave(int(scales[2]), 2).repeat_interleave(int(scales[3]), 3)]
        elif op == "GlobalAveragePool":
            out = [x[0].mean(dim=(2, 3), keepdim=True)]
        elif op == "ReduceMean":
            axes = a.get("axes") or (x[1].tolist() if len(x) > 1 else None)
            out = [x[0].mean(dim=tuple(axes), keepdim=bool(a.get("keepdims", 1)))]
        else:
            raise SystemExit(f"op {op} (node {node.name}) is not supported by this interpreter")
        for name, v in zip(node.output, out):
            env[name] = v
    return {o.name: env[o.name] for o in model.graph.output}


def objective(logits, y, coef, e_star):
    """sum_n a E(x,y) + b E(x) + c |E* - E(x)|, E(x,y) = -f_y, E(x) = -logsumexp f (eq 2.36-2.37)."""
    e_xy = -logits.gather(1, y[:, None])[:, 0]
    e_x = -torch.logsumexp(logits, dim=1)
    total = (coef[:, 0] * e_xy + coef[:, 1] * e_x + coef[:, 2] * (e_star - e_x).abs()).sum()
    return total, e_xy, e_x


def b64(a: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode()


def tiny_unet_crosscheck(model, x, t) -> float:
    """Max |eps_interpreter - eps_diffusers| on the tiny UNet rebuilt by export_tiny_unet.py."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import export_tiny_unet

    unet = export_tiny_unet.build_model().double().eval()
    with torch.no_grad():
        ref = unet(x, t).sample
        mine = run_onnx64(model, {"x": x, "t": t})
    return float((list(mine.values())[0] - ref).abs().max())


def main() -> None:
    os.makedirs(OUT_DIR, exist_ok=True)
    clf = onnx.load(os.path.join(ROOT, CLASSIFIER))
    clf_in = clf.graph.input[0].name
    for name, path in CASES.items():
        den = onnx.load(os.path.join(ROOT, path))
        rng = np.random.default_rng(15)
        n = 3
        t_np = np.array([40, 300, 700], dtype=np.int64)
        x32 = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
        y_np = np.array([3, 0, 8], dtype=np.int64)
        coef_np = np.array([[1, 0, 0], [1, -1, 0], [1, 0, 0.15]], dtype=np.float32)
        e_star_np = np.array([0, 0, -4.0], dtype=np.float32)
        abar = ABAR[t_np]
        xt = torch.from_numpy(x32.astype(np.float64)).requires_grad_(True)
        t = torch.from_numpy(t_np)
        eps = list(run_onnx64(den, {"x": xt, "t": t}).values())[0]
        sa = torch.from_numpy(np.sqrt(abar).astype(np.float32).astype(np.float64)).view(-1, 1, 1, 1)
        s1a = torch.from_numpy(np.sqrt(1 - abar).astype(np.float32).astype(np.float64)).view(-1, 1, 1, 1)
        x0 = (xt - s1a * eps) / sa
        logits = list(run_onnx64(clf, {clf_in: (x0 + 1) * 0.5}).values())[0]
        total, e_xy, e_x = objective(logits, torch.from_numpy(y_np), torch.from_numpy(coef_np.astype(np.float64)),
                                     torch.from_numpy(e_star_np.astype(np.float64)))
        (grad,) = torch.autograd.grad(total, xt)
        info = {}
        if name == "tiny_unet":
            info["interpreter_vs_diffusers_max_abs"] = tiny_unet_crosscheck(den, xt.detach(), t)
            print(f"tiny UNet: float64 interpreter vs diffusers max |d eps| = {info['interpreter_vs_diffusers_max_abs']:.2e}")
        ref = {
            "what": "float64 torch.autograd of sum_n a E(x0_hat,y) + b E(x0_hat) + c |E* - E(x0_hat)| w.r.t. x_t, "
                    "x0_hat = (x_t - sqrt(1-abar) eps(x_t,t)) / sqrt(abar) (unclipped), classifier at (x0_hat+1)/2",
            "recipe": "weights/recipes/through_denoiser_reference.py",
            "denoiser": path,
            "classifier": CLASSIFIER,
            "n": n,
            "t": t_np.tolist(),
            "sqrt_abar": np.sqrt(abar).astype(np.float32).tolist(),
            "sqrt_one_minus_abar": np.sqrt(1 - abar).astype(np.float32).tolist(),
            "y": y_np.tolist(),
            "coef": coef_np.tolist(),
            "e_star": e_star_np.tolist(),
            "x_t": b64(x32, "<f4"),
            "eps": b64(eps.detach().numpy(), "<f4"),
            "energy_xy": e_xy.detach().tolist(),
            "energy_x": e_x.detach().tolist(),
            "grad": b64(grad.numpy(), "<f8"),
            "grad_norm": float(grad.norm()),
            "torch": torch.__version__,
            **info,
        }
        out = os.path.join(OUT_DIR, f"{name}.ref.json")
        with open(out, "w") as f:
            json.dump(ref, f, indent=1)
            f.write("\n")
        print(f"{name}: |grad| = {ref['grad_norm']:.4g}, energies {ref['energy_xy']} -> {out}")


if __name__ == "__main__":
    main()
