#!/usr/bin/env python3
"""Convert a MadryLab `robustness` CIFAR checkpoint (e.g. cifar_l2_0_5.pt, the thesis's robust
ResNet-50s) to an ONNX classifier for the toolkit.

The checkpoint is what robustness.train saves (ch.save(..., pickle_module=dill)): a dict with
'model' (older files: 'state_dict') = the state_dict of a DataParallel-wrapped AttackerModel:
  module.normalizer.new_mean / new_std        [3, 1, 1]  InputNormalize (clamp to [0,1], (x-mean)/std)
  module.model.<classifier>                   the CIFAR architecture (robustness/cifar_models)
  module.attacker.normalize.new_mean / new_std, module.attacker.model.<classifier>  (same tensors)
plus 'epoch' (and 'optimizer', 'schedule', 'nat_prec1'/'adv_prec1'). The 'module.' prefix is
optional here (the library strips it too: make_and_restore_model).

Output ONNX (opset 17, float32, dynamic batch N):
  x       float32 [N, 3, 32, 32]   the classifier's own input: (x01 - mean) / std for an image
                                   x01 in [0, 1] (NCHW); the normalisation is NOT in the graph
  logits  float32 [N, K]           the classifier's logits (K = 10 for CIFAR-10)
The normalisation is deliberately left out of the graph (the convention of the shared
classifiers too): the manifest entry records the checkpoint's own mean/std as input
{range "01", mean, std}, and the toolkit's energy head folds (x01 - mean) / std in
(lib/energy/head.ts). The library's InputNormalize also clamps x01 to [0, 1] first; that clamp
is left out as well (same outputs for x01 in [0, 1]; outside it the clamp would zero the
gradient that guidance needs).

ImageNet checkpoints (robustness/imagenet_models, e.g. imagenet_l2_3_0.pt, the L2 eps 3.0 robust
ResNet-50 of ImageNet guidance work): the torchvision-layout ResNets (resnet18/34/50/101/152,
wide_resnet50_2/101_2), detected from the 7x7 stem and `fc`; definitions in
_robustness_imagenet_models.py. Pass --image-size 224 (their training size) or the size the
classifier should see (any: the pooling is adaptive), and --no-cifar10-classes.

Architectures (detected from the state_dict keys, or forced with --arch, library names):
  resnet18, resnet34, resnet50, resnet101, resnet152, resnet18wide (and any other width: the
  width multiplier is read from conv1), vgg11/13/16/19, densenet121/161/169/201, densenet_cifar,
  inceptionv3. Definitions: _robustness_cifar_models.py (a verified copy of the library's).

Loading: torch.load(weights_only=True) first (no code runs). The library pickles with dill;
if a file needs full unpickling, pass --trust-pickle (only for files you trust).

Usage (from the repository root):
  .venv/bin/python weights/recipes/export_robustness_resnet.py cifar_l2_0_5.pt \
      --out weights/robustness_cifar_l2_0_5.onnx --id robustness-cifar-l2-0.5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _robustness_cifar_models as rcm  # noqa: E402
import _robustness_imagenet_models as rim  # noqa: E402
from _conversion_common import (  # noqa: E402
    ConversionError,
    add_entry_flags,
    converter_main,
    converter_parser,
    CIFAR10_CLASSES,
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

ARCHS = {
    "resnet18": lambda k: rcm.ResNet18(num_classes=k),
    "resnet18wide": lambda k: rcm.ResNet18Wide(num_classes=k),
    "resnet34": lambda k: rcm.ResNet34(num_classes=k),
    "resnet50": lambda k: rcm.ResNet50(num_classes=k),
    "resnet101": lambda k: rcm.ResNet101(num_classes=k),
    "resnet152": lambda k: rcm.ResNet152(num_classes=k),
    "vgg11": lambda k: rcm.VGG11(num_classes=k),
    "vgg13": lambda k: rcm.VGG13(num_classes=k),
    "vgg16": lambda k: rcm.VGG16(num_classes=k),
    "vgg19": lambda k: rcm.VGG19(num_classes=k),
    "densenet121": lambda k: rcm.DenseNet121(num_classes=k),
    "densenet161": lambda k: rcm.DenseNet161(num_classes=k),
    "densenet169": lambda k: rcm.DenseNet169(num_classes=k),
    "densenet201": lambda k: rcm.DenseNet201(num_classes=k),
    "densenet_cifar": lambda k: rcm.densenet_cifar(num_classes=k),
    "inceptionv3": lambda k: rcm.InceptionV3(num_classes=k),
}
RESNETS = {
    ("basic", (2, 2, 2, 2), 1.0): "resnet18",
    ("basic", (2, 2, 2, 2), 5.0): "resnet18wide",
    ("basic", (3, 4, 6, 3), 1.0): "resnet34",
    ("bottleneck", (3, 4, 6, 3), 1.0): "resnet50",
    ("bottleneck", (3, 4, 23, 3), 1.0): "resnet101",
    ("bottleneck", (3, 8, 36, 3), 1.0): "resnet152",
}
DENSENETS = {
    ((6, 12, 24, 16), 32): "densenet121",
    ((6, 12, 32, 32), 32): "densenet169",
    ((6, 12, 48, 32), 32): "densenet201",
    ((6, 12, 36, 24), 48): "densenet161",
    ((6, 12, 24, 16), 12): "densenet_cifar",
}


def _count(sd: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def detect_arch(sd: dict) -> tuple[str, nn.Module, int]:
    """(description, model, num_classes) for a classifier state_dict with library key names."""
    if "fc.weight" in sd and "conv1.weight" in sd and sd["conv1.weight"].shape[-1] == 7:
        # robustness/imagenet_models: torchvision-layout ResNet (7x7 stem, maxpool, fc)
        k = sd["fc.weight"].shape[0]
        block = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
        blocks = tuple(_count(sd, rf"layer{i}\.(\d+)\.conv1\.weight") for i in range(1, 5))
        width = sd["layer1.0.conv1.weight"].shape[0] if block == "bottleneck" else 64
        name = rim.IMAGENET_RESNETS.get((block, blocks, width))
        model = rim.ResNet(rim.Bottleneck if block == "bottleneck" else rim.BasicBlock, list(blocks),
                           num_classes=k, width_per_group=width)
        return f"imagenet_{name}" if name else f"ImageNet ResNet({block}, {list(blocks)}, width {width})", model, k
    if "linear.weight" in sd and "layer1.0.conv1.weight" in sd:
        k = sd["linear.weight"].shape[0]
        block = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
        blocks = tuple(_count(sd, rf"layer{i}\.(\d+)\.conv1\.weight") for i in range(1, 5))
        c0 = sd["conv1.weight"].shape[0]
        wm = c0 / 64
        name = RESNETS.get((block, blocks, wm))
        expansion = 4 if block == "bottleneck" else 1
        feat = sd["linear.weight"].shape[1]
        if feat != int(512 * wm) * expansion:
            raise ConversionError(
                f"linear layer takes {feat} features, expected {int(512 * wm) * expansion}: a "
                "feat_scale != 1 ResNet (non-32x32 data) is not supported"
            )
        model = rcm.ResNet(rcm.Bottleneck if block == "bottleneck" else rcm.BasicBlock, list(blocks),
                           num_classes=k, wm=wm)
        return name or f"ResNet({block}, {list(blocks)}, wm={wm:g})", model, k
    if "features.0.weight" in sd and "classifier.weight" in sd:
        k = sd["classifier.weight"].shape[0]
        convs = sorted(int(m.group(1)) for key in sd
                       for m in [re.match(r"features\.(\d+)\.weight$", key)] if m and sd[key].dim() == 4)
        for name, cfg in rcm.cfg.items():
            chans = [c for c in cfg if c != "M"]
            idx, pos = [], 0
            for c in cfg:
                if c == "M":
                    pos += 1
                else:
                    idx.append(pos)
                    pos += 3
            if idx == convs and all(sd[f"features.{i}.weight"].shape[0] == c for i, c in zip(idx, chans)):
                return name.lower(), ARCHS[name.lower()](k), k
        raise ConversionError(f"VGG-like checkpoint with conv layers at features.{convs} matches no VGG11/13/16/19")
    if "dense1.0.conv1.weight" in sd:
        k = sd["linear.weight"].shape[0]
        blocks = tuple(_count(sd, rf"dense{i}\.(\d+)\.conv1\.weight") for i in range(1, 5))
        growth = sd["dense1.0.conv2.weight"].shape[0]
        name = DENSENETS.get((blocks, growth))
        if name is None:
            return (f"DenseNet({list(blocks)}, growth_rate={growth})",
                    rcm.DenseNet(rcm.DenseBottleneck, list(blocks), growth_rate=growth, num_classes=k), k)
        return name, ARCHS[name](k), k
    if "Mixed_5b.branch1x1.conv.weight" in sd:
        k = sd["linear.weight"].shape[0]
        if k != 10:
            raise ConversionError("the library's inceptionv3 is built with 10 classes only")
        return "inceptionv3", rcm.InceptionV3(num_classes=k), k
    raise ConversionError(
        "unrecognised classifier state_dict (first keys: " + ", ".join(list(sd)[:5]) + "); pass --arch"
    )


def split_checkpoint(ckpt) -> tuple[dict, dict, dict]:
    """(classifier state_dict, normaliser {mean, std}, metadata) of a robustness checkpoint."""
    if not isinstance(ckpt, dict):
        raise ConversionError(f"checkpoint is a {type(ckpt).__name__}, not a dict with 'model'")
    key = "model" if "model" in ckpt else "state_dict" if "state_dict" in ckpt else None
    if key is None:
        raise ConversionError(f"checkpoint has no 'model' or 'state_dict' (keys: {list(ckpt)[:8]})")
    sd = ckpt[key]
    if hasattr(sd, "state_dict") and not isinstance(sd, dict):
        sd = sd.state_dict()
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    model_sd = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    if not model_sd:
        raise ConversionError(
            "no 'model.*' tensors: this is not an AttackerModel state_dict (keys start with "
            + ", ".join(sorted({k.split('.')[0] for k in sd})[:6]) + ")"
        )
    attacker_sd = {k[len("attacker.model."):]: v for k, v in sd.items() if k.startswith("attacker.model.")}
    if attacker_sd:
        if set(attacker_sd) != set(model_sd) or any(not torch.equal(attacker_sd[k], model_sd[k]) for k in model_sd):
            log("warning: attacker.model.* differs from model.*; converting model.* (the one AttackerModel.forward uses)")
    norm = {}
    for name in ("new_mean", "new_std"):
        t = sd.get(f"normalizer.{name}", sd.get(f"attacker.normalize.{name}"))
        if t is not None:
            norm[name] = [float(f"{v:.7g}") for v in t.reshape(-1).tolist()]
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "state_dict", "optimizer", "schedule", "amp")}
    meta = {k: (v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v) for k, v in meta.items()}
    meta = {k: v for k, v in meta.items() if isinstance(v, (int, float, str))}
    return model_sd, norm, meta


class Logits(nn.Module):
    """forward(x) -> logits of the classifier on its already-normalised input (x here is what the
    library feeds after InputNormalize; the toolkit folds the normalisation into the head)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def convert(args) -> dict:
    ckpt = torch_load_checkpoint(args.checkpoint, args.trust_pickle)
    model_sd, norm, meta = split_checkpoint(ckpt)
    if args.arch:
        if args.arch not in ARCHS:
            raise ConversionError(f"--arch {args.arch} unknown; one of {', '.join(ARCHS)}")
        k = next(v.shape[0] for key, v in model_sd.items() if key in ("linear.weight", "classifier.weight"))
        arch, model = args.arch, ARCHS[args.arch](k)
    else:
        arch, model, k = detect_arch(model_sd)
    try:
        missing, unexpected = model.load_state_dict(model_sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ConversionError(f"state_dict does not fit {arch}: {' '.join(str(e).split())[:400]}") from None
    if missing or unexpected:
        raise ConversionError(f"state_dict does not fit {arch}: missing {missing[:6]}, unexpected {unexpected[:6]}")
    model.eval()
    mean = args.mean or norm.get("new_mean")
    std = args.std or norm.get("new_std")
    if mean is None or std is None:
        raise ConversionError("the checkpoint holds no normalizer.new_mean/new_std; pass --mean and --std")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{args.checkpoint}: {arch}, {n_params:,} params, K={k}, mean={mean}, std={std}, meta={meta}")

    wrapper = Logits(model).eval()
    S = args.image_size
    g = torch.Generator().manual_seed(0)
    exporter = export_onnx(wrapper, (torch.rand(2, 3, S, S, generator=g),), args.out, ["x"], ["logits"],
                           {"x": {0: "N"}, "logits": {0: "N"}})
    rep = onnx_report(args.out)
    log(f"ONNX ({exporter}): {args.out} {rep['file_bytes']:,} bytes sha256 {rep['sha256']}")
    sess = ort_session(args.out, threads=args.threads)
    errs, scales = {}, {}
    mean_t, std_t = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    for n in (1, 3):
        x = ((torch.rand(n, 3, S, S, generator=g) - mean_t) / std_t).numpy()  # normalised images
        errs[n] = compare_ort(sess, lambda x: {"logits": wrapper(x)}, {"x": x}, scales)["logits"]
        log(f"ORT vs PyTorch, batch {n}: max abs error {errs[n]:.3e}")
    check_errors(errs, scales, args.tol, args.out)

    epoch = meta.get("epoch")
    extra = ", ".join(f"{key} {val:.4g}" if isinstance(val, float) else f"{key} {val}"
                      for key, val in meta.items())
    entry = {
        "file": relpath_for_manifest(args.out, args.manifest),
        "sha256": rep["sha256"],
        "kind": "classifier",
        "input": {"range": "01", "layout": "nchw", "shape": [3, S, S], "mean": mean, "std": std},
        "source": args.source or (
            f"{os.path.basename(args.checkpoint)} (MadryLab robustness AttackerModel checkpoint"
            + (f", epoch {epoch}" if epoch is not None else "") + ") via weights/recipes/export_robustness_resnet.py"
        ),
        "description": args.description or (
            f"robustness-library {'ImageNet' if arch.startswith('ImageNet') or arch.startswith('imagenet') else 'CIFAR'} {arch} ({n_params:,} params); ONNX = logits of the model without its "
            "InputNormalize (clamp to [0,1], then (x - mean)/std with the checkpoint's mean/std recorded here)"
            + (f"; checkpoint: {extra}" if extra else "")
        ),
    }
    if k == 10 and not args.no_cifar10_classes:
        entry["classes"] = list(CIFAR10_CLASSES)
    if args.testing:
        entry["testing"] = True
    if args.id and not args.no_manifest:
        update_manifest(args.manifest, args.id, entry)
    print(json.dumps({"id": args.id, "arch": arch, "entry": entry, "params": n_params,
                      "ort_max_abs_err": errs, "ops": rep["ops"], "nodes": rep["nodes"]}, indent=2))
    return {"entry": entry, "report": rep, "errors": errs, "params": n_params, "arch": arch,
            "model": model, "exporter": exporter}


def _floats(s: str) -> list[float]:
    v = [float(x) for x in s.split(",")]
    if len(v) != 3:
        raise argparse.ArgumentTypeError("three comma-separated numbers")
    return v


def parser() -> argparse.ArgumentParser:
    p = converter_parser(__doc__, "checkpoint", "robustness checkpoint (.pt), e.g. cifar_l2_0_5.pt")
    p.add_argument("--arch", help="force the architecture (default: detected from the keys)")
    p.add_argument("--mean", type=_floats, help="override the checkpoint's normaliser mean (r,g,b)")
    p.add_argument("--std", type=_floats, help="override the checkpoint's normaliser std (r,g,b)")
    p.add_argument("--image-size", type=int, default=32, help="input height = width (default 32, CIFAR)")
    p.add_argument("--no-cifar10-classes", action="store_true", help="do not record CIFAR-10 class names")
    p.add_argument("--trust-pickle", action="store_true", help="allow full unpickling if weights_only loading refuses the file")
    add_entry_flags(p, "logits")
    return p


def main(argv: list[str] | None = None) -> dict:
    return converter_main(parser(), convert, argv)


if __name__ == "__main__":
    main()
