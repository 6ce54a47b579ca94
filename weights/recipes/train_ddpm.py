#!/usr/bin/env python3
"""Train the project's own unconditional CIFAR-10 DDPM (issue 6; METHOD.md section 2, the
eps-prediction objective of Ho et al. 2020, linear betas 1e-4..0.02, T = 1000).

A diffusers UNet2DModel, so export_diffusers_unet.py turns the result into the toolkit's ONNX
denoiser. Loss: || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2 with t uniform
in 0..T-1 and x0 in [-1, 1] (random horizontal flips). Adam, linear warm-up then constant lr,
gradient-norm clip 1, EMA of the weights (the EMA is what gets exported).

Sized by wall-clock: --minutes is the total training time across resumes. The run checkpoints
to OUT/ckpt.pt every --ckpt-minutes (atomically) and a rerun of the same command resumes from
it (same per-step batches: the sampling RNG is seeded by (seed, step)), so a run can be spread
over several sessions or machines and change --threads in between. When the budget or --steps is
reached it writes OUT/pipeline (DDPMPipeline.save_pretrained of the EMA UNet + scheduler) and
OUT/train_log.json (config, steps, images seen, wall time, loss curve, hardware).

Usage (repository root):
  .venv/bin/python weights/recipes/train_ddpm.py --out runs/ddpm --minutes 100 --threads 1
  .venv/bin/python weights/recipes/export_diffusers_unet.py runs/ddpm/pipeline \
      --out weights/ddpm_cifar10_small.onnx --id ddpm-cifar10-small
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _training import log, setup_run  # noqa: E402
from _cifar10_data import DEFAULT_DIR, load_cifar10  # noqa: E402

T = 1000
BETA_START, BETA_END = 1e-4, 0.02


def make_unet(width: int):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(width, 2 * width, 4 * width),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        dropout=0.0,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="run folder (checkpoint, pipeline, log)")
    ap.add_argument("--data", default=DEFAULT_DIR, help="folder with cifar-10-binary.tar.gz")
    ap.add_argument("--minutes", type=float, default=60.0, help="total training wall time")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: budget only)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay (with 1+n/10+n warm-up)")
    ap.add_argument("--width", type=int, default=32, help="channels of the first level (x1, x2, x4)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="bfloat16 autocast for the forward/backward (CPU: on when AVX512-BF16 is there)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--finalize", action="store_true", help="only write the pipeline from ckpt.pt")
    args = ap.parse_args()
    if args.batch < 1 or args.lr <= 0 or args.minutes <= 0:
        raise SystemExit(f"--batch ({args.batch}), --lr ({args.lr}) and --minutes ({args.minutes}) must be > 0")

    device, bf16, ckpt_path = setup_run(args.threads, args.bf16, args.out, args.seed)
    model = make_unet(args.width).to(device)
    ema = make_unet(args.width).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    state = {"step": 0, "elapsed": 0.0, "losses": [], "images": 0, "segments": []}
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        log(f"resumed {ckpt_path}: step {state['step']}, {state['elapsed'] / 60:.1f} min trained")

    def save_ckpt() -> None:
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "state": state, "args": vars(args)}, tmp)
        os.replace(tmp, ckpt_path)

    if not args.finalize:
        x_all, _ = load_cifar10("train", args.data)
        x_all = torch.from_numpy(x_all)
        betas = torch.linspace(BETA_START, BETA_END, T, dtype=torch.float64)
        abar = torch.cumprod(1 - betas, 0).float().to(device)
        n_params = sum(p.numel() for p in model.parameters())
        log(f"UNet {n_params:,} params, batch {args.batch}, lr {args.lr}, bf16 {bf16}, "
            f"threads {args.threads}, device {device}, budget {args.minutes} min")
        seg_start = time.time()
        rate_step = state["step"]  # the step at seg_start (progress rate)
        seg = {"start_step": state["step"], "threads": args.threads, "device": device,
               "cpu": platform.processor() or platform.machine(), "bf16": bf16}
        last_ckpt = time.time()
        t_report = time.time()
        stop = {"signal": None}
        # SIGTERM/SIGINT: finish the step, checkpoint, exit (rerun to resume, e.g. with more threads)
        import signal

        def on_signal(signum, _frame):
            stop["signal"] = signum

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        run_loss = None
        model.train()
        while True:
            elapsed = state["elapsed"] + (time.time() - seg_start)
            if elapsed >= args.minutes * 60 or (args.steps and state["step"] >= args.steps):
                break
            if stop["signal"] is not None:
                state["elapsed"] = state["elapsed"] + (time.time() - seg_start)
                state["segments"].append(dict(seg, end_step=state["step"]))
                save_ckpt()
                log(f"signal {stop['signal']}: checkpointed step {state['step']}; rerun to resume")
                sys.exit(3)
            step = state["step"]
            g = np.random.default_rng([args.seed, step])
            idx = torch.from_numpy(g.integers(0, x_all.shape[0], args.batch))
            x0 = x_all[idx].float().div(127.5).sub(1.0)
            flip = torch.from_numpy(g.random(args.batch) < 0.5)
            x0[flip] = x0[flip].flip(-1)
            t = torch.from_numpy(g.integers(0, T, args.batch))
            eps = torch.from_numpy(g.standard_normal((args.batch, 3, 32, 32), dtype=np.float32))
            x0, t, eps = x0.to(device), t.to(device), eps.to(device)
            a = abar[t].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
            for group in opt.param_groups:
                group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                pred = model(xt, t).sample
            loss = (pred.float() - eps).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            decay = min(args.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
            state["step"] += 1
            state["images"] += args.batch
            lv = loss.item()
            run_loss = lv if run_loss is None else 0.98 * run_loss + 0.02 * lv
            if state["step"] % 50 == 0:
                state["losses"].append([state["step"], round(run_loss, 5)])
            if time.time() - t_report > 30:
                el = state["elapsed"] + (time.time() - seg_start)
                rate = (state["step"] - rate_step) * args.batch / (time.time() - seg_start)
                log(f"step {state['step']} loss {run_loss:.4f} {rate:.0f} img/s "
                    f"elapsed {el / 60:.1f}/{args.minutes} min, ETA {max(0, args.minutes * 60 - el) / 60:.1f} min")
                t_report = time.time()
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                state["elapsed"] = state["elapsed"] + (time.time() - seg_start)
                seg_start = time.time()
                save_ckpt()
                rate_step = state["step"]
                last_ckpt = time.time()
                log(f"checkpoint at step {state['step']}")
        state["elapsed"] = state["elapsed"] + (time.time() - seg_start)
        state["segments"].append(dict(seg, end_step=state["step"]))
        save_ckpt()
        log(f"trained {state['step']} steps ({state['images']:,} images) in {state['elapsed'] / 60:.1f} min")

    from diffusers import DDPMPipeline, DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=T, beta_start=BETA_START, beta_end=BETA_END,
                              beta_schedule="linear", prediction_type="epsilon", clip_sample=True)
    ema.eval()
    DDPMPipeline(unet=ema.to("cpu"), scheduler=scheduler).save_pretrained(os.path.join(args.out, "pipeline"))
    info = {
        "recipe": "weights/recipes/train_ddpm.py",
        "args": vars(args),
        "params": sum(p.numel() for p in ema.parameters()),
        "steps": state["step"],
        "images_seen": state["images"],
        "epochs": state["images"] / 50000,
        "train_minutes": state["elapsed"] / 60,
        "segments": state["segments"],
        "loss_curve": state["losses"],
        "torch": torch.__version__,
    }
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"wrote {args.out}/pipeline and train_log.json")


if __name__ == "__main__":
    main()
