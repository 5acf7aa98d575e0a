"""FAN pre-training (Sec. 4.1): regress 68 landmark heatmaps, score the normalised mean error.

The paper pre-trains its light FAN on LS3D-W; aunet pre-trains on whatever landmark store it is
given (300W-LP via ``data_prep 300w-lp``, or the synthetic landmark faces for the CPU demo). Every
stack's output is supervised (intermediate supervision, as in FAN). The checkpoint this module
writes is format (c) of :func:`aunet.models.load_fan`: the network lives at attribute ``fan`` and
the hyperparameters hold ``fan_config``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from aunet.heatmaps import LANDMARK_SIGMA, decode_landmarks, landmark_heatmaps
from aunet.models import FAN, LIGHT_FAN_CONFIG, FANConfig
from aunet.training.common import OptimiserSettings, images_to_float

#: Outer eye corners of the 68-point scheme: the inter-ocular distance normalises the NME.
OUTER_EYE_CORNERS = (36, 45)


def normalised_mean_error(predicted: Tensor, truth: Tensor) -> Tensor:
    """Per-image mean point-to-point error over known landmarks / inter-ocular distance.

    Args:
        predicted: B x 68 x 2 landmarks.
        truth: B x 68 x 2 landmarks in the same unit; NaN = unknown.

    Returns:
        B errors; NaN for an image whose eye corners or all landmarks are unknown.
    """
    left, right = OUTER_EYE_CORNERS
    inter_ocular = (truth[:, left] - truth[:, right]).norm(dim=-1)
    errors = (predicted - truth).norm(dim=-1)  # NaN where the truth is unknown
    return errors.nanmean(dim=-1) / inter_ocular


class FANModule(pl.LightningModule):
    """Pre-train a FAN on 68-point landmark heatmaps.

    Args:
        fan_config: the architecture (see :class:`aunet.models.FANConfig`; fields it omits take
            the dataclass defaults, so a dict without ``stem_pool_at``, as older checkpoints
            hold, pools after ``conv2``); None is the paper's light FAN.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        cosine_period_epochs: cosine warm-restart period; None anneals once over the run.
        landmark_sigma: Gaussian spread in heatmap pixels (2 for the paper's 64 x 64 maps).
        channels_last: run the network in channels-last memory format.
    """

    def __init__(
        self,
        fan_config: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        cosine_period_epochs: int | None = None,
        landmark_sigma: float = LANDMARK_SIGMA,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.fan = FAN(LIGHT_FAN_CONFIG if fan_config is None else FANConfig.from_dict(fan_config))
        self.save_hyperparameters(
            {
                "fan_config": asdict(self.fan.config),
                "lr": lr,
                "weight_decay": weight_decay,
                "cosine_period_epochs": cosine_period_epochs,
                "landmark_sigma": landmark_sigma,
                "channels_last": channels_last,
            }
        )
        self.optimiser_settings = OptimiserSettings(lr, weight_decay, cosine_period_epochs)
        # One metric object per stage (normalised mean error, averaged over images).
        self.train_nme, self.val_nme, self.test_nme = MeanMetric(), MeanMetric(), MeanMetric()

    def forward(self, images: Tensor) -> Tensor:
        """Final-stack landmark heatmaps of uint8 or [0, 1] float images."""
        return self.fan(images_to_float(images, self.hparams.channels_last))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Loss summed over the stacks (intermediate supervision)."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Validation loss and NME."""
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Test loss and NME."""
        self._step(batch, "test")

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        images, truth = batch["image"], batch["landmarks"].float()
        stacks = self.fan.stack_heatmaps(images_to_float(images, self.hparams.channels_last))
        heatmap_size = stacks[-1].shape[-1]
        scale = heatmap_size / images.shape[-1]
        targets, known = landmark_heatmaps(
            truth * scale,
            (heatmap_size, heatmap_size),
            self.hparams.landmark_sigma,
        )
        count = known.sum().clamp_min(1)
        loss = sum(
            (output.float() - targets).square().sum(dim=(-2, -1))[known].sum() / count
            for output in stacks
        )
        predicted = decode_landmarks(stacks[-1].detach().float()) / scale
        errors = normalised_mean_error(predicted, truth)
        errors = errors[errors.isfinite()]
        nme = getattr(self, f"{stage}_nme")
        nme.update(errors)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            sync_dist=True,
            prog_bar=True,
            batch_size=len(images),
        )
        self.log(f"{stage}/nme", nme, on_epoch=True, prog_bar=True, batch_size=len(images))
        return loss

    def on_fit_start(self) -> None:
        """Switch the network to channels-last memory format if asked."""
        if self.hparams.channels_last:
            self.fan.to(memory_format=torch.channels_last)

    def configure_optimizers(self) -> dict[str, Any]:
        """Adam and cosine annealing over the FAN's parameters."""
        return self.optimiser_settings.build(self, self.trainer.max_epochs)
