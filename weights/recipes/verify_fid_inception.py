#!/usr/bin/env python3
"""Self-test of export_fid_inception.py on a random-weight FID Inception saved like pytorch-fid's
pt_inception-2015-12-05-6726825d.pth.

No real weights are available here, so this builds the FID Inception-v3 (23.9M params) with
random weights (seeded; BatchNorm statistics calibrated so activations stay O(1) through ~95
layers), saves its state_dict as a plain .pth (without num_batches_tracked, as a file ported from
TensorFlow has none), runs the converter on it and checks ONNX Runtime against the in-memory
PyTorch model (features and logits, max abs error < 1e-4 at batch 1 and 8, 32x32 inputs). Records ONNX size, op counts and ORT CPU timings
(1 and 2 threads, batch 1 and 16, 32x32 inputs) and writes the input/output fixture
tests/fixtures/conversion/fid_inception_random.ref.json. The ~96 MB ONNX stays in --workdir.

With --reference-src DIR (DIR holds pytorch_fid/inception.py and torchvision/models/inception.py,
e.g. `pip download --no-deps pytorch-fid==0.3.0 torchvision==0.29.2` unzipped), the copy in
_fid_inception_arch.py is checked against the real sources: torchvision is stubbed except for its
real models/inception.py (its compiled parts cannot load beside this torch), pytorch-fid's
weight download is redirected to the .pth written here, and pytorch_fid.inception.InceptionV3([3])
(features) and fid_inception_v3() (logits) must match the ONNX (the default 32x32 one, and a
--dynamic-size export at 64x64 and 299x299).

About a minute of CPU. Usage (from the repository root):
  .venv/bin/python weights/recipes/verify_fid_inception.py [--reference-src DIR] [--no-timing]
"""

from __future__ import annotations

import argparse
import collections
import enum
import importlib
import importlib.util
import json
import os
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _fid_inception_arch as arch  # noqa: E402
import export_fid_inception as conv  # noqa: E402
from _conversion_common import (  # noqa: E402
    FIXTURE_DIR,
    TOLERANCE,
    b64_f32,
    calibrate_batchnorm,
    compare_ort,
    log,
    ort_session,
    time_ort,
)

import onnxruntime  # noqa: E402


def random_fid_inception(seed: int) -> arch.Inception3:
    torch.manual_seed(seed)
    inc = arch.Inception3()
    wrapper = arch.FIDInceptionV3(inc)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(seed + 1))
    calibrate_batchnorm(wrapper, x, seed + 2, beta_mean=1.0)
    return inc.eval()


def save_like_pytorch_fid(inc: arch.Inception3, path: str) -> None:
    sd = collections.OrderedDict(
        (k, v.clone()) for k, v in inc.state_dict().items() if not k.endswith("num_batches_tracked")
    )
    torch.save(sd, path)


def stub_torchvision(src: str) -> None:
    """torchvision with only its real models/inception.py (the rest stubbed)."""
    def mod(name: str, **attrs) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__path__ = []  # a package, so submodules resolve
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    class Weights:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class WeightsEnum(enum.Enum):
        @classmethod
        def verify(cls, obj):
            if obj is not None:
                raise ValueError("stub: pretrained torchvision weights are not available")
            return None

    tv = mod("torchvision", __version__="0.29.2")
    tv.transforms = mod("torchvision.transforms")
    mod("torchvision.transforms._presets", ImageClassification=object)
    tv.utils = mod("torchvision.utils", _log_api_usage_once=lambda obj: None)
    tv.models = mod("torchvision.models")
    mod("torchvision.models._api", register_model=lambda *a, **k: (lambda f: f), Weights=Weights,
        WeightsEnum=WeightsEnum)
    mod("torchvision.models._meta", _IMAGENET_CATEGORIES=[])

    def _ovewrite_named_param(kwargs, param, new_value):
        kwargs[param] = new_value

    mod("torchvision.models._utils", _ovewrite_named_param=_ovewrite_named_param,
        handle_legacy_interface=lambda **kw: (lambda f: f))
    path = os.path.join(src, "torchvision", "models", "inception.py")
    spec = importlib.util.spec_from_file_location("torchvision.models.inception", path)
    inception = importlib.util.module_from_spec(spec)
    sys.modules["torchvision.models.inception"] = inception
    spec.loader.exec_module(inception)
    tv.models.inception = inception
    tv.models.inception_v3 = inception.inception_v3
    tv.models.Inception3 = inception.Inception3


def check_against_reference(src: str, pth: str, onnx_path: str, dynamic_onnx: str) -> None:
    sys.path.insert(0, os.path.abspath(src))
    stub_torchvision(src)
    pf = importlib.import_module("pytorch_fid.inception")
    log(f"reference: pytorch_fid {importlib.import_module('pytorch_fid').__version__} from {pf.__file__}, "
        f"torchvision inception.py from {sys.modules['torchvision.models.inception'].__file__}")
    pf.load_state_dict_from_url = lambda url, progress=True: torch.load(pth, map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    ref_features = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    ref_net = pf.fid_inception_v3().eval()
    torch.manual_seed(0)
    ours = arch.Inception3()
    theirs_sd, ours_sd = ref_net.state_dict(), ours.state_dict()
    assert list(theirs_sd) == list(ours_sd), "state_dict keys differ"
    assert all(theirs_sd[k].shape == ours_sd[k].shape for k in ours_sd)
    log(f"reference: {len(ours_sd)} state_dict keys and shapes identical to pytorch-fid's fid_inception_v3()")
    sessions = {32: ort_session(onnx_path), "dynamic": ort_session(dynamic_onnx)}
    g = torch.Generator().manual_seed(9)
    for n, size in ((1, 32), (3, 32), (1, 64), (1, 299)):
        sess = sessions[32] if size == 32 else sessions["dynamic"]
        x = torch.rand(n, 3, size, size, generator=g)
        with torch.no_grad():
            f_ref = ref_features(x)[0].squeeze(3).squeeze(2).numpy()
            l_ref = ref_net(2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1).numpy()
        f_onnx, l_onnx = sess.run(["features", "logits"], {"x": x.numpy()})
        ef, el = float(np.abs(f_onnx - f_ref).max()), float(np.abs(l_onnx - l_ref).max())
        log(f"reference: pytorch-fid features / torchvision-Inception3 logits vs ONNX, batch {n} at {size}px: "
            f"max abs {ef:.2e} / {el:.2e}")
        assert ef < TOLERANCE and el < TOLERANCE, (ef, el)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/tmp/rg-conversion")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--reference-src", help="folder holding pytorch_fid/ and torchvision/models/inception.py")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(FIXTURE_DIR, exist_ok=True)

    inc = random_fid_inception(seed=0)
    model = arch.FIDInceptionV3(inc).eval()
    pth = os.path.join(args.workdir, "pt_inception-random.pth")
    save_like_pytorch_fid(inc, pth)
    log(f"random FID Inception saved: {pth} ({os.path.getsize(pth):,} bytes)")
    onnx_path = os.path.join(args.workdir, "fid_inception_random.onnx")
    res = conv.main([pth, "--out", onnx_path, "--no-manifest"])

    sess = ort_session(onnx_path, threads=1)
    g = torch.Generator().manual_seed(4)
    errs = {}
    for n in (1, 8):
        x = torch.rand(n, 3, 32, 32, generator=g).numpy()
        e = compare_ort(sess, lambda x: dict(zip(("features", "logits"), model(x))), {"x": x})
        errs.update({f"{k}_batch{n}": v for k, v in e.items()})
    log(f"ORT vs PyTorch (original in-memory model): {errs}")
    assert max(errs.values()) < TOLERANCE, errs

    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features, logits = model(x)
    log(f"features mean {features.mean().item():.3f} std {features.std().item():.3f}; logits std {logits.std().item():.3f}")
    timings = []
    if not args.no_timing:
        def feeds(n):
            return {"x": torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(n)).numpy()}
        timings = time_ort(onnx_path, feeds, batches=(1, 16), threads=(1, 2), min_seconds=3.0,
                           out_json=onnx_path.replace(".onnx", ".timings.json"))
    rep = res["report"]
    fixture = {
        "description": "FID Inception-v3 (pytorch-fid definition) with RANDOM weights (seeded, BN statistics "
        "calibrated), saved as a plain state_dict .pth and converted by export_fid_inception.py; the ONNX is "
        "not committed (rebuild: verify_fid_inception.py, deterministic). x in [0, 1] at 32x32 (resized to 299 "
        "inside the graph); features/logits from the in-memory PyTorch model. float32 LE base64.",
        "onnx": os.path.basename(onnx_path),
        "params": res["params"],
        "x_shape": list(x.shape), "x_b64": b64_f32(x),
        "features_shape": list(features.shape), "features_b64": b64_f32(features),
        "logits_shape": list(logits.shape), "logits_b64": b64_f32(logits),
        "ort_max_abs_err": errs,
        "onnx_report": {k: rep[k] for k in ("file_bytes", "sha256", "nodes", "initializers", "ops", "inputs", "outputs")},
        "manifest_entry": res["entry"],
        "torch_version": torch.__version__, "onnxruntime_version": onnxruntime.__version__,
    }
    path = os.path.join(FIXTURE_DIR, "fid_inception_random.ref.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    log(f"wrote {path} ({os.path.getsize(path):,} bytes); ONNX {rep['file_bytes']:,} bytes, {rep['nodes']} nodes")
    if args.reference_src:
        dynamic_onnx = os.path.join(args.workdir, "fid_inception_random_dynamic.onnx")
        conv.main([pth, "--out", dynamic_onnx, "--no-manifest", "--dynamic-size"])
        check_against_reference(args.reference_src, pth, onnx_path, dynamic_onnx)
    log("OK")


if __name__ == "__main__":
    main()
