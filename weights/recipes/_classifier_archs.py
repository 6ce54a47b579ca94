"""Architectures of the project's own CIFAR-10 classifiers (issue 6).

* `resnet`: the robust-guide family (one architecture, trained at several L2 PGD radii): a
  narrow pre-2016-style ResNet, stem conv + 3 BasicBlocks (widths w, 2w, 4w; strides 1, 2, 2),
  global average pool, linear. Ops in ONNX: Conv, BatchNormalization (folded by the exporter),
  Relu, Add, GlobalAveragePool, Flatten, Gemm; all differentiable by lib/autodiff.
* `vgg`: the independent evaluator, a different architecture: three conv groups (conv, max-pool,
  BN, ReLU, conv, BN, ReLU) of widths w, 2w, 4w, global max pool, linear. Its penultimate
  activation (the 4w-d pooled vector, the input of the final Gemm) is the feature space of the
  evaluator Frechet distance (lib/metrics/feature_model.ts picks it by default).

* `wresnet`: the wider robust guide (issue 17): the same BasicBlock ResNet with per-stage widths
  (c1, c2, c3) (default 32, 64, 192: 0.53M params), most parameters at 8x8 where they are cheap.
* `airbench`: the fast evaluator (issue 17), the CIFAR-10 speed-run net of Jordan's airbench94
  (2024): a frozen 2x2 patch-whitening conv (24 channels, bias trained briefly), then three groups
  (conv, max-pool, BN, GELU, conv, BN, GELU) of 64, 256, 256 channels with BN scales frozen at 1
  and identity-initialised convs, max pool, linear without bias scaled by 1/9. GELU is the tanh
  form (ONNX: Mul/Pow/Tanh/Add, all in lib/autodiff; the exact form needs Erf). A different
  architecture from every guide (no residual connections, patch whitening, max pooling).
  `FlipTTA` wraps it for export: features of x and of its mirror image averaged, then the linear
  layer (= averaged logits); the averaged 256-d vector is the input of the final Gemm, so it is the
  evaluator Frechet-distance feature space.

All take images in [0, 1], NCHW, and normalise inside with the CIFAR-10 mean/std, so their ONNX
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


def wresnet(widths: tuple[int, int, int] = (32, 64, 192), classes: int = 10) -> nn.Module:
    c1, c2, c3 = widths
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(3, c1, 3, 1, 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
        BasicBlock(c1, c1, 1), BasicBlock(c1, c2, 2), BasicBlock(c2, c3, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c3, classes),
    )


class FrozenScaleBN(nn.BatchNorm2d):
    """airbench's BatchNorm: scale frozen at 1 (only the shift learns), eps 1e-12, momentum 0.4."""

    def __init__(self, c: int) -> None:
        super().__init__(c, eps=1e-12, momentum=0.4)
        self.weight.requires_grad = False


def _dirac_conv(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
    nn.init.dirac_(conv.weight.data[:cin])  # implicit residual: the first cin filters start as identity
    return conv


class AirGroup(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.norm1 = _dirac_conv(cin, cout), FrozenScaleBN(cout)
        self.conv2, self.norm2 = _dirac_conv(cout, cout), FrozenScaleBN(cout)
        self.pool, self.act = nn.MaxPool2d(2), nn.GELU(approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    def __init__(self, width: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.norm = Normalize()
        self.whiten = nn.Conv2d(3, 24, 2, 1, 0, bias=True)  # set by init_whitening, weight frozen
        self.whiten.weight.requires_grad = False
        self.groups = nn.Sequential(AirGroup(24, width), AirGroup(width, 4 * width), AirGroup(4 * width, 4 * width))
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(4 * width, classes, bias=False)
        self.scale = 1 / 9

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.whiten(self.norm(x)), approximate="tanh")
        return self.pool(self.groups(h)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.scale

    @torch.no_grad()
    def init_whitening(self, x01: torch.Tensor, eps: float = 5e-4) -> None:
        """Patch whitening (airbench): the 2x2 patches' covariance eigenvectors / sqrt(eigenvalue),
        each with its negation (12 -> 24 filters), from images in [0, 1]."""
        x = self.norm(x01.float())
        c, (h, w) = x.shape[1], self.whiten.weight.shape[2:]
        patches = x.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
        cov = patches.T @ patches / len(patches)
        evals, evecs = torch.linalg.eigh(cov)
        evals, evecs = evals.flip(0), evecs.T.flip(0).reshape(c * h * w, c, h, w)
        scaled = evecs / torch.sqrt(evals + eps).view(-1, 1, 1, 1)
        self.whiten.weight.data[:] = torch.cat((scaled, -scaled))


class FlipTTA(nn.Module):
    """Export wrapper: logits = head(mean(features(x), features(mirror(x)))) * scale."""

    def __init__(self, net: AirbenchNet) -> None:
        super().__init__()
        self.net = net
        self.head = nn.Linear(net.head.in_features, net.head.out_features, bias=False)
        self.head.weight.data = net.head.weight.data * net.scale  # fold the 1/9 into the Gemm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 0.5 * (self.net.features(x) + self.net.features(x.flip(-1)))
        return self.head(f)


def airbench(width: int = 64, classes: int = 10) -> nn.Module:
    return AirbenchNet(width, classes)


ARCHS = {"resnet": resnet, "vgg": vgg, "airbench": airbench}
