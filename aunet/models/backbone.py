"""A FAN used as a backbone: its conv4 features and landmark heatmaps, frozen or not (Sec. 4).

Frozen (Sec. 5.3: "during training, FAN weights remain frozen") means three things, kept
together here so no caller can forget one: the FAN's parameters have ``requires_grad=False``; it
stays in eval mode, so its BatchNorm layers normalise with the pre-trained statistics and never
update them, even when the surrounding LightningModule calls ``train()``; and it runs without
autograd, so its activations are not kept for a backward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from aunet.models.fan import FAN


class FANBackbone(nn.Module):
    """Wraps a :class:`FAN` to give ``(conv4 features, heatmaps)`` in one pass.

    Args:
        fan: the network, owned from now on (pass a copy to keep the original untouched).
        frozen: start frozen (the paper's setting) or trainable.
    """

    def __init__(self, fan: FAN, frozen: bool = True) -> None:
        super().__init__()
        self.fan = fan
        self.frozen = False
        if frozen:
            self.freeze()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images B x 3 x H x W in [0, 1] -> conv4 features and heatmaps, both at H/4 x W/4."""
        if self.frozen:
            with torch.no_grad():
                return self.fan.features_and_heatmaps(images)
        return self.fan.features_and_heatmaps(images)

    def train(self, mode: bool = True) -> FANBackbone:
        """Set the mode; a frozen FAN stays in eval mode whatever ``mode`` is."""
        super().train(mode)
        if self.frozen:
            self.fan.eval()
        return self

    def freeze(self) -> None:
        """No gradients, BN statistics fixed, no autograd in the forward pass."""
        self.frozen = True
        self.fan.requires_grad_(False)
        self.fan.eval()

    def unfreeze(self) -> None:
        """Train the FAN with the rest (Sec. 6.5); it follows this module's train/eval mode."""
        self.frozen = False
        self.fan.requires_grad_(True)
        self.fan.train(self.training)
