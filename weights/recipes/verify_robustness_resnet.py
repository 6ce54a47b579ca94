#!/usr/bin/env python3
"""Self-test of export_robustness_resnet.py on random-weight checkpoints in the library's format.

No real robustness checkpoint is available here, so this builds the library's CIFAR
architectures with random weights (seeded; BatchNorm statistics calibrated so activations stay
O(1)), wraps them like robustness.attacker.AttackerModel inside DataParallel and saves them the
way robustness.train does: ch.save({'model', 'optimizer', 'schedule', 'epoch', 'nat_prec1',
'adv_prec1'}, path, pickle_module=dill). The converter runs on that file; ONNX Runtime is checked
against the in-memory PyTorch model (max abs error < 1e-4 at batch 1 and 8).

Always (seconds):
  * ResNet-18 at width 1/8 and ResNet-50 at width 1/16 -> tests/fixtures/conversion/
    tiny_robustness_resnet{18,50}.onnx + .ref.json: inputs in [0, 1], labels, and float64
    torch.autograd logits, energies and the gradient of sum_n CE(f((x_n - mean)/std), y_n)
    with respect to x (what the energy head computes with coef (1, -1, 0)).
  * a scratch copy of weights/manifest.json gets the entries; nothing else in it may change.
With --full: full-size ResNet-50 (ORT timings 1/2 threads, batch 1/16; fixture
  robustness_resnet50_random.ref.json) and ResNet-18; --archs adds other library architectures
  (e.g. resnet34,vgg16,densenet121,densenet_cifar,inceptionv3) at full size (errors only).
With --reference-src DIR (DIR holds the `robustness/` package, e.g. from
  `pip download --no-deps robustness==1.2.1.post2` unzipped): the copied definitions are checked
  against the library's own classes (same state_dict keys and shapes for every architecture, the
  stand-in AttackerModel's keys equal robustness.attacker.AttackerModel's), the checkpoint written
  here loads into the library's AttackerModel exactly as make_and_restore_model loads it, and the
  library's AttackerModel(x) equals ONNX((x - mean)/std) with the manifest's mean/std.

Usage (from the repository root):
  .venv/bin/python weights/recipes/verify_robustness_resnet.py [--full] [--archs a,b] [--reference-src DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import sys
import types

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _robustness_cifar_models as rcm  # noqa: E402
import export_robustness_resnet as conv  # noqa: E402
from _conversion_common import (  # noqa: E402
    DEFAULT_MANIFEST,
    FIXTURE_DIR,
    TOLERANCE,
    b64_f32,
    calibrate_batchnorm,
    compare_ort,
    log,
    ort_session,
    time_ort,
)

import onnxruntime  # noqa: E402

# robustness/datasets.py, class CIFAR: the normaliser every CIFAR checkpoint of the library holds.
CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2023, 0.1994, 0.2010]
# Fixture images keep every ReLU pre-activation at least this far from 0 (see relu_margins).
MIN_RELU_MARGIN = 3e-6  # ~10x the float32 error of O(1) activations


# Architecture names of export_robustness_resnet.py that the library spells differently in
# robustness.cifar_models (its `arch` argument): it has no lowercase alias for ResNet34.
LIB_NAMES = {"resnet34": "ResNet34"}


class StandInAttacker(nn.Module):
    """Key layout of robustness.attacker.Attacker: normalize (InputNormalize), model."""

    def __init__(self, model, mean, std):
        super().__init__()
        self.normalize = rcm.InputNormalize(torch.tensor(mean), torch.tensor(std))
        self.model = model


class StandInAttackerModel(nn.Module):
    """Key layout and plain forward of robustness.attacker.AttackerModel: normalizer, model,
    attacker (sharing `model`); forward(inp) = model(normalizer(inp))."""

    def __init__(self, model, mean, std):
        super().__init__()
        self.normalizer = rcm.InputNormalize(torch.tensor(mean), torch.tensor(std))
        self.model = model
        self.attacker = StandInAttacker(model, mean, std)

    def forward(self, inp):
        return self.model(self.normalizer(inp))


def normalise(x01: torch.Tensor) -> torch.Tensor:
    return (x01 - torch.tensor(CIFAR_MEAN)[:, None, None]) / torch.tensor(CIFAR_STD)[:, None, None]


def random_classifier(arch: str, seed: int, wm: float | None = None) -> nn.Module:
    torch.manual_seed(seed)
    if wm is not None:
        block, blocks = {"resnet18": (rcm.BasicBlock, [2, 2, 2, 2]), "resnet50": (rcm.Bottleneck, [3, 4, 6, 3])}[arch]
        model = rcm.ResNet(block, blocks, num_classes=10, wm=wm)
    else:
        model = conv.ARCHS[arch](10)
    g = torch.Generator().manual_seed(seed + 1)
    x = normalise(torch.rand(32, 3, 32, 32, generator=g))
    calibrate_batchnorm(model, x, seed + 2)
    return model.eval()


def save_like_robustness(model: nn.Module, path: str, epoch: int = 150) -> StandInAttackerModel:
    """ch.save(sd_info, path, pickle_module=dill) as robustness/train.py does (DataParallel keys)."""
    import dill

    am = StandInAttackerModel(model, CIFAR_MEAN, CIFAR_STD)
    dp = nn.DataParallel(am)  # no GPU: DataParallel just holds `module`; keys get 'module.'
    opt = torch.optim.SGD(dp.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.1 ** (e // 50))
    sd_info = {
        "model": dp.state_dict(),
        "optimizer": opt.state_dict(),
        "schedule": schedule.state_dict(),
        "epoch": epoch,
        "nat_prec1": torch.tensor(90.83),
        "adv_prec1": torch.tensor(70.17),
    }
    torch.save(sd_info, path, pickle_module=dill)
    return am


def ce_reference(model: nn.Module, x01: torch.Tensor, y: torch.Tensor) -> dict:
    """float64 logits, E(x,y), E(x) and d/dx sum_n CE(f((x_n - mean)/std), y_n)."""
    m64 = _clone(model).double().eval()
    mean = torch.tensor(CIFAR_MEAN, dtype=torch.float64)[:, None, None]
    std = torch.tensor(CIFAR_STD, dtype=torch.float64)[:, None, None]
    x = x01.double().clone().requires_grad_(True)
    logits = m64((x - mean) / std)
    e_xy = -logits.gather(1, y[:, None])[:, 0]
    e_x = -torch.logsumexp(logits, dim=1)
    (e_xy - e_x).sum().backward()
    return {"logits": logits.detach(), "energy_xy": e_xy.detach(), "energy_x": e_x.detach(), "grad": x.grad}


def relu_margins(model: nn.Module, x01: torch.Tensor) -> torch.Tensor:
    """Per image, the smallest |pre-activation| over every ReLU of the (float64) model. Near 0,
    float32 rounding (e.g. ORT's BatchNorm-folded convolutions) can flip a ReLU and change the
    gradient by O(1) at a few pixels: a kink, not a conversion error."""
    import torch.nn.functional as F

    m64 = _clone(model).double().eval()
    mins: list[torch.Tensor] = []
    relu = F.relu

    def spy(t, inplace=False):
        mins.append(t.detach().abs().flatten(1).min(dim=1).values)
        return relu(t)

    F.relu = spy
    try:
        with torch.no_grad():
            m64(normalise(x01.double()))
    finally:
        F.relu = relu
    return torch.stack(mins).min(dim=0).values


def _clone(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def convert_and_check(name: str, model: nn.Module, workdir: str, onnx_path: str, manifest: str,
                      model_id: str | None, testing: bool) -> dict:
    ckpt = os.path.join(workdir, f"{name}.pt")
    save_like_robustness(model, ckpt)
    log(f"{name}: checkpoint {ckpt} ({os.path.getsize(ckpt):,} bytes)")
    argv = [ckpt, "--out", onnx_path, "--manifest", manifest]
    argv += ["--id", model_id] if model_id else ["--no-manifest"]
    if testing:
        argv += ["--testing", "--source", f"weights/recipes/verify_robustness_resnet.py ({name}, random weights)",
                 "--description", "RANDOM weights: converter self-test fixture, not a trained classifier"]
    res = conv.main(argv)
    sess = ort_session(onnx_path, threads=1)
    g = torch.Generator().manual_seed(11)
    errs = {}
    for n in (1, 8):
        x = normalise(torch.rand(n, 3, 32, 32, generator=g)).numpy()
        errs[f"batch{n}"] = compare_ort(sess, lambda x: {"logits": model(x)}, {"x": x})["logits"]
    log(f"{name}: ORT vs PyTorch (original in-memory model): {errs}")
    assert max(errs.values()) < TOLERANCE, errs
    assert res["entry"]["input"]["mean"] == CIFAR_MEAN and res["entry"]["input"]["std"] == CIFAR_STD
    res["errs"] = errs
    res["checkpoint"] = ckpt
    return res


def write_fixture(name: str, payload: dict) -> None:
    path = os.path.join(FIXTURE_DIR, name)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")
    log(f"wrote {path} ({os.path.getsize(path):,} bytes)")


def common_fields(res: dict) -> dict:
    rep = res["report"]
    return {
        "arch": res["arch"], "params": res["params"], "manifest_entry": res["entry"],
        "ort_max_abs_err": res["errs"],
        "onnx_report": {k: rep[k] for k in ("file_bytes", "sha256", "nodes", "initializers", "ops")},
        "torch_version": torch.__version__, "onnxruntime_version": onnxruntime.__version__,
    }


def check_tiny(workdir: str, manifest: str) -> list[dict]:
    out = []
    with open(manifest) as f:
        before = json.load(f)
    for arch, wm, seed in (("resnet18", 0.125, 0), ("resnet50", 0.0625, 100)):
        name = f"tiny_robustness_{arch}"
        model = random_classifier(arch, seed, wm)
        onnx_path = os.path.join(FIXTURE_DIR, f"{name}.onnx")
        res = convert_and_check(name, model, workdir, onnx_path, manifest, name.replace("_", "-"), testing=True)
        g = torch.Generator().manual_seed(seed + 50)
        cand = torch.rand(16, 3, 32, 32, generator=g)  # some are dropped, see MIN_RELU_MARGIN
        margins = relu_margins(model, cand)
        keep = [i for i in range(len(cand)) if margins[i] > MIN_RELU_MARGIN][:4]
        assert len(keep) == 4, margins
        x = cand[keep]
        log(f"{name}: images {keep} of 16 kept (smallest |pre-ReLU| {margins[keep].min().item():.2e}; "
            f"dropped: {[f'{m:.1e}' for i, m in enumerate(margins.tolist()) if i not in keep and i < max(keep)]})")
        y = torch.tensor([3, 0, 9, 5])
        ref = ce_reference(model, x, y)
        with torch.no_grad():
            l32 = model(normalise(x))
        log(f"{name}: logits std {ref['logits'].std().item():.3f}, float32 vs float64 logits "
            f"{(l32.double() - ref['logits']).abs().max().item():.2e}, |grad| max {ref['grad'].abs().max().item():.3e}")
        write_fixture(f"{name}.ref.json", {
            "description": f"robustness-library CIFAR {arch} at width multiplier {wm} with RANDOM weights, saved "
            "as an AttackerModel checkpoint (DataParallel keys, dill) and converted by export_robustness_resnet.py. "
            "References are float64 torch.autograd on the normalised-input model; coef (1,-1,0) = cross-entropy. "
            f"Images: uniform in [0, 1], kept only if every ReLU pre-activation is >= {MIN_RELU_MARGIN} from 0 "
            "(float32 rounding cannot flip a ReLU and move the gradient). "
            "float32 LE base64.",
            "model": f"{name}.onnx",
            "conventions": {"mean": CIFAR_MEAN, "std": CIFAR_STD},
            "x_shape": list(x.shape), "x_b64": b64_f32(x), "y": y.tolist(), "coef": [1, -1, 0],
            "logits_b64": b64_f32(ref["logits"]),
            "energy_xy": ref["energy_xy"].tolist(), "energy_x": ref["energy_x"].tolist(),
            "grad_b64": b64_f32(ref["grad"]),
            **common_fields(res),
        })
        out.append(res)
    with open(manifest) as f:
        text = f.read()
    after = json.loads(text)
    assert text == json.dumps(after, indent=2, ensure_ascii=False) + "\n"
    for k, v in before["models"].items():
        assert after["models"][k] == v, k
    assert list(after["models"])[: len(before["models"])] == list(before["models"])
    log(f"manifest: {len(after['models']) - len(before['models'])} entries added, others untouched")
    return out


def check_full(workdir: str, manifest: str, archs: list[str], timing: bool) -> None:
    for arch in ["resnet50", "resnet18"] + [a for a in archs if a not in ("resnet50", "resnet18")]:
        model = random_classifier(arch, seed=0)
        onnx_path = os.path.join(workdir, f"robustness_{arch}_random.onnx")
        res = convert_and_check(f"robustness_{arch}_random", model, workdir, onnx_path, manifest, None, False)
        rep = res["report"]
        log(f"{arch}: {res['params']:,} params, ONNX {rep['file_bytes']:,} bytes, {rep['nodes']} nodes, ops {rep['ops']}")
        if arch != "resnet50":
            continue
        timings = []
        if timing:
            def feeds(n):
                return {"x": torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(n)).numpy()}
            timings = time_ort(onnx_path, feeds, batches=(1, 16), threads=(1, 2),
                           out_json=onnx_path.replace(".onnx", ".timings.json"))
        g = torch.Generator().manual_seed(3)
        x = normalise(torch.rand(8, 3, 32, 32, generator=g))
        with torch.no_grad():
            logits = model(x)
        write_fixture("robustness_resnet50_random.ref.json", {
            "description": "full-size robustness-library CIFAR ResNet-50 with RANDOM weights (seeded, BN statistics "
            "calibrated), converted from an AttackerModel checkpoint; the ONNX is not committed (rebuild: "
            "verify_robustness_resnet.py --full, deterministic). x is the ONNX input: (x01 - mean)/std of "
            "uniform random x01 in [0, 1] (the ONNX has no normalisation); logits from the in-memory PyTorch model. float32 LE base64.",
            "onnx": onnx_path and os.path.basename(onnx_path),
            "x_shape": list(x.shape), "x_b64": b64_f32(x),
            "logits_shape": list(logits.shape), "logits_b64": b64_f32(logits),
                **common_fields(res),
        })


def check_against_library(src: str, workdir: str, archs: list[str]) -> None:
    """Compare the copied definitions with the real library source (see module doc)."""
    sys.path.insert(0, os.path.abspath(src))
    for missing in ("pandas", "cox", "cox.store"):  # imported by robustness.tools.helpers/constants only
        try:
            importlib.import_module(missing)
        except ImportError:
            sys.modules[missing] = types.ModuleType(missing)
    sys.modules["cox"].store = sys.modules["cox.store"]
    cm = importlib.import_module("robustness.cifar_models")
    attacker = importlib.import_module("robustness.attacker")
    log(f"reference: robustness {importlib.import_module('robustness').__version__} from {cm.__file__}")
    text = open(os.path.join(src, "robustness", "datasets.py")).read()
    blk = text[text.index("class CIFAR("):]
    lib_mean = [float(v) for v in re.search(r"'mean': ch\.tensor\(\[([^\]]*)\]", blk).group(1).split(",")]
    lib_std = [float(v) for v in re.search(r"'std': ch\.tensor\(\[([^\]]*)\]", blk).group(1).split(",")]
    assert lib_mean == CIFAR_MEAN and lib_std == CIFAR_STD, (lib_mean, lib_std)

    names = sorted(set(conv.ARCHS))
    for name in names:
        torch.manual_seed(0)
        ours = conv.ARCHS[name](10).state_dict()
        torch.manual_seed(0)
        theirs = cm.__dict__[LIB_NAMES.get(name, name)](num_classes=10).state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == theirs[k].shape for k in ours), name
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), f"{name}: same seed, different init"
    log(f"reference: state_dict keys, shapes and seeded init identical for {len(names)} architectures: {', '.join(names)}")

    class DS:
        mean = torch.tensor(CIFAR_MEAN)
        std = torch.tensor(CIFAR_STD)

    for arch in archs:
        model = random_classifier(arch, seed=7)
        ckpt = os.path.join(workdir, f"ref_{arch}.pt")
        standin = save_like_robustness(model, ckpt)
        lib_am = attacker.AttackerModel(cm.__dict__[LIB_NAMES.get(arch, arch)](num_classes=10), DS())
        assert list(lib_am.state_dict()) == list(standin.state_dict()), "AttackerModel key layout differs"
        # robustness.model_utils.make_and_restore_model's loading, verbatim:
        import dill

        checkpoint = torch.load(ckpt, pickle_module=dill, map_location="cpu", weights_only=False)
        state_dict_path = "model"
        if not ("model" in checkpoint):
            state_dict_path = "state_dict"
        sd = checkpoint[state_dict_path]
        sd = {k[len("module."):]: v for k, v in sd.items()}
        lib_am.load_state_dict(sd)
        lib_am.eval()
        onnx_path = os.path.join(workdir, f"ref_{arch}.onnx")
        res = conv.main([ckpt, "--out", onnx_path, "--no-manifest"])
        mean = torch.tensor(res["entry"]["input"]["mean"])[:, None, None]
        std = torch.tensor(res["entry"]["input"]["std"])[:, None, None]
        sess = ort_session(onnx_path)
        g = torch.Generator().manual_seed(5)
        for n in (1, 8):
            x01 = torch.rand(n, 3, 32, 32, generator=g)
            with torch.no_grad():
                lib_logits = lib_am(x01, with_image=False).numpy()
            (ort_logits,) = sess.run(["logits"], {"x": ((x01 - mean) / std).numpy()})
            err = float(np.abs(ort_logits - lib_logits).max())
            log(f"reference: library AttackerModel({arch})(x) vs ONNX((x - mean)/std), batch {n}: max abs {err:.2e}")
            assert err < TOLERANCE, err


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="full-size ResNet-50 (with timings) and ResNet-18")
    p.add_argument("--archs", default="", help="comma-separated extra full-size architectures (with --full)")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--reference-src", help="folder holding the robustness package source, to check against")
    p.add_argument("--reference-archs", default="resnet18,resnet50", help="architectures for the end-to-end library check")
    p.add_argument("--workdir", default="/tmp/rg-conversion")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(FIXTURE_DIR, exist_ok=True)
    manifest = os.path.join(args.workdir, "manifest.robustness.json")
    shutil.copyfile(DEFAULT_MANIFEST, manifest)
    check_tiny(args.workdir, manifest)
    if args.full:
        check_full(args.workdir, manifest, [a for a in args.archs.split(",") if a], timing=not args.no_timing)
    if args.reference_src:
        check_against_library(args.reference_src, args.workdir, [a for a in args.reference_archs.split(",") if a])
    log("OK")


if __name__ == "__main__":
    main()
