#!/usr/bin/env python3
"""Train the project's fast independent evaluator (issue 17) and export it to ONNX with flip
test-time augmentation inside the graph.

The recipe is the CIFAR-10 speed-run one of Keller Jordan's airbench94 (2024, "94% on CIFAR-10 in
3.29 seconds on a single GPU"), which builds on Page's "How to train your ResNet" (2018) and
tysam-code's hlb-CIFAR10:
  * net `airbench` of _classifier_archs.py: frozen 2x2 patch-whitening first conv (initialised
    from the covariance of 5,000 training images' patches; its bias trains for the first
    --whiten-bias-epochs), BN scales frozen at 1, identity-initialised convs, tanh-GELU;
  * SGD Nesterov, momentum 0.85, batch 1024, hyper-parameters in airbench's decoupled form
    (lr 11.5 and weight decay 0.0153 per 1024 examples, BN shifts at 64x the lr), summed loss,
    label smoothing 0.2, a triangular lr schedule (0.2 -> 1 at 23% -> 0.07);
  * Lookahead-style EMA (from epoch 3, every 5 steps, decay 0.95^5 x (progress)^3, copied back
    into the net);
  * augmentation: translate by up to 2 pixels (reflect pad) and *alternating* flip (each image's
    random flip of epoch 0 is inverted on every odd epoch);
  * evaluation and export with flip TTA (FlipTTA: features of x and of its mirror averaged).
On CPU: bfloat16 autocast where AVX512-BF16 exists (or CUDA), one torch thread by default.

Resumable: OUT/ckpt.pt after every epoch (atomic); rerun the same command to continue (per-epoch
RNG seeded by (seed, epoch)). SIGTERM/SIGINT finish the current step, checkpoint mid-epoch and exit.

At the end: accuracy on all 10,000 test images with and without flip TTA, ONNX export of the TTA
graph (x [N,3,32,32] in [0,1] -> logits [N,10], opset 17, dynamic batch; checked against PyTorch
in onnxruntime), OUT/train_log.json and, with --id, the manifest entry.

Usage (repository root):
  nice -n 19 .venv/bin/python weights/recipes/train_evaluator_fast.py --epochs 16 \
      --out runs/evaluator-airbench --onnx weights/classifiers/cifar10-airbench64-eval.onnx \
      --id cifar10-airbench64-eval
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _training import log, setup_run  # noqa: E402
from _cifar10_data import DEFAULT_DIR, load_cifar10  # noqa: E402
from _classifier_archs import FlipTTA, airbench  # noqa: E402
from _conversion_common import (  # noqa: E402
    DEFAULT_MANIFEST,
    cifar10_classifier_entry,
    compare_ort,
    export_onnx,
    onnx_report,
    ort_session,
    update_manifest,
)


def translate(x: torch.Tensor, rng: np.random.Generator, r: int) -> torch.Tensor:
    """Per-image random translation by up to r pixels in each axis (reflect padding)."""
    n = x.shape[0]
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    dy = torch.from_numpy(rng.integers(0, 2 * r + 1, n))
    dx = torch.from_numpy(rng.integers(0, 2 * r + 1, n))
    idx = torch.arange(32)
    rows, cols = dy[:, None] + idx[None, :], dx[:, None] + idx[None, :]
    return xp[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None],
              rows[:, None, :, None], cols[:, None, None, :]]


def triangle(step: int, total: int, start: float = 0.2, peak_at: float = 0.23, end: float = 0.07) -> float:
    """airbench's lr multiplier: linear start -> 1 at peak_at * total -> end at total."""
    p = int(peak_at * total)
    if step < p:
        return start + (1 - start) * step / p
    return 1 + (end - 1) * (step - p) / max(1, total - p)


@torch.no_grad()
def accuracy(model, x, y, batch: int = 500, tta: bool = False) -> float:
    model.eval()
    hits = 0
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        logits = model(xb)
        if tta:
            logits = logits + model(xb.flip(-1))
        hits += int((logits.argmax(1) == y[i : i + batch]).sum())
    return hits / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=64, help="block widths w, 4w, 4w")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=11.5, help="per 1024 examples (decoupled)")
    ap.add_argument("--momentum", type=float, default=0.85)
    ap.add_argument("--wd", type=float, default=0.0153, help="per 1024 examples (decoupled)")
    ap.add_argument("--bias-scaler", type=float, default=64.0)
    ap.add_argument("--label-smoothing", type=float, default=0.2)
    ap.add_argument("--whiten-bias-epochs", type=int, default=3)
    ap.add_argument("--ema-start-epochs", type=int, default=3)
    ap.add_argument("--translate", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=DEFAULT_DIR)
    ap.add_argument("--out", required=True, help="run folder (checkpoint, log)")
    ap.add_argument("--onnx", help="write the ONNX model (flip TTA inside) here")
    ap.add_argument("--id", help="manifest id to register the ONNX under (needs --onnx)")
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST)
    ap.add_argument("--card", help="model card path relative to weights/ (default cards/<id>.md)")
    args = ap.parse_args()
    if args.epochs < 1 or args.width < 1 or args.batch < 1:
        raise SystemExit(f"--epochs ({args.epochs}), --width ({args.width}), --batch ({args.batch}) must be >= 1")
    if args.id and not args.onnx:
        raise SystemExit("--id registers the ONNX file: pass --onnx PATH too")

    device, bf16, ckpt_path = setup_run(args.threads, args.bf16, args.out, args.seed)
    x_train, y_train = load_cifar10("train", args.data)
    x_test, y_test = load_cifar10("test", args.data)
    x_train_t = torch.from_numpy(x_train).float().div(255)
    y_train_t = torch.from_numpy(y_train)
    x_test_t = torch.from_numpy(x_test).float().div(255).to(device)
    y_test_t = torch.from_numpy(y_test).to(device)
    n_train = len(x_train)

    model = airbench(args.width).to(device)
    model.init_whitening(x_train_t[:5000].to(device))
    momentum = args.momentum
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = args.lr / kilostep_scale
    wd = args.wd * args.batch / kilostep_scale
    lr_bias = lr * args.bias_scaler
    norm_biases = [p for n, p in model.named_parameters() if "norm" in n and p.requires_grad]
    others = [p for n, p in model.named_parameters() if "norm" not in n and p.requires_grad]
    opt = torch.optim.SGD([dict(params=norm_biases, lr=lr_bias, weight_decay=wd / lr_bias, base=lr_bias),
                           dict(params=others, lr=lr, weight_decay=wd / lr, base=lr)],
                          momentum=momentum, nesterov=True)
    steps_per_epoch = math.ceil(n_train / args.batch)
    total_steps = steps_per_epoch * args.epochs
    state = {"epoch": 0, "step_in_epoch": 0, "elapsed": 0.0, "cpu_seconds": 0.0, "epochs": [], "hardware": []}
    ema = None
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        ema = ck["ema"]
        state = ck["state"]
        log(f"resumed {ckpt_path} at epoch {state['epoch']} step {state['step_in_epoch']}")
    flip0 = torch.from_numpy(np.random.default_rng([args.seed, 10**6]).random(n_train) < 0.5)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"airbench-w{args.width}: {n_params:,} params, {args.epochs} epochs x {steps_per_epoch} steps, "
        f"bf16 {bf16}, threads {args.threads}, device {device}")
    state["hardware"].append({"from_epoch": state["epoch"], "device": device, "threads": args.threads,
                              "cpu": platform.processor() or platform.machine(), "bf16": bf16})

    def save() -> None:
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema, "state": state,
                    "args": vars(args)}, tmp)
        os.replace(tmp, ckpt_path)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ema_every, ema_base = 5, 0.95**5
    while state["epoch"] < args.epochs:
        ep = state["epoch"]
        rng = np.random.default_rng([args.seed, ep])
        perm = torch.from_numpy(rng.permutation(n_train))
        crops_seed = rng.integers(2**31)
        model.whiten.bias.requires_grad = ep < args.whiten_bias_epochs
        flip = flip0 ^ bool(ep % 2)
        t0, c0, seg = time.time(), time.process_time(), 0.0
        tot_loss, tot_hits, seen = 0.0, 0, 0
        for s in range(state["step_in_epoch"], steps_per_epoch):
            step = ep * steps_per_epoch + s
            mult = triangle(step, total_steps)
            for g in opt.param_groups:
                g["lr"] = g["base"] * mult
            idx = perm[s * args.batch : (s + 1) * args.batch]
            xb = x_train_t[idx]
            fb = flip[idx]
            xb = torch.where(fb.view(-1, 1, 1, 1), xb.flip(-1), xb)
            xb = translate(xb, np.random.default_rng([args.seed, ep, s, crops_seed]), args.translate).to(device)
            yb = y_train_t[idx].to(device)
            model.train()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=args.label_smoothing, reduction="sum")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ep >= args.ema_start_epochs and (step + 1) % ema_every == 0:
                with torch.no_grad():
                    if ema is None:
                        ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    else:
                        rho = ema_base * ((step + 1) / total_steps) ** 3
                        for k, v in model.state_dict().items():
                            if v.dtype == torch.float32:
                                ema[k].lerp_(v, 1 - rho)
                                v.copy_(ema[k])
            tot_loss += loss.item()
            tot_hits += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            state["step_in_epoch"] = s + 1
            if (s + 1) % 10 == 0:
                rate = seen / (time.time() - t0)
                left = (total_steps - step - 1) * args.batch / rate
                log(f"epoch {ep + 1}/{args.epochs} step {s + 1}/{steps_per_epoch} loss {tot_loss / seen:.3f} "
                    f"train acc {tot_hits / seen:.3f} {rate:.0f} img/s ETA {left / 60:.1f} min")
            if stop["signal"] is not None:
                state["elapsed"] += time.time() - t0
                state["cpu_seconds"] += time.process_time() - c0
                save()
                log(f"signal {stop['signal']}: checkpointed epoch {ep + 1} step {s + 1}; rerun to resume")
                sys.exit(0)
        if ema is not None:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if v.dtype == torch.float32:
                        v.copy_(ema[k])
        seg = time.time() - t0
        test_acc = accuracy(model, x_test_t[:2000], y_test_t[:2000])
        state["epoch"] = ep + 1
        state["step_in_epoch"] = 0
        state["elapsed"] += seg
        state["cpu_seconds"] += time.process_time() - c0
        state["epochs"].append({"epoch": ep + 1, "loss": tot_loss / max(1, seen), "train_acc": tot_hits / max(1, seen),
                                "test_acc_2000": test_acc, "seconds": seg})
        log(f"epoch {ep + 1} done in {seg:.0f} s: loss {tot_loss / max(1, seen):.3f}, test acc (2000) {test_acc:.4f}")
        save()

    model.eval()
    model = model.float()
    clean = accuracy(model, x_test_t, y_test_t)
    clean_tta = accuracy(model, x_test_t, y_test_t, tta=True)
    log(f"test acc (10,000): {clean:.4f}; with flip TTA: {clean_tta:.4f}")
    info = {
        "recipe": "weights/recipes/train_evaluator_fast.py",
        "args": vars(args),
        "arch": f"airbench-w{args.width}",
        "params": n_params,
        "train_minutes": state["elapsed"] / 60,
        "train_cpu_minutes": state["cpu_seconds"] / 60,
        "epochs": state["epochs"],
        "hardware": state["hardware"],
        "clean_test_acc_10000": clean,
        "clean_test_acc_10000_flip_tta": clean_tta,
        "torch": torch.__version__,
    }
    if args.onnx:
        tta = FlipTTA(model).to("cpu").eval()
        export_onnx(tta, (torch.zeros(1, 3, 32, 32),), args.onnx, ["x"], ["logits"],
                    {"x": {0: "N"}, "logits": {0: "N"}})
        feeds = {"x": x_test[:8].astype(np.float32) / 255}
        scales: dict[str, float] = {}
        errs = compare_ort(ort_session(args.onnx), lambda x: {"logits": tta(x)}, feeds, scales)
        rep = onnx_report(args.onnx)
        info["onnx"] = {"path": args.onnx, "sha256": rep["sha256"], "bytes": rep["file_bytes"],
                        "ops": rep["ops"], "ort_max_abs_err": errs}
        log(f"ONNX {args.onnx}: {rep['file_bytes']:,} bytes, ops {rep['ops']}, ORT vs PyTorch max abs err {errs}")
        if errs["logits"] > 1e-4 * max(1.0, scales["logits"]):
            raise SystemExit(f"ONNX export differs from PyTorch: {errs}")
        if args.id:
            update_manifest(args.manifest, args.id, cifar10_classifier_entry(
                args.onnx, args.manifest, rep["sha256"],
                f"weights/recipes/train_evaluator_fast.py {' '.join(sys.argv[1:])}",
                f"project-trained CIFAR-10 evaluator, airbench94-style net (patch-whitening "
                f"conv, {n_params:,} params), standard training, {args.epochs} epochs in "
                f"{state['elapsed'] / 60:.0f} min on CPU, flip TTA inside the graph; clean acc "
                f"{clean_tta * 100:.1f}% on the 10,000 test images",
                args.card or f"cards/{args.id}.md",
            ))
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"wrote {args.out}/train_log.json")


if __name__ == "__main__":
    main()
