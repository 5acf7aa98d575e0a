"""Every transfer strategy of the paper, built by name (the experiment configs' ``strategy``).

Each builder takes the number of AUs, the FAN where the strategy uses one (:data:`USES_FAN`) and
the strategy's own options (``strategy_args`` in ``experiments/*.yaml``), and returns an
``nn.Module`` that maps B x 3 x H x W images in [0, 1] to B x K x H/4 x W/4 AU heatmaps
(``output_kind == "heatmaps"``) or, for the ResNet-18 baseline, B x K intensities
(``"intensities"``). Frozen parameters have ``requires_grad=False``, so the optimiser takes
``p for p in model.parameters() if p.requires_grad``. A given FAN is never modified: strategies
work on copies.

Which strategies use a FAN, and how, is decided here and nowhere else (the launcher and the
LightningModule ask :data:`NEEDS_FAN` and :data:`USES_FAN`): the transfer strategies take a
pre-trained FAN's weights; ``random_backbone`` copies only its architecture (the control for
``adapt`` over that FAN); ``scratch`` and ``resnet18``, the paper's baselines, never see one.

>>> model = build_strategy("scratch", num_aus=12)
>>> model.output_kind
'heatmaps'
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from aunet.aus import DATASET_AUS
from aunet.models.adaptation import ADAPTATION_WIDTH, AdaptationNetwork
from aunet.models.fan import FAN, LIGHT_FAN_CONFIG, FANConfig, retarget_fan
from aunet.models.reparam import ReparametrisedFAN
from aunet.models.resnet import ResNet18

FANConfigLike = FANConfig | Mapping[str, Any]


def _config(fan_config: FANConfigLike) -> FANConfig:
    return (
        fan_config if isinstance(fan_config, FANConfig) else FANConfig.from_dict(dict(fan_config))
    )


def scratch(num_aus: int, fan_config: FANConfigLike | None = None) -> FAN:
    """The AU-Net of Sec. 3.3, randomly initialised: the light FAN's architecture with K maps.

    One Hourglass of 128 channels (1.65M parameters in the paper's Table 5), whatever FAN the
    transfer strategies use; ``fan_config`` builds another shape on purpose.
    """
    architecture = LIGHT_FAN_CONFIG if fan_config is None else _config(fan_config)
    return FAN(dataclasses.replace(architecture, num_landmarks=num_aus))


def finetune(num_aus: int, fan: FAN) -> FAN:
    """Sec. 4.2: the FAN's weights, a new last layer, every layer trained."""
    return retarget_fan(fan, num_aus)


def adapt(
    num_aus: int,
    fan: FAN,
    width: int = ADAPTATION_WIDTH,
    depth: int | None = None,
    kernel_size: int = 1,
) -> AdaptationNetwork:
    """Sec. 4.3, Fig. 6a: adaptation layers on conv4 features and landmark heatmaps."""
    return AdaptationNetwork(fan, num_aus, "landmarks", None, width, depth, kernel_size)


def attention(
    num_aus: int,
    fan: FAN,
    au_names: Sequence[str] = DATASET_AUS["disfa"],
    width: int = ADAPTATION_WIDTH,
    depth: int | None = None,
    kernel_size: int = 1,
) -> AdaptationNetwork:
    """Sec. 4.4, Fig. 6b: as ``adapt``, guided by AU attention maps at the FAN's landmarks."""
    return AdaptationNetwork(fan, num_aus, "attention", au_names, width, depth, kernel_size)


def reparam(num_aus: int, fan: FAN, train_batchnorm: bool = False) -> ReparametrisedFAN:
    """Sec. 4.5: every conv of the frozen FAN as ``W x_1 theta``; ``fold()`` for inference.

    Only ``W`` and the new last layer learn; ``train_batchnorm`` (an ablation) trains BatchNorm
    too, affine parameters and running statistics.
    """
    return ReparametrisedFAN(fan, num_aus, train_batchnorm)


def random_backbone(
    num_aus: int,
    fan: FAN | None = None,
    fan_config: FANConfigLike | None = None,
    width: int = ADAPTATION_WIDTH,
    depth: int | None = None,
    kernel_size: int = 1,
) -> AdaptationNetwork:
    """Sec. 6.4: ``adapt`` over a frozen, randomly initialised FAN.

    Its architecture is ``fan_config``'s, else the given FAN's (the control for ``adapt`` over
    that FAN: the same network without its pre-trained weights), else the light FAN's.
    """
    if fan_config is not None:
        architecture = _config(fan_config)
    else:
        architecture = fan.config if fan is not None else LIGHT_FAN_CONFIG
    return adapt(num_aus, FAN(architecture), width, depth, kernel_size)


def resnet18(num_aus: int, weights: str | None = None) -> ResNet18:
    """Sec. 6.1: ResNet-18 regressing the K intensities directly."""
    return ResNet18(num_aus, weights)


#: Strategy name -> builder ``(num_aus, [fan,] **options) -> nn.Module`` (``fan`` only for
#: :data:`USES_FAN`).
STRATEGIES: dict[str, Callable[..., nn.Module]] = {
    "scratch": scratch,
    "finetune": finetune,
    "adapt": adapt,
    "attention": attention,
    "reparam": reparam,
    "random_backbone": random_backbone,
    "resnet18": resnet18,
    # Sec. 6.5: built as `adapt`; the second stage calls `model.unfreeze_backbone()`.
    "adapt_finetune": adapt,
}
#: Strategies that transfer from a pre-trained FAN's weights and cannot be built without one.
NEEDS_FAN = frozenset({"finetune", "adapt", "attention", "reparam", "adapt_finetune"})
#: Strategies that copy only a FAN's architecture; without a FAN they take the light FAN's.
COPIES_FAN_ARCHITECTURE = frozenset({"random_backbone"})
#: Every strategy that has a use for a FAN; the others (``scratch``, ``resnet18``) never get one.
USES_FAN = NEEDS_FAN | COPIES_FAN_ARCHITECTURE


def build_strategy(name: str, num_aus: int, fan: FAN | None = None, **options: Any) -> nn.Module:
    """Build a strategy's network by name.

    Args:
        name: a key of :data:`STRATEGIES`.
        num_aus: K, the AUs to predict.
        fan: the pre-trained FAN (e.g. :func:`aunet.models.load_fan`); required by
            :data:`NEEDS_FAN`, copied, never modified; not used by strategies outside
            :data:`USES_FAN`.
        **options: the builder's keyword options (see each builder's signature).

    Returns:
        The network, in train mode.

    Raises:
        ValueError: for an unknown name or option, or a missing FAN, naming what is expected.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of: {', '.join(STRATEGIES)}")
    if num_aus < 1:
        raise ValueError(f"num_aus must be at least 1, got {num_aus}")
    if fan is None and name in NEEDS_FAN:
        raise ValueError(
            f"strategy {name!r} transfers from a pre-trained FAN and got none: pass "
            "fan=aunet.models.load_fan(path) (make train ... FAN=path)"
        )
    builder = STRATEGIES[name]
    fan_argument = (fan,) if name in USES_FAN else ()
    accepted = [p for p in inspect.signature(builder).parameters if p not in ("num_aus", "fan")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"strategy {name!r} got unknown option(s) {unknown}; it accepts: "
            f"{', '.join(accepted) or 'no options'}"
        )
    return builder(num_aus, *fan_argument, **options).train()
