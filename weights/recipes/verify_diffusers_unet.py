#!/usr/bin/env python3
"""Self-test of export_diffusers_unet.py on random-weight UNets saved in diffusers' own layouts.

No real checkpoint is available here (no model hub), so this builds UNet2DModel with the
architecture of google/ddpm-cifar10-32 and random weights (seeded), saves it the way diffusers
does (save_pretrained), runs the converter on the saved folder and checks ONNX Runtime against
the in-memory PyTorch model (max abs error < 1e-4 at batch 1 and 8).

Always (a few seconds):
  * scheduler conversion: linear / scaled_linear / squaredcos_cap_v2 configs -> schedule spec,
    with diffusers' alphas_cumprod (float32, as DDPMScheduler computes it) and the same formulas
    in float64, written to tests/fixtures/conversion/schedules.json; and the refusals
    (v_prediction, sample, trained_betas, sigmoid, zero-SNR rescaling, clip range).
  * a small-width UNet2DModel with the ddpm-cifar10-32 block structure, saved as a DDPMPipeline
    folder (model_index.json, unet/, scheduler/) -> tests/fixtures/conversion/tiny_ddpm_unet.onnx
    (+ .ref.json: input, t, PyTorch eps, the manifest entry the converter wrote); the same weights
    saved in the hub's top-level layout with .bin weights and the pre-0.3 attention key names
    (query/key/value/proj_attn) convert to the same outputs.
  * a scratch copy of weights/manifest.json is updated; the other entries and the formatting
    must come through unchanged.

With --full (about a minute of CPU): the full-size 35.7M-parameter ddpm-cifar10-32 architecture
-> <workdir>/ddpm_cifar10_32_random.onnx (~143 MB, not committed), errors at batch 1 and 8,
ONNX op counts, and ORT CPU timings (1 and 2 threads, batch 1 and 16); the input/output
fixture goes to tests/fixtures/conversion/ddpm_cifar10_32_random.ref.json.

Usage (from the repository root):
  .venv/bin/python weights/recipes/verify_diffusers_unet.py [--full] [--workdir /tmp/rg-conversion]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_diffusers_unet as conv  # noqa: E402
from _conversion_common import (  # noqa: E402
    DEFAULT_MANIFEST,
    FIXTURE_DIR,
    TOLERANCE,
    b64_f32,
    b64_f64,
    compare_ort,
    log,
    onnx_report,
    ort_session,
    time_ort,
)

import diffusers  # noqa: E402
import onnxruntime  # noqa: E402
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402

# google/ddpm-cifar10-32 config.json (diffusers 0.0.4 export of the original DDPM CIFAR-10 model:
# ch 128, ch_mult (1, 2, 2, 2), 2 res blocks, attention at 16x16, single-head attention,
# DDPM's asymmetric-pad downsampling and sin-then-cos timestep embedding with shift 1).
DDPM_CIFAR10_32_CONFIG = {
    "_class_name": "UNet2DModel",
    "act_fn": "silu",
    "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256],
    "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 3,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 32,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}
DDPM_CIFAR10_32_PARAMS = 35_746_307

# Its scheduler_config.json (DDPMScheduler: linear 1e-4..0.02, T = 1000, clip_sample).
DDPM_CIFAR10_32_SCHEDULER = {
    "_class_name": "DDPMScheduler",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "clip_sample": True,
    "num_train_timesteps": 1000,
    "trained_betas": None,
    "variance_type": "fixed_large",
}

# Same block structure at 1/16 of the width (GroupNorm groups 4): a ~0.6 MB ONNX for CI.
TINY_CONFIG = dict(DDPM_CIFAR10_32_CONFIG, block_out_channels=[8, 16, 16, 16], norm_num_groups=4)

SCHEDULE_CASES = {
    "ddpm_cifar10_linear": DDPM_CIFAR10_32_SCHEDULER,
    "scaled_linear_sd": {
        "_class_name": "DDPMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
        "beta_end": 0.012, "num_train_timesteps": 1000, "clip_sample": False,
        "prediction_type": "epsilon",
    },
    "squaredcos_cap_v2": {
        "_class_name": "DDPMScheduler", "beta_schedule": "squaredcos_cap_v2", "beta_start": 0.0001,
        "beta_end": 0.02, "num_train_timesteps": 1000, "clip_sample": True,
        "prediction_type": "epsilon", "variance_type": "fixed_small",
    },
    "linear_T50": {
        "_class_name": "DDIMScheduler", "beta_schedule": "linear", "beta_start": 0.001,
        "beta_end": 0.2, "num_train_timesteps": 50, "clip_sample": True,
    },
}

REFUSED_CASES = {
    "v_prediction": ({"beta_schedule": "linear", "prediction_type": "v_prediction"}, "v-prediction"),
    "sample": ({"beta_schedule": "linear", "prediction_type": "sample"}, "epsilon-prediction"),
    "trained_betas": ({"beta_schedule": "linear", "trained_betas": [0.1, 0.2]}, "trained_betas"),
    "sigmoid": ({"beta_schedule": "sigmoid"}, "sigmoid"),
    "zero_snr": ({"beta_schedule": "linear", "rescale_betas_zero_snr": True}, "zero-terminal-SNR"),
    "clip_range": ({"beta_schedule": "linear", "clip_sample_range": 2.0}, "clip_sample_range"),
}


def abar_f64(cfg: dict) -> np.ndarray:
    """diffusers' DDPMScheduler betas -> alphas_cumprod, the same formulas in float64."""
    T = cfg.get("num_train_timesteps", 1000)
    s, e = cfg.get("beta_start", 0.0001), cfg.get("beta_end", 0.02)
    kind = cfg.get("beta_schedule", "linear")
    if kind == "linear":
        betas = np.linspace(s, e, T, dtype=np.float64)
    elif kind == "scaled_linear":
        betas = np.linspace(s ** 0.5, e ** 0.5, T, dtype=np.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)])
    else:
        raise ValueError(kind)
    return np.cumprod(1.0 - betas)


def check_schedules() -> dict:
    cases = []
    for name, cfg in SCHEDULE_CASES.items():
        spec = conv.schedule_spec_from_diffusers(cfg)
        sched = DDPMScheduler.from_config({k: v for k, v in cfg.items() if k != "_class_name"})
        f32 = sched.alphas_cumprod.numpy().astype(np.float64)
        f64 = abar_f64(cfg)
        rel = float(np.max(np.abs(f32 - f64) / f64))
        log(f"schedule {name}: {json.dumps(spec)}; diffusers float32 cumprod vs float64: max rel {rel:.2e}")
        cases.append({"name": name, "scheduler_config": cfg, "spec": spec,
                      "abar_f64_b64": b64_f64(f64), "abar_f32_b64": b64_f32(sched.alphas_cumprod),
                      "f32_vs_f64_max_rel": rel})
    for name, (cfg, needle) in REFUSED_CASES.items():
        try:
            conv.schedule_spec_from_diffusers(cfg)
        except conv.ConversionError as e:
            assert needle in str(e), (name, str(e))
            log(f"refused {name}: {str(e)[:90]}...")
            continue
        raise SystemExit(f"scheduler case {name} was not refused")
    fixture = {
        "description": "diffusers scheduler configs, the schedule spec export_diffusers_unet.py makes of "
        "each, and diffusers' alphas_cumprod: abar_f32 = DDPMScheduler(...).alphas_cumprod "
        "(float32 linspace/cumprod, as diffusers runs), abar_f64 = the same formulas in float64. "
        "Base64 little-endian.",
        "diffusers_version": diffusers.__version__,
        "cases": cases,
    }
    path = os.path.join(FIXTURE_DIR, "schedules.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    log(f"wrote {path} ({os.path.getsize(path):,} bytes)")
    return fixture


def random_unet(cfg: dict, seed: int) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel.from_config({k: v for k, v in cfg.items() if not k.startswith("_")}).eval()


def scratch_manifest(workdir: str) -> str:
    path = os.path.join(workdir, "manifest.json")
    shutil.copyfile(DEFAULT_MANIFEST, path)
    return path


def check_manifest_untouched(before: dict, path: str, new_id: str) -> dict:
    with open(path) as f:
        text = f.read()
    after = json.loads(text)
    assert text == json.dumps(after, indent=2, ensure_ascii=False) + "\n", "manifest format changed"
    assert list(after["models"])[: len(before["models"])] == list(before["models"]), "entry order changed"
    for k, v in before["models"].items():
        if k != new_id:
            assert after["models"][k] == v, f"entry {k} changed"
    assert after["defaults"] == before["defaults"]
    return after["models"][new_id]


def legacy_attention_keys(sd: dict) -> dict:
    """The state-dict key names of diffusers < 0.3 attention blocks (what the 2022 hub files used)."""
    out = {}
    for k, v in sd.items():
        for new, old in ((".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."),
                         (".to_out.0.", ".proj_attn.")):
            if ".attentions." in k and new in k:
                k = k.replace(new, old)
        out[k] = v
    return out


def ort_vs_model(onnx_path: str, model, C: int, H: int, W: int, T: int, seed: int) -> dict:
    sess = ort_session(onnx_path, threads=1)
    g = torch.Generator().manual_seed(seed)
    errs = {}
    for n in (1, 8):
        x = torch.randn(n, C, H, W, generator=g).numpy()
        t = torch.randint(0, T, (n,), generator=g).numpy().astype(np.int64)
        errs[f"batch{n}"] = compare_ort(sess, lambda x, t: {"eps": model(x, t)}, {"x": x, "t": t})["eps"]
    log(f"ORT vs PyTorch (original in-memory model): {errs}")
    assert max(errs.values()) < TOLERANCE, errs
    return errs


def check_tiny(workdir: str) -> None:
    unet = random_unet(TINY_CONFIG, seed=0)
    model = conv.EpsWrapper(unet).eval()
    n_params = sum(p.numel() for p in unet.parameters())
    sched = DDPMScheduler.from_config({k: v for k, v in DDPM_CIFAR10_32_SCHEDULER.items() if k != "_class_name"})

    # 1. pipeline layout (DDPMPipeline.save_pretrained), safetensors.
    pipe_dir = os.path.join(workdir, "tiny_pipeline")
    shutil.rmtree(pipe_dir, ignore_errors=True)
    DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(pipe_dir)
    assert os.path.isfile(os.path.join(pipe_dir, "model_index.json"))
    manifest = scratch_manifest(workdir)
    with open(manifest) as f:
        before = json.load(f)
    onnx_path = os.path.join(FIXTURE_DIR, "tiny_ddpm_unet.onnx")
    res = conv.main([pipe_dir, "--out", onnx_path, "--id", "tiny-ddpm-unet", "--manifest", manifest,
                     "--testing", "--source", "weights/recipes/verify_diffusers_unet.py (random weights, "
                     "ddpm-cifar10-32 block structure at 1/16 width)",
                     "--description", "RANDOM weights: converter self-test fixture, not a generative model"])
    entry = check_manifest_untouched(before, manifest, "tiny-ddpm-unet")
    assert entry["sha256"] == res["report"]["sha256"]
    assert entry["schedule"] == conv.schedule_spec_from_diffusers(DDPM_CIFAR10_32_SCHEDULER)
    errs = ort_vs_model(onnx_path, model, 3, 32, 32, 1000, seed=5)

    # 2. hub top-level layout, .bin weights with legacy attention key names.
    hub_dir = os.path.join(workdir, "tiny_hub_layout")
    shutil.rmtree(hub_dir, ignore_errors=True)
    unet.save_pretrained(hub_dir, safe_serialization=False)
    bin_path = os.path.join(hub_dir, "diffusion_pytorch_model.bin")
    sd = torch.load(bin_path, map_location="cpu", weights_only=True)
    legacy = legacy_attention_keys(sd)
    n_renamed = sum(1 for k in legacy if ".query." in k or ".proj_attn." in k)
    assert n_renamed > 0
    torch.save(legacy, bin_path)
    with open(os.path.join(hub_dir, "scheduler_config.json"), "w") as f:
        json.dump(DDPM_CIFAR10_32_SCHEDULER, f, indent=2)
    legacy_onnx = os.path.join(workdir, "tiny_legacy.onnx")
    conv.main([hub_dir, "--out", legacy_onnx, "--no-manifest"])
    errs_legacy = ort_vs_model(legacy_onnx, model, 3, 32, 32, 1000, seed=6)
    log(f"legacy attention keys ({n_renamed} tensors renamed) load and convert: {errs_legacy}")

    # 3. a missing tensor must be refused, not silently left random.
    broken = os.path.join(workdir, "tiny_broken")
    shutil.rmtree(broken, ignore_errors=True)
    shutil.copytree(hub_dir, broken)
    bad = dict(legacy)
    bad.pop(next(k for k in bad if k.endswith("conv_out.weight")))
    torch.save(bad, os.path.join(broken, "diffusion_pytorch_model.bin"))
    try:
        conv.main([broken, "--out", os.path.join(workdir, "broken.onnx"), "--no-manifest"])
        raise AssertionError("a checkpoint with a missing tensor was converted")
    except SystemExit as e:
        assert "does not match" in str(e), e
        log(f"missing tensor refused: {str(e)[:100]}")

    # Reference fixture for the TypeScript test.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 32, 32, generator=g)
    t = torch.tensor([0, 333, 666, 999], dtype=torch.int64)
    with torch.no_grad():
        eps = model(x, t)
    rep = onnx_report(onnx_path)
    fixture = {
        "description": "tiny random-weight UNet2DModel with the google/ddpm-cifar10-32 block structure "
        "(block_out_channels 8,16,16,16), saved with DDPMPipeline.save_pretrained and converted by "
        "export_diffusers_unet.py; eps from the in-memory PyTorch model. float32 LE base64.",
        "onnx": "tiny_ddpm_unet.onnx",
        "unet_config": TINY_CONFIG,
        "scheduler_config": DDPM_CIFAR10_32_SCHEDULER,
        "manifest_entry": entry,
        "params": n_params,
        "x_shape": list(x.shape), "x_b64": b64_f32(x),
        "t": t.tolist(),
        "eps_shape": list(eps.shape), "eps_b64": b64_f32(eps),
        "ort_max_abs_err": errs, "ort_max_abs_err_legacy_keys": errs_legacy,
        "onnx_report": {k: rep[k] for k in ("file_bytes", "sha256", "nodes", "initializers", "ops")},
        "torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
        "onnxruntime_version": onnxruntime.__version__,
    }
    path = os.path.join(FIXTURE_DIR, "tiny_ddpm_unet.ref.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    log(f"tiny UNet: {n_params:,} params, ONNX {rep['file_bytes']:,} bytes, {rep['nodes']} nodes; "
        f"wrote {path} ({os.path.getsize(path):,} bytes)")


def check_full(workdir: str, timing: bool) -> None:
    unet = random_unet(DDPM_CIFAR10_32_CONFIG, seed=0)
    n_params = sum(p.numel() for p in unet.parameters())
    assert n_params == DDPM_CIFAR10_32_PARAMS, n_params
    model = conv.EpsWrapper(unet).eval()
    src = os.path.join(workdir, "ddpm_cifar10_32_random")
    shutil.rmtree(src, ignore_errors=True)
    unet.save_pretrained(src)  # hub top-level layout: config.json + safetensors
    with open(os.path.join(src, "scheduler_config.json"), "w") as f:
        json.dump(DDPM_CIFAR10_32_SCHEDULER, f, indent=2)
    onnx_path = os.path.join(workdir, "ddpm_cifar10_32_random.onnx")
    res = conv.main([src, "--out", onnx_path, "--no-manifest"])
    errs = ort_vs_model(onnx_path, model, 3, 32, 32, 1000, seed=7)
    rep = res["report"]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 32, 32, generator=g)
    t = torch.tensor([0, 333, 666, 999], dtype=torch.int64)
    with torch.no_grad():
        eps = model(x, t)
    log(f"eps std {eps.std().item():.3f}, max {eps.abs().max().item():.3f}")
    timings = []
    if timing:
        def feeds(n):
            gg = torch.Generator().manual_seed(n)
            return {"x": torch.randn(n, 3, 32, 32, generator=gg).numpy(),
                    "t": np.full((n,), 500, dtype=np.int64)}
        timings = time_ort(onnx_path, feeds, batches=(1, 16), threads=(1, 2),
                           out_json=onnx_path.replace(".onnx", ".timings.json"))
    fixture = {
        "description": "full-size google/ddpm-cifar10-32 architecture with RANDOM weights "
        "(UNet2DModel.from_config, torch.manual_seed(0)); the ONNX is not committed: rebuild it with "
        "`verify_diffusers_unet.py --full` (deterministic) and point CONVERSION_MODELS_DIR at the workdir. "
        "eps from the in-memory PyTorch model; float32 LE base64.",
        "onnx": "ddpm_cifar10_32_random.onnx",
        "unet_config": DDPM_CIFAR10_32_CONFIG, "scheduler_config": DDPM_CIFAR10_32_SCHEDULER,
        "schedule": res["entry"]["schedule"],
        "params": n_params,
        "x_shape": list(x.shape), "x_b64": b64_f32(x), "t": t.tolist(),
        "eps_shape": list(eps.shape), "eps_b64": b64_f32(eps),
        "ort_max_abs_err": errs,
        "onnx_report": {k: rep[k] for k in ("file_bytes", "sha256", "nodes", "initializers", "ops")},
        "torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
        "onnxruntime_version": onnxruntime.__version__,
    }
    path = os.path.join(FIXTURE_DIR, "ddpm_cifar10_32_random.ref.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    log(f"full UNet: {n_params:,} params, ONNX {rep['file_bytes']:,} bytes; wrote {path} "
        f"({os.path.getsize(path):,} bytes)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="also the full-size 35.7M ddpm-cifar10-32 architecture")
    p.add_argument("--no-timing", action="store_true", help="skip ORT timings of the full-size model")
    p.add_argument("--workdir", default="/tmp/rg-conversion", help="scratch folder for checkpoints and big ONNX files")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(FIXTURE_DIR, exist_ok=True)
    check_schedules()
    check_tiny(args.workdir)
    if args.full:
        check_full(args.workdir, timing=not args.no_timing)
    log("OK")


if __name__ == "__main__":
    main()
