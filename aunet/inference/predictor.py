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

import contextlib
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
import yaml
from torch import nn

from aunet.data.framing import Reframe
from aunet.faces.crop import FaceCrop, crop_face
from aunet.faces.detect import (
    TRACK_OVERLAP,
    Detection,
    FaceBox,
    FaceTracker,
    LandmarkDetector,
    box_overlap,
)
from aunet.faces.images import read_image
from aunet.faces.video import frame_count, read_frames
from aunet.models import ReparametrisedFAN
from aunet.training.au_module import (
    AUHeatmapModule,
    legacy_stem_hparams,
    predates_stem_pool_option,
)
from aunet.training.checkpoint_io import CheckpointError, load_weights_only
from aunet.training.precision import BF16_MIXED, FLOAT32

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
#: Timestamps of a video whose container declares no frame rate (OpenFace's default too).
DEFAULT_FPS = 30.0
#: A previous frame's box is kept for a frame with no detected face only while the crop it
#: gives still looks like the last detected face: the normalised cross-correlation of the two
#: crops' central halves (the eyes, nose and mouth; grey, 16 x 16) must be at least this. On
#: synthetic clips, whose lighting, noise and background change every frame, consecutive
#: detected crops of one face score 0.38-0.97 (median 0.81); other images cropped at the same
#: place score below 0.05, and a blank frame 0.
MIN_SIMILARITY = 0.25
_SIGNATURE_SIDE = 16
#: The stages whose time the final line reports.
STAGES = ("decode", "detect", "crop", "forward", "write")


class InputError(ValueError):
    """A bad input file, folder or option; the message names it."""


# Inputs: videos, images, folders of images, decoded one frame at a time.


class Frame(NamedTuple):
    """One decoded frame: 1-based number within its source, time (s), file and RGB pixels."""

    number: int
    timestamp: float
    file: Path
    image: np.ndarray


@dataclass(frozen=True)
class Source:
    """A video, or a sequence of images (a folder's, or one image file given alone)."""

    path: Path
    images: tuple[Path, ...] | None = None

    @property
    def is_video(self) -> bool:
        """True for a video file."""
        return self.images is None

    def count(self) -> int | None:
        """Frames to expect (a video's declared count, which may be missing)."""
        return frame_count(self.path) if self.images is None else len(self.images)

    def frames(self) -> Iterator[Frame]:
        """Decode the frames in order, one at a time.

        Videos: ``timestamp = (frame - 1) / fps`` as OpenFace writes it. Images: timestamp 0.
        """
        if self.images is None:
            fps = video_fps(self.path)
            for index, image in enumerate(read_frames(self.path)):
                yield Frame(index + 1, index / fps, self.path, image)
        else:
            for index, path in enumerate(self.images):
                yield Frame(index + 1, 0.0, path, read_image(path, InputError))


def video_fps(path: Path) -> float:
    """The frame rate the container declares, or :data:`DEFAULT_FPS`."""
    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return fps if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS


def _natural_key(path: Path) -> list[int | str]:
    """Sort ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def collect_sources(inputs: Sequence[str | os.PathLike]) -> list[Source]:
    """Check the inputs and make each a :class:`Source`.

    A folder is its images (:data:`IMAGE_SUFFIXES`, not recursive) in natural name order.

    Raises:
        InputError: for a missing input, a file that is neither an image nor a video, an
            image or video that cannot be opened, or a folder without images.
    """
    if not inputs:
        raise InputError("no input given: pass video files, image files or folders")
    sources = []
    for given in map(Path, inputs):
        suffix = given.suffix.lower()
        if given.is_dir():
            images = sorted(
                (p for p in given.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                key=_natural_key,
            )
            if not images:
                raise InputError(
                    f"{given}: folder holds no images (expected {', '.join(IMAGE_SUFFIXES)}; "
                    "pass videos as inputs themselves)"
                )
            sources.append(Source(given, tuple(images)))
        elif not given.exists():
            raise InputError(f"{given}: no such file or folder")
        elif suffix in VIDEO_SUFFIXES:
            frame_count(given)  # opens it: a damaged video fails here, before any work
            sources.append(Source(given))
        elif suffix in IMAGE_SUFFIXES:
            if not cv2.haveImageReader(str(given)):
                raise InputError(f"{given}: not a readable image (damaged or unsupported)")
            sources.append(Source(given, (given,)))
        else:
            raise InputError(
                f"{given}: neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a video "
                f"({', '.join(VIDEO_SUFFIXES)})"
            )
    return sources


# Faces: detection, the previous box as a checked fallback, the crop; stage timing.


@dataclass
class Stopwatch:
    """Seconds spent per stage (:data:`STAGES`), wall clock."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Add the time the ``with`` block takes to ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start

    def iterate(self, items: Iterator[Frame], stage: str) -> Iterator[Frame]:
        """Yield from ``items``, timing each ``next`` (decoding happens there) as ``stage``."""
        while True:
            with self(stage):
                item = next(items, None)
            if item is None:
                return
            yield item


class Face(NamedTuple):
    """A face crop, how sure we are it is a face (0-1), and which face of the video it is.

    ``confidence``: for a face detected in the frame, :func:`detection_confidence` of dlib's
    score (for a face followed from its last detection, ``--redetect-every``, that detection's);
    for a face kept from the previous frame's box, its resemblance to the last detected face.
    ``face_id``: 0 for the one tracked face; with every face (:class:`AllFaceFinder`), the
    same number for the same face from frame to frame, as OpenFace's ``face_id``.
    """

    crop: FaceCrop
    confidence: float
    face_id: int = 0


def detection_confidence(score: float) -> float:
    """The detector's score as a 0-1 confidence: the logistic ``1 / (1 + exp(-score))``.

    dlib's HOG detector scores a window by its SVM margin, 0 at its decision threshold: a face
    exactly there gets 0.5, a clear frontal face (score 1-3) 0.73-0.95, and a weak false
    positive (a poster, a texture: score near 0) about 0.5, not the 1.00 of a bare "found".
    """
    return 1.0 / (1.0 + math.exp(-score))


def _signature(image: np.ndarray) -> np.ndarray:
    """A small zero-mean grey copy of a crop's central half, for :func:`crop_similarity`."""
    side = image.shape[0]
    inner = image[side // 4 : side - side // 4, side // 4 : side - side // 4]
    grey = cv2.cvtColor(inner, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (_SIGNATURE_SIDE, _SIGNATURE_SIDE), interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32)
    return small - small.mean()


def crop_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Normalised cross-correlation of two signatures, clipped to [0, 1] (0 for a flat one)."""
    norm = float(np.sqrt((first**2).sum() * (second**2).sum()))
    return float(np.clip((first * second).sum() / norm, 0.0, 1.0)) if norm > 1e-3 else 0.0


class _FaceCropper:
    """Crops faces as the training data were cropped (what both face finders share).

    Args:
        detector: the landmark detector.
        image_size: side of the crops.
        margin: crop margin, as at training (:func:`aunet.faces.crop.face_box`).
        stopwatch: where detection and cropping time go.
        framing: the model's framing (:mod:`aunet.data.framing`), applied to the crop as
            training applied it to the stored crops.
    """

    def __init__(
        self,
        detector: LandmarkDetector,
        image_size: int,
        margin: float,
        stopwatch: Stopwatch,
        framing: str = "store",
    ) -> None:
        self.detector = detector
        self.image_size = image_size
        self.margin = margin
        self.reframe = Reframe(framing)
        self.stopwatch = stopwatch

    def crop(self, image: np.ndarray, landmarks: np.ndarray) -> FaceCrop:
        """The model's crop of the face with these landmarks."""
        return self.reframe.face_crop(crop_face(image, landmarks, self.image_size, self.margin))


class FaceFinder(_FaceCropper):
    """The face of each frame: detected, or inside a video the previous frame's box if still a face.

    dlib's detector finds the best-scored face (:class:`~aunet.faces.detect.FaceTracker`); when it
    finds none, the tracker's previous box gives landmarks, and that crop is kept only if it
    resembles the last detected face (:data:`MIN_SIMILARITY`), its confidence being that
    resemblance. So a briefly blurred or turned face keeps its row, and a blank frame, a cut or
    a face that left does not inherit one. With ``redetect_every`` N above 1 the detector runs
    on one frame in N and the face is followed between (:class:`~aunet.faces.detect.FaceTracker`),
    each followed crop checked against the last detected face the same way. Other arguments as
    :class:`_FaceCropper`'s.
    """

    def __init__(
        self, detector: LandmarkDetector, *args: Any, redetect_every: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(detector, *args, **kwargs)
        self.tracker = FaceTracker(detector, redetect_every)
        self._reference: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous face (a new video, or an unrelated image)."""
        self.tracker.reset()
        self._reference = None

    def __call__(self, image: np.ndarray) -> Face | None:
        """The face of ``image``, or None.

        A frame whose followed box (``redetect_every`` above 1) no longer resembles the last
        detected face is searched by the detector instead, so tracking never loses a face that
        detection on every frame would have found.
        """
        with self.stopwatch("detect"):
            detection = self.tracker(image)
        face = self._face(image, detection)
        if face is None and detection is not None and detection.tracked:
            self.tracker.lose_track()
            with self.stopwatch("detect"):
                detection = self.tracker(image)
            face = self._face(image, detection)
        return face

    def _face(self, image: np.ndarray, detection: Detection | None) -> Face | None:
        """The crop of ``detection``, if it is the face: detected, or resembling the last one."""
        if detection is None:
            return None
        with self.stopwatch("crop"):
            crop = self.crop(image, detection.landmarks)
            signature = _signature(crop.image)
        if not (detection.from_previous or detection.tracked):
            self._reference = signature
            return Face(crop, detection_confidence(detection.score or 0.0))
        similarity = 0.0 if self._reference is None else crop_similarity(signature, self._reference)
        if similarity >= MIN_SIMILARITY:
            # A followed face is the detected one, still in view: its detection's confidence.
            tracked = detection_confidence(detection.score or 0.0) if detection.tracked else None
            return Face(crop, similarity if tracked is None else tracked)
        if not detection.tracked:  # a tracked miss is searched again by the caller
            self.reset()
        return None

    def faces(self, image: np.ndarray) -> list[Face]:
        """The face of ``image`` as a list (empty when none), as :class:`AllFaceFinder` gives."""
        face = self(image)
        return [] if face is None else [face]


class AllFaceFinder(_FaceCropper):
    """Every face the detector finds in each frame, numbered from frame to frame (``--all-faces``).

    Each face keeps the ``face_id`` of the previous frame's face its box overlaps most
    (:data:`~aunet.faces.detect.TRACK_OVERLAP` at least), best-scored faces choosing first; a
    face overlapping none gets the next unused number. There is no fallback to the previous
    frame's boxes: a face the detector misses in a frame has no row in that frame. Arguments
    as :class:`_FaceCropper`'s.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame's faces and start numbering at 0 (a new video or image)."""
        self._previous: list[tuple[int, FaceBox]] = []
        self._next_id = 0

    def _number(self, boxes: list[FaceBox]) -> list[int]:
        free = list(self._previous)
        numbers = []
        for box in boxes:  # best-scored first
            overlaps = [(box_overlap(box, other), i) for i, (_, other) in enumerate(free)]
            best = max(overlaps, default=(0.0, -1))
            if best[0] >= TRACK_OVERLAP:
                numbers.append(free.pop(best[1])[0])
            else:
                numbers.append(self._next_id)
                self._next_id += 1
        return numbers

    def faces(self, image: np.ndarray) -> list[Face]:
        """The faces of ``image``, best-scored first."""
        with self.stopwatch("detect"):
            found = [
                (score, box, self.detector.landmarks(image, box))
                for score, box in self.detector.find_faces(image)
            ]
        numbers = self._number([box for _, box, _ in found])
        self._previous = [(n, box) for n, (_, box, _) in zip(numbers, found, strict=True)]
        with self.stopwatch("crop"):
            return [
                Face(self.crop(image, landmarks), detection_confidence(score), number)
                for number, (score, _, landmarks) in zip(numbers, found, strict=True)
            ]


# The model: weights-only checkpoints, folding, batched forward passes.

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
