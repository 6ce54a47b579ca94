#!/usr/bin/env python3
"""Train a noise-aware (time-conditioned) CIFAR-10 classifier p(y | x_t, t) and export it to ONNX.

The classic baseline of classifier guidance (Dhariwal and Nichol 2021, §4 and Alg 1): a
classifier trained on forward-noised images x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
(METHOD.md §2, eq 2.11) with t drawn uniformly from {0, ..., T-1} for every image, so its
gradient at x_t is meaningful at every noise level. Same data (the CIFAR-10 train split), the
same schedule as the default DDPM (linear betas 1e-4..0.02, T = 1000).

Architecture (CPU-sized): the guide family's narrow ResNet (_classifier_archs.resnet: stem conv +
3 BasicBlocks of widths w, 2w, 4w) with a timestep embedding as in the DDPM UNet: a sinusoidal
embedding of t (dim 4w), Linear -> SiLU -> Linear, added as a per-channel bias after the stem and
after every block. Input x_t in [-1, 1] (the diffusion model's space, no mean/std normalisation:
x_t has unit scale at high t).

ONNX contract: inputs x float32 [N,3,32,32] in [-1, 1] and t int64 [N]; output logits [N,10];
opset 17, dynamic batch. The manifest entry has kind "classifier", input range "pm1" and
"timestep": true, which lib/energy/noise_aware.ts reads to feed t.

Training: random crop + flip of x0, then noise; SGD Nesterov 0.9, wd 5e-4, batch 128, warm-up
then linear decay; one checkpoint per epoch in OUT/ckpt.pt (rerun the same command to resume).
At the end: accuracy vs t on the first --eval-images test images (fixed noise, seed 0), written
to OUT/train_log.json and printed as the model card's table.

Usage (repository root; CPU-sized, ~30 min at one thread):
  nice -n 19 .venv/bin/python weights/recipes/train_noise_aware.py --epochs 4 --threads 1 \
      --out runs/noise-aware-resnet16 --onnx weights/classifiers/cifar10-resnet16-noise-aware.onnx \
      --id cifar10-resnet16-noise-aware
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _training import log, setup_run  # noqa: E402
from _cifar10_data import DEFAULT_DIR, augment_crop_flip, load_cifar10  # noqa: E402
from _classifier_archs import BasicBlock  # noqa: E402
from _conversion_common import (  # noqa: E402
    CIFAR10_CLASSES,
    DEFAULT_MANIFEST,
    compare_ort,
    export_onnx,
    onnx_report,
    ort_session,
    relpath_for_manifest,
    update_manifest,
)

T = 1000
BETAS = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
ABAR = torch.cumprod(1 - BETAS, 0)
EVAL_TS = [0, 50, 100, 150, 200, 300, 400, 500, 600, 700, 800, 900, 999]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Ho et al. 2020 / diffusers, max period 10000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class NoiseAwareResNet(nn.Module):
    """resnet(w) of _classifier_archs with a timestep embedding added as per-channel biases."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        w = width
        self.edim = 4 * w
        self.temb = nn.Sequential(nn.Linear(self.edim, self.edim), nn.SiLU(), nn.Linear(self.edim, self.edim))
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.blocks = nn.ModuleList([BasicBlock(w, w, 1), BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 4 * w, 2)])
        self.proj = nn.ModuleList([nn.Linear(self.edim, c) for c in (w, w, 2 * w, 4 * w)])
        self.head = nn.Linear(4 * w, classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e = self.temb(timestep_embedding(t, self.edim))
        h = self.stem(x) + self.proj[0](e)[:, :, None, None]
        for block, proj in zip(self.blocks, self.proj[1:]):
            h = block(h) + proj(e)[:, :, None, None]
        return self.head(h.mean(dim=(2, 3)))


def noised(x01: torch.Tensor, t: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, x0 = 2 x01 - 1 (eq 2.11)."""
    x0 = x01 * 2 - 1
    eps = torch.randn(x0.shape, generator=gen)
    a = ABAR[t].float().view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


@torch.no_grad()
def accuracy_vs_t(model, x01, y, batch: int = 500) -> dict[str, float]:
    model.eval()
    out = {}
    for tv in EVAL_TS:
        gen = torch.Generator().manual_seed(tv)
        hits = 0
        for i in range(0, len(x01), batch):
            xb = x01[i : i + batch]
            tb = torch.full((len(xb),), tv, dtype=torch.int64)
            hits += int((model(noised(xb, tb, gen), tb).argmax(1) == y[i : i + batch]).sum())
        out[str(tv)] = hits / len(x01)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=DEFAULT_DIR)
    ap.add_argument("--eval-images", type=int, default=2000)
    ap.add_argument("--out", required=True, help="run folder (checkpoint, log)")
    ap.add_argument("--onnx", help="write the ONNX model here")
    ap.add_argument("--id", help="manifest id to register the ONNX under (needs --onnx)")
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST)
    args = ap.parse_args()
    if args.epochs < 1 or args.width < 1:
        raise SystemExit(f"--epochs ({args.epochs}) and --width ({args.width}) must be >= 1")
    if args.id and not args.onnx:
        raise SystemExit("--id registers the ONNX file: pass --onnx PATH too")

    device, bf16, ckpt_path = setup_run(args.threads, args.bf16, args.out, args.seed)
    if device != "cpu":
        raise SystemExit("this recipe's noise draws assume the CPU generator; run it on the CPU")
    model = NoiseAwareResNet(args.width)
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0}],
                          lr=args.lr, momentum=0.9, nesterov=True)
    state = {"epoch": 0, "elapsed": 0.0, "epochs": [], "hardware": []}
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        log(f"resumed {ckpt_path} after epoch {state['epoch']}")

    x_train, y_train = load_cifar10("train", args.data)
    x_test, y_test = load_cifar10("test", args.data)
    x_train_t, y_train_t = torch.from_numpy(x_train), torch.from_numpy(y_train)
    n_eval = min(args.eval_images, len(x_test))
    x_eval = torch.from_numpy(x_test[:n_eval]).float().div(255)
    y_eval = torch.from_numpy(y_test[:n_eval])
    n_train = len(x_train)
    steps_per_epoch = n_train // args.batch
    total_steps = steps_per_epoch * args.epochs
    warm = max(1, int(0.1 * total_steps))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"noise-aware resnet-w{args.width}: {n_params:,} params, {args.epochs} epochs, bf16 {bf16}, "
        f"threads {args.threads}")
    state["hardware"].append({"from_epoch": state["epoch"], "threads": args.threads,
                              "cpu": platform.processor() or platform.machine(), "bf16": bf16})
    while state["epoch"] < args.epochs:
        ep = state["epoch"]
        t0 = time.time()
        rng = np.random.default_rng([args.seed, ep])
        gen = torch.Generator().manual_seed(args.seed * 1000 + ep)
        perm = torch.from_numpy(rng.permutation(n_train))
        tot_loss, tot_hits, seen = 0.0, 0, 0
        model.train()
        for s in range(steps_per_epoch):
            step = ep * steps_per_epoch + s
            lr = args.lr * (step + 1) / warm if step < warm else args.lr * (total_steps - step) / (total_steps - warm)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = perm[s * args.batch : (s + 1) * args.batch]
            x01 = augment_crop_flip(x_train_t[idx].float().div(255), rng)
            yb = y_train_t[idx]
            tb = torch.randint(0, T, (len(yb),), generator=gen)  # t ~ U{0, ..., T-1}
            xt = noised(x01, tb, gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(xt, tb)
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += loss.item() * len(yb)
            tot_hits += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            if (s + 1) % 50 == 0:
                rate = seen / (time.time() - t0)
                left = (total_steps - step - 1) * args.batch / rate
                log(f"epoch {ep + 1}/{args.epochs} step {s + 1}/{steps_per_epoch} loss {tot_loss / seen:.3f} "
                    f"train acc {tot_hits / seen:.3f} {rate:.0f} img/s ETA {left / 60:.1f} min")
        dt = time.time() - t0
        state["epoch"] = ep + 1
        state["elapsed"] += dt
        state["epochs"].append({"epoch": ep + 1, "loss": tot_loss / seen, "train_acc": tot_hits / seen,
                                "seconds": dt})
        log(f"epoch {ep + 1} done in {dt:.0f} s: loss {tot_loss / seen:.3f}, train acc {tot_hits / seen:.3f}")
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "args": vars(args)}, tmp)
        os.replace(tmp, ckpt_path)

    model.eval()
    acc_t = accuracy_vs_t(model, x_eval, y_eval)
    log(f"accuracy vs t on {n_eval} test images: {acc_t}")
    info = {
        "recipe": "weights/recipes/train_noise_aware.py",
        "args": vars(args),
        "arch": f"noise-aware resnet-w{args.width}",
        "params": n_params,
        "train_minutes": state["elapsed"] / 60,
        "epochs": state["epochs"],
        "hardware": state["hardware"],
        "eval_images": n_eval,
        "accuracy_vs_t": acc_t,
        "torch": torch.__version__,
    }
    if args.onnx:
        xs = torch.zeros(2, 3, 32, 32)
        ts = torch.tensor([0, 500], dtype=torch.int64)
        export_onnx(model, (xs, ts), args.onnx, ["x", "t"], ["logits"],
                    {"x": {0: "N"}, "t": {0: "N"}, "logits": {0: "N"}})
        gen = torch.Generator().manual_seed(1)
        tt = torch.tensor([0, 100, 300, 500, 700, 999, 50, 900], dtype=torch.int64)
        feeds = {"x": noised(x_eval[:8], tt, gen).numpy(), "t": tt.numpy()}
        scales: dict[str, float] = {}
        errs = compare_ort(ort_session(args.onnx), lambda x, t: {"logits": model(x, t)}, feeds, scales)
        rep = onnx_report(args.onnx)
        info["onnx"] = {"path": args.onnx, "sha256": rep["sha256"], "bytes": rep["file_bytes"],
                        "ops": rep["ops"], "ort_max_abs_err": errs}
        log(f"ONNX {args.onnx}: {rep['file_bytes']:,} bytes, ORT vs PyTorch max abs err {errs}")
        if errs["logits"] > 1e-4 * max(1.0, scales["logits"]):
            raise SystemExit(f"ONNX export differs from PyTorch: {errs}")
        if args.id:
            update_manifest(args.manifest, args.id, {
                "file": relpath_for_manifest(args.onnx, args.manifest),
                "sha256": rep["sha256"],
                "kind": "classifier",
                "input": {"range": "pm1", "layout": "nchw", "shape": [3, 32, 32]},
                "timestep": True,
                "source": f"weights/recipes/train_noise_aware.py {' '.join(sys.argv[1:])}",
                "description": f"project-trained noise-aware CIFAR-10 resnet-w{args.width} ({n_params:,} params) "
                               f"taking (x_t, t), trained on forward-noised images with t ~ U{{0..999}} "
                               f"(Dhariwal and Nichol's classifier), {args.epochs} epochs in "
                               f"{state['elapsed'] / 60:.0f} min on CPU; accuracy {acc_t['0'] * 100:.1f}% at t=0, "
                               f"{acc_t['500'] * 100:.1f}% at t=500 ({n_eval} test images)",
                "classes": CIFAR10_CLASSES,
                "card": f"cards/{args.id}.md",
            })
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"wrote {args.out}/train_log.json")


if __name__ == "__main__":
    main()
