"""What both LightningModules share: input conversion, per-stage metrics, the optimiser."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from aunet.metrics import ICC, MSE


def images_to_float(images: Tensor, channels_last: bool = False) -> Tensor:
    """uint8 images (as the DataLoader sends them: 4x less to copy) to float in [0, 1].

    Float images are taken to be in [0, 1] already (the FAN's input convention: RGB / 255, no
    mean or standard deviation).
    """
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


class StageMetrics(nn.Module):
    """ICC(3,1) and MSE per AU for one stage (train, val or test), logged under AU names.

    Args:
        icc: the stage's ICC metric object.
        mse: the stage's MSE metric object.
    """

    def __init__(self, icc: ICC, mse: MSE) -> None:
        super().__init__()
        self.icc = icc
        self.mse = mse

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of B x K predicted and true intensities (NaN truth ignored)."""
        self.icc.update(preds, target)
        self.mse.update(preds, target)

    def compute_and_reset(self, au_names: Sequence[str]) -> dict[str, float]:
        """``icc/AU01`` ..., ``icc_mean``, ``mse/AU01`` ..., ``mse_mean``, then reset.

        The means skip AUs whose value is undefined (NaN, e.g. an AU never active in a fold),
        so one such AU does not blank the summary; the per-AU entries keep the NaN.
        """
        values: dict[str, float] = {}
        for name, metric in (("icc", self.icc), ("mse", self.mse)):
            per_au = torch.atleast_1d(metric.compute()).double()
            metric.reset()
            values.update(
                {f"{name}/{au}": float(v) for au, v in zip(au_names, per_au, strict=True)}
            )
            values[f"{name}_mean"] = (
                float(per_au.nanmean()) if per_au.isfinite().any() else math.nan
            )
        return values


@dataclass(frozen=True)
class OptimiserSettings:
    """Sec. 5.3's optimiser: Adam (beta1 = 0.9, the paper's "momentum"), weight decay, cosine.

    Args:
        lr: learning rate.
        weight_decay: L2 weight decay (the paper's 1e-6).
        cosine_period_epochs: warm-restart period of the cosine schedule in epochs; None anneals
            once over ``max_epochs``.
    """

    lr: float
    weight_decay: float
    cosine_period_epochs: int | None

    def build(self, module: nn.Module, max_epochs: int | None) -> dict[str, Any]:
        """Optimiser over ``module``'s trainable parameters and its per-epoch scheduler."""
        trainable = [p for p in module.parameters() if p.requires_grad]
        optimiser = torch.optim.Adam(
            trainable, lr=self.lr, betas=(0.9, 0.999), weight_decay=self.weight_decay
        )
        if self.cosine_period_epochs is not None:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                optimiser, T_0=self.cosine_period_epochs
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimiser, T_max=max(1, max_epochs or 1)
            )
        return {
            "optimizer": optimiser,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }


def add_scheduled_param_group(
    optimiser: torch.optim.Optimizer,
    schedulers: Iterable[LRScheduler],
    params: Iterable[nn.Parameter],
    lr_factor: float,
) -> None:
    """Add ``params`` to ``optimiser`` at ``lr_factor`` times its first group's rate and schedule.

    A torch scheduler keeps one base learning rate per parameter group, fixed when it is built,
    and the warm-restart cosine computes every rate from them (a group it does not know fails
    its next step: ``zip() argument 2 is shorter``). The new group's base rate is ``lr_factor``
    times the first group's, so its rate stays ``lr_factor`` times the first group's along the
    same cosine, and the schedulers' state, saved in checkpoints, holds both groups.

    Args:
        optimiser: the optimiser, with at least one group.
        schedulers: every scheduler of ``optimiser``.
        params: the parameters of the new group.
        lr_factor: its learning rate relative to the first group's.
    """
    first = optimiser.param_groups[0]
    group: dict[str, Any] = {"params": list(params), "lr": first["lr"] * lr_factor}
    if "initial_lr" in first:  # set by the schedulers, which read it if rebuilt mid-schedule
        group["initial_lr"] = first["initial_lr"] * lr_factor
    optimiser.add_param_group(group)
    for scheduler in schedulers:
        scheduler.base_lrs.append(scheduler.base_lrs[0] * lr_factor)
