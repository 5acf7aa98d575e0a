"""Pure ``nn.Module`` networks: FAN and the AU-Net, every transfer strategy, ResNet-18.

No losses, optimisers or logging here (those live in :mod:`aunet.training`). Start from
:func:`build_strategy` (the names the experiment configs use) and :func:`load_fan`; the
architecture notes and the complexity table are in ``docs/models.md``; parameters and FLOPs
are counted by :mod:`aunet.models.complexity`.
"""

from aunet.models.adaptation import AdaptationLayers, AdaptationNetwork, AUHourglass
from aunet.models.backbone import FANBackbone
from aunet.models.complexity import (
    Complexity,
    fan_layout_name,
    fan_of,
    measure,
    measure_architecture,
)
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
    "Complexity",
    "ConvBlock",
    "FANBackbone",
    "FANConfig",
    "Hourglass",
    "ReparamConv2d",
    "ReparametrisedFAN",
    "ResNet18",
    "build_strategy",
    "fan_layout_name",
    "fan_of",
    "load_fan",
    "measure",
    "measure_architecture",
    "retarget_fan",
    "save_fan",
]
