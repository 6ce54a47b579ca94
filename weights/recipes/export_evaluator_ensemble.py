"""Exports one or more trained airbench evaluators (train_evaluator_fast.py checkpoints) as ONE ONNX
classifier with test-time augmentation inside the graph, and registers it (issue 17, item 1).

  .venv/bin/python weights/recipes/export_evaluator_ensemble.py \\
      --ckpt runs/evaluator-airbench/ckpt.pt --ckpt runs/evaluator-airbench-e32/ckpt.pt \\
      --translate --onnx weights/classifiers/ID.onnx --id ID

Graph: for each member k, features f_k = weighted mean of the member's penultimate features over the
views (flip TTA: x and its mirror, 1/2 each; --translate adds airbench94's level-2 views, the mirror
pair of x shifted by one pixel up-left and down-right with reflect padding: x and mirror 1/4 each,
the four shifted views 1/8 each); logits = one Gemm over the concatenation [f_1, ..., f_K] with the
members' heads side by side, divided by K. The head is linear, so this is exactly the mean of the
members' TTA logits, and the toolkit's penultimate features (the Gemm's input, used for FD) are the
concatenation of the members' TTA features.

Prints the accuracy on the 10,000 test images of every member (plain, flip TTA) and of the export
(ONNX Runtime), checks ONNX Runtime against PyTorch, writes <onnx>.export_log.json beside the ONNX,
and with --id registers the model in weights/manifest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cifar10_data import DEFAULT_DIR, load_cifar10  # noqa: E402
from _classifier_archs import AirbenchNet, airbench  # noqa: E402
from _conversion_common import (  # noqa: E402
    DEFAULT_MANIFEST,
    cifar10_classifier_entry,
    compare_ort,
    export_onnx,
    onnx_report,
    ort_session,
    update_manifest,
)


class EnsembleTTA(nn.Module):
    """logits = Gemm(concat_k(sum_v w_v features_k(view_v(x)))) / K (module doc)."""

    def __init__(self, nets: list[AirbenchNet], translate: bool) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.translate = translate
        w = torch.cat([n.head.weight.data * n.scale for n in nets], dim=1) / len(nets)
        self.head = nn.Linear(w.shape[1], w.shape[0], bias=False)
        self.head.weight.data = w

    def views(self, x: torch.Tensor) -> list[tuple[float, torch.Tensor]]:
        if not self.translate:
            return [(0.5, x), (0.5, x.flip(-1))]
        p = F.pad(x, (1, 1, 1, 1), mode="reflect")
        h, w = x.shape[-2], x.shape[-1]
        shifted = [p[:, :, 0:h, 0:w], p[:, :, 2 : h + 2, 2 : w + 2]]
        out = [(0.25, x), (0.25, x.flip(-1))]
        for s in shifted:
            out += [(0.125, s), (0.125, s.flip(-1))]
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        views = self.views(x)
        return torch.cat([sum(wt * net.features(v) for wt, v in views) for net in self.nets], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def accuracy(fn, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    hits = 0
    for i in range(0, len(x), batch):
        hits += int((fn(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return hits / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", action="append", required=True, help="train_evaluator_fast.py ckpt.pt (repeat)")
    ap.add_argument("--width", type=int, default=64,
                    help="member width for checkpoints that do not record it (train_evaluator_fast.py records it)")
    ap.add_argument("--translate", action="store_true", help="add the one-pixel translation views")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=10000, help="test images to measure (default all)")
    ap.add_argument("--data", default=DEFAULT_DIR)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--id", help="manifest id to register the ONNX under")
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST)
    ap.add_argument("--card", help="model card path relative to weights/ (default cards/<id>.md)")
    args = ap.parse_args()
    if args.id and args.limit != 10000:
        raise SystemExit(f"--id needs the accuracy on all 10,000 test images: drop --limit {args.limit}")
    torch.set_num_threads(args.threads)
    for c in args.ckpt:
        if not os.path.isfile(c):
            raise SystemExit(f"--ckpt {c}: no such file; train it with weights/recipes/train_defaults.sh evaluator")

    x_test, y_test = load_cifar10("test", args.data)
    x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    x = torch.from_numpy(x_test).float().div(255)
    y = torch.from_numpy(y_test).long()

    nets, members = [], []
    for c in args.ckpt:
        ck = torch.load(c, map_location="cpu", weights_only=False)
        st = ck.get("state", {})
        width = int(ck.get("args", {}).get("width", args.width))  # members may differ in width
        net = airbench(width)
        net.load_state_dict(ck["model"])
        net.eval().float()
        plain = accuracy(net, x, y)
        flip = accuracy(lambda b, n=net: n(b) + n(b.flip(-1)), x, y)
        members.append({"ckpt": c, "width": width, "epochs_done": st.get("epoch"), "train_minutes": st.get("elapsed", 0) / 60,
                        "train_cpu_minutes": st.get("cpu_seconds", 0) / 60, "test_acc": plain,
                        "test_acc_flip_tta": flip})
        print(f"member {c}: width {width}, epoch {st.get('epoch')}, test acc ({len(x)}) {plain:.4f}, flip TTA {flip:.4f}",
              file=sys.stderr, flush=True)
        nets.append(net)

    model = EnsembleTTA(nets, args.translate).eval()
    export_onnx(model, (torch.zeros(1, 3, 32, 32),), args.onnx, ["x"], ["logits"],
                {"x": {0: "N"}, "logits": {0: "N"}})
    feeds = {"x": x_test[:8].astype(np.float32) / 255}
    scales: dict[str, float] = {}
    sess = ort_session(args.onnx)
    errs = compare_ort(sess, lambda x: {"logits": model(x)}, feeds, scales)
    if errs["logits"] > 1e-4 * max(1.0, scales["logits"]):
        os.remove(args.onnx)
        raise SystemExit(f"ONNX export differs from PyTorch: {errs}; removed {args.onnx}")
    hits = 0
    for i in range(0, len(x_test), 500):
        out = sess.run(None, {"x": x_test[i : i + 500].astype(np.float32) / 255})[0]
        hits += int((out.argmax(1) == y_test[i : i + 500]).sum())
    acc = hits / len(x_test)
    rep = onnx_report(args.onnx)
    views = "flip + one-pixel translation" if args.translate else "flip"
    print(f"ensemble of {len(nets)}, {views} TTA: test acc ({len(x_test)}, ONNX Runtime) {acc:.4f}; "
          f"{rep['file_bytes']:,} bytes, ops {rep['ops']}, ORT vs PyTorch max abs err {errs}",
          file=sys.stderr, flush=True)
    info = {
        "recipe": "weights/recipes/export_evaluator_ensemble.py",
        "args": vars(args),
        "members": members,
        "tta": views,
        "test_images": len(x_test),
        "test_acc_onnx": acc,
        "onnx": {"path": args.onnx, "sha256": rep["sha256"], "bytes": rep["file_bytes"], "ops": rep["ops"],
                 "ort_max_abs_err": errs},
        "torch": torch.__version__,
    }
    log_path = os.path.splitext(args.onnx)[0] + ".export_log.json"
    with open(log_path, "w") as f:
        json.dump(info, f, indent=1)
    print(f"wrote {log_path}", file=sys.stderr)
    if args.id:
        minutes = sum(m["train_minutes"] for m in members)
        update_manifest(args.manifest, args.id, cifar10_classifier_entry(
            args.onnx, args.manifest, rep["sha256"],
            f"weights/recipes/export_evaluator_ensemble.py {' '.join(sys.argv[1:])}",
            f"project-trained CIFAR-10 evaluator: {len(nets)} airbench94-style nets "
            f"(train_evaluator_fast.py, {minutes:.0f} min of CPU training in all), {views} "
            f"TTA inside the graph; clean acc {acc * 100:.1f}% on the 10,000 test images",
            args.card or f"cards/{args.id}.md",
        ))
        print(f"manifest: registered '{args.id}'", file=sys.stderr)


if __name__ == "__main__":
    main()
