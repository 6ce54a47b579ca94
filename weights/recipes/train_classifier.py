#!/usr/bin/env python3
"""Train one of the project's own CIFAR-10 classifiers (issue 6) and export it to ONNX.

* The robust-guide family (METHOD.md: the guide is an adversarially robust classifier read as an
  energy-based model): `--arch resnet --eps E` with E in {0, 0.25, 0.5, 1.0}, L2 PGD adversarial
  training (Madry et al. 2018) in pixel range [0, 1]: every batch is replaced by its
  --attack-steps-step L2 PGD adversary (step 2.5 E / steps, no random start, the model in eval mode
  while attacking), E = 0 is standard training.
* The independent evaluator: `--arch vgg` (a different architecture), standard training,
  label smoothing. (The faster, more accurate one is train_evaluator_fast.py.)
* The wider robust guide (issue 17): `--arch wresnet --widths 32,64,192` (0.53M params) with
  `--attack fgsm-rs`: single-step L2 adversarial training with a random start (Wong, Rice & Kolter
  2020, "Fast is better than free", FGSM-RS: start uniform in the eps-ball, one step of 1.25 eps
  along the normalised gradient, projected back). Andriushchenko & Flammarion (2020, GradAlign)
  show single-step training with a random start matches multi-step PGD training at small radii
  (catastrophic overfitting appears only at L-inf >= ~8/255; L2 0.5 and 1.0 are ~2.3/255 and
  ~4.6/255 in RMS-per-pixel terms). Cost: 2 forward/backward passes per batch instead of 4 for
  PGD-3. --pgd-check N measures L2 PGD-20 at eps on N test images after every epoch, to catch
  catastrophic overfitting (robust accuracy collapsing while clean accuracy rises).

Common: random crop (reflect pad 4) + horizontal flip, SGD Nesterov momentum 0.9, weight decay
5e-4, batch 128, linear warm-up to --lr over the first 15% of steps then linear decay to 0,
bfloat16 autocast on CPUs with AVX512-BF16 (or CUDA). A checkpoint per epoch (OUT/ckpt.pt); rerun
the same command to resume.

At the end: clean accuracy on the 10,000 test images, L2 PGD-20 accuracy (step 2.5 eps/20) at
eps in {0.25, 0.5, 1.0} on the first --pgd-images test images (float32, a PyTorch cross-check of
the toolkit's `deno task robust-accuracy`), ONNX export (x [N,3,32,32] in [0,1] -> logits
[N,10], opset 17, dynamic batch; checked against PyTorch in onnxruntime), OUT/train_log.json,
and, with --id, the entry in weights/manifest.json.

Usage (repository root):
  .venv/bin/python weights/recipes/train_classifier.py --arch resnet --width 16 --eps 0.5 \
      --epochs 6 --out runs/resnet16-l2-0.5 --onnx weights/classifiers/cifar10-resnet16-l2-0.5.onnx \
      --id cifar10-resnet16-l2-0.5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _training import log, setup_run  # noqa: E402
from _cifar10_data import DEFAULT_DIR, augment_crop_flip, load_cifar10  # noqa: E402
from _classifier_archs import ARCHS, wresnet  # noqa: E402
from _conversion_common import (  # noqa: E402
    DEFAULT_MANIFEST,
    cifar10_classifier_entry,
    compare_ort,
    export_onnx,
    onnx_report,
    ort_session,
    update_manifest,
)


def pgd_l2(model, x, y, eps: float, steps: int, step_size: float, autocast: bool = False):
    """L2 PGD (Madry et al.): ascend CE along the normalised gradient, project onto the eps-ball
    and the [0, 1] box after each step; starts at x (no random start)."""
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x + delta)
        loss = F.cross_entropy(logits.float(), y)
        (g,) = torch.autograd.grad(loss, delta)
        gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = delta.detach() + step_size * g / gn
        dn = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = delta * torch.clamp(eps / dn, max=1.0)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


@torch.no_grad()
def accuracy(model, x, y, batch: int = 500) -> float:
    model.eval()
    hits = 0
    for i in range(0, len(x), batch):
        hits += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return hits / len(x)


def fgsm_rs_l2(model, x, y, eps: float, alpha: float, autocast: bool = False):
    """FGSM with a random start (Wong et al. 2020), L2 version: delta0 = eps * u * g/|g| with g
    Gaussian and u ~ U(0, 1); one step of `alpha` along the normalised CE gradient; projection onto
    the eps-ball and the [0, 1] box."""
    g0 = torch.randn_like(x)
    g0 = g0 / g0.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    delta = eps * torch.rand(len(x), 1, 1, 1, device=x.device) * g0
    delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(x + delta)
    (g,) = torch.autograd.grad(F.cross_entropy(logits.float(), y), delta)
    gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    delta = delta.detach() + alpha * g / gn
    dn = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    delta = delta * torch.clamp(eps / dn, max=1.0)
    return (x + delta).clamp(0, 1).detach()


def robust_accuracy(model, x, y, eps: float, steps: int = 20, batch: int = 250) -> float:
    model.eval()
    hits = 0
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        xa = pgd_l2(model, xb, yb, eps, steps, 2.5 * eps / steps) if eps > 0 else xb
        with torch.no_grad():
            hits += int((model(xa).argmax(1) == yb).sum())
    return hits / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=sorted([*ARCHS, "wresnet"]), required=True)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--widths", default="32,64,192", help="wresnet: the three stage widths")
    ap.add_argument("--attack", choices=["pgd", "fgsm-rs"], default="pgd", help="training adversary (eps > 0)")
    ap.add_argument("--fgsm-alpha", type=float, default=1.25, help="fgsm-rs step, in units of eps")
    ap.add_argument("--pgd-check", type=int, default=0, help="L2 PGD-20 at eps on N test images per epoch")
    ap.add_argument("--eps", type=float, default=0.0, help="L2 PGD training radius, pixel range [0,1]")
    ap.add_argument("--attack-steps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=DEFAULT_DIR)
    ap.add_argument("--out", required=True, help="run folder (checkpoint, log)")
    ap.add_argument("--onnx", help="write the ONNX model here")
    ap.add_argument("--id", help="manifest id to register the ONNX under (needs --onnx)")
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST)
    ap.add_argument("--card", help="model card path relative to weights/ (default cards/<id>.md)")
    ap.add_argument("--pgd-images", type=int, default=1000)
    args = ap.parse_args()
    if args.eps < 0 or args.epochs < 1 or args.width < 1:
        raise SystemExit(f"--eps ({args.eps}) must be >= 0, --epochs ({args.epochs}) and --width ({args.width}) >= 1")
    if args.id and not args.onnx:
        raise SystemExit("--id registers the ONNX file: pass --onnx PATH too")

    device, bf16, ckpt_path = setup_run(args.threads, args.bf16, args.out, args.seed)
    if args.arch == "wresnet":
        widths = tuple(int(w) for w in args.widths.split(","))
        if len(widths) != 3 or min(widths) < 1:
            raise SystemExit(f"--widths must be three positive integers, got {args.widths!r}")
        model = wresnet(widths).to(device)
        arch_name = f"wresnet-{'-'.join(map(str, widths))}"
    else:
        model = ARCHS[args.arch](args.width).to(device)
        arch_name = f"{args.arch}-w{args.width}"
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0}],
                          lr=args.lr, momentum=0.9, nesterov=True)
    state = {"epoch": 0, "elapsed": 0.0, "epochs": [], "hardware": []}
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        log(f"resumed {ckpt_path} after epoch {state['epoch']}")

    x_train, y_train = load_cifar10("train", args.data)
    x_test, y_test = load_cifar10("test", args.data)
    x_train_t = torch.from_numpy(x_train)
    y_train_t = torch.from_numpy(y_train)
    x_test_t = torch.from_numpy(x_test).float().div(255).to(device)
    y_test_t = torch.from_numpy(y_test).to(device)
    n_train = len(x_train)
    steps_per_epoch = n_train // args.batch
    total_steps = steps_per_epoch * args.epochs
    warm = max(1, int(0.15 * total_steps))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{arch_name}: {n_params:,} params, eps {args.eps}, {args.epochs} epochs, "
        f"bf16 {bf16}, threads {args.threads}, device {device}")
    state["hardware"].append({"from_epoch": state["epoch"], "device": device, "threads": args.threads,
                              "cpu": platform.processor() or platform.machine(), "bf16": bf16})
    while state["epoch"] < args.epochs:
        ep = state["epoch"]
        t0, c0 = time.time(), time.process_time()
        rng = np.random.default_rng([args.seed, ep])
        perm = torch.from_numpy(rng.permutation(n_train))
        tot_loss, tot_hits, seen = 0.0, 0, 0
        for s in range(steps_per_epoch):
            step = ep * steps_per_epoch + s
            lr = args.lr * (step + 1) / warm if step < warm else args.lr * (total_steps - step) / (total_steps - warm)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = perm[s * args.batch : (s + 1) * args.batch]
            xb = augment_crop_flip(x_train_t[idx].float().div(255), rng).to(device)
            yb = y_train_t[idx].to(device)
            if args.eps > 0 and args.attack == "fgsm-rs":
                model.eval()
                xb = fgsm_rs_l2(model, xb, yb, args.eps, args.fgsm_alpha * args.eps, bf16)
            elif args.eps > 0:
                model.eval()
                xb = pgd_l2(model, xb, yb, args.eps, args.attack_steps, 2.5 * args.eps / args.attack_steps, bf16)
            model.train()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += loss.item() * len(yb)
            tot_hits += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            if (s + 1) % 100 == 0:
                rate = seen / (time.time() - t0)
                left = (total_steps - step - 1) * args.batch / rate
                log(f"epoch {ep + 1}/{args.epochs} step {s + 1}/{steps_per_epoch} loss {tot_loss / seen:.3f} "
                    f"train acc {tot_hits / seen:.3f} {rate:.0f} img/s ETA {left / 60:.1f} min")
        dt = time.time() - t0
        state["cpu_seconds"] = state.get("cpu_seconds", 0.0) + time.process_time() - c0
        test_acc = accuracy(model, x_test_t[:2000], y_test_t[:2000])
        state["epoch"] = ep + 1
        state["elapsed"] += dt
        state["epochs"].append({"epoch": ep + 1, "loss": tot_loss / seen, "train_acc": tot_hits / seen,
                                "test_acc_2000": test_acc, "seconds": dt})
        if args.pgd_check > 0 and args.eps > 0:
            n = min(args.pgd_check, len(x_test_t))
            state["epochs"][-1]["pgd20_acc_at_eps"] = robust_accuracy(model, x_test_t[:n], y_test_t[:n], args.eps)
            state["epochs"][-1]["pgd_check_images"] = n
            state["epochs"][-1]["test_acc_pgd_check_images"] = accuracy(model, x_test_t[:n], y_test_t[:n])
        log(f"epoch {ep + 1} done in {dt:.0f} s: loss {tot_loss / seen:.3f}, test acc (2000) {test_acc:.4f}"
            + (f", PGD-20 at {args.eps} on {args.pgd_check}: {state['epochs'][-1].get('pgd20_acc_at_eps')}"
               if args.pgd_check > 0 and args.eps > 0 else ""))
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "args": vars(args)}, tmp)
        os.replace(tmp, ckpt_path)

    model.eval()
    model = model.float()
    clean = accuracy(model, x_test_t, y_test_t)
    n_pgd = min(args.pgd_images, len(x_test_t))
    robust = {str(e): robust_accuracy(model, x_test_t[:n_pgd], y_test_t[:n_pgd], e) for e in (0.0, 0.25, 0.5, 1.0)}
    log(f"clean test acc (10,000): {clean:.4f}; L2 PGD-20 acc on {n_pgd} test images: {robust}")
    info = {
        "recipe": "weights/recipes/train_classifier.py",
        "args": vars(args),
        "arch": arch_name,
        "params": n_params,
        "train_minutes": state["elapsed"] / 60,
        "train_cpu_minutes": state.get("cpu_seconds", 0.0) / 60,
        "epochs": state["epochs"],
        "hardware": state["hardware"],
        "clean_test_acc_10000": clean,
        "pytorch_pgd_l2_20": {"images": n_pgd, "step": "2.5 eps / 20", "acc": robust},
        "torch": torch.__version__,
    }
    if args.onnx:
        model_cpu = model.to("cpu")
        export_onnx(model_cpu, (torch.zeros(1, 3, 32, 32),), args.onnx, ["x"], ["logits"],
                    {"x": {0: "N"}, "logits": {0: "N"}})
        feeds = {"x": x_test[:8].astype(np.float32) / 255}
        scales: dict[str, float] = {}
        errs = compare_ort(ort_session(args.onnx), lambda x: {"logits": model_cpu(x)}, feeds, scales)
        rep = onnx_report(args.onnx)
        info["onnx"] = {"path": args.onnx, "sha256": rep["sha256"], "bytes": rep["file_bytes"],
                        "ops": rep["ops"], "ort_max_abs_err": errs}
        log(f"ONNX {args.onnx}: {rep['file_bytes']:,} bytes, ORT vs PyTorch max abs err {errs}")
        if errs["logits"] > 1e-4 * max(1.0, scales["logits"]):
            raise SystemExit(f"ONNX export differs from PyTorch: {errs}")
        if args.id:
            what = ("standard training (eps = 0)" if args.eps == 0 else
                    f"L2 FGSM-RS adversarial training at eps = {args.eps} (pixel range [0,1], random start "
                    f"in the ball, one step of {args.fgsm_alpha} eps)" if args.attack == "fgsm-rs" else
                    f"L2 PGD adversarial training at eps = {args.eps} (pixel range [0,1], "
                    f"{args.attack_steps} steps of 2.5 eps/{args.attack_steps})")
            update_manifest(args.manifest, args.id, cifar10_classifier_entry(
                args.onnx, args.manifest, rep["sha256"],
                f"weights/recipes/train_classifier.py {' '.join(sys.argv[1:])}",
                f"project-trained CIFAR-10 {arch_name} ({n_params:,} params), {what}, "
                f"{args.epochs} epochs in {state['elapsed'] / 60:.0f} min on CPU; clean acc "
                f"{clean * 100:.1f}% on the 10,000 test images",
                args.card or f"cards/{args.id}.md",
            ))
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"wrote {args.out}/train_log.json")


if __name__ == "__main__":
    main()
