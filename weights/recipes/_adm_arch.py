"""The OpenAI ADM UNet (improved-diffusion, Nichol & Dhariwal 2021; guided-diffusion, Dhariwal &
Nichol 2021), written from the published architecture so that its checkpoints (plain
`torch.save(model.state_dict())` files) load here with identical keys and shapes.

Written from openai/guided-diffusion guided_diffusion/unet.py + nn.py + script_util.py (the
superset: resblock_updown, num_head_channels, use_new_attention_order) and checked against
openai/improved-diffusion improved_diffusion/unet.py (a subset with the same state-dict layout:
no up/down ResBlocks, num_heads only, the "legacy" attention order). Class-unconditional only
(no label_emb); fp16 is not used (the toolkit runs float32).

State-dict layout (what the checkpoints hold):
  time_embed.{0,2}.{weight,bias}                     Linear(mc, 4mc), SiLU, Linear(4mc, 4mc)
  input_blocks.0.0.{weight,bias}                     Conv2d(in, ch0, 3)
  input_blocks.i.0.in_layers.{0,2}.*                 ResBlock: GroupNorm32(32), SiLU, Conv 3x3
  input_blocks.i.0.emb_layers.1.*                    SiLU, Linear(4mc, 2 out) (scale-shift) or (out)
  input_blocks.i.0.out_layers.{0,3}.*                GroupNorm32, SiLU, Dropout, Conv 3x3
  input_blocks.i.0.skip_connection.*                 1x1 conv when channels change
  input_blocks.i.1.{norm,qkv,proj_out}.*             AttentionBlock (qkv, proj_out: Conv1d k=1)
  input_blocks.j.0.op.*                              Downsample conv (stride 2), or a down ResBlock
  middle_block.{0,1,2}.*                             ResBlock, AttentionBlock, ResBlock
  output_blocks.k.{0,1,2}.*                          ResBlock, [AttentionBlock], [Upsample .conv | up ResBlock]
  out.{0,2}.*                                        GroupNorm32, SiLU, Conv(ch0, out, 3)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding [cos(t f), sin(t f)], f_i = exp(-ln(max_period) i / half)
    (guided_diffusion/nn.py timestep_embedding; t may be fractional)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def normalization(ch: int) -> nn.Module:
    return GroupNorm32(32, ch)


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels, self.out_channels, self.use_conv = channels, out_channels or channels, use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, self.out_channels, 3, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels, self.out_channels = channels, out_channels or channels
        if use_conv:
            self.op = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1)
        else:
            assert self.channels == self.out_channels
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x):
        return self.op(x)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, timestep embedding added (or as FiLM scale/shift after the second
    norm: use_scale_shift_norm), GroupNorm-SiLU-dropout-conv, skip; optional up/down inside."""

    def __init__(self, channels, emb_channels, dropout, out_channels=None, use_conv=False,
                 use_scale_shift_norm=False, up=False, down=False):
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(),
                                       nn.Conv2d(channels, self.out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels))
        self.out_layers = nn.Sequential(normalization(self.out_channels), nn.SiLU(), nn.Dropout(p=dropout),
                                        nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1))
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x, emb):
        if self.updown:
            in_rest, in_conv = self.in_layers[:-1], self.in_layers[-1]
            h = in_conv(self.h_upd(in_rest(x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over spatial positions; heads = num_heads, or channels / num_head_channels.
    Legacy order (improved-diffusion, guided-diffusion default): split heads, then q, k, v."""

    def __init__(self, channels, num_heads=1, num_head_channels=-1, use_new_attention_order=False):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            assert channels % num_head_channels == 0, f"{channels} channels not divisible by {num_head_channels}"
            self.num_heads = channels // num_head_channels
        self.new_order = use_new_attention_order
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        bs, width, length = qkv.shape
        ch = width // (3 * self.num_heads)
        scale = 1 / math.sqrt(math.sqrt(ch))
        if self.new_order:
            q, k, v = qkv.chunk(3, dim=1)
            q = (q * scale).reshape(bs * self.num_heads, ch, length)
            k = (k * scale).reshape(bs * self.num_heads, ch, length)
            v = v.reshape(bs * self.num_heads, ch, length)
        else:
            q, k, v = qkv.reshape(bs * self.num_heads, ch * 3, length).split(ch, dim=1)
            q, k = q * scale, k * scale
        w = torch.softmax(torch.einsum("bct,bcs->bts", q, k).float(), dim=-1).type(q.dtype)
        a = torch.einsum("bts,bcs->bct", w, v).reshape(bs, -1, length)
        return (x + self.proj_out(a)).reshape(b, c, *spatial)


@dataclass
class ADMConfig:
    """The create_model arguments of guided-diffusion's script_util (class-unconditional)."""
    image_size: int
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: tuple = ()
    learn_sigma: bool = False
    attention_resolutions: str = "16,8"
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    dropout: float = 0.0
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    in_channels: int = 3

    def mult(self) -> tuple:
        """channel_mult as script_util picks it from the image size when not given."""
        if self.channel_mult:
            return tuple(self.channel_mult)
        table = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4),
                 64: (1, 2, 3, 4), 32: (1, 2, 2, 2)}  # 32: improved-diffusion's CIFAR-10 table
        if self.image_size not in table:
            raise ValueError(f"no default channel_mult for image size {self.image_size}; give channel_mult")
        return table[self.image_size]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"] = list(self.mult())
        return d


@dataclass
class DiffusionConfig:
    """The diffusion arguments that the toolkit's manifest needs (script_util diffusion flags)."""
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    rescale_timesteps: bool = False
    predict_xstart: bool = False


class UNetModel(nn.Module):
    """guided_diffusion.unet.UNetModel (class-unconditional), same module tree and keys."""

    def __init__(self, cfg: ADMConfig):
        super().__init__()
        self.cfg = cfg
        mc = cfg.num_channels
        mult = cfg.mult()
        out_channels = cfg.in_channels * (2 if cfg.learn_sigma else 1)
        attention_ds = {cfg.image_size // int(r) for r in cfg.attention_resolutions.split(",") if r}
        heads_up = cfg.num_heads if cfg.num_heads_upsample == -1 else cfg.num_heads_upsample
        self.model_channels = mc
        ted = mc * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        ch = input_ch = int(mult[0] * mc)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        chans = [ch]
        ds = 1
        ss = cfg.use_scale_shift_norm

        def attn(c, heads):
            return AttentionBlock(c, num_heads=heads, num_head_channels=cfg.num_head_channels,
                                  use_new_attention_order=cfg.use_new_attention_order)

        for level, m in enumerate(mult):
            for _ in range(cfg.num_res_blocks):
                layers = [ResBlock(ch, ted, cfg.dropout, out_channels=int(m * mc), use_scale_shift_norm=ss)]
                ch = int(m * mc)
                if ds in attention_ds:
                    layers.append(attn(ch, cfg.num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(
                    ResBlock(ch, ted, cfg.dropout, out_channels=ch, use_scale_shift_norm=ss, down=True)
                    if cfg.resblock_updown else Downsample(ch, True, out_channels=ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, ted, cfg.dropout, use_scale_shift_norm=ss), attn(ch, cfg.num_heads),
            ResBlock(ch, ted, cfg.dropout, use_scale_shift_norm=ss))
        self.output_blocks = nn.ModuleList([])
        for level, m in list(enumerate(mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                ich = chans.pop()
                layers = [ResBlock(ch + ich, ted, cfg.dropout, out_channels=int(mc * m), use_scale_shift_norm=ss)]
                ch = int(mc * m)
                if ds in attention_ds:
                    layers.append(attn(ch, heads_up))
                if level and i == cfg.num_res_blocks:
                    layers.append(
                        ResBlock(ch, ted, cfg.dropout, out_channels=ch, use_scale_shift_norm=ss, up=True)
                        if cfg.resblock_updown else Upsample(ch, True, out_channels=ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(input_ch, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        hs = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


@dataclass
class Preset:
    """A published configuration: model flags, diffusion flags, where it comes from."""
    model: ADMConfig
    diffusion: DiffusionConfig
    source: str
    notes: str = ""
    extra: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    # improved-diffusion README, "Unconditional CIFAR-10" flags (128 ch, 3 res blocks, attention at
    # 16 and 8 = downsample 2 and 4, learn_sigma, dropout 0.3) with the linear schedule used by
    # training-free guidance work; improved-diffusion defaults rescale_timesteps=True and scales
    # linear betas by 1000/T. The published cifar10_uncond_50M_500K.pt itself used cosine: pass
    # --noise-schedule cosine for it.
    "cifar10": Preset(
        ADMConfig(image_size=32, num_channels=128, num_res_blocks=3, learn_sigma=True, dropout=0.3,
                  attention_resolutions="16,8", num_heads=4),
        DiffusionConfig(diffusion_steps=4000, noise_schedule="linear", rescale_timesteps=True),
        "openai/improved-diffusion: cifar10 unconditional configuration (image_size 32, num_channels 128, "
        "num_res_blocks 3, learn_sigma, dropout 0.3, diffusion_steps 4000)"),
    # improved-diffusion README: imagenet64_uncond_100M_1500K.pt
    "imagenet64": Preset(
        ADMConfig(image_size=64, num_channels=128, num_res_blocks=3, learn_sigma=True,
                  attention_resolutions="16,8", num_heads=4),
        DiffusionConfig(diffusion_steps=4000, noise_schedule="cosine", rescale_timesteps=True),
        "openai/improved-diffusion: imagenet64_uncond_100M_1500K.pt configuration (image_size 64, "
        "num_channels 128, num_res_blocks 3, learn_sigma, cosine, diffusion_steps 4000)"),
    # guided-diffusion README: 256x256_diffusion_uncond.pt
    "imagenet256": Preset(
        ADMConfig(image_size=256, num_channels=256, num_res_blocks=2, learn_sigma=True,
                  attention_resolutions="32,16,8", num_heads=4, num_head_channels=64,
                  resblock_updown=True, use_scale_shift_norm=True),
        DiffusionConfig(diffusion_steps=1000, noise_schedule="linear", rescale_timesteps=False),
        "openai/guided-diffusion: 256x256_diffusion_uncond.pt configuration (attention 32,16,8, "
        "num_channels 256, num_head_channels 64, num_res_blocks 2, resblock_updown, "
        "use_scale_shift_norm, learn_sigma, linear, diffusion_steps 1000)"),
    # a small ADM for the committed test fixture: every block kind (scale-shift, up/down
    # ResBlocks, head-channel attention, learn_sigma) at 64x64, a few hundred k parameters
    "tiny64": Preset(
        ADMConfig(image_size=64, num_channels=32, num_res_blocks=1, channel_mult=(1, 1, 1),
                  learn_sigma=True, attention_resolutions="16", num_head_channels=32,
                  resblock_updown=True),
        DiffusionConfig(diffusion_steps=1000, noise_schedule="cosine", rescale_timesteps=True),
        "random tiny ADM (guided-diffusion layout) for tests"),
}


def build(cfg: ADMConfig) -> UNetModel:
    return UNetModel(cfg)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
