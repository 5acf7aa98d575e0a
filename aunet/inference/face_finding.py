"""The face of each frame: dlib's detector, tracked between detections, cropped as training was."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import cv2
import numpy as np

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
from aunet.inference.sources import Stopwatch

#: A previous frame's box is kept for a frame with no detected face only while the crop it
#: gives still looks like the last detected face: the normalised cross-correlation of the two
#: crops' central halves (the eyes, nose and mouth; grey, 16 x 16) must be at least this. On
#: synthetic clips, whose lighting, noise and background change every frame, consecutive
#: detected crops of one face score 0.38-0.97 (median 0.81); other images cropped at the same
#: place score below 0.05, and a blank frame 0.
MIN_SIMILARITY = 0.25


_SIGNATURE_SIDE = 16


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
