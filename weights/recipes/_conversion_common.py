"""Shared helpers of the checkpoint converters (export_*.py) and their verifiers (verify_*.py).

Nothing here downloads anything. Kept free of model-specific code: ONNX export with the
toolkit's conventions (TorchScript exporter, opset 17, float32, dynamic batch), ONNX Runtime
comparison and timing, ONNX reports (size, sha256, op counts), base64 fixtures and the
weights-manifest update.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import os
import sys
import time
import warnings
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WEIGHTS_DIR = os.path.join(ROOT, "weights")
DEFAULT_MANIFEST = os.path.join(WEIGHTS_DIR, "manifest.json")
FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures", "conversion")

OPSET = 17
TOLERANCE = 1e-4

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def b64_f32(a) -> str:
    """Base64 of float32 little-endian, row-major (C order)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def b64_f64(a) -> str:
    """Base64 of float64 little-endian, row-major (C order)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode("ascii")


def export_onnx(
    model: nn.Module,
    args: tuple,
    path: str,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> str:
    """Exports `model` (eval mode, no grad) with the TorchScript exporter at opset 17, weights
    embedded, constant folding on; falls back to the dynamo exporter. Returns which one ran."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                args,
                path,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        return "torchscript"
    except Exception as e:  # fall back to the dynamo exporter
        log(f"TorchScript exporter failed ({type(e).__name__}: {e}); trying dynamo")
        dims: dict[str, torch.export.Dim] = {}
        shapes = {}
        for name in input_names:
            axes = dynamic_axes.get(name, {})
            shapes[name] = {
                ax: dims.setdefault(label, torch.export.Dim(label, min=1, max=4096))
                for ax, label in axes.items()
            }
        with torch.no_grad():
            torch.onnx.export(
                model,
                args,
                path,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=shapes,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
            )
        return "dynamo"


def onnx_report(path: str) -> dict:
    """Size, sha256, node/initializer counts, op-type histogram and IO signature of an ONNX file."""
    import onnx

    m = onnx.load(path)
    onnx.checker.check_model(m)
    ops = collections.Counter(n.op_type for n in m.graph.node)

    def sig(vis) -> dict:
        out = {}
        for vi in vis:
            tt = vi.type.tensor_type
            out[vi.name] = {
                "type": onnx.TensorProto.DataType.Name(tt.elem_type).lower(),
                "shape": [d.dim_param or d.dim_value for d in tt.shape.dim],
            }
        return out

    return {
        "file_bytes": os.path.getsize(path),
        "sha256": sha256_file(path),
        "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
        "ir_version": m.ir_version,
        "nodes": len(m.graph.node),
        "initializers": len(m.graph.initializer),
        "initializer_values": int(sum(int(np.prod(t.dims)) for t in m.graph.initializer)),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "inputs": sig(m.graph.input),
        "outputs": sig(m.graph.output),
    }


def ort_session(path: str, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def compare_ort(
    sess,
    torch_fn: Callable[..., dict[str, torch.Tensor]],
    feeds: dict[str, np.ndarray],
    scales: dict[str, float] | None = None,
) -> dict[str, float]:
    """Max abs error, per output, of ONNX Runtime against PyTorch on the same feeds. When
    `scales` is given, it receives max |PyTorch output| per output (for a relative check)."""
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feeds)
    with torch.no_grad():
        ref = torch_fn(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    errs = {}
    for name, out in zip(names, outs):
        r = ref[name].detach().cpu().numpy()
        if out.shape != r.shape:
            raise SystemExit(f"output '{name}': ORT shape {out.shape} != PyTorch shape {r.shape}")
        if not np.isfinite(out).all():
            raise SystemExit(f"output '{name}': ORT produced NaN/Inf")
        errs[name] = float(np.abs(out - r).max())
        if scales is not None:
            scales[name] = max(scales.get(name, 0.0), float(np.abs(r).max()))
    return errs


def check_errors(errs: dict, scales: dict[str, float], tol: float, what: str) -> None:
    """Fails when an error exceeds tol * max(1, max |output|): an absolute bound for O(1)
    outputs, relative for large ones (trained classifiers' logits reach tens)."""
    bound = tol * max(1.0, *scales.values())
    worst = max(errs.values())
    if worst >= bound:
        raise SystemExit(f"{what}: ORT vs PyTorch max abs error {worst:.3e} >= {bound:.3e} "
                         f"(tol {tol} x max(1, max|output| = {max(scales.values()):.3g}))")


def time_ort(path: str, make_feeds: Callable[[int], dict[str, np.ndarray]], batches: Iterable[int],
             threads: Iterable[int], min_seconds: float = 1.5, max_reps: int = 20,
             out_json: str | None = None) -> list[dict]:
    """Median wall time per forward (ms) in onnxruntime (CPU EP), per thread count and batch,
    with the 1-minute load average before each measurement (the machine may be shared).
    Written to `out_json` when given (timings are not part of the committed fixtures: they
    vary run to run)."""
    rows = []
    for th in threads:
        sess = ort_session(path, th)
        names = [o.name for o in sess.get_outputs()]
        for n in batches:
            feeds = make_feeds(n)
            sess.run(names, feeds)  # warm-up
            times: list[float] = []
            t_start = time.perf_counter()
            while len(times) < max_reps and (len(times) < 3 or time.perf_counter() - t_start < min_seconds):
                t0 = time.perf_counter()
                sess.run(names, feeds)
                times.append(time.perf_counter() - t0)
            rows.append({"threads": th, "batch": n, "ms_per_forward": round(1000 * float(np.median(times)), 2),
                         "ms_min": round(1000 * float(np.min(times)), 2), "reps": len(times),
                         "loadavg_1min": round(os.getloadavg()[0], 2)})
            log(f"  ORT {th} thread(s), batch {n}: {rows[-1]['ms_per_forward']} ms/forward ({len(times)} reps)")
        del sess
    if out_json:
        with open(out_json, "w") as f:
            json.dump({"onnx": path, "onnxruntime": __import__("onnxruntime").__version__,
                       "cpu_count": os.cpu_count(), "rows": rows}, f, indent=1)
            f.write("\n")
        log(f"timings written to {out_json}")
    return rows


def relpath_for_manifest(onnx_path: str, manifest_path: str) -> str:
    """The manifest's `file`: the ONNX path relative to the manifest's folder (weights/)."""
    base = os.path.dirname(os.path.abspath(manifest_path))
    return os.path.relpath(os.path.abspath(onnx_path), base).replace(os.sep, "/")


def cifar10_classifier_entry(onnx_path: str, manifest_path: str, sha256: str, source: str,
                             description: str, card: str) -> dict:
    """The manifest entry of a project-trained CIFAR-10 classifier: x float32 [N, 3, 32, 32] in
    [0, 1] (normalisation inside the graph), the ten CIFAR-10 classes, its card."""
    return {
        "file": relpath_for_manifest(onnx_path, manifest_path),
        "sha256": sha256,
        "kind": "classifier",
        "input": {"range": "01", "layout": "nchw", "shape": [3, 32, 32]},
        "source": source,
        "description": description,
        "classes": CIFAR10_CLASSES,
        "card": card,
    }


def update_manifest(manifest_path: str, model_id: str, entry: dict) -> None:
    """Sets models[model_id] = entry in the manifest (in place if it exists, else appended),
    leaving every other entry untouched; writes JSON with 2-space indent and a trailing newline."""
    with open(manifest_path) as f:
        manifest = json.load(f)
    if manifest.get("version") != 1 or not isinstance(manifest.get("models"), dict):
        raise SystemExit(f"{manifest_path} is not a version-1 weights manifest")
    manifest["models"][model_id] = entry
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, manifest_path)
    log(f"manifest: wrote entry '{model_id}' to {manifest_path}")


def torch_load_checkpoint(path: str, trust_pickle: bool):
    """torch.load on CPU. Tries weights_only=True (no code runs); when that refuses the file,
    only loads it with full unpickling if `trust_pickle` (then with dill when installed, as the
    robustness library saves with pickle_module=dill)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if not trust_pickle:
            raise SystemExit(
                f"{path}: torch.load(weights_only=True) refused it ({type(e).__name__}: "
                f"{str(e).splitlines()[0]}). The file holds pickled objects beyond tensors and "
                "plain containers. If you trust its origin, rerun with --trust-pickle (full "
                "unpickling can run code; installs of `dill` are used when present)."
            ) from None
        log(f"weights_only load refused ({type(e).__name__}); --trust-pickle: full unpickling")
        try:
            import dill  # type: ignore

            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=dill)
        except ImportError:
            return torch.load(path, map_location="cpu", weights_only=False)


def calibrate_batchnorm(model: nn.Module, x: torch.Tensor, seed: int, beta_mean: float = 0.0) -> None:
    """Random-weight helper for self-tests: perturbs BN affine parameters and sets running
    statistics to the batch statistics of `x` (a train-mode pass with momentum 1), so that
    activations stay O(1) through deep random networks instead of vanishing or exploding.
    beta_mean > 0 shifts BN outputs positive so most ReLUs pass: deep random BN-ReLU stacks are
    chaotic at init (float32 rounding grows ~2x per Inception block at beta_mean 0), which would
    make an ORT-vs-PyTorch comparison measure the random network's conditioning instead of the
    conversion."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(0.75 + 0.5 * torch.rand(bn.weight.shape, generator=g))
            bn.bias.copy_(beta_mean + 0.1 * torch.randn(bn.bias.shape, generator=g))
            bn.momentum = 1.0
        model.train()
        model(x)
        model.eval()
        for bn in bns:
            bn.momentum = 0.1
            bn.num_batches_tracked.fill_(1000)


class ConversionError(Exception):
    """A checkpoint, file or config the toolkit cannot represent; the message says why."""


def converter_parser(doc: str, src: str, src_help: str) -> argparse.ArgumentParser:
    """The converters' (export_*.py) argument parser: the positional source, --out and the
    manifest flags. Add the converter's own flags, then {@link add_entry_flags}."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    p.add_argument(src, help=src_help)
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--id", help="manifest id to write (omit: no manifest update)")
    p.add_argument("--manifest", default=DEFAULT_MANIFEST, help="weights manifest to update (default: weights/manifest.json)")
    p.add_argument("--no-manifest", action="store_true", help="do not touch the manifest")
    return p


def add_entry_flags(p: argparse.ArgumentParser, output: str, source_help: str = "manifest 'source' text") -> None:
    """The converters' last flags: manifest text, testing mark, ORT tolerance, threads."""
    p.add_argument("--source", help=source_help)
    p.add_argument("--description", help="manifest 'description' text")
    p.add_argument("--testing", action="store_true", help="mark the entry as a random-weight testing model")
    p.add_argument("--tol", type=float, default=TOLERANCE,
                   help=f"ORT-vs-PyTorch check: max abs error < tol * max(1, max|{output}|) (default 1e-4)")
    p.add_argument("--threads", type=int, default=1, help="torch/ORT threads (default 1)")


def converter_main(parser: argparse.ArgumentParser, convert: Callable[[argparse.Namespace], dict],
                   argv: list[str] | None) -> dict:
    """Parses argv, sets the torch threads and runs convert; a ConversionError exits with its message."""
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        return convert(args)
    except ConversionError as e:
        raise SystemExit(f"error: {e}") from None
