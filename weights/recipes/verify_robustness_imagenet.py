#!/usr/bin/env python3
"""Self-test of export_robustness_resnet.py on a random-weight MadryLab ImageNet ResNet-50
checkpoint in the library's format (the L2 eps 3.0 robust ResNet-50, imagenet_l2_3_0.pt, is the
guide of robust-classifier guidance on ImageNet; its weights cannot be downloaded here).

As verify_robustness_resnet.py does for CIFAR: builds the full-size ImageNet ResNet-50
(_robustness_imagenet_models.py, 25.6M parameters) with seeded random weights and calibrated
BatchNorm statistics, wraps it like robustness.attacker.AttackerModel inside DataParallel
(normalizer.new_mean/new_std = the ImageNet mean/std, model.*, attacker.normalize.*,
attacker.model.*), saves it as robustness.train does ({'model', 'optimizer', 'schedule', 'epoch',
'nat_prec1', 'adv_prec1'}, pickle_module=dill), runs the converter on that file, and checks ONNX
Runtime against the in-memory PyTorch model at batch 1 and 8 (max abs error < 1e-4 x
max(1, max|logits|)), at 224x224 (the training size) and, with --size 256, at 256x256 (the size
of the 256x256 ADM samples; the pooling is adaptive).

Writes tests/fixtures/conversion/robustness_imagenet_resnet50.parity.json; the ONNX files go to
--workdir (default /tmp/robustness_imagenet), never into the repository.

Usage (from the repository root):
  .venv/bin/python weights/recipes/verify_robustness_imagenet.py [--sizes 224,256] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _robustness_imagenet_models as rim  # noqa: E402
import export_robustness_resnet as conv  # noqa: E402
from _conversion_common import FIXTURE_DIR, calibrate_batchnorm, compare_ort, log, ort_session  # noqa: E402
from verify_robustness_resnet import StandInAttackerModel  # noqa: E402


def normalise(x01: torch.Tensor) -> torch.Tensor:
    return (x01 - torch.tensor(rim.IMAGENET_MEAN)[:, None, None]) / torch.tensor(rim.IMAGENET_STD)[:, None, None]


def save_like_robustness(model: nn.Module, path: str) -> None:
    try:
        import dill  # the library pickles with dill
    except ImportError:
        dill = None
    am = StandInAttackerModel(model, rim.IMAGENET_MEAN, rim.IMAGENET_STD)
    dp = nn.DataParallel(am)
    opt = torch.optim.SGD(dp.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, 30)
    sd_info = {"model": dp.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
               "epoch": 90, "nat_prec1": torch.tensor(57.9), "adv_prec1": torch.tensor(35.2)}
    if dill is not None:
        torch.save(sd_info, path, pickle_module=dill)
    else:
        torch.save(sd_info, path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="224,256")
    ap.add_argument("--workdir", default="/tmp/robustness_imagenet")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.workdir, exist_ok=True)
    torch.manual_seed(0)
    model = rim.resnet50(1000)
    g = torch.Generator().manual_seed(1)
    calibrate_batchnorm(model, normalise(torch.rand(8, 3, 224, 224, generator=g)), 2, beta_mean=0.1)
    model.eval()
    ckpt = os.path.join(args.workdir, "imagenet_resnet50_random.pt")
    save_like_robustness(model, ckpt)
    log(f"checkpoint {ckpt} ({os.path.getsize(ckpt):,} bytes)")
    rows = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        out = os.path.join(args.workdir, f"robustness_imagenet_resnet50_{size}.onnx")
        res = conv.main([ckpt, "--out", out, "--no-manifest", "--image-size", str(size), "--no-cifar10-classes",
                         "--threads", str(args.threads)])
        assert res["arch"] == "imagenet_resnet50", res["arch"]
        assert res["entry"]["input"]["mean"] == rim.IMAGENET_MEAN and res["entry"]["input"]["std"] == rim.IMAGENET_STD
        sess = ort_session(out, threads=args.threads)
        errs, scales = {}, {}
        for n in (1, 8):
            x = normalise(torch.rand(n, 3, size, size, generator=g)).numpy()
            errs[f"b{n}"] = compare_ort(sess, lambda x: {"logits": model(x)}, {"x": x}, scales)["logits"]
        bound = 1e-4 * max(1.0, scales["logits"])
        log(f"{size}x{size}: ORT vs PyTorch (in-memory model) {errs}, max |logits| {scales['logits']:.3g}")
        assert max(errs.values()) < bound, errs
        rows[str(size)] = {"max_abs_error": errs, "max_abs_logits": scales["logits"], "params": res["params"],
                           "onnx_mb": round(os.path.getsize(out) / 2 ** 20, 1), "arch": res["arch"],
                           "entry_input": res["entry"]["input"]}
    path = os.path.join(FIXTURE_DIR, "robustness_imagenet_resnet50.parity.json")
    with open(path, "w") as fh:
        json.dump({"checkpoint_format": "robustness.train sd_info (DataParallel AttackerModel)", "sizes": rows,
                   "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__}, fh, indent=1)
        fh.write("\n")
    os.remove(ckpt)
    log(f"-> {path}")


if __name__ == "__main__":
    main()
