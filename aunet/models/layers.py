"""Reusable layers of every network in the paper: the ConvBlock (Fig. 4) and the Hourglass (Fig. 5).

Module names follow the public face-alignment implementation of FAN (Bulat & Tzimiropoulos,
BSD-3), so that its state dicts load without renaming: a ConvBlock has ``bn1, conv1, bn2, conv2,
bn3, conv3`` and, when the channel count changes, ``downsample = (BN, ReLU, 1x1 conv)``; an
Hourglass has ``b1_<level>, b2_<level>, b3_<level>`` per level and ``b2_plus_1`` at the bottom.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Pooling = Literal["max", "avg"]
Upsampling = Literal["bilinear", "nearest"]
POOLINGS: tuple[str, ...] = ("max", "avg")
UPSAMPLINGS: tuple[str, ...] = ("bilinear", "nearest")


def downsample2x(x: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Halve the resolution with a 2x2, stride-2 pooling window.

    Args:
        x: B x C x H x W.
        pooling: ``"max"`` (the paper's Fig. 5) or ``"avg"`` (the public 2DFAN).

    Returns:
        B x C x H/2 x W/2.
    """
    if pooling == "max":
        return F.max_pool2d(x, 2, stride=2)
    return F.avg_pool2d(x, 2, stride=2)


def upsample2x(x: torch.Tensor, upsampling: Upsampling) -> torch.Tensor:
    """Double the resolution: bilinear (Fig. 5) or nearest-neighbour (the public 2DFAN).

    Args:
        x: B x C x H x W.
        upsampling: ``"bilinear"`` (half-pixel centres, ``align_corners=False``) or ``"nearest"``.

    Returns:
        B x C x 2H x 2W.
    """
    if upsampling == "bilinear":
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return F.interpolate(x, scale_factor=2, mode="nearest")


class ConvBlock(nn.Module):
    """Bulat & Tzimiropoulos' hierarchical, parallel and multi-scale block (Fig. 4).

    Three pre-activated (BN -> ReLU -> conv) ``k x k`` convolutions in a chain with ``C_o/2``,
    ``C_o/4`` and ``C_o/4`` outputs; their outputs are concatenated to ``C_o`` channels and added
    to the input, which passes through BN -> ReLU -> 1x1 conv when ``C_i != C_o``. Convolutions
    carry no bias: each is followed by a BN in the next block.

    Args:
        in_channels: C_i.
        out_channels: C_o, a multiple of 4.
        kernel_size: k, odd (3 in FAN; 1 in the AU-Net of the adaptation layers, Fig. 6).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"ConvBlock out_channels must be a multiple of 4, got {out_channels}")
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvBlock kernel_size must be odd, got {kernel_size}")
        half, quarter = out_channels // 2, out_channels // 4
        padding = kernel_size // 2
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, half, kernel_size, padding=padding, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, kernel_size, padding=padding, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, kernel_size, padding=padding, bias=False)
        self.downsample = (
            nn.Sequential(
                nn.BatchNorm2d(in_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
            )
            if in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x C_i x H x W -> B x C_o x H x W."""
        out1 = self.conv1(F.relu(self.bn1(x), inplace=True))
        out2 = self.conv2(F.relu(self.bn2(out1), inplace=True))
        out3 = self.conv3(F.relu(self.bn3(out2), inplace=True))
        out = torch.cat((out1, out2, out3), dim=1)
        residual = x if self.downsample is None else self.downsample(x)
        return out.add_(residual)  # `out` is fresh from cat, so adding in place is safe


class Hourglass(nn.Module):
    """Newell et al.'s encoder-decoder of ConvBlocks with a skip at every scale (Fig. 5).

    At each of ``depth`` levels the input goes two ways: ``b1`` keeps the resolution; the lower
    branch pools to half size, applies ``b2``, the next level down (or ``b2_plus`` at the bottom)
    and ``b3``, then upsamples. The two are summed. Every block has ``width`` channels.

    Args:
        width: channels of every ConvBlock (128 in the paper's light FAN, 256 in 2DFAN-4).
        depth: number of levels (4 in both); the input side must be divisible by ``2**depth``.
        kernel_size: of the ConvBlocks (3, or 1 for the AU-Net of Fig. 6).
        pooling: ``"max"`` (Fig. 5) or ``"avg"`` (public 2DFAN).
        upsampling: ``"bilinear"`` (Fig. 5) or ``"nearest"`` (public 2DFAN).
    """

    def __init__(
        self,
        width: int,
        depth: int = 4,
        kernel_size: int = 3,
        pooling: Pooling = "max",
        upsampling: Upsampling = "bilinear",
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"Hourglass depth must be at least 1, got {depth}")
        self.depth = depth
        self.pooling = pooling
        self.upsampling = upsampling
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(width, width, kernel_size))
            self.add_module(f"b2_{level}", ConvBlock(width, width, kernel_size))
            self.add_module(f"b3_{level}", ConvBlock(width, width, kernel_size))
        self.b2_plus_1 = ConvBlock(width, width, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x width x H x W -> B x width x H x W."""
        return self._level(self.depth, x)

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](downsample2x(x, self.pooling))
        lower = self._level(level - 1, lower) if level > 1 else self.b2_plus_1(lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper + upsample2x(lower, self.upsampling)
