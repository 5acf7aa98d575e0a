"""Pure ``nn.Module`` networks: FAN and the AU-Net, every transfer strategy, ResNet-18.

No losses, optimisers or logging here (those live in :mod:`aunet.training`). Start from
:func:`build_strategy` (the names the experiment configs use) and :func:`load_fan`; the
architecture notes and the complexity table are in ``docs/models.md``.
"""

from aunet.models.adaptation import AdaptationLayers, AdaptationNetwork, AUHourglass
from aunet.models.backbone import FANBackbone
from aunet.models.fan import (
    FAN,
    LIGHT_FAN_CONFIG,
    OFFICIAL_2DFAN4_CONFIG,
    FANConfig,
    retarget_fan,
)
from aunet.models.fan_io import load_fan, save_fan
from aunet.models.layers import ConvBlock, Hourglass
from aunet.models.registry import (
    COPIES_FAN_ARCHITECTURE,
    NEEDS_FAN,
    STRATEGIES,
    USES_FAN,
    build_strategy,
)
from aunet.models.reparam import ReparamConv2d, ReparametrisedFAN
from aunet.models.resnet import ResNet18

__all__ = [
    "COPIES_FAN_ARCHITECTURE",
    "FAN",
    "LIGHT_FAN_CONFIG",
    "NEEDS_FAN",
    "OFFICIAL_2DFAN4_CONFIG",
    "STRATEGIES",
    "USES_FAN",
    "AUHourglass",
    "AdaptationLayers",
    "AdaptationNetwork",
    "ConvBlock",
    "FANBackbone",
    "FANConfig",
    "Hourglass",
    "ReparamConv2d",
    "ReparametrisedFAN",
    "ResNet18",
    "build_strategy",
    "load_fan",
    "retarget_fan",
    "save_fan",
]
