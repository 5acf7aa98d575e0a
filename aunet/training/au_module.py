"""AU intensity estimation by heatmap regression (Sec. 3) for any transfer strategy (Sec. 4).

The module draws the target heatmaps on the batch's device from the batch's landmarks and
intensities (Table 1 placement, :mod:`aunet.heatmaps`), regresses them with a strategy from the
model registry (:func:`aunet.models.build_strategy`), and scores the maxima of the predicted maps
with ICC(3,1) and MSE per AU. The ResNet-18 baseline (Sec. 6.1) regresses the intensities
directly.

Batches are dicts (see :mod:`aunet.data.dataset`): ``image`` B x 3 x S x S uint8, ``landmarks``
B x 68 x 2 input pixels (NaN unknown), ``au`` B x K (NaN unknown), ``index`` B store rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor

from aunet.aus import MAX_INTENSITY, check_au_names
from aunet.heatmaps import SIGMA_AT_1, SIGMA_AT_5, au_targets, decode_au_heatmaps
from aunet.metrics import ICC, MSE
from aunet.models import (
    COPIES_FAN_ARCHITECTURE,
    FAN,
    LIGHT_FAN_CONFIG,
    NEEDS_FAN,
    USES_FAN,
    FANConfig,
    build_strategy,
    load_fan,
)
from aunet.training.common import OptimiserSettings, StageMetrics, images_to_float

#: Strategies that build a network of the FAN's design without a pre-trained FAN; their
#: checkpoints record its architecture in ``fan_config`` all the same (the light FAN by default).
FAN_SHAPED = COPIES_FAN_ARCHITECTURE | {"scratch"}


def predates_stem_pool_option(hparams: Mapping[str, Any]) -> bool:
    """Whether a checkpoint was written before ``FANConfig.stem_pool_at`` existed.

    Every checkpoint of a FAN-designed network since records the FAN's architecture with the
    field (for ``scratch`` and ``random_backbone`` too); older ones hold a ``fan_config``
    without it, or none, and their networks all pooled the stem after ``conv2``. (``resnet18``
    records no FAN config and has no stem to rebuild either way.)
    """
    fan_config = hparams.get("fan_config")
    return not isinstance(fan_config, Mapping) or "stem_pool_at" not in fan_config


def legacy_stem_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters that rebuild an older checkpoint's network as it was trained.

    A ``fan_config`` without ``stem_pool_at`` already rebuilds the stem pooled after ``conv2``
    (:meth:`FANConfig.from_dict`); what older ``scratch`` and ``random_backbone`` checkpoints
    lack is any config for the network they built (the FAN given, else the light FAN, both
    pooled after ``conv2``), so it goes into their strategy's own ``fan_config`` option.

    Args:
        hparams: a checkpoint's ``hyper_parameters``, for which
            :func:`predates_stem_pool_option` holds.
    """
    hparams = dict(hparams)
    if hparams.get("strategy") in FAN_SHAPED:
        options = dict(hparams.get("strategy_args") or {})
        options.setdefault("fan_config", dict(hparams.get("fan_config") or asdict(FANConfig())))
        hparams["strategy_args"] = options
    return hparams


def check_input_side(image_size: int, config: FANConfig, strategy: str) -> None:
    """Refuse, before any run folder or epoch, an input side the FAN cannot take.

    The hourglasses halve the side ``depth`` times after the stem's 4x: the side must be a
    multiple of ``4 * 2**depth`` (64 for 2DFAN-4 and the light FAN), or the forward pass
    fails at the first step.

    Raises:
        ValueError: naming ``data.image_size``, the multiple and the nearest valid sides.
    """
    multiple = config.input_multiple
    if image_size % multiple == 0:
        return
    lower, upper = image_size // multiple * multiple, (image_size // multiple + 1) * multiple
    nearest = f"{lower} or {upper}" if lower else str(upper)
    raise ValueError(
        f"data.image_size {image_size}: the {strategy} network (FAN depth {config.depth}) takes "
        f"input sides that are multiples of {multiple}; use {nearest}"
    )


class AUHeatmapModule(pl.LightningModule):
    """AU heatmap regression (or direct regression for ``resnet18``) over one strategy.

    Args:
        strategy: a name from :data:`aunet.models.STRATEGIES` (``scratch``, ``finetune``,
            ``adapt``, ``attention``, ``reparam``, ``random_backbone``, ``resnet18``,
            ``adapt_finetune``).
        au_names: the K AUs, in the data's column order (linked from the DataModule).
        fan: path to FAN weights (official face-alignment state dict, its TorchScript archive,
            or an aunet FAN checkpoint); required by the transfer strategies
            (:data:`aunet.models.NEEDS_FAN`), read for its architecture by ``random_backbone``,
            and neither read nor recorded for ``scratch`` and ``resnet18``, which use no FAN
            (scratch's shape is its own ``strategy_args.fan_config``).
        fan_config: the FAN's architecture, filled in from ``fan`` and saved in checkpoints so a
            trained model rebuilds without the FAN file; give it instead of ``fan`` to build an
            untrained backbone of that shape (ignored, as ``fan``, by ``scratch`` and
            ``resnet18``).
        strategy_args: extra keyword arguments for the strategy builder.
        lr: Adam's learning rate (the paper does not give it).
        weight_decay: Adam's weight decay (Sec. 5.3: 1e-6).
        cosine_period_epochs: cosine annealing restarts every this many epochs (Sec. 5.3's
            "cosine annealing scheduler with step 5"); None anneals once over the whole run.
        channels_last: run the network in channels-last memory format (faster convolutions on
            CPUs with AVX-512 and on GPUs with tensor cores; see bench/BENCHMARKS.md).
        sigma_at_1: Gaussian spread at intensity 1, in heatmap pixels (default: Eq. 1's
            ``a / sqrt(2)``), see :func:`aunet.heatmaps.intensity_sigma`.
        sigma_at_5: Gaussian spread at intensity 5, in heatmap pixels.
        fixed_sigma: if set, every Gaussian has this spread (the fixed-size ablation).
        image_size: the network's input side S, linked from the data (``data.image_size``) and
            saved in checkpoints, so inference (``aunet-predict``) crops faces to the size the
            model was trained at; it changes nothing in training.
        crop_margin: the face-crop margin of the training data (the store's ``crop_margin``),
            linked from the data and saved in checkpoints, so inference crops faces as the
            training data were cropped; it changes nothing in training.
        framing: how the training crops were framed for the network (``store`` or
            ``face_alignment``, :mod:`aunet.data.framing`), linked from the data and saved in
            checkpoints, so inference frames faces as in training; it changes nothing here.
    """

    def __init__(
        self,
        strategy: str = "scratch",
        au_names: Sequence[str] = (),
        fan: str | None = None,
        fan_config: dict[str, Any] | None = None,
        strategy_args: dict[str, Any] | None = None,
        lr: float = 5e-4,
        weight_decay: float = 1e-6,
        cosine_period_epochs: int | None = 5,
        channels_last: bool = True,
        sigma_at_1: float = SIGMA_AT_1,
        sigma_at_5: float = SIGMA_AT_5,
        fixed_sigma: float | None = None,
        image_size: int | None = None,
        crop_margin: float | None = None,
        framing: str = "store",
    ) -> None:
        super().__init__()
        self.au_names = check_au_names(tuple(au_names))
        if not self.au_names:
            raise ValueError("au_names is empty: the model needs the data's AU list")
        if fan is None and fan_config is None and strategy == "random_backbone":
            fan_config = asdict(LIGHT_FAN_CONFIG)  # recorded, so a checkpoint names its layout
        backbone = self._backbone(strategy, fan, fan_config)
        fan, fan_config = (fan, asdict(backbone.config)) if backbone is not None else (None, None)
        if strategy == "scratch":  # no FAN; its own network's layout, which checkpoints name
            own = (strategy_args or {}).get("fan_config")
            fan_config = asdict(FANConfig.from_dict(dict(own)) if own else LIGHT_FAN_CONFIG)
        if image_size is not None and fan_config is not None:
            check_input_side(image_size, FANConfig.from_dict(fan_config), strategy)
        self.save_hyperparameters(
            {
                "strategy": strategy,
                "au_names": list(self.au_names),
                "fan": fan,
                "fan_config": fan_config,
                "strategy_args": dict(strategy_args or {}),
                "lr": lr,
                "weight_decay": weight_decay,
                "cosine_period_epochs": cosine_period_epochs,
                "channels_last": channels_last,
                "sigma_at_1": sigma_at_1,
                "sigma_at_5": sigma_at_5,
                "fixed_sigma": fixed_sigma,
                "image_size": image_size,
                "crop_margin": crop_margin,
                "framing": framing,
            }
        )
        self.optimiser_settings = OptimiserSettings(lr, weight_decay, cosine_period_epochs)
        options = dict(strategy_args or {})
        if strategy == "attention":
            options.setdefault("au_names", self.au_names)
        self.model = build_strategy(strategy, len(self.au_names), fan=backbone, **options)
        self.regresses_heatmaps = self.model.output_kind == "heatmaps"
        # One metric object per stage, so that validation never mixes with training frames.
        k = len(self.au_names)
        self.train_metrics = StageMetrics(ICC(k), MSE(k))
        self.val_metrics = StageMetrics(ICC(k), MSE(k))
        self.test_metrics = StageMetrics(ICC(k), MSE(k))

    @staticmethod
    def _backbone(strategy: str, fan: str | None, fan_config: dict[str, Any] | None) -> FAN | None:
        """The FAN to transfer from: loaded from ``fan``, or shaped by ``fan_config``.

        None for a strategy that uses no FAN: a given ``fan`` file is then not even opened.
        """
        if strategy not in USES_FAN:
            if fan is not None:
                rank_zero_info(f"strategy {strategy!r} uses no FAN: model.fan {fan} is not read")
            return None
        if fan is not None:
            return load_fan(fan)
        if fan_config is not None:
            return FAN(FANConfig.from_dict(fan_config))
        if strategy in NEEDS_FAN:
            raise ValueError(
                f"strategy {strategy!r} transfers from a pre-trained FAN: pass model.fan="
                "<path to 2DFAN-4 weights or an aunet FAN checkpoint> (make train ... FAN=path), "
                "or pre-train one with `make fan`"
            )
        return None

    def forward(self, images: Tensor) -> Tensor:
        """Heatmaps (B x K x S/4 x S/4), or intensities for ``resnet18``, of uint8/[0, 1] images."""
        return self.model(images_to_float(images, self.hparams.channels_last))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One optimisation step's loss on a batch."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate validation loss and metrics."""
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate test loss and metrics."""
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Per-frame store rows, intensities, locations (input pixels) and truth if known.

        ``resnet18`` regresses no maps, so its locations are NaN.
        """
        intensities, locations = self.predict_intensities(batch["image"])
        result = {"index": batch["index"], "pred": intensities, "location": locations}
        if "au" in batch:
            result["true"] = batch["au"]
        return result

    def predict_intensities(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Intensities (B x K, 0-5) and AU locations (B x K x 2, input pixels) of a batch."""
        return self.decode_output(self(images), images.shape[-1])

    def decode_output(self, output: Tensor, image_size: int) -> tuple[Tensor, Tensor]:
        """Intensities and AU locations from the network's output for ``image_size`` inputs.

        Sec. 3.4: the intensity of an AU is its map's maximum (clamped to [0, 5]), its location
        the argmax, scaled to input pixels. ``resnet18``'s output is the intensities; its
        locations are NaN.
        """
        output = output.float()
        if not self.regresses_heatmaps:
            return output.clamp(0.0, MAX_INTENSITY), output.new_full(
                (*output.shape, 2), float("nan")
            )
        intensities, locations = decode_au_heatmaps(output)
        return intensities, locations * (image_size / output.shape[-1])

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        images, truth = batch["image"], batch["au"].float()
        output = self(images).float()  # losses and decoding in float32 under mixed precision
        if self.regresses_heatmaps:
            loss = self._heatmap_loss(output, batch["landmarks"].float(), truth, images.shape[-1])
            predicted = decode_au_heatmaps(output.detach())[0]
        else:
            known = ~truth.isnan()
            loss = (output - truth.nan_to_num(0.0)).square()[known].mean()
            predicted = output.detach().clamp(0.0, MAX_INTENSITY)
        self.stage_metrics(stage).update(predicted, truth)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            sync_dist=True,
            prog_bar=True,
            batch_size=len(images),
        )
        return loss

    def draw_targets(
        self, landmarks: Tensor, truth: Tensor, image_size: int, heatmap_size: int
    ) -> tuple[Tensor, Tensor]:
        """Target maps and their mask for a batch, on the batch's device (Sec. 3.2)."""
        return au_targets(
            landmarks,
            truth,
            self.au_names,
            image_size,
            heatmap_size,
            self.hparams.sigma_at_1,
            self.hparams.sigma_at_5,
            self.hparams.fixed_sigma,
        )

    def _heatmap_loss(
        self, output: Tensor, landmarks: Tensor, truth: Tensor, image_size: int
    ) -> Tensor:
        """Eq. 2: squared error between predicted and target maps.

        Summed over each map's pixels, averaged over the maps whose label is known.
        """
        targets, mask = self.draw_targets(landmarks, truth, image_size, output.shape[-1])
        per_map = (output - targets).square().sum(dim=(-2, -1))
        return per_map[mask].sum() / mask.sum().clamp_min(1)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint whose weights this module's network would compute otherwise.

        Two cases load without an error and would silently give other outputs: weights trained
        on other AUs, or on the same in another order, when the count matches (each output map
        belongs to one AU); and a network trained before ``FANConfig.stem_pool_at`` existed
        (its stem pooled after ``conv2``) resumed into a network pooled before it.
        """
        hparams = checkpoint.get("hyper_parameters") or {}
        source = self._trainer.ckpt_path if self._trainer is not None else None
        trained = hparams.get("au_names")
        if trained is not None and tuple(trained) != self.au_names:
            raise ValueError(
                f"{source or 'the checkpoint'}: trained on AUs {list(trained)}, but the data has "
                f"{list(self.au_names)}; resume or fine-tune a model only on data with the AUs "
                "it was trained on, in the same order (the data's AUs are its frame store's "
                "au_names)"
            )
        if predates_stem_pool_option(hparams) and "before_conv2" in self.stem_layouts():
            raise ValueError(
                f"{source or 'the checkpoint'}: its network was trained with the FAN's stem "
                "pooled after conv2 (it predates FANConfig.stem_pool_at), but this one pools "
                "before conv2; resume it with the FAN it was trained with, or for scratch and "
                "random_backbone with --model.init_args.strategy_args "
                "'{fan_config: {stem_pool_at: after_conv2}}'"
            )

    def stem_layouts(self) -> set[str]:
        """The ``stem_pool_at`` of every FAN-designed network in the model (none for ResNet)."""
        return {m.config.stem_pool_at for m in self.model.modules() if isinstance(m, FAN)}

    def on_fit_start(self) -> None:
        """Switch the network to channels-last memory format if asked."""
        if self.hparams.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training ICC/MSE per AU."""
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        """Log ``val/icc/AU01`` ..., ``val/icc_mean``, ``val/mse/AU01`` ..., ``val/mse_mean``."""
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Log the test metrics, named as the validation ones."""
        self._log_epoch_metrics("test")

    def stage_metrics(self, stage: str) -> StageMetrics:
        """The metric object of ``train``, ``val`` or ``test``."""
        return getattr(self, f"{stage}_metrics")

    def _log_epoch_metrics(self, stage: str) -> None:
        values = self.stage_metrics(stage).compute_and_reset(self.au_names)
        self.log_dict({f"{stage}/{name}": value for name, value in values.items()}, sync_dist=False)

    def configure_optimizers(self) -> dict[str, Any]:
        """Adam over the trainable parameters only (frozen FANs stay out), cosine annealing."""
        return self.optimiser_settings.build(self, self.trainer.max_epochs)
