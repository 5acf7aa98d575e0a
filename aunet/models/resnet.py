"""ResNet-18 regressing AU intensities directly: the paper's baseline (Sec. 6.1, Table 5).

He et al.'s ResNet-18 with the last layer replaced by one output per AU (Sec. 5: "we modify the
last layer to generate predictions that match the number of Action Units"). Module names follow
torchvision's ``resnet18``, so its ImageNet state dict (a local file: nothing is downloaded)
loads into everything but ``fc``; inputs in [0, 1] are normalised with the ImageNet statistics
those weights expect. Written here to keep torchvision (and its CUDA wheels) out of the
dependencies.
"""

from __future__ import annotations

import os

import torch
from torch import nn

#: ImageNet mean and standard deviation of RGB in [0, 1] (torchvision's convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride) of layer1-layer4


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: of the first convolution and the shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x C_in x H x W -> B x C_out x H/stride x W/stride."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 with ``num_outputs`` linear outputs: B x 3 x H x W in [0, 1] -> B x num_outputs.

    Args:
        num_outputs: AU intensities to regress.
        weights: optional path to a torchvision ``resnet18`` state dict (e.g. the ImageNet
            weights saved from torchvision); everything but ``fc`` is loaded strictly.
    """

    output_kind = "intensities"

    def __init__(self, num_outputs: int, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = 64
        for index, (channels, stride) in enumerate(_STAGES, start=1):
            stage = nn.Sequential(
                BasicBlock(in_channels, channels, stride), BasicBlock(channels, channels)
            )
            self.add_module(f"layer{index}", stage)
            in_channels = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_outputs)
        self._init_weights()
        if weights is not None:
            self._load_backbone(weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W images in [0, 1] -> B x num_outputs intensities."""
        x = (images - self.mean) / self.std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))

    def _init_weights(self) -> None:
        """Torchvision's initialisation: He-normal (fan-out) convolutions, unit BN."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _load_backbone(self, path: str | os.PathLike) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
        own = {key for key in self.state_dict() if not key.startswith("fc.")}
        missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
        if missing or unexpected:
            raise ValueError(
                f"{path} is not a torchvision resnet18 state dict: missing {missing[:10]}, "
                f"unexpected {unexpected[:10]}"
            )
        self.load_state_dict(state, strict=False)
