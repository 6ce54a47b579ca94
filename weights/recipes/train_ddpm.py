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

Issue 17 additions (defaults keep the first recipe):
  * --loss-weight min-snr: Min-SNR-gamma weighting (Hang et al. 2023, "Efficient Diffusion
    Training via Min-SNR Weighting Strategy", eq. for eps-prediction): the per-sample MSE is
    weighted by min(SNR_t, gamma) / SNR_t, SNR_t = abar_t / (1 - abar_t), gamma = --snr-gamma (5);
    the low-noise steps, whose gradients conflict with the rest, are down-weighted.
  * --lr-schedule cosine: lr decays from --lr to --lr-min along a half cosine over the budget
    (--minutes), after the warm-up; --ema decay as before (with the 1+n/10+n warm-up).
  * --clock cpu: the budget, the checkpoints and the snapshots count this process's CPU seconds
    (time.process_time) instead of wall time, so pauses (SIGSTOP) and a loaded machine do not
    eat the budget; the log records both.
  * --snapshot-minutes M: every M budget minutes the EMA weights go to OUT/snapshots/
    ema_<minutes>.pt (the points of the FD-against-training-minutes curve; export one with
    --finalize --from-snapshot FILE).
  * --init-onnx FILE: start (only when OUT has no checkpoint) from the weights of an exported
    denoiser of the same architecture (e.g. the 2-hour weights/denoisers/ddpm-cifar10-small.onnx):
    every parameter is recovered from the ONNX initializers (GroupNorm affine and attention
    matrices, which the exporter renames or transposes, are matched by exporting a randomly
    filled twin), and the result is checked against the ONNX file in ONNX Runtime.
  * --minutes-offset: added to the budget minutes in logs and snapshot names (the minutes the
    --init-onnx model had already trained), so the curve's x axis is total training minutes.

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


def make_unet(width: int, layers_per_block: int = 1):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=layers_per_block,
        block_out_channels=(width, 2 * width, 4 * width),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        dropout=0.0,
    )


def load_unet_from_onnx(unet, onnx_path: str) -> dict:
    """Copies every parameter of `unet` from the initializers of an ONNX export of the same
    architecture (export_diffusers_unet.py's EpsWrapper, this torch version). Parameters the
    exporter kept by name ("unet.<name>") are read directly; the others (GroupNorm scale/shift
    become onnx::Mul_/Add_ constants, attention projections onnx::MatMul_ transposes) are found by
    exporting a twin whose parameters are distinct random numbers and matching values. Returns
    {param: initializer name}. Raises SystemExit when any parameter stays unmatched."""
    import copy
    import tempfile

    import onnx
    from onnx import numpy_helper

    from export_diffusers_unet import EpsWrapper
    from _conversion_common import export_onnx

    src = {i.name: numpy_helper.to_array(i) for i in onnx.load(onnx_path).graph.initializer}
    twin = copy.deepcopy(unet).float().eval()
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for p in twin.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "twin.onnx")
        export_onnx(EpsWrapper(twin), (torch.randn(2, 3, 32, 32), torch.tensor([10, 900])), path, ["x", "t"],
                    ["eps"], {"x": {0: "N"}, "t": {0: "N"}, "eps": {0: "N"}})
        tw = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    mapping: dict[str, tuple[str, bool]] = {}
    unnamed = {k: v for k, v in tw.items() if not k.startswith("unet.")}
    for name, p in twin.named_parameters():
        key = "unet." + name
        if key in tw:
            mapping[name] = (key, False)
            continue
        pv = p.detach().numpy()
        for k, v in unnamed.items():
            if v.size != pv.size:
                continue
            if np.array_equal(v.reshape(-1), pv.reshape(-1)):
                mapping[name] = (k, False)
                break
            if pv.ndim == 2 and v.shape == pv.T.shape and np.array_equal(v, pv.T):
                mapping[name] = (k, True)
                break
    missing = [n for n, _ in unet.named_parameters() if n not in mapping]
    if missing or any(k not in src for k, _ in mapping.values()):
        raise SystemExit(f"{onnx_path}: cannot recover {len(missing)} parameters ({missing[:4]}...) or the "
                         "initializer names differ from this torch's export: is it the same architecture "
                         "(--width, --layers-per-block) and torch version?")
    with torch.no_grad():
        for name, p in unet.named_parameters():
            k, transposed = mapping[name]
            v = src[k].T if transposed else src[k]
            p.copy_(torch.from_numpy(np.array(v, dtype=np.float32)).reshape(p.shape))
    # check: the recovered model reproduces the ONNX file
    import onnxruntime as ort

    x = torch.randn(2, 3, 32, 32, generator=g)
    t = torch.tensor([5, 700])
    ref = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy(), "t": t.numpy()})[0]
    with torch.no_grad():
        got = unet.float().eval()(x, t).sample.numpy()
    err = float(np.abs(got - ref).max())
    if err > 1e-4:
        raise SystemExit(f"{onnx_path}: recovered weights differ from the ONNX model (max abs err {err})")
    log(f"init from {onnx_path}: {len(mapping)} parameters recovered, max abs err vs ORT {err:.2e}")
    return {n: k for n, (k, _) in mapping.items()}


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
    ap.add_argument("--from-snapshot", help="with --finalize: write the pipeline from this EMA snapshot")
    ap.add_argument("--layers-per-block", type=int, default=1)
    ap.add_argument("--loss-weight", choices=["uniform", "min-snr"], default="uniform")
    ap.add_argument("--snr-gamma", type=float, default=5.0)
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant")
    ap.add_argument("--lr-min", type=float, default=2e-5)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="what the budget counts")
    ap.add_argument("--snapshot-minutes", type=float, default=0.0, help="EMA snapshot every M budget minutes")
    ap.add_argument("--init-onnx", help="start from this exported denoiser's weights (same architecture)")
    ap.add_argument("--minutes-offset", type=float, default=0.0, help="minutes already trained (--init-onnx)")
    args = ap.parse_args()
    if args.batch < 1 or args.lr <= 0 or args.minutes <= 0:
        raise SystemExit(f"--batch ({args.batch}), --lr ({args.lr}) and --minutes ({args.minutes}) must be > 0")

    device, bf16, ckpt_path = setup_run(args.threads, args.bf16, args.out, args.seed)
    model = make_unet(args.width, args.layers_per_block).to(device)
    ema = make_unet(args.width, args.layers_per_block).to(device)
    if args.init_onnx and not os.path.exists(ckpt_path):
        load_unet_from_onnx(model, args.init_onnx)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    state = {"step": 0, "elapsed": 0.0, "losses": [], "images": 0, "segments": [], "cpu": 0.0, "wall": 0.0,
             "snapshots": []}
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        for k, v in (("cpu", state["elapsed"]), ("wall", state["elapsed"]), ("snapshots", [])):
            state.setdefault(k, v)
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
        snr = abar / (1 - abar)
        # Min-SNR-gamma (Hang et al. 2023) for eps-prediction: w_t = min(SNR_t, gamma) / SNR_t
        weight_t = torch.clamp(snr, max=args.snr_gamma) / snr if args.loss_weight == "min-snr" else torch.ones_like(snr)
        n_params = sum(p.numel() for p in model.parameters())
        log(f"UNet {n_params:,} params, batch {args.batch}, lr {args.lr} ({args.lr_schedule}), loss {args.loss_weight}, "
            f"bf16 {bf16}, threads {args.threads}, device {device}, budget {args.minutes} {args.clock} min")

        def clock() -> float:
            return time.process_time() if args.clock == "cpu" else time.time()

        budget = args.minutes * 60
        seg_start, wall0, cpu0 = clock(), time.time(), time.process_time()
        rate_step = state["step"]  # the step at seg_start (progress rate)
        seg = {"start_step": state["step"], "threads": args.threads, "device": device,
               "cpu": platform.processor() or platform.machine(), "bf16": bf16, "clock": args.clock}
        last_ckpt = clock()
        t_report = time.time()
        stop = {"signal": None}
        # SIGTERM/SIGINT: finish the step, checkpoint, exit (rerun to resume, e.g. with more threads)
        import signal

        def on_signal(signum, _frame):
            stop["signal"] = signum

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        def account() -> None:
            """Moves the time since the last call into state (budget clock, wall, cpu)."""
            nonlocal seg_start, wall0, cpu0
            state["elapsed"] += clock() - seg_start
            state["wall"] += time.time() - wall0
            state["cpu"] += time.process_time() - cpu0
            seg_start, wall0, cpu0 = clock(), time.time(), time.process_time()

        snap_dir = os.path.join(args.out, "snapshots")
        run_loss = None
        model.train()
        while True:
            elapsed = state["elapsed"] + (clock() - seg_start)
            if elapsed >= budget or (args.steps and state["step"] >= args.steps):
                break
            if stop["signal"] is not None:
                account()
                state["segments"].append(dict(seg, end_step=state["step"]))
                save_ckpt()
                log(f"signal {stop['signal']}: checkpointed step {state['step']}; rerun to resume")
                sys.exit(3)
            if args.snapshot_minutes > 0:
                due = int(elapsed // (args.snapshot_minutes * 60))
                if due > len(state["snapshots"]):
                    minutes = args.minutes_offset + elapsed / 60
                    os.makedirs(snap_dir, exist_ok=True)
                    path = os.path.join(snap_dir, f"ema_{minutes:06.1f}min.pt")
                    torch.save(ema.state_dict(), path + ".tmp")
                    os.replace(path + ".tmp", path)
                    state["snapshots"].append({"minutes": minutes, "step": state["step"], "file": path})
                    log(f"snapshot {path} (step {state['step']})")
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
            lr = args.lr
            if args.lr_schedule == "cosine":
                frac = min(1.0, elapsed / budget)
                lr = args.lr_min + (args.lr - args.lr_min) * 0.5 * (1 + np.cos(np.pi * frac))
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / args.warmup)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                pred = model(xt, t).sample
            per_sample = (pred.float() - eps).pow(2).mean(dim=(1, 2, 3))
            loss = (weight_t[t] * per_sample).mean()
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
            lv = per_sample.mean().item()  # the unweighted MSE, comparable across weightings
            run_loss = lv if run_loss is None else 0.98 * run_loss + 0.02 * lv
            if state["step"] % 50 == 0:
                state["losses"].append([state["step"], round(run_loss, 5)])
            if time.time() - t_report > 30:
                el = state["elapsed"] + (clock() - seg_start)
                rate = (state["step"] - rate_step) * args.batch / max(1e-9, clock() - seg_start)
                log(f"step {state['step']} mse {run_loss:.4f} lr {lr:.2e} {rate:.0f} img/s ({args.clock}) "
                    f"elapsed {el / 60:.1f}/{args.minutes} min, ETA {max(0, budget - el) / 60:.1f} min")
                t_report = time.time()
            if clock() - last_ckpt > args.ckpt_minutes * 60:
                account()
                save_ckpt()
                rate_step = state["step"]
                last_ckpt = clock()
                log(f"checkpoint at step {state['step']}")
        account()
        state["segments"].append(dict(seg, end_step=state["step"]))
        save_ckpt()
        log(f"trained {state['step']} steps ({state['images']:,} images) in {state['elapsed'] / 60:.1f} "
            f"{args.clock} min (wall {state['wall'] / 60:.1f}, cpu {state['cpu'] / 60:.1f})")
    elif args.from_snapshot:
        ema.load_state_dict(torch.load(args.from_snapshot, map_location=device, weights_only=True))
        log(f"finalize from snapshot {args.from_snapshot}")

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
        "clock": args.clock,
        "wall_minutes": state.get("wall", state["elapsed"]) / 60,
        "cpu_minutes": state.get("cpu", state["elapsed"]) / 60,
        "snapshots": state.get("snapshots", []),
        "segments": state["segments"],
        "loss_curve": state["losses"],
        "torch": torch.__version__,
    }
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"wrote {args.out}/pipeline and train_log.json")


if __name__ == "__main__":
    main()
