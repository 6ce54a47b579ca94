"""PyTorch parity fixtures for the energy head (lib/energy/head.ts).

Builds small random-weight classifiers in PyTorch that cover the operators a CNN classifier
uses (Conv with strides/pads/dilation/groups, BatchNorm in eval mode, ReLU/LeakyReLU/Sigmoid/
Tanh/Softplus/ELU, MaxPool, AvgPool, adaptive/global average pooling, Flatten/view, Linear,
residual Add, Concat), exports each to ONNX (opset 9, 13 and 17), and writes reference
inputs and the torch.autograd gradient of the head's objective

    J = sum_n  a E(x_n, y_n) + b E(x_n) + c |e*_n - E(x_n)|,
    E(x, y) = -f(x)[y],  E(x) = -logsumexp_k f(x)[k]                    (METHOD.md §3-4)

with respect to images x in [0, 1] NCHW, through each model's input convention (range, mean/
std, layout), computed in float64. tests/energy_head_parity_test.ts compiles heads from the
ONNX files and compares.

    .venv/bin/python weights/recipes/energy_head_parity.py

Writes tests/fixtures/autodiff/energy_<name>.onnx and energy_<name>.ref.json (float32 little-
endian base64). Not run in CI; rerun after changing the models here. Random weights: these are
not trained classifiers.

It also writes tests/fixtures/autodiff/energy_real_models.ref.json: the same objective's float64
gradient for the three real classifiers in ../shared/models (read from their ONNX files by a
small float64 interpreter of the ops they use: Conv, Relu, Add, Gemm, Flatten, Reshape), on two
synthetic images (uniform noise and a smooth pattern; no CIFAR-10 pixels are copied).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "autodiff")
CIFAR = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2471, 0.2435, 0.2616]}
N_IMAGES = 4
K = 10


def randomise_bn(m: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial eval-mode BatchNorm statistics and affine parameters."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
            mod.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            with torch.no_grad():
                mod.weight.copy_(1 + 0.2 * torch.randn(c, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(c, generator=gen))


class ConvNetA(nn.Module):
    """Opset 9, fixed batch 1 (like the shared models): the traced view(N, -1) is folded into
    Reshape [1, -1]."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.bn2 = nn.BatchNorm2d(8)
        self.c3 = nn.Conv2d(8, 12, 1)
        self.fc1 = nn.Linear(12 * 2 * 2, 16)
        self.fc2 = nn.Linear(16, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(F.relu(self.c1(x)))  # 8x8; BN after ReLU is not folded into the conv
        x = F.leaky_relu(self.bn2(self.c2(x)), 0.1)
        x = F.max_pool2d(x, 2)  # 4x4
        x = torch.sigmoid(self.c3(x))
        x = F.avg_pool2d(x, 2)  # 2x2
        x = x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(x)))


class ResNetB(nn.Module):
    """Opset 13, NHWC input (the model permutes), residual Adds, Concat, global pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(8)
        self.b1a = nn.Conv2d(8, 8, 3, padding=1)
        self.b1b = nn.Conv2d(8, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(8, 16, 1, stride=2)
        self.branch = nn.Conv2d(16, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(24)
        self.fc = nn.Linear(24, K)

    def forward(self, x_nhwc: torch.Tensor) -> torch.Tensor:
        x = x_nhwc.permute(0, 3, 1, 2)
        x = F.relu(self.bn0(self.stem(x)))
        x = x + self.b1b(torch.tanh(self.b1a(x)))  # residual
        x = F.elu(self.down(x)) + self.skip(x)  # 8x8, residual with projection
        x = torch.cat([x, F.softplus(self.branch(x))], dim=1)  # Concat
        x = F.relu(self.bn2(x))
        x = F.adaptive_avg_pool2d(x, 1)  # GlobalAveragePool
        x = torch.flatten(x, 1)
        return self.fc(x)


class MixedC(nn.Module):
    """Opset 17, range [-1, 1]: depthwise conv, asymmetric strides/pads, AvgPool with padding,
    MaxPool with stride 1 and padding, adaptive pooling to 2x2, dynamic view(N, -1)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 12, (3, 5), stride=(2, 1), padding=(1, 2))
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.bn = nn.BatchNorm2d(12)
        self.c2 = nn.Conv2d(12, 16, 3, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(16 * 2 * 2, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.c1(x), 0.2)  # 8x16
        x = F.relu(self.bn(self.dw(x)))
        x = F.max_pool2d(x, 3, stride=1, padding=1)
        x = F.avg_pool2d(x, 3, stride=1, padding=1)  # count_include_pad=True (default)
        x = torch.tanh(self.c2(x))  # 4x8
        x = F.adaptive_avg_pool2d(x, 2)  # not global: exported as AveragePool
        x = x.view(x.size(0), -1)
        return self.fc(x)


MODELS = [
    # name, module, opset, conventions, dynamic batch in the export, image size
    ("convnet_op9", ConvNetA, 9, {**CIFAR, "layout": "nchw", "range": "01"}, False, 16),
    ("resnet_op13", ResNetB, 13, {**CIFAR, "layout": "nhwc", "range": "01"}, True, 16),
    ("mixed_op17", MixedC, 17, {"layout": "nchw", "range": "pm1"}, True, 16),
]


def to_classifier_input(x01: torch.Tensor, conv: dict) -> torch.Tensor:
    """The head's input convention, in torch: range map, then (x - mean) / std, then layout."""
    x = x01 * 2 - 1 if conv["range"] == "pm1" else x01
    if "mean" in conv:
        mean = torch.tensor(conv["mean"], dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(conv["std"], dtype=x.dtype).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x.permute(0, 2, 3, 1) if conv["layout"] == "nhwc" else x


def energies(logits: torch.Tensor, y: torch.Tensor):
    e_xy = -logits.gather(1, y.view(-1, 1)).squeeze(1)
    e_x = -torch.logsumexp(logits, dim=1)
    return e_xy, e_x


def b64(a) -> str:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return base64.b64encode(arr.astype("<f4").tobytes()).decode("ascii")


def export(model: nn.Module, example: torch.Tensor, path: str, opset: int, dynamic: bool) -> None:
    kwargs = {}
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {0: "N"}, "logits": {0: "N"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            path,
            input_names=["input"],
            output_names=["logits"],
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
            **kwargs,
        )
    onnx.checker.check_model(onnx.load(path))


REAL_MODELS = ["vnncomp21_resnet2b", "vnncomp21_resnet4b", "sri_resnet_a"]
SHARED_MODELS = os.path.normpath(os.path.join(ROOT, "..", "shared", "models"))


def onnx_float64_forward(model: onnx.ModelProto, x: torch.Tensor) -> torch.Tensor:
    """Evaluates a Conv/Relu/Add/Gemm/Flatten/Reshape ONNX graph in float64 torch ops."""
    from onnx import numpy_helper

    env = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    env = {k: v.double() if v.is_floating_point() else v for k, v in env.items()}
    inits = set(env)
    (inp,) = [i.name for i in model.graph.input if i.name not in inits]
    env[inp] = x
    for node in model.graph.node:
        a = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
        ins = [env[i] for i in node.input if i]
        op = node.op_type
        if op == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            if pads[:2] != pads[2:]:
                raise ValueError(f"asymmetric pads {pads} not supported here")
            out = F.conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None, stride=a.get("strides", 1),
                           padding=pads[:2], dilation=a.get("dilations", 1), groups=a.get("group", 1))
        elif op == "Relu":
            out = F.relu(ins[0])
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Gemm":
            A = ins[0].t() if a.get("transA", 0) else ins[0]
            B = ins[1].t() if a.get("transB", 0) else ins[1]
            out = a.get("alpha", 1.0) * A @ B + (a.get("beta", 1.0) * ins[2] if len(ins) > 2 else 0)
        elif op == "Flatten":
            out = torch.flatten(ins[0], a.get("axis", 1))
        elif op == "Reshape":
            out = ins[0].reshape([int(v) for v in ins[1].tolist()])
        elif op == "Constant":
            out = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
        else:
            raise ValueError(f"op {op} is not in this small interpreter")
        env[node.output[0]] = out
    return env[model.graph.output[0].name]


def real_models_fixture() -> dict:
    gen = torch.Generator().manual_seed(7)
    noise = torch.rand(1, 3, 32, 32, generator=gen)
    smooth = F.interpolate(torch.rand(1, 3, 4, 4, generator=gen), size=32, mode="bilinear", align_corners=False)
    x01 = torch.cat([noise, smooth]).clamp(0, 1)
    conv = {**CIFAR, "layout": "nchw", "range": "01"}
    out = {
        "description": (
            "float64 reference gradients of sum_n a E(x,y) + b E(x) + c |e*-E(x)| wrt x in [0,1] for the real "
            "classifiers in ../shared/models, evaluated per image (they have a fixed batch of 1) by a float64 "
            f"torch interpreter of their ONNX graphs (torch {torch.__version__}); image 0 uniform noise, image 1 "
            "a smooth pattern; float32 little-endian base64"
        ),
        "conventions": conv,
        "x_shape": list(x01.shape),
        "x_b64": b64(x01),
        "models": {},
    }
    coef = torch.tensor([[1.0, -1.0, 0.0], [1.0, 0.0, 0.15]], dtype=torch.float64).float().double()
    for name in REAL_MODELS:
        path = os.path.join(SHARED_MODELS, f"{name}.onnx")
        model = onnx.load(path)
        x = x01.double().requires_grad_(True)
        inp = to_classifier_input(x, conv)
        logits = torch.cat([onnx_float64_forward(model, inp[i : i + 1]) for i in range(x.shape[0])])
        # float32 check against onnxruntime
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        ort_logits = np.concatenate([sess.run(None, {in_name: inp[i : i + 1].detach().float().numpy()})[0] for i in range(2)])
        err = float(np.abs(ort_logits - logits.detach().numpy()).max())
        if err > 1e-4:
            raise SystemExit(f"{name}: float64 interpreter differs from onnxruntime by {err}")
        y = logits.detach().argmin(dim=1)  # a class the model does not predict: a sizeable gradient
        e_xy, e_x = energies(logits, y)
        e_star = (e_x.detach() + torch.tensor([1.0, -1.0], dtype=torch.float64)).float().double()
        objective = (coef[:, 0] * e_xy + coef[:, 1] * e_x + coef[:, 2] * (e_star - e_x).abs()).sum()
        (grad,) = torch.autograd.grad(objective, x)
        with open(path, "rb") as f:
            import hashlib

            sha = hashlib.sha256(f.read()).hexdigest()
        out["models"][name] = {
            "sha256": sha,
            "y": y.tolist(),
            "coef": coef.flatten().tolist(),
            "e_star": e_star.tolist(),
            "logits_b64": b64(logits),
            "energy_xy": e_xy.tolist(),
            "energy_x": e_x.tolist(),
            "grad_b64": b64(grad),
        }
        print(f"real {name}: interpreter vs onnxruntime max |diff| {err:.2e}, |grad| {grad.norm():.3f}")
    return out


def main() -> int:
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    for idx, (name, cls, opset, conv, dynamic, size) in enumerate(MODELS):
        gen = torch.Generator().manual_seed(100 + idx)
        model = cls().eval()
        randomise_bn(model, gen)
        x01 = torch.rand(N_IMAGES, 3, size, size, generator=gen)
        example = to_classifier_input(x01[:1], conv)
        path = os.path.join(OUT, f"energy_{name}.onnx")
        export(model, example, path, opset, dynamic)

        # float32 ONNX vs torch, one image at a time (the opset-9 export has batch 1)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        with torch.no_grad():
            ref32 = model(to_classifier_input(x01, conv))
            ort_logits = np.concatenate(
                [sess.run(None, {"input": to_classifier_input(x01[i : i + 1], conv).numpy()})[0] for i in range(N_IMAGES)]
            )
        export_err = float(np.abs(ort_logits - ref32.numpy()).max())
        if export_err > 1e-4:
            print(f"{name}: ONNX export differs from torch by {export_err}", file=sys.stderr)
            return 1

        # float64 reference of the objective's gradient
        m64 = model.double()
        x = x01.double().requires_grad_(True)
        y = torch.randint(0, K, (N_IMAGES,), generator=gen)
        logits = m64(to_classifier_input(x, conv))
        e_xy, e_x = energies(logits, y)
        # rows: cross-entropy, joint, dual(0.15), a random mix; E* one unit off E(x)
        coef = torch.tensor(
            [[1.0, -1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.15], [0.7, -0.4, 1.3]], dtype=torch.float64
        )[:N_IMAGES]
        e_star = (e_x.detach() + torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)[:N_IMAGES]).float().double()
        coef = coef.float().double()
        objective = (coef[:, 0] * e_xy + coef[:, 1] * e_x + coef[:, 2] * (e_star - e_x).abs()).sum()
        (grad,) = torch.autograd.grad(objective, x)

        ops: dict[str, int] = {}
        for node in onnx.load(path).graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        fixture = {
            "description": (
                f"energy-head parity: random-weight {cls.__name__} ({cls.__doc__.splitlines()[0]}) exported "
                f"to energy_{name}.onnx; reference from torch {torch.__version__} in float64; "
                "float32 little-endian base64; objective sum_n a E(x,y) + b E(x) + c |e*-E(x)|, grad wrt x in [0,1] NCHW"
            ),
            "model": f"energy_{name}.onnx",
            "opset": opset,
            "ops": ops,
            "conventions": conv,
            "x_shape": list(x01.shape),
            "x_b64": b64(x01),
            "y": y.tolist(),
            "coef": coef.flatten().tolist(),
            "e_star": e_star.tolist(),
            "logits_b64": b64(logits),
            "energy_xy": e_xy.tolist(),
            "energy_x": e_x.tolist(),
            "grad_b64": b64(grad),
        }
        with open(os.path.join(OUT, f"energy_{name}.ref.json"), "w") as f:
            json.dump(fixture, f, indent=1)
            f.write("\n")
        size_kb = os.path.getsize(path) / 1024
        print(f"{name}: opset {opset}, {size_kb:.1f} KB, export max |diff| {export_err:.2e}, ops {ops}")
    if os.path.isdir(SHARED_MODELS):
        with open(os.path.join(OUT, "energy_real_models.ref.json"), "w") as f:
            json.dump(real_models_fixture(), f, indent=1)
            f.write("\n")
    else:
        print(f"no {SHARED_MODELS}: real-model reference skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
