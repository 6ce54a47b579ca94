"""Architectures of the project's own CIFAR-10 classifiers (issue 6).

* `resnet`: the robust-guide family (one architecture, trained at several L2 PGD radii): a
  narrow pre-2016-style ResNet, stem conv + 3 BasicBlocks (widths w, 2w, 4w; strides 1, 2, 2),
  global average pool, linear. Ops in ONNX: Conv, BatchNormalization (folded by the exporter),
  Relu, Add, GlobalAveragePool, Flatten, Gemm; all differentiable by lib/autodiff.
* `vgg`: the independent evaluator, a different architecture: three conv groups (conv, max-pool,
  BN, ReLU, conv, BN, ReLU) of widths w, 2w, 4w, global max pool, linear. Its penultimate
  activation (the 4w-d pooled vector, the input of the final Gemm) is the feature space of the
  evaluator Frechet distance (lib/metrics/feature_model.ts picks it by default).

Both take images in [0, 1], NCHW, and normalise inside with the CIFAR-10 mean/std, so their ONNX
convention is simply range "01".
"""

from __future__ import annotations

import torch
from torch import nn

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2471, 0.2435, 0.2616)


class Normalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(h)) + self.shortcut(x))


def resnet(width: int = 16, classes: int = 10) -> nn.Module:
    w = width
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
        BasicBlock(w, w, 1), BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 4 * w, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, classes),
    )


def vgg(width: int = 64, classes: int = 10) -> nn.Module:
    def group(cin: int, cout: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        ]

    w = width
    return nn.Sequential(
        Normalize(), *group(3, w), *group(w, 2 * w), *group(2 * w, 4 * w),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * w, classes),
    )


ARCHS = {"resnet": resnet, "vgg": vgg}
