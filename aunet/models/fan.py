"""The Face Alignment Network (FAN), its configurations, and the AU-Net that shares its design.

FAN (Bulat & Tzimiropoulos, ICCV 2017) is a stem of a strided 7x7 convolution and three ConvBlocks
(``conv2``-``conv4``, Fig. 4), then ``num_stacks`` Hourglasses (Fig. 5), each followed by a
ConvBlock, a 1x1 conv + BN + ReLU and a 1x1 conv to one heatmap per landmark; between stacks the
features and the heatmaps are mapped back (``bl``, ``al``) and added to the stack's input.
Heatmaps are a quarter of the input (256 -> 64).

The paper uses it twice (Sec. 3.3, 4.1): its *AU-Net* and its in-house *FAN* are the same light
network — one Hourglass of 128-channel ConvBlocks, ~1.7M parameters — with ``N_aus`` or 68 output
maps. The public face-alignment package's 2DFAN-4 is four stacks of 256 channels. Both are
:class:`FANConfig` values of the one :class:`FAN` class:

>>> light = FAN(LIGHT_FAN_CONFIG)
>>> official = FAN(OFFICIAL_2DFAN4_CONFIG)

Differences in the details, as :class:`FANConfig` options (see ``docs/models.md``):

* pooling / upsampling: the paper's Fig. 5 says max pooling and bilinear upsampling; the public
  2DFAN uses average pooling and nearest-neighbour upsampling (also in the stem's pooling).
* ``conv4`` maps 128 channels to ``width``, so in the light FAN it keeps 128 (Sec. 3.3), in
  2DFAN-4 it widens to 256.
* the stem's pooling (``stem_pool_at``): the public 2DFAN pools after ``conv2``, which thus
  runs at half the input (128 x 128 for 256); the paper's light FAN is taken to pool before it,
  which is what Table 5's 5.21 GFLOPs measure. Both bring ``conv4`` to a quarter of the input.

Module names, bias placement and (pooled after ``conv2``) the forward pass match the
face-alignment implementation, so its state dicts load as they are (:func:`aunet.models.load_fan`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aunet.models.layers import POOLINGS, UPSAMPLINGS, ConvBlock, Hourglass, downsample2x

#: Channels after the stem's 7x7 convolution and after ``conv2``/``conv3`` (Sec. 3.3).
STEM_CHANNELS = (64, 128)
#: Heatmaps are this many times smaller than the input (Sec. 3.2: 256 -> 64).
HEATMAP_STRIDE = 4
#: Where the stem halves the resolution, relative to ``conv2`` (see :class:`FANConfig`).
STEM_POOL_POSITIONS = ("after_conv2", "before_conv2")
# State-dict keys of the layers whose shape depends on the number of output maps.
_PREDICTION_KEY = re.compile(r"^(l|al)\d+\.")


@dataclass(frozen=True)
class FANConfig:
    """Architecture of a FAN (or of the AU-Net, which is the same network).

    Attributes:
        num_stacks: stacked Hourglasses (1 in the paper's light FAN, 4 in 2DFAN-4).
        width: channels of ``conv4``'s output, of every Hourglass block and of the stack heads.
        depth: levels of each Hourglass; inputs must be divisible by ``4 * 2**depth``.
        kernel_size: of every ConvBlock (3; the 7x7 stem convolution is fixed).
        num_landmarks: output maps (68 landmarks for a FAN, ``N_aus`` for an AU-Net).
        pooling: ``"max"`` (the paper's Fig. 5) or ``"avg"`` (public 2DFAN).
        upsampling: ``"bilinear"`` (Fig. 5) or ``"nearest"`` (public 2DFAN).
        stem_pool_at: where the stem's pooling sits: ``"before_conv2"`` (the paper's light FAN:
            ``conv2`` at a quarter of the input, Table 5's FLOPs) or ``"after_conv2"`` (public
            2DFAN: ``conv2`` at half the input). The field's default is ``"after_conv2"``
            because every FAN config written before the field existed (checkpoints' and FAN
            files' config dicts) describes that network: a dict without it must rebuild it.
            :data:`LIGHT_FAN_CONFIG` sets ``"before_conv2"``.
    """

    num_stacks: int = 1
    width: int = 128
    depth: int = 4
    kernel_size: int = 3
    num_landmarks: int = 68
    pooling: str = "max"
    upsampling: str = "bilinear"
    stem_pool_at: str = "after_conv2"

    def __post_init__(self) -> None:
        for name in ("num_stacks", "depth", "num_landmarks"):
            if getattr(self, name) < 1:
                raise ValueError(f"FANConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.width < 4 or self.width % 4:
            raise ValueError(f"FANConfig.width must be a positive multiple of 4, got {self.width}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"FANConfig.kernel_size must be odd, got {self.kernel_size}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"FANConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.upsampling not in UPSAMPLINGS:
            raise ValueError(
                f"FANConfig.upsampling must be one of {UPSAMPLINGS}, got {self.upsampling!r}"
            )
        if self.stem_pool_at not in STEM_POOL_POSITIONS:
            raise ValueError(
                f"FANConfig.stem_pool_at must be one of {STEM_POOL_POSITIONS}, "
                f"got {self.stem_pool_at!r}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FANConfig:
        """Build a config from a plain mapping (a YAML section, a checkpoint's hyperparameters).

        Missing fields take the dataclass defaults; a mapping without ``stem_pool_at`` (any
        written before it existed) therefore rebuilds the stem pooled after ``conv2``.

        Raises:
            ValueError: naming unknown fields and listing the known ones.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown FANConfig field(s) {unknown}; expected some of {sorted(known)}"
            )
        return cls(**values)

    @property
    def input_multiple(self) -> int:
        """Input sides must be multiples of this: the stem's 4 times the Hourglass' ``2**depth``."""
        return HEATMAP_STRIDE * 2**self.depth


#: The paper's light FAN / AU-Net (Sec. 3.3, 4.1, Fig. 5): one Hourglass of 128 channels, the
#: stem pooled before ``conv2`` (Table 5's FLOPs; see ``docs/models.md``).
LIGHT_FAN_CONFIG = FANConfig(stem_pool_at="before_conv2")
#: The public face-alignment 2DFAN-4: four stacks of 256 channels, avg pooling, nearest
#: upsampling, the stem pooled after ``conv2``.
OFFICIAL_2DFAN4_CONFIG = FANConfig(
    num_stacks=4, width=256, pooling="avg", upsampling="nearest", stem_pool_at="after_conv2"
)


class FAN(nn.Module):
    """Stacked-Hourglass heatmap regressor: a FAN, or with ``N_aus`` maps the paper's AU-Net.

    Args:
        config: the architecture; the default is the paper's light FAN.

    Example:
        >>> fan = FAN(FANConfig(width=16, depth=2)).eval()
        >>> fan(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 68, 16, 16])
    """

    output_kind = "heatmaps"

    def __init__(self, config: FANConfig = LIGHT_FAN_CONFIG) -> None:
        super().__init__()
        self.config = config
        stem, mid = STEM_CHANNELS
        width, maps, k = config.width, config.num_landmarks, config.kernel_size
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = ConvBlock(stem, mid, k)
        self.conv3 = ConvBlock(mid, mid, k)
        self.conv4 = ConvBlock(mid, width, k)
        for i in range(config.num_stacks):
            self.add_module(
                f"m{i}", Hourglass(width, config.depth, k, config.pooling, config.upsampling)
            )
            self.add_module(f"top_m_{i}", ConvBlock(width, width, k))
            self.add_module(f"conv_last{i}", nn.Conv2d(width, width, kernel_size=1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(width))
            self.add_module(f"l{i}", nn.Conv2d(width, maps, kernel_size=1))
            if i < config.num_stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(width, width, kernel_size=1))
                self.add_module(f"al{i}", nn.Conv2d(maps, width, kernel_size=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W images in [0, 1] -> the last stack's B x maps x H/4 x W/4 heatmaps."""
        return self.stack_heatmaps(images)[-1]

    def features_and_heatmaps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass giving what the transfer strategies use (Sec. 4.3, Fig. 6).

        Args:
            images: B x 3 x H x W in [0, 1].

        Returns:
            ``(features, heatmaps)``: the ``conv4`` output, B x width x H/4 x W/4, and the last
            stack's B x maps x H/4 x W/4 heatmaps.
        """
        features, heatmaps = self._run(images)
        return features, heatmaps[-1]

    def stack_heatmaps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every stack's heatmaps, first to last, for intermediate supervision in pre-training."""
        return self._run(images)[1]

    def _run(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._check_input(images)
        x = F.relu(self.bn1(self.conv1(images)), inplace=True)
        if self.config.stem_pool_at == "before_conv2":
            x = self.conv2(downsample2x(x, self.config.pooling))
        else:
            x = downsample2x(self.conv2(x), self.config.pooling)
        features = self.conv4(self.conv3(x))
        previous = features
        outputs = []
        last = self.config.num_stacks - 1
        for i in range(self.config.num_stacks):
            hourglass = self._modules[f"m{i}"](previous)
            head = self._modules[f"conv_last{i}"](self._modules[f"top_m_{i}"](hourglass))
            head = F.relu(self._modules[f"bn_end{i}"](head), inplace=True)
            heatmaps = self._modules[f"l{i}"](head)
            outputs.append(heatmaps)
            if i < last:
                feedback = self._modules[f"bl{i}"](head) + self._modules[f"al{i}"](heatmaps)
                previous = previous + feedback
        return features, outputs

    def _check_input(self, images: torch.Tensor) -> None:
        multiple = self.config.input_multiple
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"FAN expects B x 3 x H x W images, got {tuple(images.shape)}")
        if images.shape[-2] % multiple or images.shape[-1] % multiple:
            raise ValueError(
                f"FAN input sides must be multiples of {multiple} (4 * 2**depth with depth="
                f"{self.config.depth}), got {tuple(images.shape[-2:])}"
            )


def is_prediction_key(key: str) -> bool:
    """Whether a FAN state-dict key belongs to a layer sized by the number of output maps."""
    return _PREDICTION_KEY.match(key) is not None


def retarget_fan(fan: FAN, num_maps: int) -> FAN:
    """A copy of ``fan`` that predicts ``num_maps`` maps: Sec. 4.2's "new last layer".

    Every layer is initialised from ``fan`` except those whose shape depends on the number of
    maps — each stack's prediction conv ``l<i>`` and, between stacks, the map-to-feature conv
    ``al<i>`` — which are freshly initialised. With one stack (the paper's FAN) that is only the
    last 1x1 convolution.

    Args:
        fan: the source network (left unchanged).
        num_maps: output maps of the new network, e.g. the number of AUs.

    Returns:
        A new :class:`FAN` in the source's train/eval mode, on its device.
    """
    target = FAN(dataclasses.replace(fan.config, num_landmarks=num_maps))
    kept = {key: value for key, value in fan.state_dict().items() if not is_prediction_key(key)}
    target.load_state_dict({**target.state_dict(), **kept})
    reference = next(fan.parameters())
    return target.to(device=reference.device, dtype=reference.dtype).train(fan.training)
