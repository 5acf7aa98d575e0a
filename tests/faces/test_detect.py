import importlib.util
import sys

import numpy as np
import pytest
from raw_datasets import ASTRONAUT_68, face_frame

from aunet.faces import detect
from aunet.faces.detect import (
    Detection,
    DetectorUnavailableError,
    FaceBox,
    FaceTracker,
    LandmarkDetector,
    predictor_path,
)

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def detector() -> LandmarkDetector:
    return LandmarkDetector()


def test_finds_the_astronaut_and_places_68_plausible_points(detector):
    image = face_frame(0)
    detection = detector.detect(image)
    assert detection is not None
    assert not detection.from_previous
    points = detection.landmarks
    assert points.shape == (68, 2)
    assert points.dtype == np.float32
    box = detection.box
    assert 60 < box.right - box.left < 130  # her face is about 90 pixels wide
    # the anatomy is in order: brows above eyes above nose tip above mouth above chin, and
    # the image-left eye (36-41) left of the other (42-47)
    brows, eyes = points[17:27, 1].mean(), points[36:48, 1].mean()
    nose, mouth, chin = points[30, 1], points[48:68, 1].mean(), points[8, 1]
    assert brows < eyes < nose < mouth < chin
    assert points[36:42, 0].mean() < points[42:48, 0].mean()
    np.testing.assert_allclose(points, ASTRONAUT_68, atol=2.5)


def test_detection_on_a_shrunk_copy_gives_nearly_the_same_points(detector):
    shrunk = LandmarkDetector(detect_side=360)  # finds the face at 360 x 360
    full = detector.detect(face_frame(0))
    fast = shrunk.detect(face_frame(0))
    assert fast is not None
    face_width = full.box.right - full.box.left
    assert np.abs(fast.landmarks - full.landmarks).max() < 0.05 * face_width


def test_largest_face_wins(detector):
    image = face_frame(0)
    small = image[::2, ::2]  # the same face at half size, pasted in a corner
    canvas = np.zeros((768, 768, 3), np.uint8)
    canvas[:512, 256:] = image
    canvas[512:, :256] = small
    detection = LandmarkDetector(detect_side=None, upsample=1).detect(canvas)
    assert detection.box.left > 256  # the full-size face


def test_no_face_gives_none_or_the_fallback_box(detector):
    blank = np.zeros((200, 200, 3), np.uint8)
    assert detector.detect(blank) is None
    fallback = FaceBox(50, 50, 150, 150)
    detection = detector.detect(blank, fallback=fallback)
    assert detection.from_previous
    assert detection.box == fallback
    assert detection.landmarks.shape == (68, 2)


def test_tracker_falls_back_to_the_previous_box_until_reset(detector):
    tracker = FaceTracker(detector)
    found = tracker(face_frame(0))
    lost = tracker(np.zeros_like(face_frame(0)))  # e.g. a blurred frame: no face found
    assert lost.from_previous
    assert lost.box == found.box
    tracker.reset()
    assert tracker(np.zeros_like(face_frame(0))) is None


def test_missing_dlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    with pytest.raises(DetectorUnavailableError, match=r"pip install 'aunet\[prep\]'"):
        LandmarkDetector()


def test_missing_model_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        detect.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "face_recognition_models" else real(name, *a),
    )
    with pytest.raises(DetectorUnavailableError, match="face-recognition-models"):
        predictor_path()


class _Rectangle:
    def __init__(self, left, top, right, bottom):
        self.box = (left, top, right, bottom)

    def left(self):
        return self.box[0]

    def top(self):
        return self.box[1]

    def right(self):
        return self.box[2]

    def bottom(self):
        return self.box[3]


class _ScoredFaces:
    """Stands for dlib's detector: fixed boxes with fixed scores, searched at full size."""

    def __init__(self, *faces):
        self.faces = faces

    def run(self, image, upsample, adjust_threshold):
        return [_Rectangle(*box) for box, _ in self.faces], [s for _, s in self.faces], [0] * 2


def test_the_best_scored_face_wins_and_a_tracked_face_keeps_its_track(monkeypatch):
    poster = ((0, 0, 199, 199), 0.05)  # large, barely above the threshold: a false positive
    person = ((220, 40, 299, 119), 1.4)
    detector = LandmarkDetector(detect_side=None)
    monkeypatch.setattr(detector, "_faces", _ScoredFaces(poster, person))
    image = np.zeros((240, 320, 3), np.uint8)
    assert detector.find_face(image) == (1.4, FaceBox(220, 40, 299, 119))  # largest used to win
    # A video whose tracked face is the one near the poster keeps it, however it scores.
    near_poster = detector.find_face(image, near=FaceBox(10, 10, 190, 190))
    assert near_poster == (0.05, FaceBox(0, 0, 199, 199))
    # A previous box overlapping no face found: the best-scored face again.
    elsewhere = detector.find_face(image, near=FaceBox(300, 200, 319, 239))
    assert elsewhere == (1.4, FaceBox(220, 40, 299, 119))
    assert [box for _, box in detector.find_faces(image)] == [person[0], poster[0]]
    monkeypatch.setattr(detector, "_faces", _ScoredFaces())
    assert detector.find_face(image) is None


def test_box_overlap_is_intersection_over_union():
    assert detect.box_overlap(FaceBox(0, 0, 9, 9), FaceBox(0, 0, 9, 9)) == 1.0
    assert detect.box_overlap(FaceBox(0, 0, 9, 9), FaceBox(5, 0, 14, 9)) == pytest.approx(50 / 150)
    assert detect.box_overlap(FaceBox(0, 0, 9, 9), FaceBox(10, 0, 19, 9)) == 0.0


class _MovingFace:
    """Stands for the detector over a face moving 3 px right per frame (a frame is its x)."""

    def __init__(self, found: bool = True) -> None:
        self.searches = 0
        self.found = found

    def detect(self, x, fallback=None):
        self.searches += 1
        if not self.found:
            return Detection(self.landmarks(x, fallback), fallback, from_previous=True)
        box = FaceBox(x, 10, x + 40, 50)
        return Detection(self.landmarks(x, box), box, score=1.5)

    def landmarks(self, x, box):
        """The face's own points, wherever the box is: a shape predictor that fits."""
        return np.array([[x + 10, 20], [x + 30, 40]], np.float32)


def test_a_tracker_searches_one_frame_in_n_and_its_box_follows_the_face():
    detector = _MovingFace()
    tracker = FaceTracker(detector, redetect_every=4)
    detections = [tracker(3 * k) for k in range(8)]
    assert detector.searches == 2  # frames 0 and 4
    assert [d.tracked for d in detections] == [False, True, True, True] * 2
    assert all(d.score == 1.5 for d in detections)  # a followed face keeps its detection's
    # The box moves with the landmarks' centroid, one frame behind the face.
    assert [d.box.left for d in detections[1:4]] == [0, 3, 6]
    assert [d.landmarks[0, 0] for d in detections] == [3 * k + 10 for k in range(8)]
    tracker.lose_track()
    assert not tracker(24).tracked and detector.searches == 3
    tracker.reset()
    assert not tracker(27).tracked and detector.searches == 4


def test_every_frame_is_searched_by_default_and_a_fallback_box_is_not_followed():
    detector = _MovingFace()
    tracker = FaceTracker(detector)
    assert not any(tracker(3 * k).tracked for k in range(3)) and detector.searches == 3
    tracker = FaceTracker(detector, redetect_every=5)
    tracker(0)
    tracker.lose_track()
    detector.found = False  # the detector misses: the previous box, searched again next frame
    assert tracker(3).from_previous and tracker(6).from_previous
    assert detector.searches == 6
    with pytest.raises(ValueError, match="redetect_every must be at least 1, got 0"):
        FaceTracker(detector, redetect_every=0)
