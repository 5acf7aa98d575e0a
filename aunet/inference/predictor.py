"""From frames to AU predictions: input sources, the face of each frame, the trained model.

**Inputs.** :func:`collect_sources` checks the command line's inputs -- videos, images, folders of
images -- and :meth:`Source.frames` decodes them one frame at a time (RGB uint8), so nothing
holds a whole video.

**Faces.** :class:`FaceFinder` finds each frame's face (dlib, the best-scored face,
:mod:`aunet.faces.detect`) and crops it exactly as the training data were cropped
(:func:`aunet.faces.crop.crop_face`).

**The model.** :func:`load_predictor` reads a checkpoint written by ``aunet fit``
(``runs/<exp>/<data>/fold<k>/<stamp>/checkpoints/*.ckpt``) with ``torch.load(weights_only=True)``
-- tensors, numbers, strings and containers only, never arbitrary pickled objects -- and
rebuilds the network from the architecture saved in it (``fan_config``), so the FAN file used at
training time need not exist on the machine that runs inference. The reparametrised FAN
(Sec. 4.5) is folded into a plain FAN (:meth:`aunet.models.ReparametrisedFAN.fold`): same
outputs, no projections to compute. :class:`AUPredictor` forwards batches of crops and decodes
them as Sec. 3.4 does: the intensity of an AU is the maximum of its map, its location the argmax.

Example:
    >>> predictor = load_predictor("runs/reparam/synthetic/fold1/<stamp>/checkpoints/last.ckpt")
    >>> result = predictor(crops)  # N x S x S x 3 uint8, S = predictor.image_size
    >>> result.intensities.shape  # N x K, 0-5, in predictor.au_names order
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from aunet.models import ReparametrisedFAN
from aunet.training.au_module import (
    AUHeatmapModule,
    legacy_stem_hparams,
    predates_stem_pool_option,
)
from aunet.training.checkpoint_io import CheckpointError, load_weights_only
from aunet.training.precision import BF16_MIXED, FLOAT32

#: The hyperparameters that make a checkpoint an aunet AU model (``AUHeatmapModule``).
_REQUIRED_HPARAMS = ("strategy", "au_names")
#: Strategy options that name files of *initial* weights (ResNet-18's ImageNet weights): the
#: checkpoint's state dict replaces them, so they are not read (the file may not exist here).
_INITIAL_WEIGHT_OPTIONS = ("weights",)


@dataclass(frozen=True)
class Prediction:
    """What the model says about N face crops.

    Attributes:
        intensities: N x K float32 AU intensities, 0-5.
        locations: N x K x 2 float32 (x, y) AU locations in crop pixels (the argmax of each
            map); NaN for ``resnet18``, which regresses no maps.
        heatmaps: N x K x S/4 x S/4 float32 maps when asked for and the model has them.
    """

    intensities: np.ndarray
    locations: np.ndarray
    heatmaps: np.ndarray | None = None


def resolve_device(name: str = "auto") -> torch.device:
    """``cpu``, ``cuda`` (``cuda:N``), or ``auto`` (CUDA when available, else CPU).

    Raises:
        ValueError: when CUDA is asked for and is not available, or for an unknown name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("CUDA requested but torch.cuda.is_available() is False")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}")


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """The contents of an aunet AU checkpoint, read without unpickling arbitrary objects.

    Args:
        path: the checkpoint file.
        mmap: map the tensors from the file instead of reading them (``torch.load(mmap=True)``):
            for reading the hyperparameters of large checkpoints without loading their weights.

    Raises:
        CheckpointError: naming the file, when it is missing, not readable by
            ``torch.load(weights_only=True)``, or not a checkpoint of ``aunet fit``.
    """
    checkpoint = load_weights_only(path, mmap=mmap)
    expected = (
        "expected a checkpoint of `aunet fit` (runs/<experiment>/<dataset>/fold<k>/<stamp>/"
        "checkpoints/*.ckpt)"
    )
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path}: no Lightning state_dict in this file; {expected}")
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or any(key not in hparams for key in _REQUIRED_HPARAMS):
        found = sorted(hparams) if isinstance(hparams, dict) else "none"
        raise CheckpointError(
            f"{path}: not an AU model (hyper_parameters {found} lack "
            f"{' and '.join(_REQUIRED_HPARAMS)}; a FAN pre-training checkpoint, maybe?); {expected}"
        )
    return checkpoint


def checkpoint_image_size(checkpoint: dict[str, Any], path: str | os.PathLike) -> int | None:
    """The network input side the model was trained at, or None where nothing records it.

    Checkpoints from this version on hold it (``hyper_parameters["image_size"]``); for older
    ones it is read from the run's resolved ``config.yaml`` (``data.image_size``), two folders
    up from ``checkpoints/<name>.ckpt``.
    """
    size = checkpoint["hyper_parameters"].get("image_size")
    if size is not None:
        return int(size)
    config = Path(path).resolve().parent.parent / "config.yaml"
    if Path(path).resolve().parent.name != "checkpoints" or not config.is_file():
        return None
    data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    size = data.get("image_size") if isinstance(data, dict) else None
    return None if size is None else int(size)


def check_precision(precision: str) -> None:
    """Refuse an inference precision other than ``32-true`` and ``bf16-mixed``."""
    if precision not in (FLOAT32, BF16_MIXED):
        raise ValueError(f"precision must be {FLOAT32} or {BF16_MIXED}, got {precision!r}")


class AUPredictor:
    """A trained AU model in eval mode on one device, fed N x S x S x 3 uint8 face crops.

    Args:
        module: the rebuilt LightningModule (its reparametrised FAN folded).
        image_size: S, the side of the crops the model takes.
        device: where the network runs.
        precision: ``32-true``, or ``bf16-mixed`` to run the network under bf16 autocast (as
            Lightning's ``bf16-mixed`` trains); decoding is float32 either way.
    """

    def __init__(
        self,
        module: AUHeatmapModule,
        image_size: int,
        device: torch.device,
        precision: str = FLOAT32,
    ) -> None:
        check_precision(precision)
        multiple = getattr(getattr(module.model, "config", None), "input_multiple", 1)
        if image_size < 1 or image_size % multiple:
            raise ValueError(
                f"image size {image_size} is not a positive multiple of {multiple}, which this "
                "network needs"
            )
        self.module = module.eval().to(device)
        if module.hparams.channels_last:
            self.module.model.to(memory_format=torch.channels_last)
        self.image_size = image_size
        self.device = device
        self.precision = precision
        self.au_names: tuple[str, ...] = module.au_names
        margin = module.hparams.get("crop_margin")
        #: The face-crop margin of the training data, None where the checkpoint predates it.
        self.crop_margin: float | None = None if margin is None else float(margin)
        #: The training crops' framing (:mod:`aunet.data.framing`); older checkpoints: store.
        self.framing: str = module.hparams.get("framing") or "store"

    @property
    def network(self) -> nn.Module:
        """The bare network: B x 3 x S x S in [0, 1] -> B x K x S/4 x S/4 (``resnet18``: B x K)."""
        return self.module.model

    @property
    def regresses_heatmaps(self) -> bool:
        """False for ``resnet18``, which regresses the intensities directly."""
        return self.module.regresses_heatmaps

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray, heatmaps: bool = False) -> Prediction:
        """Intensities and locations (and maps if ``heatmaps``) of N face crops.

        Args:
            crops: N x S x S x 3 RGB uint8.
            heatmaps: also return the regressed maps (for overlays).
        """
        if crops.ndim != 4 or crops.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(
                f"expected N x {self.image_size} x {self.image_size} x 3 crops, got {crops.shape}"
            )
        images = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device).permute(0, 3, 1, 2)
        bf16 = self.precision == BF16_MIXED
        with torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
            output = self.module(images)
        intensities, locations = self.module.decode_output(output, self.image_size)
        maps = output.float().cpu().numpy() if heatmaps and self.regresses_heatmaps else None
        return Prediction(intensities.cpu().numpy(), locations.float().cpu().numpy(), maps)


def load_module(path: str | os.PathLike) -> AUHeatmapModule:
    """The trained :class:`AUHeatmapModule` of an ``aunet fit`` checkpoint (weights-only read).

    Raises:
        CheckpointError: for anything but a weights-only aunet AU checkpoint, naming the file.
    """
    return rebuild_module(read_checkpoint(path), path)


def rebuild_module(
    checkpoint: dict[str, Any], path: str | os.PathLike, weights: bool = True
) -> AUHeatmapModule:
    """Rebuild the LightningModule of a checkpoint read by :func:`read_checkpoint`.

    The FAN file of training time is not needed: ``fan_config`` rebuilds the backbone and the
    state dict fills in every weight, the frozen FAN's included. A checkpoint written before
    ``FANConfig.stem_pool_at`` existed rebuilds with the stem pooled after ``conv2``, as it was
    trained (:func:`~aunet.training.au_module.legacy_stem_hparams`).

    Args:
        checkpoint: what :func:`read_checkpoint` returned.
        path: its file, for error messages.
        weights: load the trained weights; False builds the architecture alone (initial
            weights), e.g. on the ``meta`` device to count its parameters and FLOPs.
    """
    hparams = dict(checkpoint["hyper_parameters"])
    if predates_stem_pool_option(hparams):
        hparams = legacy_stem_hparams(hparams)
    options = dict(hparams.get("strategy_args") or {})
    for key in _INITIAL_WEIGHT_OPTIONS:
        options.pop(key, None)
    hparams.update(fan=None, strategy_args=options)
    try:
        module = AUHeatmapModule(**hparams)
        if weights:
            module.load_state_dict(checkpoint["state_dict"])
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: cannot rebuild the AU model: {error}") from None
    return module


def load_predictor(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    precision: str = FLOAT32,
) -> AUPredictor:
    """Rebuild a trained AU model from an ``aunet fit`` checkpoint for inference.

    Args:
        path: the checkpoint (``.../checkpoints/last.ckpt`` or ``best-epochNNN.ckpt``).
        device: ``cpu``, ``cuda`` or ``auto`` (see :func:`resolve_device`), or a device.
        image_size: the input side S; default: the one the model was trained at
            (:func:`checkpoint_image_size`).
        precision: ``32-true`` or ``bf16-mixed`` (see :class:`AUPredictor`; ``aunet-predict``
            chooses by the hardware, :func:`aunet.training.precision.choose_precision`).

    Raises:
        CheckpointError: for anything but a weights-only aunet AU checkpoint, naming the file.
        ValueError: when CUDA is asked for but missing, the input size is unknown, or the
            precision is neither ``32-true`` nor ``bf16-mixed``.
    """
    check_precision(precision)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    checkpoint = read_checkpoint(path)
    image_size = image_size or checkpoint_image_size(checkpoint, path)
    if image_size is None:
        raise CheckpointError(
            f"{path}: the checkpoint does not record the input size it was trained at and no "
            "run config.yaml sits beside it; pass it (aunet-predict --image-size S)"
        )
    module = rebuild_module(checkpoint, path)
    if isinstance(module.model, ReparametrisedFAN):
        module.model = module.model.fold()
    try:
        return AUPredictor(module, image_size, device, precision)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
