"""CIFAR-10 for the training recipes, read from ../shared/data/cifar10 (no download).

Two sources, same pixels (both are the JPEG-decoded copy described in shared/README.md):
  * cifar-10-binary.tar.gz, the official binary layout (train = data_batch_1..5, test = test_batch);
  * cifar10-train-jpeg.npz (train split only; 46 MB, the file to carry to a GPU machine), decoded
    with Pillow.
Arrays are uint8 [N, 3, 32, 32] (RGB, NCHW) and int64 labels [N].
"""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_DIR = os.path.join(ROOT, "..", "shared", "data", "cifar10")
RECORD = 1 + 3 * 32 * 32


def _parse(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    a = np.frombuffer(raw, dtype=np.uint8)
    if a.size % RECORD:
        raise SystemExit(f"CIFAR-10 batch of {a.size} bytes is not a multiple of {RECORD}")
    a = a.reshape(-1, RECORD)
    return a[:, 1:].reshape(-1, 3, 32, 32).copy(), a[:, 0].astype(np.int64)


def load_cifar10(split: str, data_dir: str = DEFAULT_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,3,32,32], labels int64 [N]) of split 'train' (50,000) or 'test' (10,000)."""
    if split not in ("train", "test"):
        raise SystemExit(f"split must be 'train' or 'test', got {split!r}")
    tar_path = os.path.join(data_dir, "cifar-10-binary.tar.gz")
    npz_path = os.path.join(data_dir, "cifar10-train-jpeg.npz")
    if os.path.exists(tar_path):
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
        parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        with tarfile.open(tar_path, "r:gz") as tar:
            for member in tar:
                base = os.path.basename(member.name)
                if base in names:
                    f = tar.extractfile(member)
                    assert f is not None
                    parts[base] = _parse(f.read())
        missing = [n for n in names if n not in parts]
        if missing:
            raise SystemExit(f"{tar_path} lacks {missing}")
        xs, ys = zip(*(parts[n] for n in names))
        return np.concatenate(xs), np.concatenate(ys)
    if split == "train" and os.path.exists(npz_path):
        from PIL import Image

        z = np.load(npz_path)
        blob, offsets, labels = z["jpeg"], z["offsets"], z["labels"]
        out = np.empty((len(labels), 3, 32, 32), dtype=np.uint8)
        for i in range(len(labels)):
            img = Image.open(io.BytesIO(blob[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB")
            out[i] = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
        return out, labels.astype(np.int64)
    raise SystemExit(
        f"no CIFAR-10 {split} split under {data_dir}: expected cifar-10-binary.tar.gz"
        + (" or cifar10-train-jpeg.npz" if split == "train" else "")
        + "; pass --data DIR"
    )


def augment_crop_flip(x, rng, pad: int = 4):
    """Random crop with reflect padding `pad` and random horizontal flip, per image (torch float)."""
    import torch

    n = x.shape[0]
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = torch.from_numpy(rng.integers(0, 2 * pad + 1, n))
    dy = torch.from_numpy(rng.integers(0, 2 * pad + 1, n))
    idx = torch.arange(32)
    rows = (dy[:, None] + idx[None, :])  # [n, 32]
    cols = (dx[:, None] + idx[None, :])
    out = xp[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]
    flip = torch.from_numpy(rng.random(n) < 0.5)
    out[flip] = out[flip].flip(-1)
    return out
