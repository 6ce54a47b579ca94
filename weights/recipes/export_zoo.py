"""The classifier zoo (issue 13, item 6): today's architecture families (weights/recipes/
_zoo_archs.py) at tiny widths with random weights, exported by both torch.onnx exporters at
several opsets, with float64 PyTorch autograd references for the energy head.

For every entry this writes tests/fixtures/zoo/<name>.onnx and <name>.ref.json holding a fixed
input batch x in [0, 1] NCHW, labels y, and, computed in float64 by torch.autograd through the
entry's input convention (METHOD.md §3-4):

    logits f(x), E(x,y) = -f(x)[y] (eq 2.36), E(x) = -logsumexp_k f(x)[k] (eq 2.37),
    grad_joint = d/dx sum_n E(x_n, y_n)                                  (joint, §4.6)
    grad_logp  = d/dx sum_n E(x_n, y_n) - E(x_n) = -log p(y|x)           (eq 2.38, Alg 6)
    grad_dual  = d/dx sum_n E(x_n, y_n) + lambda |E*_n - E(x_n)|          (§4.8, eq 4.5-4.6)

Arrays are float32 little-endian base64 (the float64 result rounded once). The model that ends
in Softmax has as reference logits the Softmax's input (what the head must read as f(x)); the
float16 export's reference is the float64 evaluation of its float16-rounded weights.

    .venv/bin/python weights/recipes/export_zoo.py            # all entries
    .venv/bin/python weights/recipes/export_zoo.py vit_legacy_op17 swin_dynamo_op18

tests/classifier_zoo_test.ts compiles an energy head from each ONNX file and compares. Every
export is checked against the torch float32 forward in onnxruntime before anything is written.
Deterministic: one seed per entry (the entry's index), fixed inputs.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import sys
import tempfile
import warnings
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from _zoo_archs import ARCHS, CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, randomise_norms  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "zoo")
N_IMAGES = 2
DUAL_LAMBDA = 0.15
CIFAR_OUTSIDE = {"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)}
IMAGENET_OUTSIDE = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

# name, family (an ARCHS key), builder kwargs, exporter, opset, dynamic batch, conventions
# (what the head must fold in: {} = the model normalises inside), image size, extra flags
ZOO: list[dict] = [
    dict(name="resnet_legacy_op11_b1", family="resnet", kw={}, exporter="legacy", opset=11, dynamic=False, conv={}),
    dict(name="resnet_dynamo_op18", family="resnet", kw={"normalize": False}, exporter="dynamo", opset=18,
         dynamic=True, conv=CIFAR_OUTSIDE),
    dict(name="preact_resnet_legacy_op13", family="preact_resnet", kw={}, exporter="legacy", opset=13,
         dynamic=True, conv=CIFAR_OUTSIDE),
    dict(name="preact_resnet_gn_dynamo_op21", family="preact_resnet", kw={"norm": "group"}, exporter="dynamo",
         opset=21, dynamic=True, conv=CIFAR_OUTSIDE),
    dict(name="preact_resnet_gn_legacy_op17", family="preact_resnet", kw={"norm": "group", "normalize": True},
         exporter="legacy", opset=17, dynamic=False, conv={}),
    dict(name="wide_resnet_silu_legacy_op17", family="wide_resnet", kw={"normalize": True}, exporter="legacy",
         opset=17, dynamic=True, conv={}),
    dict(name="wide_resnet_silu_dynamo_op20", family="wide_resnet", kw={}, exporter="dynamo", opset=20,
         dynamic=True, conv=CIFAR_OUTSIDE),
    dict(name="vit_legacy_op13", family="vit", kw={}, exporter="legacy", opset=13, dynamic=True, conv={}),
    dict(name="vit_legacy_op17", family="vit", kw={}, exporter="legacy", opset=17, dynamic=True, conv={}),
    dict(name="vit_legacy_op17_b1", family="vit", kw={"sdpa": True}, exporter="legacy", opset=17,
         dynamic=False, conv={}),
    dict(name="vit_dynamo_op18", family="vit", kw={"sdpa": True, "normalize": False}, exporter="dynamo",
         opset=18, dynamic=True, conv=CIFAR_OUTSIDE),
    dict(name="convnext_legacy_op17", family="convnext", kw={}, exporter="legacy", opset=17, dynamic=True,
         conv={"range": "pm1"}),
    dict(name="convnext_dynamo_op20", family="convnext", kw={}, exporter="dynamo", opset=20, dynamic=True,
         conv=CIFAR_OUTSIDE),
    dict(name="mobilenetv3_legacy_op13", family="mobilenetv3", kw={}, exporter="legacy", opset=13,
         dynamic=True, conv={}),
    dict(name="mobilenetv3_dynamo_op18", family="mobilenetv3", kw={}, exporter="dynamo", opset=18,
         dynamic=False, conv={}),
    dict(name="mobilenetv2_legacy_op11_b1", family="mobilenetv2", kw={}, exporter="legacy", opset=11,
         dynamic=False, conv={}),
    dict(name="efficientnet_legacy_op17_b1", family="efficientnet", kw={}, exporter="legacy", opset=17,
         dynamic=False, conv=CIFAR_OUTSIDE),
    dict(name="efficientnet_dynamo_op21", family="efficientnet", kw={}, exporter="dynamo", opset=21,
         dynamic=True, conv={"range": "pm1"}),
    dict(name="densenet_legacy_op11", family="densenet", kw={}, exporter="legacy", opset=11, dynamic=True,
         conv={}),
    dict(name="densenet_dynamo_op18", family="densenet", kw={}, exporter="dynamo", opset=18, dynamic=True,
         conv={}),
    dict(name="swin_legacy_op17", family="swin", kw={}, exporter="legacy", opset=17, dynamic=True, conv={}),
    dict(name="swin_dynamo_op18", family="swin", kw={}, exporter="dynamo", opset=18, dynamic=True, conv={}),
    # the cases of items 3-4 and a 1000-class 64x64 model (item 7)
    dict(name="resnet_softmax_legacy_op13", family="resnet", kw={"softmax": True}, exporter="legacy", opset=13,
         dynamic=True, conv={}, output="softmax"),
    dict(name="resnet_fp16_legacy_op13", family="resnet", kw={}, exporter="legacy", opset=13, dynamic=True,
         conv={}, dtype="float16"),
    dict(name="resnet_imagenet64_k1000_dynamo_op18", family="resnet",
         kw={"classes": 1000, "normalize": False, "stem_stride": 2}, exporter="dynamo", opset=18, dynamic=True,
         conv=IMAGENET_OUTSIDE, size=64),
    # --input-size (item 5): images of another size, resized inside the head (bilinear,
    # align_corners=False, no antialias); the references differentiate through F.interpolate
    dict(name="resnet_imagenet224_k1000_from32_legacy_op17", family="resnet",
         kw={"classes": 1000, "normalize": False, "stem_stride": 2}, exporter="legacy", opset=17, dynamic=True,
         conv=IMAGENET_OUTSIDE, size=224, resize_from=32),
    dict(name="convnext_from48_dynamo_op18", family="convnext", kw={}, exporter="dynamo", opset=18,
         dynamic=True, conv=CIFAR_OUTSIDE, size=32, resize_from=48),
    # more activations, paddings and pools (PReLU, ELU, LeakyReLU, Mish, Softplus, SELU; reflect
    # and replicate Pad; MaxPool, GlobalMaxPool, ReduceMax) and opset-20 exact GELU
    dict(name="vgg_prelu_elu_reflect_legacy_op13", family="vgg", kw={"act": "prelu,elu,leaky"}, exporter="legacy",
         opset=13, dynamic=True, conv={}),
    dict(name="vgg_mish_softplus_replicate_dynamo_op18", family="vgg",
         kw={"act": "mish,softplus,selu", "padding_mode": "replicate", "amax": True}, exporter="dynamo", opset=18,
         dynamic=True, conv={}),
    dict(name="vit_dynamo_op20", family="vit", kw={"normalize": False}, exporter="dynamo", opset=20, dynamic=True,
         conv=CIFAR_OUTSIDE),
    # bfloat16 weights and input (item 4); onnxruntime cannot run it on CPU, the head widens it
    dict(name="resnet_bf16_dynamo_op18", family="resnet", kw={}, exporter="dynamo", opset=18, dynamic=True,
         conv={}, dtype="bfloat16"),
    # saved the way torch.onnx.export(model, args, "m.onnx", dynamo=True) saves it: the larger
    # initializers in m.onnx.data beside the file (ONNX external data), GroupNorm at opset 23
    dict(name="preact_resnet_gn_dynamo_op23_extdata", family="preact_resnet", kw={"norm": "group"},
         exporter="dynamo", opset=23, dynamic=True, conv=CIFAR_OUTSIDE, external_data=True),
    # the newest opsets torch 2.13 writes correctly (its opset-26 conversion fails; ORT 1.30 stops at 26)
    dict(name="vit_dynamo_op24", family="vit", kw={"normalize": False}, exporter="dynamo", opset=24, dynamic=True,
         conv=CIFAR_OUTSIDE),
    dict(name="convnext_dynamo_op25", family="convnext", kw={}, exporter="dynamo", opset=25, dynamic=True,
         conv=CIFAR_OUTSIDE),
]


def to_model_input(x01: torch.Tensor, conv: dict, size: int | None = None) -> torch.Tensor:
    """What the head does before the classifier: bilinear resize to `size` (align_corners=False,
    antialias off: lib/energy/resize.ts) when the images are not that size, then the convention:
    range map, then (x - mean) / std (NCHW)."""
    if size is not None and x01.shape[-1] != size:
        x01 = F.interpolate(x01, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    x = x01 * 2 - 1 if conv.get("range") == "pm1" else x01
    if "mean" in conv:
        mean = torch.tensor(conv["mean"], dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(conv["std"], dtype=x.dtype).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x


def b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.detach().cpu().numpy().astype("<f4").tobytes()).decode("ascii")


def export(model: torch.nn.Module, example: torch.Tensor, entry: dict) -> dict[str, bytes]:
    """The files of `model` from the entry's exporter at its opset: {"<name>.onnx": bytes}, plus
    "<name>.onnx.data" for an entry saved with external data (torch's own ONNXProgram.save)."""
    name = entry["name"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if entry["exporter"] == "legacy":
            f = io.BytesIO()
            torch.onnx.export(
                model, (example,), f, input_names=["input"], output_names=["logits"],
                opset_version=entry["opset"], do_constant_folding=True, dynamo=False,
                dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}} if entry["dynamic"] else None,
            )
            files = {f"{name}.onnx": f.getvalue()}
        else:
            dyn = ({0: torch.export.Dim("N", min=1, max=4096)},) if entry["dynamic"] else None
            prog = torch.onnx.export(
                model, (example,), input_names=["input"], output_names=["logits"],
                opset_version=entry["opset"], dynamo=True, dynamic_shapes=dyn, verbose=False,
                optimize=True,
            )
            # the dynamo exporter annotates every node with the Python stack trace that made it:
            # dropped (a third of the file, and it changes whenever _zoo_archs.py is edited)
            if not entry.get("external_data"):
                proto = prog.model_proto
                for node in proto.graph.node:
                    del node.metadata_props[:]
                    node.doc_string = ""
                for v in [*proto.graph.value_info, *proto.graph.input, *proto.graph.output]:
                    del v.metadata_props[:]
                files = {f"{name}.onnx": proto.SerializeToString()}
            else:
                # the same clean-up on the exporter's IR, then torch's own save with external data
                g = prog.model.graph
                for node in g.all_nodes():
                    node.metadata_props.clear()
                    node.doc_string = ""
                    for v in node.outputs:
                        v.metadata_props.clear()
                for v in [*g.inputs, *g.outputs, *g.initializers.values()]:
                    v.metadata_props.clear()
                with tempfile.TemporaryDirectory() as tmp:
                    prog.save(os.path.join(tmp, f"{name}.onnx"), external_data=True)
                    files = {}
                    for fn in sorted(os.listdir(tmp)):
                        with open(os.path.join(tmp, fn), "rb") as fh:
                            files[fn] = fh.read()
    if entry.get("external_data") and f"{name}.onnx.data" not in files:
        raise SystemExit(f"{name}: torch saved no external data ({sorted(files)})")
    with tempfile.TemporaryDirectory() as tmp:
        for fn, b in files.items():
            with open(os.path.join(tmp, fn), "wb") as fh:
                fh.write(b)
        onnx.checker.check_model(os.path.join(tmp, f"{name}.onnx"))
    return files


def inline(files: dict[str, bytes], name: str) -> bytes:
    """The model bytes with any external data read back in (for onnxruntime and the checks)."""
    if len(files) == 1:
        return files[f"{name}.onnx"]
    with tempfile.TemporaryDirectory() as tmp:
        for fn, b in files.items():
            with open(os.path.join(tmp, fn), "wb") as fh:
                fh.write(b)
        return onnx.load(os.path.join(tmp, f"{name}.onnx")).SerializeToString()


def widen_bfloat16(data: bytes) -> bytes:
    """The model with every bfloat16 tensor, type and Cast target made float32 (exact)."""
    from onnx import TensorProto, numpy_helper

    m = onnx.load_from_string(data)
    bf, f32 = TensorProto.BFLOAT16, TensorProto.FLOAT

    def widen_tensor(t: TensorProto) -> None:
        if t.data_type == bf:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))

    for t in m.graph.initializer:
        widen_tensor(t)
    for v in [*m.graph.input, *m.graph.output, *m.graph.value_info]:
        if v.type.tensor_type.elem_type == bf:
            v.type.tensor_type.elem_type = f32
    for n in m.graph.node:
        for a in n.attribute:
            if a.name == "to" and a.i == bf:
                a.i = f32
            if a.type == onnx.AttributeProto.TENSOR:
                widen_tensor(a.t)
    return m.SerializeToString()


def ort_logits(data: bytes, x: np.ndarray, batch1: bool) -> np.ndarray:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    if batch1:
        return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(x.shape[0])])
    return sess.run(None, {name: x})[0]


def fuse_conv_bn(m: torch.nn.Module) -> None:
    """Folds every eval-mode BatchNorm2d into the Conv2d registered just before it (in place).
    The float16 entry needs it: the exporter folds BN into the conv weights and rounds the result
    to float16, so the reference must use those same rounded fused weights, not torch's separate
    float16 conv and BN parameters."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in m.modules():
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                parent._modules[b] = torch.nn.Identity()


def build_entry(index: int, entry: dict) -> dict:
    name = entry["name"]
    size = entry.get("size", 32)
    dtype = entry.get("dtype", "float32")
    softmax = entry.get("output") == "softmax"
    torch.manual_seed(1000 + index)
    gen = torch.Generator().manual_seed(2000 + index)
    model = ARCHS[entry["family"]](**entry["kw"]).eval()
    randomise_norms(model, gen)
    low = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    if low is not None:
        fuse_conv_bn(model)
        model = model.to(low)
    src = entry.get("resize_from", size)
    x01 = torch.rand(N_IMAGES, 3, src, src, generator=gen)
    # a dynamic batch needs an example of >= 2 images (torch.export specialises a batch of 1)
    example = to_model_input(x01 if entry["dynamic"] else x01[:1], entry["conv"], size).to(low or torch.float32)

    files = export(model, example, entry)
    data = inline(files, name)
    proto = onnx.load_from_string(data)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))

    # the export against torch (float32; float16 at its own precision)
    with torch.no_grad():
        xin = to_model_input(x01, entry["conv"], size)
        if dtype == "float16":
            ref32 = model.float()(xin).double()
            got = ort_logits(data, xin.half().numpy(), not entry["dynamic"]).astype(np.float64)
            model = model.half()
            tol = 2e-2
        elif dtype == "bfloat16":
            # onnxruntime has no bfloat16 Conv on CPU: check the graph widened to float32 instead
            ref32 = model.float()(xin).double()
            got = ort_logits(widen_bfloat16(data), xin.numpy(), not entry["dynamic"]).astype(np.float64)
            model = model.to(torch.bfloat16)
            tol = 1e-4
        else:
            ref32 = model(xin).double()
            got = ort_logits(data, xin.numpy(), not entry["dynamic"]).astype(np.float64)
            tol = 1e-4
    scale = max(1e-6, float(ref32.abs().max()))
    export_err = float(np.abs(got - ref32.numpy()).max()) / scale
    if export_err > tol:
        raise SystemExit(f"{name}: onnxruntime differs from torch by {export_err:.2e} (relative)")

    # float64 references (the float16 model: its rounded weights, evaluated in float64)
    m64 = copy.deepcopy(model).double().eval()
    x = x01.double().requires_grad_(True)
    inp = to_model_input(x, entry["conv"], size)
    logits = m64.logits(inp) if softmax else m64(inp)
    K = logits.shape[1]
    y = torch.randint(0, K, (N_IMAGES,), generator=gen)
    e_xy = -logits.gather(1, y.view(-1, 1)).squeeze(1)
    e_x = -torch.logsumexp(logits, dim=1)
    # E* one unit above / below E(x) (rounded to float32, as the head receives it), so that the
    # abs term's sign is +1 for one image and -1 for the other
    e_star = (e_x.detach() + torch.tensor([1.0, -1.0], dtype=torch.float64)).float().double()
    objectives = {
        "joint": e_xy.sum(),
        "logp": (e_xy - e_x).sum(),
        "dual": (e_xy + DUAL_LAMBDA * (e_star - e_x).abs()).sum(),
    }
    grads = {k: torch.autograd.grad(v, x, retain_graph=True)[0] for k, v in objectives.items()}

    ops = Counter(n.op_type for n in proto.graph.node)
    inputs = {i.name for i in proto.graph.initializer}
    in_dims = [
        d.dim_param or d.dim_value
        for i in proto.graph.input if i.name not in inputs
        for d in i.type.tensor_type.shape.dim
    ]
    return {
        "description": (
            f"classifier zoo: {entry['family']} ({type(model).__name__}, random weights, seed {1000 + index}) "
            f"exported by the torch.onnx {entry['exporter']} exporter at opset {opset} to {name}.onnx; "
            f"references from torch {torch.__version__} autograd in float64; arrays float32 little-endian base64; "
            "grads wrt x in [0,1] NCHW of sum_n E(x,y) (joint), sum_n E(x,y) - E(x) (logp), "
            f"sum_n E(x,y) + {DUAL_LAMBDA} |e_star - E(x)| (dual)"
        ),
        "name": name,
        "family": entry["family"],
        "architecture": type(model).__name__,
        "kwargs": entry["kw"],
        "exporter": entry["exporter"],
        "opset": opset,
        "dynamic_batch": entry["dynamic"],
        "input_dims": in_dims,
        "dtype": dtype,
        "output_kind": "softmax" if softmax else "logits",
        "model": f"{name}.onnx",
        "conventions": entry["conv"],
        # the head takes x_shape images; the classifier takes input_size ones (resize_from: a resize)
        "input_size": [size, size],
        "resize_from": entry.get("resize_from"),
        "num_classes": K,
        "node_count": len(proto.graph.node),
        "ops": dict(sorted(ops.items())),
        "export_relative_error": export_err,
        "tolerance": 1e-4,
        "x_shape": list(x01.shape),
        "x_b64": b64(x01),
        "y": y.tolist(),
        "dual_lambda": DUAL_LAMBDA,
        "e_star": e_star.tolist(),
        "logits_b64": b64(logits),
        "energy_xy": e_xy.tolist(),
        "energy_x": e_x.tolist(),
        "grad_joint_b64": b64(grads["joint"]),
        "grad_logp_b64": b64(grads["logp"]),
        "grad_dual_b64": b64(grads["dual"]),
        **({"external_data": f"{name}.onnx.data"} if entry.get("external_data") else {}),
    }, files


RESIZE_CASES = [(32, 64), (64, 32), (8, 56), (5, 13), (13, 5), (1, 3), (3, 1), (7, 7)]


def resize_fixture() -> dict:
    """torch's bilinear interpolation (align_corners=False, antialias off) as 1-D matrices, and
    one 2-D resize with its adjoint, for tests/resize_test.ts (lib/energy/resize.ts)."""
    mats = {}
    for n, m in RESIZE_CASES:
        eye = torch.eye(n, dtype=torch.float64).view(n, 1, 1, n)  # each row an impulse
        r = F.interpolate(eye, size=(1, m), mode="bilinear", align_corners=False, antialias=False)
        mats[f"{n}->{m}"] = r.view(n, m).t().flatten().tolist()  # [m, n] row-major
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 5, 7, generator=gen, dtype=torch.float64).requires_grad_(True)
    y = F.interpolate(x, size=(9, 4), mode="bilinear", align_corners=False, antialias=False)
    g = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (dx,) = torch.autograd.grad((y * g).sum(), x)
    return {
        "description": (
            f"torch {torch.__version__} F.interpolate(mode='bilinear', align_corners=False, antialias=False) in "
            "float64: 1-D matrices [m, n] row-major keyed 'n->m'; a 2-D resize [2,3,5,7] -> [2,3,9,4] with a "
            "cotangent g and its vector-Jacobian product dx (weights/recipes/export_zoo.py)"
        ),
        "matrices": mats,
        "x": x.detach().flatten().tolist(),
        "y": y.detach().flatten().tolist(),
        "g": g.flatten().tolist(),
        "dx": dx.flatten().tolist(),
    }


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    wanted = set(argv)
    if not wanted or "resize" in wanted:
        path = os.path.join(ROOT, "tests", "fixtures", "resize", "bilinear_torch.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(resize_fixture(), f)
            f.write("\n")
        print(f"resize fixture: {path}")
        wanted.discard("resize")
        if not wanted and "resize" in argv:
            return 0
    unknown = wanted - {e["name"] for e in ZOO}
    if unknown:
        print(f"unknown zoo entries {sorted(unknown)}; known: {[e['name'] for e in ZOO]}", file=sys.stderr)
        return 2
    for index, entry in enumerate(ZOO):
        if wanted and entry["name"] not in wanted:
            continue
        fixture, files = build_entry(index, entry)
        for fn, data in files.items():
            with open(os.path.join(OUT, fn), "wb") as f:
                f.write(data)
        with open(os.path.join(OUT, f"{entry['name']}.ref.json"), "w") as f:
            json.dump(fixture, f, indent=1)
            f.write("\n")
        print(
            f"{entry['name']}: opset {fixture['opset']}, {sum(map(len, files.values())) / 1024:.0f} KB, {fixture['node_count']} nodes, "
            f"export rel err {fixture['export_relative_error']:.1e}, ops {fixture['ops']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
