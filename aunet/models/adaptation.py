"""Adaptation layers and attention maps over a frozen FAN (Sec. 4.3, 4.4, 6.4, 6.5; Fig. 6).

The FAN's ``conv4`` features and a guidance tensor — its 68 landmark heatmaps (adaptation layers,
Fig. 6a) or AU attention maps drawn at its landmarks (attention maps, Fig. 6b) — each pass
through a 1x1 conv + BN + ReLU to 128 channels; the two are summed and fed to an AU-Net: the
network of Sec. 3.3 without its first convolutional blocks and with every filter 1x1.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from aunet.aus import NUM_LANDMARKS, check_au_names
from aunet.heatmaps import attention_maps, decode_landmarks
from aunet.models.backbone import FANBackbone
from aunet.models.fan import FAN, LIGHT_FAN_CONFIG
from aunet.models.layers import ConvBlock, Hourglass

Guidance = Literal["landmarks", "attention"]
#: Channels of the adaptation layers' output and of the AU-Net (Sec. 4.3, Fig. 6).
ADAPTATION_WIDTH = 128


def _adaptation_branch(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv -> BN -> ReLU (Sec. 4.3); the conv has no bias, the BN that follows has one."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class AdaptationLayers(nn.Module):
    """Fuse FAN features and guidance maps by two 1x1 branches and a sum (Fig. 6).

    Args:
        feature_channels: channels of the FAN's conv4 features (128 in the light FAN).
        guide_channels: landmark maps (68) or AU attention maps (``N_aus``).
        width: channels of both branches' output (128).
    """

    def __init__(self, feature_channels: int, guide_channels: int, width: int) -> None:
        super().__init__()
        self.features = _adaptation_branch(feature_channels, width)
        self.guide = _adaptation_branch(guide_channels, width)

    def forward(self, features: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """(B x C_f x H x W, B x C_g x H x W) -> B x width x H x W."""
        return self.features(features) + self.guide(guide)


class AUHourglass(nn.Module):
    """The AU-Net of Fig. 6: Hourglass -> ConvBlock -> 1x1 conv + BN + ReLU -> 1x1 conv to N_aus.

    This is one stack of :class:`~aunet.models.fan.FAN` without the stem ("the removal of the
    first convolutional blocks", Sec. 4.3), with ``kernel_size`` 1 instead of 3.

    Args:
        width: channels of every block.
        num_aus: output maps.
        depth: Hourglass levels.
        kernel_size: of every ConvBlock (1 in the paper).
    """

    def __init__(self, width: int, num_aus: int, depth: int, kernel_size: int = 1) -> None:
        super().__init__()
        config = LIGHT_FAN_CONFIG  # Fig. 5's max pooling and bilinear upsampling
        self.hourglass = Hourglass(width, depth, kernel_size, config.pooling, config.upsampling)
        self.top = ConvBlock(width, width, kernel_size)
        self.conv_last = nn.Conv2d(width, width, kernel_size=1)
        self.bn_end = nn.BatchNorm2d(width)
        self.out = nn.Conv2d(width, num_aus, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x width x H x W -> B x num_aus x H x W."""
        x = self.conv_last(self.top(self.hourglass(x)))
        return self.out(F.relu(self.bn_end(x), inplace=True))


class AdaptationNetwork(nn.Module):
    """Adaptation layers (Sec. 4.3) or attention maps (Sec. 4.4) over a frozen FAN.

    Strategies ``adapt``, ``attention``, ``random_backbone`` (Sec. 6.4: the same over a frozen
    randomly initialised FAN) and ``adapt_finetune`` (Sec. 6.5: :meth:`unfreeze_backbone` for
    the second stage) are all this class.

    Args:
        fan: the backbone; a copy is taken and frozen, the argument is left unchanged.
        num_aus: output maps.
        guidance: ``"landmarks"`` feeds the FAN's heatmaps to the second branch (Fig. 6a);
            ``"attention"`` feeds AU attention maps drawn on the fly at the FAN's landmarks
            with intensity 1 (Fig. 6b, :func:`aunet.heatmaps.attention_maps`).
        au_names: the AUs whose attention maps are drawn (``"attention"`` only), one per output.
        width: channels of the adaptation layers and the AU-Net (128).
        depth: Hourglass levels of the AU-Net; the FAN's when None (4 in the paper).
        kernel_size: of the AU-Net's ConvBlocks (1 in the paper).
    """

    output_kind = "heatmaps"

    def __init__(
        self,
        fan: FAN,
        num_aus: int,
        guidance: Guidance = "landmarks",
        au_names: Sequence[str] | None = None,
        width: int = ADAPTATION_WIDTH,
        depth: int | None = None,
        kernel_size: int = 1,
    ) -> None:
        super().__init__()
        if guidance == "attention":
            if au_names is None or len(au_names) != num_aus:
                raise ValueError(
                    f"attention maps need one AU name per output: num_aus={num_aus}, "
                    f"au_names={None if au_names is None else list(au_names)}"
                )
            if fan.config.num_landmarks != NUM_LANDMARKS:
                raise ValueError(
                    "attention maps are drawn at 68 iBUG landmarks; the FAN predicts "
                    f"{fan.config.num_landmarks}"
                )
            self.au_names: tuple[str, ...] | None = check_au_names(au_names)
            guide_channels = num_aus
        elif guidance == "landmarks":
            self.au_names = None
            guide_channels = fan.config.num_landmarks
        else:
            raise ValueError(f"guidance must be 'landmarks' or 'attention', got {guidance!r}")
        self.backbone = FANBackbone(copy.deepcopy(fan), frozen=True)
        self.adaptation = AdaptationLayers(fan.config.width, guide_channels, width)
        self.au_net = AUHourglass(width, num_aus, depth or fan.config.depth, kernel_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W images in [0, 1] -> B x num_aus x H/4 x W/4 AU heatmaps."""
        features, heatmaps = self.backbone(images)
        guide = heatmaps if self.au_names is None else self._attention(heatmaps)
        return self.au_net(self.adaptation(features, guide))

    def unfreeze_backbone(self) -> None:
        """Fine-tune the whole pipeline from now on (Sec. 6.5)."""
        self.backbone.unfreeze()

    @torch.no_grad()
    def _attention(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """AU attention maps at the heatmaps' landmarks (Sec. 4.4); the argmax has no gradient."""
        landmarks = decode_landmarks(heatmaps)
        return attention_maps(landmarks, self.au_names, tuple(heatmaps.shape[-2:]))
