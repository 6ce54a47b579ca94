#!/usr/bin/env python3
"""Convert pytorch-fid's FID Inception-v3 weights (pt_inception-2015-12-05-6726825d.pth, the
TF 2015-12-05 Inception ported to PyTorch) to an ONNX feature extractor for FID / IS.

Input: the .pth as pytorch-fid downloads it (a plain state_dict of torchvision's Inception3
layout with 1008 classes and no AuxLogits, the FID blocks' keys being the same as torchvision's).

Output ONNX (opset 17, float32; N dynamic; H = W = --image-size, default 32, or dynamic with
--dynamic-size):
  x         float32 [N, 3, H, W]  images in [0, 1] (RGB, NCHW)
  features  float32 [N, 2048]     pool3: the activations pytorch-fid computes FID on
  logits    float32 [N, 1008]     fc(pool3), the 1008-way logits of the same network (for IS;
                                  torch-fidelity's IS uses these logits' softmax)
The preprocessing of pytorch_fid.inception.InceptionV3 is explicit inside the graph:
  1. bilinear resize to 299x299, F.interpolate(..., align_corners=False) -> ONNX Resize
     (mode linear, half-pixel coordinates, no antialiasing: exactly what pytorch-fid does,
     which differs slightly from the original TF FID code's resize);
  2. x -> 2x - 1 (the [-1, 1] range of the TF weights).
So feed [0, 1] images at their own size (CIFAR-10: 32x32); do not resize or rescale first.
The toolkit's metrics (lib/metrics/feature_model.ts, the evaluate task) take this ONNX as a
feature network with features "features" and logits "logits"; they need a fixed H x W, hence
the default.

The definition is _fid_inception_arch.py (a verified copy of pytorch-fid's and torchvision's),
since torchvision cannot be installed beside this project's CPU torch.

Usage (from the repository root):
  .venv/bin/python weights/recipes/export_fid_inception.py pt_inception-2015-12-05-6726825d.pth \
      --out weights/fid_inception.onnx --id fid-inception
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _fid_inception_arch as arch  # noqa: E402
from _conversion_common import (  # noqa: E402
    ConversionError,
    add_entry_flags,
    converter_main,
    converter_parser,
    check_errors,
    compare_ort,
    export_onnx,
    log,
    onnx_report,
    ort_session,
    relpath_for_manifest,
    torch_load_checkpoint,
    update_manifest,
)

FID_WEIGHTS_SHA256_PREFIX = "6726825d"  # the hash prefix in pytorch-fid's file name (torch.hub convention)


def load_inception(path: str, trust_pickle: bool) -> arch.Inception3:
    sd = torch_load_checkpoint(path, trust_pickle)
    if isinstance(sd, dict) and "state_dict" in sd and "fc.weight" not in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "fc.weight" not in sd:
        raise ConversionError(f"{path} is not an Inception3 state_dict (no fc.weight)")
    if tuple(sd["fc.weight"].shape) != (1008, 2048):
        raise ConversionError(
            f"fc.weight is {tuple(sd['fc.weight'].shape)}, not (1008, 2048): this is not the FID "
            "Inception (torchvision's ImageNet Inception has 1000 classes and different blocks)"
        )
    sd = {k: v for k, v in sd.items() if not k.startswith("AuxLogits.")}
    model = arch.Inception3()
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ConversionError(f"state_dict does not fit the FID Inception: {' '.join(str(e).split())[:400]}") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ConversionError(f"state_dict does not fit the FID Inception: missing {missing[:6]}, unexpected {unexpected[:6]}")
    return model.float().eval()


def convert(args) -> dict:
    inception = load_inception(args.weights, args.trust_pickle)
    model = arch.FIDInceptionV3(inception).eval()
    n_params = sum(p.numel() for p in inception.parameters())
    log(f"{args.weights}: FID Inception-v3, {n_params:,} params")
    g = torch.Generator().manual_seed(0)
    S = args.image_size
    x_axes = {0: "N", 2: "H", 3: "W"} if args.dynamic_size else {0: "N"}
    exporter = export_onnx(model, (torch.rand(2, 3, S, S, generator=g),), args.out, ["x"], ["features", "logits"],
                           {"x": x_axes, "features": {0: "N"}, "logits": {0: "N"}})
    rep = onnx_report(args.out)
    log(f"ONNX ({exporter}): {args.out} {rep['file_bytes']:,} bytes sha256 {rep['sha256']}")
    sess = ort_session(args.out, threads=args.threads)
    errs, scales = {}, {}
    for n, size in ((1, S), (2, 299 if args.dynamic_size else S)):
        x = torch.rand(n, 3, size, size, generator=g).numpy()
        e = compare_ort(sess, lambda x: dict(zip(("features", "logits"), model(x))), {"x": x}, scales)
        errs[f"batch{n}_{size}px"] = max(e.values())
        log(f"ORT vs PyTorch, batch {n} at {size}x{size}: max abs error {e}")
    check_errors(errs, scales, args.tol, args.out)
    entry = {
        "file": relpath_for_manifest(args.out, args.manifest),
        "sha256": rep["sha256"],
        "kind": "feature",
        "input": {"range": "01", "layout": "nchw", "shape": [3, S, S]},
        "source": args.source or (
            f"{os.path.basename(args.weights)} (pytorch-fid's FID Inception-v3, TF inception-2015-12-05) via "
            "weights/recipes/export_fid_inception.py"
        ),
        "description": args.description or (
            "FID Inception-v3 (pytorch-fid 0.3.0 definition): outputs features [N, 2048] (pool3, for FID) and "
            "logits [N, 1008] (fc, for IS); the graph resizes its [0, 1] input to 299x299 (bilinear, "
            "align_corners=False) and maps it to [-1, 1] itself"
        ),
    }
    if args.testing:
        entry["testing"] = True
    if args.id and not args.no_manifest:
        update_manifest(args.manifest, args.id, entry)
    if FID_WEIGHTS_SHA256_PREFIX in os.path.basename(args.weights):
        from _conversion_common import sha256_file

        digest = sha256_file(args.weights)
        ok = digest.startswith(FID_WEIGHTS_SHA256_PREFIX)
        log(f"weights sha256 {digest}: {'starts' if ok else 'does NOT start'} with the file name's hash part {FID_WEIGHTS_SHA256_PREFIX} (torch.hub names files by sha256 prefix)")
    print(json.dumps({"id": args.id, "entry": entry, "params": n_params, "ort_max_abs_err": errs,
                      "ops": rep["ops"], "nodes": rep["nodes"]}, indent=2))
    return {"entry": entry, "report": rep, "errors": errs, "params": n_params, "model": model, "exporter": exporter}


def parser() -> argparse.ArgumentParser:
    p = converter_parser(__doc__, "weights", "pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--image-size", type=int, default=32,
                   help="input H = W (default 32, CIFAR-10); fixed in the graph unless --dynamic-size")
    p.add_argument("--dynamic-size", action="store_true",
                   help="make H and W dynamic too (any image size runs in ORT; the toolkit's feature-network "
                        "builder, lib/metrics/feature_model.ts, needs them fixed)")
    p.add_argument("--trust-pickle", action="store_true", help="allow full unpickling if weights_only loading refuses the file")
    add_entry_flags(p, "output")
    return p


def main(argv: list[str] | None = None) -> dict:
    return converter_main(parser(), convert, argv)


if __name__ == "__main__":
    main()
