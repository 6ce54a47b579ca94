"""Shared set-up of the training recipes (train_ddpm.py, train_classifier.py)."""

from __future__ import annotations

import os
import sys

import torch


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def setup_run(threads: int, bf16_flag: str, out: str, seed: int) -> tuple[str, bool, str]:
    """Sets torch threads and seed, makes the run folder; returns (device, bf16, checkpoint path).

    bf16 'auto' autocasts to bfloat16 on CUDA and on CPUs with AVX512-BF16, where it is ~1.5x
    faster than float32 for these models (measured on the project's 2-core EPYC)."""
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with open("/proc/cpuinfo") as f:
        cpu_bf16 = "avx512_bf16" in f.read()
    bf16 = bf16_flag == "on" or (bf16_flag == "auto" and (device == "cuda" or cpu_bf16))
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    return device, bf16, os.path.join(out, "ckpt.pt")
