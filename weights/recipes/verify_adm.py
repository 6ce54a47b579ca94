#!/usr/bin/env python3
"""Self-test of export_adm.py on random stand-in checkpoints in the published format.

No ADM checkpoint can be downloaded here, so for each configuration this builds the UNet of
_adm_arch.py with seeded random weights (PyTorch's default init, with the zero-initialised
output convolutions of the published code left random so every layer matters, and random
GroupNorm affines), saves its state_dict exactly as improved-/guided-diffusion do
(`torch.save(model.state_dict(), path)`), runs the converter on that file, and checks ONNX
Runtime against the in-memory PyTorch model at batch 1 and 8 (max abs error < 1e-4 x
max(1, max|out|)).

Configurations (_adm_arch.PRESETS): cifar10 (improved-diffusion CIFAR-10 flags, linear schedule
T = 4000), imagenet64 (improved-diffusion ImageNet-64 unconditional, cosine T = 4000),
imagenet256 (guided-diffusion 256x256 unconditional, linear T = 1000; --full only: 554M
parameters, 2.2 GB of weights, several minutes per batch-8 forward on 2 CPU cores), tiny64
(a small model with every block kind, committed as tests/fixtures/adm/tiny_adm64.onnx with a
PyTorch reference output for the TypeScript tests).

Writes tests/fixtures/adm/parity.json (config, params, ONNX MB, max abs error b1/b8 per
configuration); the big ONNX files go to --workdir (default /tmp/adm_verify), never into the
repository.

Usage (from the repository root):
  .venv/bin/python weights/recipes/verify_adm.py [--presets cifar10,imagenet64] [--full] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _adm_arch as adm  # noqa: E402
import export_adm as conv  # noqa: E402
from _conversion_common import ROOT, b64_f32, log, ort_session  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "adm")


def random_standin(preset: str, seed: int) -> adm.UNetModel:
    torch.manual_seed(seed)
    model = adm.build(adm.PRESETS[preset].model)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.copy_(0.75 + 0.5 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def tiny_fixture(work: str, threads: int) -> dict:
    """tests/fixtures/adm/tiny_adm64.onnx + tiny_adm64.ref.json (PyTorch output for fixed x, t)."""
    os.makedirs(FIXTURES, exist_ok=True)
    model = random_standin("tiny64", 7)
    ckpt = os.path.join(work, "tiny64.pt")
    torch.save(model.state_dict(), ckpt)
    out = os.path.join(FIXTURES, "tiny_adm64.onnx")
    res = conv.main([ckpt, "--preset", "tiny64", "--out", out, "--no-manifest", "--threads", str(threads)])
    p = adm.PRESETS["tiny64"]
    f = conv.feeds(p.model, p.diffusion, 1, 11)
    with torch.no_grad():
        ref = model(torch.from_numpy(f["x"]), torch.from_numpy(f["t"])).numpy()
    with open(os.path.join(FIXTURES, "tiny_adm64.ref.json"), "w") as fh:
        json.dump({"x": b64_f32(f["x"]), "t": [float(v) for v in f["t"]], "shape": list(ref.shape),
                   "out": b64_f32(ref), "schedule": res["schedule"], "params": res["params"],
                   "sha256": res["sha256"]}, fh, indent=1)
        fh.write("\n")
    return res


def lean_parity(name: str, onnx_path: str, batches: list[int], threads: int) -> dict:
    """ORT (memory arena off, the whole batch in one run) against the same seeded stand-in in
    PyTorch run one image at a time, for models too big to hold both batch forwards at once
    (the 256x256 UNet at batch 8 needs ~17 GB for ORT + PyTorch together)."""
    import onnxruntime as ort

    model = random_standin(name, 0)
    p = adm.PRESETS[name]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_cpu_mem_arena = False
    so.log_severity_level = 3
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    errs, top = {}, 0.0
    for n in batches:
        f = conv.feeds(p.model, p.diffusion, n, 100 + n)
        out = sess.run(["out"], f)[0]
        err = 0.0
        with torch.no_grad():
            for i in range(n):
                ref = model(torch.from_numpy(f["x"][i:i + 1]), torch.from_numpy(f["t"][i:i + 1])).numpy()
                err = max(err, float(np.abs(out[i:i + 1] - ref).max()))
                top = max(top, float(np.abs(ref).max()))
        errs[f"b{n}"] = err
        log(f"  {name}: ORT batch {n} vs PyTorch per image: max abs error {err:.3e} (max |out| {top:.3g})")
        assert err < 1e-4 * max(1.0, top), errs
    size = sum(os.path.getsize(f) for f in (onnx_path, onnx_path + ".data") if os.path.exists(f))
    return {"max_abs_error": errs, "max_abs_output": top, "params": adm.count_params(model),
            "onnx_mb": round(size / 2 ** 20, 1), "external_data": os.path.exists(onnx_path + ".data"),
            "config": p.model.as_dict(), "diffusion": p.diffusion.__dict__, "source": p.source,
            "schedule": conv.schedule_entry(p.diffusion, p.model.learn_sigma)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="cifar10,imagenet64")
    ap.add_argument("--full", action="store_true", help="also the 256x256 configuration (slow, ~10 GB RAM)")
    ap.add_argument("--workdir", default="/tmp/adm_verify")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the ONNX files in --workdir (for tools/denoiser_cost.ts)")
    ap.add_argument("--lean-parity", metavar="PRESET:B1,B2",
                    help="only check an already exported <workdir>/adm_PRESET.onnx at these batches, ORT "
                         "without its memory arena against PyTorch one image at a time (big models)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.workdir, exist_ok=True)
    summary_path = os.path.join(FIXTURES, "parity.json")
    if args.lean_parity:
        name, batches = args.lean_parity.split(":")
        res = lean_parity(name, os.path.join(args.workdir, f"adm_{name}.onnx"),
                          [int(b) for b in batches.split(",")], args.threads)
        summary = json.load(open(summary_path))
        entry = summary["configs"].setdefault(name, {})
        errs = {**entry.get("max_abs_error", {}), **res.pop("max_abs_error")}
        top = max(entry.get("max_abs_output") or 0.0, res.pop("max_abs_output"))
        entry.update(res, max_abs_error=errs, max_abs_output=top, torch=torch.__version__,
                     onnxruntime=__import__("onnxruntime").__version__)
        entry["lean_parity"] = "ORT whole batch (arena off) vs PyTorch one image at a time: " + batches
        with open(summary_path, "w") as fh:
            json.dump(summary, fh, indent=1)
            fh.write("\n")
        return
    presets = [p for p in args.presets.split(",") if p] + (["imagenet256"] if args.full else [])
    summary_path = os.path.join(FIXTURES, "parity.json")
    summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
    summary.setdefault("configs", {})
    summary["tiny64"] = {k: v for k, v in tiny_fixture(args.workdir, args.threads).items() if k != "sha256"}
    for name in presets:
        model = random_standin(name, 0)
        ckpt = os.path.join(args.workdir, f"{name}.pt")
        torch.save(model.state_dict(), ckpt)  # the published format: a plain state_dict
        del model
        out = os.path.join(args.workdir, f"adm_{name}.onnx")
        log(f"== {name}: {adm.PRESETS[name].source}")
        res = conv.main([ckpt, "--preset", name, "--out", out, "--no-manifest", "--threads", str(args.threads)])
        summary["configs"][name] = {
            "source": adm.PRESETS[name].source, "config": res["config"], "diffusion": res["diffusion"],
            "params": res["params"], "onnx_mb": round(res["onnx_bytes"] / 2 ** 20, 1),
            "external_data": res["external_data"], "max_abs_error": res["max_abs_error"],
            "max_abs_output": res["max_abs_output"], "schedule": res["schedule"],
            "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
        }
        os.remove(ckpt)
        if not args.keep:
            for f in (out, out + ".data"):
                if os.path.exists(f):
                    os.remove(f)
        with open(summary_path, "w") as fh:
            json.dump(summary, fh, indent=1)
            fh.write("\n")
    log(f"parity summary -> {summary_path}")


if __name__ == "__main__":
    main()
