"""What a network costs, counted as the paper's Table 5 counts it: parameters and FLOPs.

* ``params``: every parameter, a frozen backbone's included (Table 5's "Num. of parameters");
* ``trainable_params``: those with ``requires_grad`` (what the optimiser learns);
* ``flops``: FLOPs of one ``image_size`` x ``image_size`` image at inference, from
  ``torch.utils.flop_counter`` (a multiply-add is 2 FLOPs; convolutions and matrix products
  only, as Table 5's ResNet-18 row confirms: 4.74 G measured against 4.75 G printed). A
  reparametrised FAN is counted folded (:meth:`~aunet.models.ReparametrisedFAN.fold`), which is
  how it is deployed.

The counts depend on the architecture only, never on weight values, so a network can be built
and counted on PyTorch's ``meta`` device (:func:`measure_architecture`): no memory is allocated
and nothing is computed (a 256 px 2DFAN-4 strategy builds and counts in 0.2 to 2.9 s where one
real forward pass on a 2-core CPU takes 9 to 13 s, ``docs/models.md``). ``bench/complexity.py``
(every experiment beside Table 5) and :mod:`aunet.evaluation.tables` (each table row's own network)
both count here.

>>> from aunet.models import build_strategy
>>> cost = measure_architecture(lambda: build_strategy("scratch", 12), 256)
>>> cost.params, round(cost.gflops, 2)
(1730252, 6.99)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from aunet.models.fan import FAN, LIGHT_FAN_CONFIG, OFFICIAL_2DFAN4_CONFIG, FANConfig
from aunet.models.reparam import ReparametrisedFAN

#: Known FAN layouts by name; a layout matches whatever its number of output maps.
FAN_LAYOUTS: dict[str, FANConfig] = {
    "2DFAN-4 (4 stacks, 256 ch)": OFFICIAL_2DFAN4_CONFIG,
    "aunet light FAN (1 stack, 128 ch)": LIGHT_FAN_CONFIG,
}


@dataclass(frozen=True)
class Complexity:
    """Parameters and inference FLOPs of one network.

    Args:
        params: every parameter.
        trainable_params: the parameters with ``requires_grad``.
        flops: FLOPs of one image at inference; None when no input size was given.
        image_size: the side of the square image ``flops`` is counted at.
    """

    params: int
    trainable_params: int
    flops: int | None
    image_size: int | None

    @property
    def gflops(self) -> float | None:
        """``flops`` in units of 1e9."""
        return None if self.flops is None else self.flops / 1e9


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(all parameters, trainable parameters)`` of ``model``."""
    parameters = list(model.parameters())
    return (
        sum(p.numel() for p in parameters),
        sum(p.numel() for p in parameters if p.requires_grad),
    )


def inference_flops(model: nn.Module, image_size: int) -> int:
    """FLOPs of one forward pass of a 1 x 3 x S x S image, on the model's own device.

    A :class:`~aunet.models.ReparametrisedFAN` is folded first (on the same device), so its
    projections, which a deployed model no longer computes, are not counted.

    Raises:
        ValueError: when the network cannot take an S x S image (its message says why).
    """
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    with torch.device(device), torch.no_grad():
        deployed = model.fold() if isinstance(model, ReparametrisedFAN) else model
        was_training = deployed.training
        images = torch.zeros(1, 3, image_size, image_size)
        try:
            with FlopCounterMode(display=False) as counter:
                deployed.eval()(images)
        except RuntimeError as error:
            raise ValueError(f"cannot run a {image_size} x {image_size} image: {error}") from None
        finally:
            deployed.train(was_training)
    return counter.get_total_flops()


def measure(model: nn.Module, image_size: int | None) -> Complexity:
    """Parameters, trainable parameters and (if ``image_size`` is given) inference FLOPs."""
    params, trainable = count_parameters(model)
    flops = None if image_size is None else inference_flops(model, image_size)
    return Complexity(params, trainable, flops, image_size)


def measure_architecture(build: Callable[[], nn.Module], image_size: int | None) -> Complexity:
    """:func:`measure` the network that ``build()`` makes, built on the ``meta`` device.

    The counts equal those of the same network built on a CPU
    (``tests/models/test_models_complexity.py`` checks it), at no cost in memory or arithmetic.
    """
    with torch.device("meta"):
        model = build()
    return measure(model, image_size)


def fan_of(model: nn.Module) -> FANConfig | None:
    """The layout of the first FAN inside ``model``: its frozen backbone, or itself (AU-Net).

    None for a network without one (ResNet-18).
    """
    return next((m.config for m in model.modules() if isinstance(m, FAN)), None)


def fan_layout_name(config: FANConfig) -> str:
    """A FAN layout's name (:data:`FAN_LAYOUTS`), else the fields where it departs from light.

    The number of output maps is ignored: a FAN's 68 and an AU-Net's K share one layout.
    """
    maps = LIGHT_FAN_CONFIG.num_landmarks
    for name, layout in FAN_LAYOUTS.items():
        if dataclasses.replace(config, num_landmarks=maps) == layout:
            return name
    changes = [
        f"{field.name}={getattr(config, field.name)}"
        for field in dataclasses.fields(config)
        if field.name != "num_landmarks"
        and getattr(config, field.name) != getattr(LIGHT_FAN_CONFIG, field.name)
    ]
    return f"FAN ({', '.join(changes)})"
