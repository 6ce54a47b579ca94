#!/usr/bin/env python3
"""Convert a diffusers UNet2DModel checkpoint (e.g. google/ddpm-cifar10-32) to the toolkit's ONNX
denoiser, and its scheduler config to the toolkit's schedule format.

Input (SRC):
  * a local directory in any of the layouts diffusers writes or the hub serves:
      - a pipeline folder: model_index.json, unet/{config.json, diffusion_pytorch_model.safetensors
        or .bin}, scheduler/scheduler_config.json (DDPMPipeline.save_pretrained);
      - a model folder: config.json + diffusion_pytorch_model.safetensors/.bin, with the
        scheduler config beside it (scheduler_config.json), in scheduler/, or in ../scheduler/
        (google/ddpm-cifar10-32 keeps config.json, the weights and scheduler_config.json at the
        top level);
  * or a hub id (e.g. google/ddpm-cifar10-32): fetched with huggingface_hub.snapshot_download.
    That only works where the Hugging Face hub is reachable, NOT on this project's machines;
    there, download the files elsewhere and pass the folder.
  --scheduler-config PATH overrides where the scheduler config is read from.

Output:
  * ONNX, opset 17, float32, weights embedded:  eps = f(x, t)
      x    float32 [N, C, H, W]  (the noisy image x_t, pixel range [-1, 1])
      t    int64   [N]           (timestep indices 0..T-1)
      eps  float32 [N, C, H, W]  (predicted noise; UNet2DModel(x, t).sample)
    with N dynamic.
  * the schedule {"type": "linear"|"scaled_linear"|"cosine", "T", "beta_start", "beta_end",
    "clip_sample"} (diffusers beta_schedule linear / scaled_linear / squaredcos_cap_v2), printed
    and written into the weights manifest entry (--id) with sha256, input convention, source.

Refused, with an explanation: prediction_type other than "epsilon" (the toolkit's samplers and
guidance take eps; v-prediction or sample-prediction models would need other formulas),
trained_betas, rescale_betas_zero_snr, beta schedules other than the three above, clip ranges
other than 1, conditional UNets (anything but UNet2DModel), and checkpoints whose tensors do not
all load (missing/unexpected keys: a silently random layer would pass every shape check).

Usage (from the repository root):
  .venv/bin/python weights/recipes/export_diffusers_unet.py /path/to/ddpm-cifar10-32 \
      --out weights/ddpm_cifar10_32.onnx --id ddpm-cifar10-32
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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
    update_manifest,
)

WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
)

BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}


def schedule_spec_from_diffusers(cfg: dict) -> dict:
    """The toolkit's ScheduleSpec (lib/schedule.ts) for a diffusers scheduler config.

    Maps beta_schedule linear -> linear, scaled_linear -> scaled_linear, squaredcos_cap_v2 ->
    cosine (Nichol-Dhariwal s = 0.008, betas capped at 0.999: diffusers' betas_for_alpha_bar and
    the toolkit's cosineSchedule are the same formula; beta_start/beta_end are unused by it and
    are kept as given). Raises ConversionError for what the toolkit cannot represent.
    """
    pred = cfg.get("prediction_type", "epsilon")
    if pred != "epsilon":
        raise ConversionError(
            f"prediction_type is '{pred}', but the toolkit's DDPM/DDIM samplers and guidance "
            "(eps_hat = eps_theta - w s g) work on an epsilon-prediction model only; a "
            "v-prediction ('v_prediction') or x0-prediction ('sample') UNet would need its output "
            "converted to eps inside the sampler, which is not supported"
        )
    if cfg.get("trained_betas") is not None:
        raise ConversionError(
            "the scheduler uses explicit trained_betas; the toolkit's schedule format "
            "(linear | scaled_linear | cosine) cannot represent an arbitrary beta table"
        )
    if cfg.get("rescale_betas_zero_snr", False):
        raise ConversionError(
            "rescale_betas_zero_snr is true (zero-terminal-SNR rescaling of the betas); the "
            "toolkit's schedules do not implement it"
        )
    name = cfg.get("beta_schedule", "linear")
    if name not in BETA_SCHEDULES:
        raise ConversionError(
            f"beta_schedule '{name}' is not supported; the toolkit has linear, scaled_linear and "
            "cosine (diffusers squaredcos_cap_v2)"
        )
    clip = bool(cfg.get("clip_sample", True))
    clip_range = float(cfg.get("clip_sample_range", 1.0))
    if clip and clip_range != 1.0:
        raise ConversionError(
            f"clip_sample_range is {clip_range}; the toolkit clips x0 to [-1, 1] only"
        )
    T = int(cfg.get("num_train_timesteps", 1000))
    return {
        "type": BETA_SCHEDULES[name],
        "T": T,
        "beta_start": float(cfg.get("beta_start", 0.0001)),
        "beta_end": float(cfg.get("beta_end", 0.02)),
        "clip_sample": clip,
    }


def scheduler_notes(cfg: dict) -> list[str]:
    """Sampler options of the diffusers config that the schedule spec does not carry."""
    notes = []
    if "variance_type" in cfg:
        notes.append(f"diffusers variance_type {cfg['variance_type']}")
    if cfg.get("thresholding"):
        notes.append("thresholding=true in diffusers (dynamic thresholding; not applied by the toolkit)")
    return notes


def is_weights_dir(d: str) -> bool:
    return os.path.isfile(os.path.join(d, "config.json")) and any(
        os.path.isfile(os.path.join(d, w)) for w in WEIGHT_FILES
    )


def resolve_source(src: str, scheduler_config: str | None) -> tuple[str, str, str]:
    """(unet_dir, scheduler_config_path, description of the source) for a folder or hub id."""
    origin = src
    if not os.path.isdir(src):
        if os.path.exists(src):
            raise ConversionError(f"{src} is a file; pass the folder holding config.json and the weights")
        if src.count("/") != 1 or src.startswith((".", "/")):
            raise ConversionError(f"{src} is neither a folder nor a hub id like 'google/ddpm-cifar10-32'")
        log(f"{src} is not a local folder: trying the Hugging Face hub (needs network access)")
        try:
            from huggingface_hub import snapshot_download

            src = snapshot_download(
                src,
                allow_patterns=["*.json", "*.safetensors", "*.bin"],
                ignore_patterns=["*.msgpack", "*.h5", "*.ckpt", "*fp16*", "*.onnx"],
            )
        except Exception as e:
            raise ConversionError(
                f"could not fetch '{origin}' from the hub ({type(e).__name__}: {str(e).splitlines()[0]}). "
                "The hub is not reachable from this project's machines: download the repository "
                "elsewhere (config.json, diffusion_pytorch_model.safetensors or .bin, "
                "scheduler_config.json) and pass the folder"
            ) from None
        origin = f"hf.co/{origin}"
    src = os.path.abspath(src)
    if os.path.isfile(os.path.join(src, "model_index.json")) and is_weights_dir(os.path.join(src, "unet")):
        unet_dir = os.path.join(src, "unet")
    elif is_weights_dir(src):
        unet_dir = src
    else:
        raise ConversionError(
            f"{src} holds no UNet: expected config.json + one of {', '.join(WEIGHT_FILES)} in it, "
            "or a pipeline folder (model_index.json, unet/, scheduler/)"
        )
    if scheduler_config is None:
        candidates = [
            os.path.join(unet_dir, "scheduler_config.json"),
            os.path.join(src, "scheduler_config.json"),
            os.path.join(src, "scheduler", "scheduler_config.json"),
            os.path.join(unet_dir, "scheduler", "scheduler_config.json"),
            os.path.join(os.path.dirname(unet_dir), "scheduler", "scheduler_config.json"),
        ]
        found = [c for c in candidates if os.path.isfile(c)]
        if not found:
            raise ConversionError(
                f"no scheduler config found (looked for {', '.join(sorted(set(candidates)))}); "
                "pass --scheduler-config PATH"
            )
        scheduler_config = found[0]
    return unet_dir, scheduler_config, origin


def load_unet(unet_dir: str):
    """UNet2DModel.from_pretrained on a local folder, failing on any key that does not load."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import UNet2DModel

    with open(os.path.join(unet_dir, "config.json")) as f:
        cfg = json.load(f)
    cls = cfg.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise ConversionError(
            f"{unet_dir}/config.json is a {cls}; only unconditional UNet2DModel checkpoints are "
            "supported (eps = f(x, t), no class or text conditioning)"
        )
    if cfg.get("class_embed_type") or cfg.get("num_class_embeds"):
        raise ConversionError("this UNet2DModel is class-conditional; the toolkit needs an unconditional one")
    unet, info = UNet2DModel.from_pretrained(unet_dir, output_loading_info=True, low_cpu_mem_usage=False)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise ConversionError(f"checkpoint does not match its config: {bad}")
    return unet.float().eval(), cfg


class EpsWrapper(nn.Module):
    """forward(x, t) -> eps: plain tensors in and out. A UNet that also predicts a variance
    (out_channels = 2 * in_channels, diffusers variance_type learned/learned_range) is cut to
    its first in_channels channels, the eps part (diffusers' DDPMScheduler.step does the same)."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.c = unet.config.in_channels
        self.split = unet.config.out_channels == 2 * unet.config.in_channels

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.unet(x, t).sample
        return out[:, : self.c] if self.split else out


def sample_shape(cfg) -> tuple[int, int, int]:
    s = cfg.sample_size
    h, w = (s, s) if isinstance(s, int) else tuple(s)
    return int(cfg.in_channels), int(h), int(w)


def convert(args) -> dict:
    unet_dir, sched_path, origin = resolve_source(args.src, args.scheduler_config)
    with open(sched_path) as f:
        sched_cfg = json.load(f)
    spec = schedule_spec_from_diffusers(sched_cfg)
    log(f"UNet: {unet_dir}\nscheduler config: {sched_path}\nschedule: {json.dumps(spec)}")
    unet, cfg = load_unet(unet_dir)
    if unet.config.out_channels not in (unet.config.in_channels, 2 * unet.config.in_channels):
        raise ConversionError(
            f"out_channels {unet.config.out_channels} vs in_channels {unet.config.in_channels}: "
            "not an eps (or eps + variance) predictor"
        )
    model = EpsWrapper(unet).eval()
    C, H, W = sample_shape(unet.config)
    n_params = sum(p.numel() for p in unet.parameters())
    log(f"UNet2DModel: {n_params:,} parameters, input [N, {C}, {H}, {W}]")

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, C, H, W, generator=g)
    t = torch.tensor([10, spec["T"] - 100], dtype=torch.int64)
    exporter = export_onnx(model, (x, t), args.out, ["x", "t"], ["eps"],
                           {"x": {0: "N"}, "t": {0: "N"}, "eps": {0: "N"}})
    rep = onnx_report(args.out)
    log(f"ONNX ({exporter}): {args.out} {rep['file_bytes']:,} bytes sha256 {rep['sha256']}")

    # ORT vs PyTorch at batch 1 and 3, t across the schedule.
    sess = ort_session(args.out, threads=args.threads)
    errs, scales = {}, {}
    for n in (1, 3):
        xb = torch.randn(n, C, H, W, generator=g).numpy()
        tb = np.linspace(0, spec["T"] - 1, n).astype(np.int64)
        e = compare_ort(sess, lambda x, t: {"eps": model(x, t)}, {"x": xb, "t": tb}, scales)["eps"]
        errs[n] = e
        log(f"ORT vs PyTorch, batch {n}: max abs error {e:.3e}")
    check_errors(errs, scales, args.tol, args.out)

    notes = scheduler_notes(sched_cfg)
    if model.split:
        notes.append(f"learned-variance output: ONNX keeps the first {C} channels (eps)")
    desc = args.description or (
        f"diffusers UNet2DModel ({n_params:,} params), eps-prediction, converted by "
        "weights/recipes/export_diffusers_unet.py"
    )
    if notes:
        desc += " (" + "; ".join(notes) + ")"
    entry = {
        "file": None,
        "sha256": rep["sha256"],
        "kind": "denoiser",
        "input": {"range": "pm1", "layout": "nchw", "shape": [C, H, W]},
        "schedule": spec,
        "source": args.source or f"{origin} (diffusers UNet2DModel) via weights/recipes/export_diffusers_unet.py",
        "description": desc,
    }
    if args.testing:
        entry["testing"] = True
    result = {"entry": entry, "report": rep, "errors": errs, "params": n_params, "exporter": exporter,
              "scheduler_config": sched_cfg, "unet_config": cfg}
    entry["file"] = relpath_for_manifest(args.out, args.manifest)
    if args.id and not args.no_manifest:
        update_manifest(args.manifest, args.id, entry)
    print(json.dumps({"id": args.id, "entry": entry, "params": n_params, "ort_max_abs_err": errs,
                      "ops": rep["ops"], "nodes": rep["nodes"]}, indent=2))
    return result


def parser() -> argparse.ArgumentParser:
    p = converter_parser(__doc__, "src", "diffusers folder (pipeline or model layout) or hub id")
    p.add_argument("--scheduler-config", help="scheduler_config.json to use instead of the one found beside the UNet")
    add_entry_flags(p, "eps", "manifest 'source' text (default: the folder/hub id and this recipe)")
    return p


def main(argv: list[str] | None = None) -> dict:
    return converter_main(parser(), convert, argv)


if __name__ == "__main__":
    main()
