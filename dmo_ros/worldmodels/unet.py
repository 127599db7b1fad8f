"""The denoising UNet of the DIAMOND-style world model.

Residual blocks, each normalised by an adaptive GroupNorm whose scale and shift come
from one conditioning vector: a Fourier embedding of the noise level plus a linear
embedding of the L continuous actions (plus, with context-noise augmentation, a second
Fourier embedding of the noise level added to the past frames), through an MLP. Every
block therefore sees the actions. An optional patchify stem (space-to-depth, and
depth-to-space at the head) runs the whole network at 1/2 or 1/4 resolution for cheap CPU
models. Optional multi-head self-attention (adaptive GroupNorm, attention, zero-initialised
output projection, residual) after the two mid blocks (`mid_attention`, as DIAMOND's UNet)
and after the res-blocks of chosen levels (`attention`, one flag per level). All options
off, the network and its parameter names are the ones of the first version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GROUP_SIZE = 32  # channels per GroupNorm group (DIAMOND's choice)
# On CPU, up to this many positions attention is two matmuls and a softmax: torch's fused
# kernel is slower there (batch 32, 8x8, 12 heads of 8, bf16, one thread: 64 ms forward +
# backward against 10 ms; 4x4: 4.2 against 2.5 ms; at 16x16 they are level).
MATMUL_ATTENTION_MAX_TOKENS = 64


@dataclass
class UNetConfig:
    channels: list[int] = field(default_factory=lambda: [64, 64, 64, 64])
    depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    cond_channels: int = 256
    stem_stride: int = 1  # 2 or 4: patchify stem, feature maps that many times smaller
    mid_attention: bool = False  # self-attention after each of the two mid blocks
    attention: list[bool] = field(default_factory=list)  # per level (down and up); [] = none
    attention_head_dim: int = 8  # heads = channels // head_dim (DIAMOND: 8)

    def validate(self, where: str = "unet") -> str | None:
        """A one-line problem with this config, or None."""
        if not self.channels or len(self.channels) != len(self.depths):
            return f"{where}.channels and {where}.depths must be non-empty and of equal length"
        if min(self.channels) < 1 or min(self.depths) < 1 or self.cond_channels < 2:
            return f"{where}: channels, depths and cond_channels must be positive"
        if self.cond_channels % 2:
            return f"{where}.cond_channels must be even, got {self.cond_channels}"
        if self.stem_stride not in (1, 2, 4):
            return f"{where}.stem_stride must be 1, 2 or 4, got {self.stem_stride}"
        if self.attention and len(self.attention) != len(self.channels):
            return (
                f"{where}.attention needs one flag per level ({len(self.channels)}), "
                f"got {len(self.attention)} (or [] for none)"
            )
        if self.attention_head_dim < 1:
            return f"{where}.attention_head_dim must be positive"
        return None

    def attention_at(self, level: int) -> bool:
        return bool(self.attention) and bool(self.attention[level])

    @property
    def downsampling(self) -> int:
        """The factor by which the image side is divided at the deepest level."""
        return self.stem_stride * 2 ** (len(self.channels) - 1)


def _groups(channels: int) -> int:
    return max(1, channels // GROUP_SIZE)


class FourierFeatures(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("weight", torch.randn(1, channels // 2))

    def forward(self, x: Tensor) -> Tensor:
        f = 2 * math.pi * x[:, None] * self.weight
        return torch.cat([f.cos(), f.sin()], dim=-1)


class AdaGroupNorm(nn.Module):
    """GroupNorm whose per-channel scale and shift are predicted from the conditioning."""

    def __init__(self, channels: int, cond_channels: int):
        super().__init__()
        self.groups = _groups(channels)
        self.linear = nn.Linear(cond_channels, 2 * channels)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        x = F.group_norm(x, self.groups, eps=1e-5)
        scale, shift = self.linear(cond)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, cond_channels: int):
        super().__init__()
        self.norm1 = AdaGroupNorm(in_channels, cond_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = AdaGroupNorm(out_channels, cond_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h, cond)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions of a feature map, residual.

    Pre-normalised by an adaptive GroupNorm (so it is conditioned like the res-blocks);
    the output projection starts at zero, so a new block starts as the identity.
    """

    def __init__(self, channels: int, cond_channels: int, head_dim: int = 8):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        while channels % self.heads:
            self.heads -= 1
        self.norm = AdaGroupNorm(channels, cond_channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x, cond)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each [B, heads, HW, c/heads]
        if x.device.type == "cpu" and h * w <= MATMUL_ATTENTION_MAX_TOKENS:
            att = (q @ k.transpose(-1, -2)) * (c // self.heads) ** -0.5
            y = att.softmax(dim=-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v)
        y = y.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.out(y)


class AttnResBlock(nn.Module):
    """A ResBlock followed by self-attention (only used where attention is switched on)."""

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int, head_dim: int):
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, cond_channels)
        self.attn = SelfAttention(out_channels, cond_channels, head_dim)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        return self.attn(self.res(x, cond), cond)


def _block(cin: int, cout: int, cond: int, attention: bool, head_dim: int) -> nn.Module:
    return AttnResBlock(cin, cout, cond, head_dim) if attention else ResBlock(cin, cout, cond)


class UNet(nn.Module):
    """Maps (noisy frame ‖ past frames, noise level, past actions) to the EDM network output."""

    def __init__(
        self,
        cfg: UNetConfig,
        in_channels: int,
        out_channels: int,
        action_inputs: int,
        context_noise: bool = False,
    ):
        super().__init__()
        problem = cfg.validate()
        if problem:
            raise ValueError(problem)
        self.cfg = cfg
        ch, cond = cfg.channels, cfg.cond_channels
        hd = cfg.attention_head_dim
        self.noise_emb = FourierFeatures(cond)
        self.action_emb = nn.Linear(action_inputs, cond)
        self.cond_mlp = nn.Sequential(nn.Linear(cond, cond), nn.SiLU(), nn.Linear(cond, cond))

        # A strided stem is a patch embedding (space-to-depth + 1x1 conv); the head mirrors
        # it with depth-to-space.
        s = cfg.stem_stride
        k = 3 if s == 1 else 1
        self.stem = nn.Sequential(
            nn.PixelUnshuffle(s), nn.Conv2d(in_channels * s * s, ch[0], k, padding=k // 2)
        )
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c_prev = ch[0]
        for i, (c, n) in enumerate(zip(ch, cfg.depths)):
            if i > 0:
                self.downsample.append(nn.Conv2d(c_prev, c_prev, 3, stride=2, padding=1))
            blocks = nn.ModuleList()
            for _ in range(n):
                blocks.append(_block(c_prev, c, cond, cfg.attention_at(i), hd))
                c_prev = c
            self.down.append(blocks)
        self.mid = nn.ModuleList(
            [_block(c_prev, c_prev, cond, cfg.mid_attention, hd) for _ in range(2)]
        )
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            blocks = nn.ModuleList()
            for _ in range(cfg.depths[i]):
                # + the skip of the way down
                blocks.append(_block(c_prev + ch[i], ch[i], cond, cfg.attention_at(i), hd))
                c_prev = ch[i]
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(nn.Conv2d(c_prev, ch[i - 1], 3, padding=1))
                c_prev = ch[i - 1]
        self.norm_out = nn.GroupNorm(_groups(c_prev), c_prev)
        self.head = nn.Conv2d(c_prev, out_channels * s * s, 3, padding=1)
        self.unpatchify = nn.PixelShuffle(s)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # Patchified, the network cannot echo per-pixel detail (such as the noise it must
        # cancel at low noise levels) through its narrow first level: a full-resolution
        # 1x1 map of the input, its weights set by the noise level and actions, carries it.
        self.pixel_skip = None
        if s > 1:
            self.pixel_skip = nn.Linear(cond, out_channels * in_channels)
            nn.init.zeros_(self.pixel_skip.weight)
            nn.init.zeros_(self.pixel_skip.bias)
        # Context-noise augmentation: the level of the noise on the past frames, as a second
        # Fourier embedding (created last, so that the other weights draw the same numbers).
        self.context_noise_emb = FourierFeatures(cond) if context_noise else None

    def forward(
        self, x: Tensor, c_noise: Tensor, actions: Tensor, c_context: Tensor | None = None
    ) -> Tensor:
        """c_context [B]: the context-noise level (only with context_noise; None means 0)."""
        emb = self.noise_emb(c_noise) + self.action_emb(actions.flatten(1))
        if self.context_noise_emb is not None:
            if c_context is None:
                c_context = c_noise.new_zeros(c_noise.shape)
            emb = emb + self.context_noise_emb(c_context)
        elif c_context is not None:
            raise ValueError("a context-noise level for a UNet built without context_noise")
        cond = self.cond_mlp(emb)
        if self.head.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.stem(x)
        skips = []
        for i, blocks in enumerate(self.down):
            if i > 0:
                h = self.downsample[i - 1](h)
            for block in blocks:
                h = block(h, cond)
                skips.append(h)
        for block in self.mid:
            h = block(h, cond)
        for i, blocks in enumerate(self.up):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), cond)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.unpatchify(self.head(F.silu(self.norm_out(h))))
        if self.pixel_skip is not None:
            b, c_in = x.shape[:2]
            w = self.pixel_skip(cond).view(b, -1, c_in)
            out = out + torch.bmm(w, x.flatten(2)).view_as(out)
        return out
