"""Architectures of the classifier zoo (issue 13, item 6): today's image-classifier families,
written here from their papers at tiny widths (random weights; these are not trained models).

Each builder returns an `nn.Module` taking images [N, 3, H, W] in the convention its zoo entry
declares (normalisation inside the model, or mean/std expected outside) and returning logits
[N, K]. They are written the way timm/torchvision write them, so that the exporters emit the
graphs a researcher's checkpoint would: run-time shapes (`x.shape` in reshapes), class tokens
(`expand` + `cat`), channels-last LayerNorm via `permute`, `torch.roll`, strided slicing,
`einsum`, squeeze-excite, stochastic depth and dropout in eval mode.

| family | paper | what the graph holds |
| --- | --- | --- |
| `resnet` | He et al. 2016 | Conv, BatchNorm, ReLU, residual Add, global average pool, Linear |
| `preact_resnet` | He et al. 2016 (identity mappings) | BN-ReLU-Conv order; optional GroupNorm (BiT) |
| `wide_resnet` | Zagoruyko & Komodakis 2016 | widened pre-activation blocks with SiLU, dropout (eval) |
| `vit` | Dosovitskiy et al. 2021 | patch conv, class token, position embedding, LayerNorm, attention with run-time reshapes, exact GELU (Erf) |
| `convnext` | Liu et al. 2022 | patchify stem, 7x7 depthwise conv, channels-last LayerNorm, tanh GELU, layer scale |
| `mobilenetv3` | Howard et al. 2019 | HardSwish, HardSigmoid, depthwise conv, squeeze-excite |
| `mobilenetv2` | Sandler et al. 2018 | ReLU6 (Clip with min/max inputs), inverted residuals |
| `efficientnet` | Tan & Le 2019 | MBConv, SiLU, squeeze-excite with sigmoid, stochastic depth (eval) |
| `densenet` | Huang et al. 2017 | BN-ReLU-Conv bottlenecks, Concat, transition AvgPool |
| `vgg` | Simonyan & Zisserman 2015 | plain convs; PReLU/ELU/Mish/Softplus/SELU/CELU, reflect/replicate Pad, MaxPool, GlobalMaxPool or ReduceMax |
| `swin` | Liu et al. 2021 | window attention (einsum), shifted windows (roll), relative position bias, patch merging (strided Slice) |
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """(x - mean) / std inside the model (the exported graph starts with Sub, Div)."""

    def __init__(self, mean=CIFAR_MEAN, std=CIFAR_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _maybe_norm(normalize: bool, mean=CIFAR_MEAN, std=CIFAR_STD) -> nn.Module:
    return Normalize(mean, std) if normalize else nn.Identity()


# --- ResNet -------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, act=nn.ReLU) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.act = act()
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.b1(self.c1(x)))
        return self.act(self.b2(self.c2(h)) + self.shortcut(x))


class ResNet(nn.Module):
    """A narrow ResNet; `softmax=True` ends in Softmax (a classifier exported with probabilities);
    `stem_stride` > 1 for larger images (the ImageNet-style 64x64 entry)."""

    def __init__(self, width=8, classes=10, normalize=True, softmax=False, stem_stride=1,
                 mean=CIFAR_MEAN, std=CIFAR_STD) -> None:
        super().__init__()
        w = width
        self.norm = _maybe_norm(normalize, mean, std)
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1) if stem_stride > 1 else nn.Identity()
        self.blocks = nn.Sequential(BasicBlock(w, w, 1), BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 4 * w, 2))
        self.fc = nn.Linear(4 * w, classes)
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.pool(self.stem(self.norm(x))))
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return torch.softmax(logits, dim=1) if self.softmax else logits

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the final Softmax (what the energy head must read as f(x))."""
        x = self.blocks(self.pool(self.stem(self.norm(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- PreAct ResNet / WideResNet -----------------------------------------------------------------


def _norm2d(kind: str, c: int) -> nn.Module:
    return nn.GroupNorm(min(4, c), c) if kind == "group" else nn.BatchNorm2d(c)


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, act=nn.ReLU, norm="batch", drop=0.0) -> None:
        super().__init__()
        self.n1 = _norm2d(norm, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n2 = _norm2d(norm, cout)
        self.drop = nn.Dropout(drop)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.act = act()
        self.proj = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act(self.n1(x))
        shortcut = self.proj(o) if self.proj is not None else x
        o = self.c1(o)
        o = self.c2(self.drop(self.act(self.n2(o))))
        return o + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet (BN-ReLU-Conv); `norm="group"` gives BiT-style GroupNorm; with
    `act=nn.SiLU`, `widen` > 1 and dropout it is the WideResNet-SiLU of robust-training papers."""

    def __init__(self, width=8, widen=1, classes=10, normalize=False, act=nn.ReLU, norm="batch",
                 drop=0.0) -> None:
        super().__init__()
        w = width * widen
        self.norm = _maybe_norm(normalize)
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(
            PreActBlock(width, w, 1, act, norm, drop),
            PreActBlock(w, 2 * w, 2, act, norm, drop),
            PreActBlock(2 * w, 4 * w, 2, act, norm, drop),
        )
        self.final = _norm2d(norm, 4 * w)
        self.act = act()
        self.fc = nn.Linear(4 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.final(self.blocks(self.stem(self.norm(x)))))
        x = x.mean(dim=(2, 3))  # ReduceMean, as many WideResNet codebases write the pool
        return self.fc(x)


# --- ViT ----------------------------------------------------------------------------------------


class Attention(nn.Module):
    """timm's Attention: qkv Linear, reshapes from the run-time shape, softmax(q k^T / sqrt d) v.
    `sdpa=True` uses F.scaled_dot_product_attention instead of the explicit product."""

    def __init__(self, dim: int, heads: int, sdpa=False) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.sdpa = sdpa

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.sdpa:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, approximate="none") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, sdpa=False) -> None:
        super().__init__()
        self.n1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, sdpa)
        self.n2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.n1(x))
        return x + self.mlp(self.n2(x))


class ViT(nn.Module):
    """Vision Transformer: 4x4 patches, class token, learned position embedding, pre-norm blocks,
    exact GELU, classification from the class token."""

    def __init__(self, dim=24, depth=2, heads=3, patch=4, image=32, classes=10, normalize=True,
                 sdpa=False) -> None:
        super().__init__()
        self.norm = _maybe_norm(normalize)
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (image // patch) ** 2
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, n + 1, dim))
        self.blocks = nn.Sequential(*[ViTBlock(dim, heads, sdpa) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(self.norm(x)).flatten(2).transpose(1, 2)  # [B, N, D]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.ln(self.blocks(x))
        return self.head(x[:, 0])


# --- ConvNeXt -----------------------------------------------------------------------------------


class LayerNorm2d(nn.Module):
    """ConvNeXt's channels-first LayerNorm: permute to NHWC, layer_norm over C, permute back."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(c, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(0.5 + 0.1 * torch.randn(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw(x).permute(0, 2, 3, 1)
        h = self.gamma * self.fc2(self.act(self.fc1(self.ln(h))))
        return x + h.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """ConvNeXt: 2x2 patchify stem, stages of blocks with LayerNorm + 2x2 stride-2 downsampling,
    global mean, LayerNorm, Linear."""

    def __init__(self, dims=(12, 24), classes=10, normalize=False) -> None:
        super().__init__()
        self.norm = _maybe_norm(normalize)
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 2, 2), LayerNorm2d(dims[0]))
        layers: list[nn.Module] = []
        for i, d in enumerate(dims):
            if i > 0:
                layers += [LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], d, 2, 2)]
            layers.append(ConvNeXtBlock(d))
        self.stages = nn.Sequential(*layers)
        self.ln = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(self.norm(x)))
        return self.head(self.ln(x.mean(dim=(-2, -1))))


# --- MobileNetV3 --------------------------------------------------------------------------------


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, squeeze: int, act=nn.ReLU, gate=nn.Hardsigmoid) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, exp: int, cout: int, k: int, stride: int, se: bool, act) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if exp != cin:
            layers += [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), act()]
        layers += [nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), act()]
        if se:
            layers.append(SqueezeExcite(exp, max(4, exp // 4)))
        layers += [nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    """MobileNetV3-small-like: HardSwish stem, inverted residuals (ReLU and HardSwish, 3x3 and
    5x5 depthwise, squeeze-excite with HardSigmoid), 1x1 conv, pool, HardSwish MLP head."""

    def __init__(self, classes=10, normalize=True) -> None:
        super().__init__()
        self.norm = _maybe_norm(normalize)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish())
        self.blocks = nn.Sequential(
            InvertedResidual(8, 8, 8, 3, 1, True, nn.ReLU),
            InvertedResidual(8, 24, 12, 3, 2, False, nn.ReLU),
            InvertedResidual(12, 36, 12, 5, 1, True, nn.Hardswish),
            InvertedResidual(12, 36, 16, 5, 2, True, nn.Hardswish),
        )
        self.last = nn.Sequential(nn.Conv2d(16, 48, 1, bias=False), nn.BatchNorm2d(48), nn.Hardswish())
        self.head = nn.Sequential(nn.Linear(48, 64), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last(self.blocks(self.stem(self.norm(x))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MobileNetV2(nn.Module):
    """MobileNetV2-like: ReLU6 (exported as Clip with min/max inputs from opset 11), inverted
    residuals with linear bottlenecks, no squeeze-excite."""

    def __init__(self, classes=10, normalize=True) -> None:
        super().__init__()
        self.norm = _maybe_norm(normalize)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(8, 8, 8, 3, 1, False, nn.ReLU6),
            InvertedResidual(8, 32, 12, 3, 2, False, nn.ReLU6),
            InvertedResidual(12, 48, 12, 3, 1, False, nn.ReLU6),
            InvertedResidual(12, 48, 16, 3, 2, False, nn.ReLU6),
        )
        self.last = nn.Sequential(nn.Conv2d(16, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU6())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(48, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last(self.blocks(self.stem(self.norm(x))))
        return self.head(x.mean([2, 3]))


# --- EfficientNet -------------------------------------------------------------------------------


class MBConv(nn.Module):
    """EfficientNet MBConv: expand, depthwise, SE (SiLU, sigmoid gate), project, stochastic depth
    (identity in eval)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, drop_path: float) -> None:
        super().__init__()
        exp = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), nn.SiLU()]
        layers += [
            nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), nn.SiLU(),
            SqueezeExcite(exp, max(2, cin // 4), act=nn.SiLU, gate=nn.Sigmoid),
            nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.residual:
            if self.training and self.drop_path > 0:
                keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) > self.drop_path
                y = y * keep / (1 - self.drop_path)
            return x + y
        return y


class EfficientNet(nn.Module):
    def __init__(self, classes=10, normalize=False) -> None:
        super().__init__()
        self.norm = _maybe_norm(normalize)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.SiLU())
        self.blocks = nn.Sequential(
            MBConv(8, 8, 3, 1, 1, 0.1),
            MBConv(8, 12, 3, 2, 4, 0.1),
            MBConv(12, 12, 5, 1, 4, 0.1),
            MBConv(12, 16, 3, 2, 4, 0.1),
        )
        self.last = nn.Sequential(nn.Conv2d(16, 40, 1, bias=False), nn.BatchNorm2d(40), nn.SiLU())
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(40, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last(self.blocks(self.stem(self.norm(x))))
        return self.fc(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


# --- DenseNet -----------------------------------------------------------------------------------


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 2 * growth, 1, bias=False),
            nn.BatchNorm2d(2 * growth), nn.ReLU(), nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseNet(nn.Module):
    """DenseNet-BC-like: dense blocks (Concat of every layer's features), transitions with 1x1
    conv and 2x2 average pooling."""

    def __init__(self, growth=6, classes=10, normalize=True) -> None:
        super().__init__()
        self.norm = _maybe_norm(normalize)
        c = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 1, 1, bias=False)]
        for block in range(2):
            for _ in range(3):
                layers.append(DenseLayer(c, growth))
                c += growth
            if block == 0:
                layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(self.norm(x)), (1, 1))
        return self.fc(x.view(x.size(0), -1))


# --- Swin ---------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)


def window_reverse(windows: torch.Tensor, ws: int, H: int, W: int) -> torch.Tensor:
    C = windows.shape[-1]
    x = windows.view(-1, H // ws, W // ws, ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


class WindowAttention(nn.Module):
    """Swin window attention with a relative position bias table; products written with einsum."""

    def __init__(self, dim: int, ws: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.bias_table = nn.Parameter(0.02 * torch.randn((2 * ws - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
        self.register_buffer("rel_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1], persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        Bw, N, C = x.shape
        qkv = self.qkv(x).reshape(Bw, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.einsum("bhid,bhjd->bhij", q * self.scale, k)
        bias = self.bias_table[self.rel_index.view(-1)].view(N, N, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(Bw // nw, nw, self.heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, N, N)
        out = torch.einsum("bhij,bhjd->bhid", attn.softmax(dim=-1), v)
        return self.proj(out.transpose(1, 2).reshape(Bw, N, C))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, res: int, ws: int, shift: int, heads: int) -> None:
        super().__init__()
        self.res, self.ws, self.shift = res, ws, shift
        self.n1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, heads)
        self.n2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)
        if shift > 0:
            img = torch.zeros(1, res, res, 1)
            cnt = 0
            for h in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
                for w in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
                    img[:, h, w, :] = cnt
                    cnt += 1
            mw = window_partition(img, ws).squeeze(-1)
            mask = mw.unsqueeze(1) - mw.unsqueeze(2)
            self.register_buffer("mask", mask.masked_fill(mask != 0, -100.0), persistent=False)
        else:
            self.mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        H = W = self.res
        h = self.n1(x).view(B, H, W, C)
        if self.shift > 0:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        h = window_reverse(self.attn(window_partition(h, self.ws), self.mask), self.ws, H, W)
        if self.shift > 0:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + h.reshape(B, L, C)
        return x + self.mlp(self.n2(x))


class PatchMerging(nn.Module):
    """Swin's 2x downsampling: strided slices x[:, 0::2, 0::2] etc., Concat, LayerNorm, Linear."""

    def __init__(self, dim: int, res: int) -> None:
        super().__init__()
        self.res = res
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        x = x.view(B, self.res, self.res, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class Swin(nn.Module):
    def __init__(self, dim=16, heads=2, ws=4, image=32, classes=10, normalize=True) -> None:
        super().__init__()
        self.norm = _maybe_norm(normalize)
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.patch_norm = nn.LayerNorm(dim)
        res = image // 4  # 8
        self.stage1 = nn.Sequential(SwinBlock(dim, res, ws, 0, heads), SwinBlock(dim, res, ws, ws // 2, heads))
        self.merge = PatchMerging(dim, res)
        self.stage2 = nn.Sequential(SwinBlock(2 * dim, res // 2, ws, 0, 2 * heads))
        self.ln = nn.LayerNorm(2 * dim)
        self.head = nn.Linear(2 * dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_norm(self.patch(self.norm(x)).flatten(2).transpose(1, 2))
        x = self.stage2(self.merge(self.stage1(x)))
        return self.head(self.ln(x).mean(dim=1))


# --- VGG ---------------------------------------------------------------------------------------


class VGG(nn.Module):
    """VGG-style plain conv net (Simonyan & Zisserman 2015) with the knobs older and re-implemented
    classifiers turn: the activation (PReLU, ELU, Mish, Softplus, LeakyReLU...), padding mode
    (reflect/replicate pads export as Pad), max pooling, and a global max pool head (GlobalMaxPool
    or ReduceMax via amax)."""

    def __init__(self, width=8, classes=10, normalize=True, act="prelu", padding_mode="reflect",
                 amax=False) -> None:
        super().__init__()
        self.norm = _maybe_norm(normalize)
        acts = {
            "prelu": lambda c: nn.PReLU(c, init=0.2),
            "elu": lambda c: nn.ELU(0.7),
            "mish": lambda c: nn.Mish(),
            "softplus": lambda c: nn.Softplus(beta=2.0),
            "leaky": lambda c: nn.LeakyReLU(0.1),
            "selu": lambda c: nn.SELU(),
            "celu": lambda c: nn.CELU(0.8),
        }
        kinds = act.split(",")
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate([width, 2 * width, 4 * width]):
            a = kinds[i % len(kinds)]
            layers += [
                nn.Conv2d(cin, cout, 3, 1, 1, padding_mode=padding_mode), nn.BatchNorm2d(cout), acts[a](cout),
                nn.Conv2d(cout, cout, 3, 1, 1, padding_mode=padding_mode), acts[a](cout),
            ]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.amax = amax
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.norm(x))
        x = x.amax(dim=(2, 3)) if self.amax else torch.flatten(F.adaptive_max_pool2d(x, 1), 1)
        return self.fc(x)


# --- registry -----------------------------------------------------------------------------------

ARCHS = {
    "resnet": ResNet,
    "preact_resnet": PreActResNet,
    "wide_resnet": lambda **kw: PreActResNet(width=6, widen=2, act=nn.SiLU, drop=0.3, **kw),
    "vit": ViT,
    "convnext": ConvNeXt,
    "mobilenetv3": MobileNetV3,
    "mobilenetv2": MobileNetV2,
    "efficientnet": EfficientNet,
    "densenet": DenseNet,
    "swin": Swin,
    "vgg": VGG,
}


def randomise_norms(m: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial eval-mode statistics and affine parameters for every norm layer, so that a
    wrong gradient rule for any of them shows (default init has weight 1, bias 0, var 1)."""
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            if isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and mod.weight is not None:
                mod.weight.copy_(1 + 0.2 * torch.randn(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))

