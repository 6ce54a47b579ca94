#!/usr/bin/env python3
"""Convert an OpenAI ADM checkpoint (improved-diffusion / guided-diffusion, class-unconditional)
to an ONNX denoiser for the toolkit.

The checkpoint is what those repositories publish and their training saves: a plain
`torch.save(model.state_dict())` of guided_diffusion.unet.UNetModel (e.g. cifar10_uncond_50M_500K.pt,
imagenet64_uncond_100M_1500K.pt, 256x256_diffusion_uncond.pt). The architecture is given by the
same flags as the repositories' scripts (MODEL_FLAGS) or a --preset; the state-dict keys and
shapes must match it exactly (strict load: missing/unexpected keys are listed).

Output ONNX (opset 17, float32, dynamic batch N, weights embedded; models over 2 GB store their
weights in one external file <out>.data beside it):
  x    float32 [N, 3, H, W]        x_t in [-1, 1]
  t    float32 [N]                 the timestep the network was trained on: the index t in 0..T-1,
                                   or t * 1000 / T for models trained with rescale_timesteps
                                   (improved-diffusion's default; the manifest records which)
  out  float32 [N, 3 or 6, H, W]   eps, then (learn_sigma) the variance interpolation v in [-1, 1]:
                                   Sigma = exp(frac log beta_t + (1 - frac) log beta~_t),
                                   frac = (v + 1) / 2 (Nichol & Dhariwal 2021 eq 15)
The manifest entry records schedule (linear betas scaled by 1000/T as improved-diffusion does, or
cosine), prediction_type (epsilon, or sample with predict_xstart), variance_type learned_range,
and the timestep convention (index or rescaled), so the toolkit converts everything itself.

Usage (from the repository root):
  .venv/bin/python weights/recipes/export_adm.py imagenet64_uncond_100M_1500K.pt --preset imagenet64 \\
      --out weights/denoisers/adm-imagenet64-uncond.onnx --id adm-imagenet64-uncond
  .venv/bin/python weights/recipes/export_adm.py 256x256_diffusion_uncond.pt --preset imagenet256 \\
      --out /big/adm-imagenet256-uncond.onnx --id adm-imagenet256-uncond
  .venv/bin/python weights/recipes/export_adm.py model.pt --image-size 64 --num-channels 192 \\
      --num-res-blocks 3 --learn-sigma --diffusion-steps 4000 --noise-schedule cosine --rescale-timesteps ...
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _adm_arch as adm  # noqa: E402
from _conversion_common import (  # noqa: E402
    ConversionError,
    add_entry_flags,
    check_errors,
    compare_ort,
    converter_main,
    converter_parser,
    export_onnx,
    log,
    onnx_report,
    ort_session,
    relpath_for_manifest,
    torch_load_checkpoint,
    update_manifest,
)

TWO_GB = 2 ** 31 - 1


class Wrapped(nn.Module):
    """forward(x, t) -> out: the UNet on plain tensors (t float32 [N])."""

    def __init__(self, unet: adm.UNetModel):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t)


def load_state_dict(path: str, trust_pickle: bool) -> dict:
    sd = torch_load_checkpoint(path, trust_pickle)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConversionError(f"{path} is not a state_dict of tensors (a plain torch.save(model.state_dict()))")
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    if "label_emb.weight" in sd:
        raise ConversionError(
            f"{path} is class-conditional (label_emb.weight {list(sd['label_emb.weight'].shape)}): the "
            "toolkit guides unconditional models; use an unconditional checkpoint")
    if "out.2.weight" not in sd or "input_blocks.0.0.weight" not in sd:
        raise ConversionError(f"{path} is not an ADM UNet state_dict (first keys: {', '.join(list(sd)[:5])})")
    return sd


def config_from_args(args, sd: dict) -> tuple[adm.ADMConfig, adm.DiffusionConfig, str]:
    if args.preset:
        p = adm.PRESETS[args.preset]
        cfg, diff, source = adm.ADMConfig(**{**p.model.__dict__}), adm.DiffusionConfig(**p.diffusion.__dict__), p.source
    else:
        if args.image_size is None:
            raise ConversionError("give --preset or the model flags (at least --image-size)")
        cfg, diff, source = adm.ADMConfig(image_size=args.image_size), adm.DiffusionConfig(), "ADM checkpoint"
    for name in ("image_size", "num_channels", "num_res_blocks", "attention_resolutions", "num_heads",
                 "num_head_channels", "num_heads_upsample", "dropout"):
        v = getattr(args, name)
        if v is not None:
            setattr(cfg, name, v)
    if args.channel_mult:
        cfg.channel_mult = tuple(float(c) if "." in c else int(c) for c in args.channel_mult.split(","))
    for name in ("use_scale_shift_norm", "resblock_updown", "use_new_attention_order"):
        v = getattr(args, name)
        if v is not None:
            setattr(cfg, name, v == "true")
    for name in ("diffusion_steps", "noise_schedule"):
        v = getattr(args, name)
        if v is not None:
            setattr(diff, name, v)
    if args.rescale_timesteps is not None:
        diff.rescale_timesteps = args.rescale_timesteps == "true"
    if args.predict_xstart:
        diff.predict_xstart = True
    # learn_sigma is read from the checkpoint: out.2 has 2C output channels
    out_ch = sd["out.2.weight"].shape[0]
    in_ch = sd["input_blocks.0.0.weight"].shape[1]
    if out_ch not in (in_ch, 2 * in_ch):
        raise ConversionError(f"out.2.weight has {out_ch} output channels for {in_ch} input channels "
                              f"(expected {in_ch}, or {2 * in_ch} with learn_sigma)")
    learn = out_ch == 2 * in_ch
    if args.learn_sigma is not None and args.learn_sigma != learn:
        raise ConversionError(f"--learn-sigma {args.learn_sigma} but the checkpoint's out.2 has {out_ch} channels "
                              f"for {in_ch} inputs (learn_sigma {learn})")
    cfg.learn_sigma, cfg.in_channels = learn, in_ch
    return cfg, diff, source


def schedule_entry(diff: adm.DiffusionConfig, learn_sigma: bool) -> dict:
    """The manifest's schedule for ADM's get_named_beta_schedule and model conventions."""
    T = diff.diffusion_steps
    if diff.noise_schedule == "linear":
        scale = 1000 / T  # improved-/guided-diffusion scale the linear betas by 1000/T
        spec = {"type": "linear", "T": T, "beta_start": round(scale * 0.0001, 12), "beta_end": round(scale * 0.02, 12)}
    elif diff.noise_schedule == "cosine":
        spec = {"type": "cosine", "T": T}
    else:
        raise ConversionError(f"noise_schedule '{diff.noise_schedule}' is not linear or cosine")
    spec["clip_sample"] = True  # ADM samples with clip_denoised=True
    spec["prediction_type"] = "sample" if diff.predict_xstart else "epsilon"
    spec["variance_type"] = "learned_range" if learn_sigma else "fixed"
    spec["timestep"] = "rescaled" if diff.rescale_timesteps else "index"
    return spec


def load_model(sd: dict, cfg: adm.ADMConfig) -> adm.UNetModel:
    model = adm.build(cfg)
    missing, unexpected = [], []
    ref = model.state_dict()
    missing = [k for k in ref if k not in sd]
    unexpected = [k for k in sd if k not in ref]
    shapes = [f"{k}: checkpoint {list(sd[k].shape)} vs model {list(ref[k].shape)}"
              for k in ref if k in sd and sd[k].shape != ref[k].shape]
    if missing or unexpected or shapes:
        raise ConversionError(
            "the checkpoint does not match the configuration " + str(cfg.as_dict()) +
            (f"; missing {len(missing)} keys (first: {missing[:4]})" if missing else "") +
            (f"; unexpected {len(unexpected)} keys (first: {unexpected[:4]})" if unexpected else "") +
            (f"; shape mismatches: {shapes[:4]}" if shapes else "") +
            "; check the model flags (--preset, --num-channels, --num-res-blocks, --attention-resolutions, "
            "--num-head-channels, --resblock-updown, --channel-mult)")
    model.load_state_dict(sd, strict=True)
    return model.eval()


def to_single_external_file(path: str, before: set[str]) -> None:
    """Re-saves an ONNX whose weights exceed 2 GB with all weights in one <name>.data file, and
    removes the per-tensor files the exporter wrote beside it (files not in `before`)."""
    import onnx

    m = onnx.load(path, load_external_data=True)
    folder = os.path.dirname(os.path.abspath(path))
    for f in set(os.listdir(folder)) - before - {os.path.basename(path)}:
        full = os.path.join(folder, f)
        if os.path.isfile(full):
            os.remove(full)
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(path) + ".data", size_threshold=1024)


def feeds(cfg: adm.ADMConfig, diff: adm.DiffusionConfig, n: int, seed: int) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    T = diff.diffusion_steps
    t = g.integers(0, T, size=n).astype(np.float32)
    if diff.rescale_timesteps:
        t = t * np.float32(1000.0 / T)
    return {"x": g.standard_normal((n, cfg.in_channels, cfg.image_size, cfg.image_size)).astype(np.float32), "t": t}


def convert(args) -> dict:
    sd = load_state_dict(args.checkpoint, args.trust_pickle)
    cfg, diff, source = config_from_args(args, sd)
    model = load_model(sd, cfg)
    params = adm.count_params(model)
    log(f"ADM UNet {cfg.as_dict()}: {params:,} parameters; diffusion {diff.__dict__}")
    wrapped = Wrapped(model).eval()
    ex = feeds(cfg, diff, 1, 0)
    t0 = time.perf_counter()
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    before = set(os.listdir(folder))
    exporter = export_onnx(wrapped, (torch.from_numpy(ex["x"]), torch.from_numpy(ex["t"])), args.out,
                           ["x", "t"], ["out"], {"x": {0: "N"}, "t": {0: "N"}, "out": {0: "N"}})
    big = params * 4 > TWO_GB - (64 << 20)
    if big:
        to_single_external_file(args.out, before)
    log(f"exported with {exporter} in {time.perf_counter() - t0:.1f}s -> {args.out}" + (" (+ .data)" if big else ""))
    report = onnx_report(args.out) if not big else {"file_bytes": os.path.getsize(args.out)}
    onnx_bytes = os.path.getsize(args.out) + (os.path.getsize(args.out + ".data") if big else 0)
    sess = ort_session(args.out, args.threads)
    errs, scales = {}, {}
    for n in args.parity_batches:
        f = feeds(cfg, diff, n, 100 + n)
        e = compare_ort(sess, lambda x, t: {"out": wrapped(x, t)}, f, scales)
        errs[f"b{n}"] = e["out"]
        log(f"  ORT vs PyTorch, batch {n}: max abs error {e['out']:.3e} (max |out| {scales['out']:.3g})")
    check_errors(errs, scales, args.tol, args.out)
    spec = schedule_entry(diff, cfg.learn_sigma)
    result = {"config": cfg.as_dict(), "diffusion": diff.__dict__, "params": params, "onnx_bytes": onnx_bytes,
              "external_data": big, "exporter": exporter, "max_abs_error": errs, "max_abs_output": scales.get("out"),
              "schedule": spec, "sha256": report.get("sha256")}
    if args.id and not args.no_manifest:
        if big:
            raise ConversionError("models over 2 GB keep their weights in <out>.data, which the toolkit's "
                                  "manifest loader does not read; give the .onnx path to the tasks instead")
        entry = {
            "file": relpath_for_manifest(args.out, args.manifest),
            "sha256": report["sha256"],
            "kind": "denoiser",
            "input": {"range": "pm1", "layout": "nchw", "shape": [cfg.in_channels, cfg.image_size, cfg.image_size]},
            "schedule": spec,
            "source": args.source or f"weights/recipes/export_adm.py on {os.path.basename(args.checkpoint)} ({source})",
            "description": args.description or
            f"ADM UNet, {params:,} params, {'learned variance' if cfg.learn_sigma else 'fixed variance'}, "
            f"{spec['type']} schedule T = {diff.diffusion_steps}",
        }
        if args.testing:
            entry["testing"] = True
        update_manifest(args.manifest, args.id, entry)
    return result


def parser() -> argparse.ArgumentParser:
    p = converter_parser(__doc__, "checkpoint", "ADM state_dict .pt (improved-/guided-diffusion)")
    p.add_argument("--preset", choices=sorted(adm.PRESETS), help="a published configuration (flags below override it)")
    p.add_argument("--image-size", type=int)
    p.add_argument("--num-channels", type=int)
    p.add_argument("--num-res-blocks", type=int)
    p.add_argument("--channel-mult", help="e.g. 1,1,2,2,4,4 (default: script_util's table by image size)")
    p.add_argument("--attention-resolutions", help="e.g. 32,16,8")
    p.add_argument("--num-heads", type=int)
    p.add_argument("--num-head-channels", type=int)
    p.add_argument("--num-heads-upsample", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--use-scale-shift-norm", choices=["true", "false"])
    p.add_argument("--resblock-updown", choices=["true", "false"])
    p.add_argument("--use-new-attention-order", choices=["true", "false"])
    p.add_argument("--learn-sigma", type=lambda s: s == "true", choices=[True, False],
                   help="true|false; default: read from the checkpoint (2C output channels)")
    p.add_argument("--diffusion-steps", type=int)
    p.add_argument("--noise-schedule", choices=["linear", "cosine"])
    p.add_argument("--rescale-timesteps", choices=["true", "false"])
    p.add_argument("--predict-xstart", action="store_true", help="the model predicts x0 (prediction_type sample)")
    p.add_argument("--parity-batches", type=lambda s: [int(v) for v in s.split(",")], default=[1, 8],
                   help="batches of the ORT-vs-PyTorch check (default 1,8)")
    p.add_argument("--trust-pickle", action="store_true", help="allow full unpickling (trusted files only)")
    add_entry_flags(p, "out")
    return p


def main(argv: list[str] | None = None) -> dict:
    return converter_main(parser(), convert, argv)


if __name__ == "__main__":
    main()
