"""aunet-predict on test-made videos and images: CSV contract, tracking, pictures, bad inputs."""

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from checkpoint_factories import IMAGE_SIZE, fit_checkpoint, save_checkpoint, untrained_module
from hardware import cpu
from skimage.data import astronaut

from aunet.aus import DATASET_AUS
from aunet.faces.crop import DEFAULT_MARGIN, crop_face
from aunet.faces.detect import Detection, FaceBox, LandmarkDetector
from aunet.inference.face_finding import (
    MIN_SIMILARITY,
    AllFaceFinder,
    FaceFinder,
    detection_confidence,
)
from aunet.inference.outputs import plot_csv
from aunet.inference.predict import main
from aunet.inference.predictor import CheckpointError, load_predictor
from aunet.inference.sources import Stopwatch
from aunet.models import FAN

AUS = DATASET_AUS["synthetic"]
OPENFACE = ["frame", "face_id", "timestamp", "confidence", "success"]
FPS = 25.0
FRAMES = 16
BLANK = (1, 7, 8, 16)  # 1-based; 7 and 8 follow faces, so the tracker has a box to fall back on


def astronaut_frame(t: float, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """skimage's astronaut, moved right and scaled up as t goes 0 -> 1 (face 87-113 px)."""
    scale, dx = 1.0 + 0.3 * t, -40 + 75 * t
    affine = np.array([[scale, 0, size[0] / 2 + dx - scale * 222], [0, scale, 110 - scale * 126]])
    return cv2.warpAffine(astronaut(), affine, size, borderValue=(60, 60, 60))


def blank_frame(size: tuple[int, int] = (320, 240)) -> np.ndarray:
    return np.full((size[1], size[0], 3), 30, np.uint8)


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames), list(reader)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    frames = [
        blank_frame() if n in BLANK else astronaut_frame((n - 1) / (FRAMES - 1))
        for n in range(1, FRAMES + 1)
    ]
    return write_video(tmp_path_factory.mktemp("video") / "astronaut.mp4", frames)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    return save_checkpoint(untrained_module("reparam"), folder / "reparam.ckpt")


@pytest.fixture(scope="module")
def predicted(video, checkpoint, tmp_path_factory) -> Path:
    """One run over the video with every output asked for, in aunet's CSV format."""
    out = tmp_path_factory.mktemp("out")
    main([str(video), "--ckpt", str(checkpoint), "--out", str(out / "au.csv"), "--locations",
          "--format", "aunet",
          "--overlay", str(out / "overlay.mp4"), "--plot", str(out / "plot.png"),
          "--batch-size", "3", "--precision", "32-true", "--no-progress"])  # fmt: skip
    return out


def test_video_csv_has_openface_columns_and_one_row_per_frame(predicted):
    header, rows = read_csv(predicted / "au.csv")
    locations = [f"{au}_{axis}" for au in AUS for axis in "xy"]
    assert header == OPENFACE + [f"{au}_r" for au in AUS] + locations  # no input column
    assert [int(row["frame"]) for row in rows] == list(range(1, FRAMES + 1))
    assert {row["face_id"] for row in rows} == {"0"}
    times = [float(row["timestamp"]) for row in rows]
    np.testing.assert_allclose(times, np.arange(FRAMES) / FPS, atol=5e-4)


@pytest.fixture(scope="module")
def openface(video, checkpoint, predicted, tmp_path_factory) -> Path:
    """The same video in OpenFace's format (the default): rec.csv in a folder."""
    out = tmp_path_factory.mktemp("openface")
    main([str(video), "--ckpt", str(checkpoint), "--out", str(out), "--batch-size", "3",
          "--precision", "32-true", "--no-progress"])  # fmt: skip
    return out / f"{video.stem}.csv"


#: OpenFace 2.2's FeatureExtraction -aus columns (its RecorderCSV order): 17 intensities, then
#: 18 occurrences (AU28 is detected, not rated).
OPENFACE_22 = [*OPENFACE, *(f"AU{n:02d}_r" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17,
               20, 23, 25, 26, 45)), *(f"AU{n:02d}_c" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14,
               15, 17, 20, 23, 25, 26, 28, 45))]  # fmt: skip


def test_openface_csv_has_openface_22s_columns_and_a_number_in_every_cell(openface, predicted):
    header, rows = read_csv(openface)
    assert header == OPENFACE_22
    assert openface.read_text().splitlines()[0] == ",".join(OPENFACE_22)  # "," and no spaces
    assert all(math.isfinite(float(v)) or v == "nan" for row in rows for v in row.values())
    _, aunet_rows = read_csv(predicted / "au.csv")
    for row, reference in zip(rows, aunet_rows, strict=True):
        for au in AUS:  # the model's AUs: its intensity, 0 without a face
            expected = float(reference[f"{au}_r"] or 0.0) if row["success"] == "1" else 0.0
            assert float(row[f"{au}_r"]) == pytest.approx(expected, abs=5e-4)
            assert row[f"{au}_c"] == ("1" if float(row[f"{au}_r"]) >= 2.0 else "0")
        others = [name for name in OPENFACE_22[5:] if name[:4] not in AUS]
        assert {row[name] for name in others} == {"nan"}  # AU07, AU10, ...: claimed by nobody
    assert [int(r["frame"]) for r in rows if r["success"] == "0"] == list(BLANK)


def test_openface_csv_reads_as_pandas_and_py_feat_read_it(openface):
    """py-feat's read_openface reads with pandas (sep ",", column names stripped) and its
    Fex.aus selects all 35 AU columns of OPENFACE_22 (feat/utils/io.py: openface_AU_columns);
    py-feat itself is not installed here (it pulls its own torch and model stack), so its
    rules are applied as written there."""
    import pandas as pd

    frame = pd.read_csv(openface, sep=",")
    frame.columns = frame.columns.str.strip(" ")
    aus = frame[[name for name in OPENFACE_22 if name.startswith("AU")]]  # Fex.aus
    assert aus.shape == (FRAMES, 35)
    assert all(pd.api.types.is_numeric_dtype(aus[name]) for name in aus)  # no text columns
    assert aus[[f"{au}_r" for au in AUS]].notna().all().all()
    assert aus["AU45_r"].isna().all() and aus["AU28_c"].isna().all()


def test_one_openface_csv_per_input_named_as_openface_names_them(tmp_path, video, checkpoint,
                                                                  capsys):  # fmt: skip
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), astronaut_frame(0.3)[..., ::-1])
    out = tmp_path / "out"
    main([str(video), str(folder), "--ckpt", str(checkpoint), "--out", str(out), "--no-progress"])
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{video.stem}.csv", "frames.csv"])
    assert (
        len(read_csv(out / "frames.csv")[1]) == 1 and "input" not in read_csv(out / "frames.csv")[0]
    )
    assert f"wrote 2 CSVs into {out}" in capsys.readouterr().out
    for argv, message in (
        ([str(video), str(folder), "--out", str(tmp_path / "one.csv")], "give a folder for them"),
        ([str(video), str(video), "--out", str(tmp_path / "two")], "would have one name"),
        ([str(video), str(folder), "--out", str(tmp_path / "p"), "--plot", str(tmp_path / "p.png")],
         "draws the AUs of one CSV"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as stopped:
            main([*argv, "--ckpt", str(checkpoint), "--no-progress"])
        assert stopped.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "one.csv").exists() and not (tmp_path / "two").exists()


def test_occurrence_follows_the_threshold(tmp_path, checkpoint):
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), astronaut_frame(0.5)[..., ::-1])
    rows = {}
    for threshold in ("0", "5.1"):
        out = tmp_path / f"t{threshold}.csv"
        main([str(path), "--ckpt", str(checkpoint), "--out", str(out), "--no-progress",
              "--occurrence-threshold", threshold])  # fmt: skip
        rows[threshold] = read_csv(out)[1][0]
    assert {rows["0"][f"{au}_c"] for au in AUS} == {"1"}  # every intensity >= 0
    assert {rows["5.1"][f"{au}_c"] for au in AUS} == {"0"}  # none above the scale's top


def test_success_is_0_exactly_on_the_blank_frames(predicted):
    _, rows = read_csv(predicted / "au.csv")
    failed = [int(row["frame"]) for row in rows if row["success"] == "0"]
    assert tuple(failed) == BLANK
    for row in rows:
        values = [row[f"{au}_r"] for au in AUS] + [row[f"{au}_x"] for au in AUS]
        if row["success"] == "0":
            assert set(values) == {""} and float(row["confidence"]) == 0
        else:
            assert "" not in values
            assert 0.5 <= float(row["confidence"]) < 1  # detected: dlib's score above 0


def test_intensities_lie_in_0_5_and_locations_in_the_face(predicted):
    _, rows = read_csv(predicted / "au.csv")
    faces = [row for row in rows if row["success"] == "1"]
    intensities = np.array([[float(row[f"{au}_r"]) for au in AUS] for row in faces])
    assert intensities.min() >= 0 and intensities.max() <= 5
    assert intensities.std() > 0  # a real model's output, not a constant
    xs = np.array([[float(row[f"{au}_x"]) for au in AUS] for row in faces])
    ys = np.array([[float(row[f"{au}_y"]) for au in AUS] for row in faces])
    assert (xs > 0).all() and (xs < 320).all() and (ys > 0).all() and (ys < 240).all()


def test_locations_and_intensities_match_a_hand_made_pipeline(tmp_path, checkpoint):
    """One image through detector, crop and model by hand; locations mapped back by hand."""
    image = astronaut_frame(0.5)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), image[..., ::-1])
    main([str(path), "--ckpt", str(checkpoint), "--out", str(tmp_path / "au.csv"), "--locations",
          "--precision", "32-true", "--no-progress", "--format", "aunet"])  # fmt: skip
    header, rows = read_csv(tmp_path / "au.csv")
    assert header[-1] == "input" and rows[0]["input"] == str(path)
    assert rows[0]["frame"] == "1" and float(rows[0]["timestamp"]) == 0
    detection = LandmarkDetector().detect(image)
    crop = crop_face(image, detection.landmarks, IMAGE_SIZE, DEFAULT_MARGIN)
    result = load_predictor(checkpoint)(crop.image[None])
    scale, shift = crop.affine[0, 0], crop.affine[:, 2]
    expected_xy = (result.locations[0] - shift) / scale  # crop = scale * frame + shift
    np.testing.assert_allclose(
        [float(rows[0][f"{au}_r"]) for au in AUS], result.intensities[0], atol=5e-4
    )
    actual_xy = [[float(rows[0][f"{au}_{axis}"]) for axis in "xy"] for au in AUS]
    np.testing.assert_allclose(actual_xy, expected_xy, atol=0.05)


def test_output_is_deterministic_and_independent_of_the_batch_size(predicted, video, checkpoint):
    again = predicted / "again.csv"
    main([str(video), "--ckpt", str(checkpoint), "--out", str(again), "--locations",
          "--batch-size", "16", "--precision", "32-true", "--no-progress",
          "--format", "aunet"])  # fmt: skip
    assert again.read_bytes() == (predicted / "au.csv").read_bytes()


def test_the_precision_is_chosen_by_the_hardware_and_printed(
    tmp_path, checkpoint, capsys, monkeypatch
):
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), astronaut_frame(0.5)[..., ::-1])
    outputs = {}
    for flags, line in (
        ([], "precision: bf16-mixed (CPU supports AVX512_BF16)"),
        (["--precision", "32-true"], "precision: 32-true (set by --precision)"),
    ):
        cpu(monkeypatch, level="AVX512", onednn_bf16=True, avx512_bf16=True)
        out = tmp_path / f"{len(flags)}.csv"
        main([str(path), "--ckpt", str(checkpoint), "--out", str(out), "--device", "cpu",
              "--no-progress", *flags])  # fmt: skip
        assert line in capsys.readouterr().out
        outputs[len(flags)] = [float(read_csv(out)[1][0][f"{au}_r"]) for au in AUS]
    np.testing.assert_allclose(outputs[0], outputs[2], atol=0.1)


def test_overlay_video_and_plot_are_written(predicted):
    capture = cv2.VideoCapture(str(predicted / "overlay.mp4"))
    shapes = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        shapes.append(image.shape)
    capture.release()
    assert len(shapes) == FRAMES and len(set(shapes)) == 1
    height, width, _ = shapes[0]
    assert height == 2 * 128 and width > 6 * 128  # two rows of six AU panels beside the frame
    plot = cv2.imread(str(predicted / "plot.png"))
    assert plot is not None and plot.std() > 0
    assert not list(predicted.glob("*partial*"))


def test_a_folder_of_images_in_natural_order_with_png_overlays(tmp_path, checkpoint):
    folder = tmp_path / "frames"
    folder.mkdir()
    images = {"frame2.png": astronaut_frame(0.2), "frame10.jpg": blank_frame(),
              "frame9.png": astronaut_frame(0.8)}  # fmt: skip
    for name, image in images.items():
        cv2.imwrite(str(folder / name), image[..., ::-1])
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    main([str(folder), "--ckpt", str(checkpoint), "--out", str(out / "au.csv"),
          "--overlay", str(out / "overlays"), "--plot", str(out / "plot.png"),
          "--no-progress", "--format", "aunet"])  # fmt: skip
    header, rows = read_csv(out / "au.csv")
    assert header == OPENFACE + [f"{au}_r" for au in AUS] + ["input"]
    assert [Path(row["input"]).name for row in rows] == ["frame2.png", "frame9.png", "frame10.jpg"]
    assert [row["frame"] for row in rows] == ["1", "2", "3"]
    assert [row["success"] for row in rows] == ["1", "1", "0"]
    assert {row["timestamp"] for row in rows} == {"0.000"}
    pngs = sorted((out / "overlays").glob("*.png"))
    assert [p.name for p in pngs] == ["000001.png", "000002.png", "000003.png"]
    assert all(cv2.imread(str(p)) is not None for p in pngs)
    assert (out / "plot.png").stat().st_size > 0


def test_plot_csv_reads_openface_output_too(tmp_path):
    """OpenFace 2 separates with ", " and has AU.._c columns besides the AU.._r ones."""
    lines = ["frame, face_id, timestamp, confidence, success, AU01_r, AU12_r, AU01_c"]
    lines += [f"{n}, 0, {(n - 1) / 30:.3f}, 0.98, 1, {n / 10:.2f}, 1.50, 1" for n in range(1, 6)]
    (tmp_path / "openface.csv").write_text("\n".join(lines) + "\n")
    plot_csv(tmp_path / "openface.csv", tmp_path / "plot.png")
    image = cv2.imread(str(tmp_path / "plot.png"))
    assert image.shape[:2] == (185, 1000)  # 0.45 + 0.7 inches a row: two AU rows, not three


def test_a_fitted_checkpoint_runs_without_its_fan_file(tmp_path, video):
    """`aunet fit` saves the input size and FAN architecture: nothing else is needed."""
    checkpoint = fit_checkpoint(tmp_path)
    hparams = torch.load(checkpoint, weights_only=True)["hyper_parameters"]
    assert hparams["image_size"] == IMAGE_SIZE and not Path(hparams["fan"]).exists()
    predictor = load_predictor(checkpoint)
    assert type(predictor.network) is FAN  # the reparametrisation is folded
    main([str(video), "--ckpt", str(checkpoint), "--out", str(tmp_path / "au.csv"),
          "--no-progress"])  # fmt: skip
    _, rows = read_csv(tmp_path / "au.csv")
    assert len(rows) == FRAMES


def test_the_input_size_of_an_older_checkpoint_comes_from_its_run_config(tmp_path):
    module = untrained_module("scratch", image_size=None)
    checkpoint = save_checkpoint(module, tmp_path / "run" / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match="--image-size"):
        load_predictor(checkpoint)
    (tmp_path / "run" / "config.yaml").write_text(f"data:\n  image_size: {IMAGE_SIZE}\n")
    assert load_predictor(checkpoint).image_size == IMAGE_SIZE
    assert load_predictor(checkpoint, image_size=64).image_size == 64


class ScriptedDetector:
    """Finds the face only where told; otherwise places landmarks in the fallback box (or a
    followed one) as dlib's shape predictor would (here: the landmarks of the face image,
    whatever the frame shows). Counts its searches."""

    def __init__(self, landmarks: np.ndarray, found: list[bool]) -> None:
        self.face_landmarks = landmarks
        self.found = iter(found)
        self.box = FaceBox(0, 0, 1, 1)
        self.searches = 0

    def detect(self, image: np.ndarray, fallback: FaceBox | None = None) -> Detection | None:
        self.searches += 1
        if next(self.found):
            return Detection(self.face_landmarks, self.box, score=2.0)
        if fallback is not None:
            return Detection(self.face_landmarks, fallback, from_previous=True)
        return None

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        return self.face_landmarks


def test_the_previous_box_is_kept_only_while_the_face_is_still_there():
    face = astronaut_frame(0.5)
    landmarks = LandmarkDetector().detect(face).landmarks
    blurred = cv2.GaussianBlur(face, (0, 0), 2.0)
    frames = [face, blurred, blank_frame(), face]
    detector = ScriptedDetector(landmarks, found=[True, False, False, False])
    finder = FaceFinder(detector, IMAGE_SIZE, DEFAULT_MARGIN, Stopwatch())
    results = [finder(frame) for frame in frames]
    assert results[0].confidence == pytest.approx(detection_confidence(2.0))
    assert MIN_SIMILARITY <= results[1].confidence < 1  # blurred: the same face, old box
    assert results[2] is None  # blank: refused
    assert results[3] is None  # the tracker was reset: no box left to fall back on


def test_detection_confidence_is_the_logistic_of_dlibs_score():
    assert detection_confidence(0.0) == 0.5  # dlib's decision threshold
    assert detection_confidence(2.0) == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert detection_confidence(0.05) < detection_confidence(1.4) < 1  # poster < person


class ScriptedFaces:
    """Finds the given (score, box) faces in each successive frame; landmarks from one face."""

    def __init__(self, landmarks: np.ndarray, frames: list[list[tuple[float, FaceBox]]]) -> None:
        self.landmarks_of_face = landmarks
        self.frames = iter(frames)

    def find_faces(self, image):
        return next(self.frames)

    def landmarks(self, image, box):
        return self.landmarks_of_face


def test_all_faces_keep_their_face_id_from_frame_to_frame():
    face = astronaut_frame(0.5)
    landmarks = LandmarkDetector().detect(face).landmarks
    left, right, elsewhere = (
        FaceBox(0, 0, 99, 99),
        FaceBox(200, 0, 299, 99),
        FaceBox(0, 150, 80, 230),
    )
    moved_right = FaceBox(210, 5, 309, 104)  # overlaps `right` (IoU 0.74), not `left`
    frames = [
        [(1.0, left), (0.5, right)],
        [(1.2, moved_right), (0.8, left)],  # best-scored first: it still takes right's number
        [(0.9, elsewhere)],  # the others left; a new face
        [],
        [(0.7, left)],  # after a reset: numbering starts again
    ]
    finder = AllFaceFinder(
        ScriptedFaces(landmarks, frames), IMAGE_SIZE, DEFAULT_MARGIN, Stopwatch()
    )
    ids = [[f.face_id for f in finder.faces(face)] for _ in range(4)]
    assert ids == [[0, 1], [1, 0], [2], []]
    finder.reset()
    (only,) = finder.faces(face)
    assert only.face_id == 0 and only.confidence == pytest.approx(detection_confidence(0.7))


def test_all_faces_writes_a_row_per_face(tmp_path, checkpoint, capsys):
    two = np.concatenate([astronaut_frame(0.5), astronaut_frame(0.2)], axis=1)  # 640 x 240
    video = write_video(tmp_path / "two.mp4", [two, two, blank_frame((640, 240))])
    out = tmp_path / "au.csv"
    main([str(video), "--ckpt", str(checkpoint), "--out", str(out), "--all-faces", "--locations",
          "--no-progress"])  # fmt: skip
    _, rows = read_csv(out)
    assert [(row["frame"], row["face_id"], row["success"]) for row in rows] == [
        ("1", "0", "1"), ("1", "1", "1"), ("2", "0", "1"), ("2", "1", "1"), ("3", "0", "0")
    ]  # fmt: skip
    # The same face keeps its number: frame 2's face 0 is where frame 1's face 0 was.
    x = {(row["frame"], row["face_id"]): float(row["AU12_x"]) for row in rows[:4]}
    assert abs(x["1", "0"] - x["2", "0"]) < 5 and abs(x["1", "1"] - x["2", "1"]) < 5
    assert abs(x["1", "0"] - x["1", "1"]) > 200  # two faces 320 px apart
    with pytest.raises(SystemExit) as stopped:
        main([str(video), "--ckpt", str(checkpoint), "--out", str(tmp_path / "b.csv"),
              "--all-faces", "--overlay", str(tmp_path / "o.mp4")])  # fmt: skip
    assert stopped.value.code == 2
    assert "--all-faces with --overlay" in capsys.readouterr().err
    assert not (tmp_path / "b.csv").exists()


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file or folder"),
        (lambda d: _write(d / "notes.txt", b"hello"), "neither an image"),
        (lambda d: _write(d / "broken.mp4", b"\x00garbage" * 100), "cannot open this video"),
        (lambda d: _write(d / "broken.png", b"\x00garbage" * 100), "not a readable image"),
        (lambda d: _mkdir(d / "empty"), "holds no images"),
        (lambda d: _empty_video(d / "empty.avi"), "decoded no frame"),
    ],
    ids=["missing", "text", "bad-video", "bad-image", "empty-folder", "empty-video"],
)
def test_bad_inputs_fail_clearly_and_leave_no_csv(
    make_input, message, tmp_path, checkpoint, capsys
):
    source = make_input(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as error:
        main([str(source), "--ckpt", str(checkpoint), "--out", str(out / "au.csv"),
              "--no-progress"])  # fmt: skip
    assert error.value.code == 2
    stderr = capsys.readouterr().err
    assert str(source) in stderr and message in stderr
    assert not out.exists() or not list(out.iterdir())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _empty_video(path: Path) -> Path:
    """A video container that opens and holds no frame (fails only once decoding starts)."""
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48)).release()
    return path


class Payload:
    """Any class: its pickle is code to run, which aunet must refuse to load."""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"state_dict": {}, "hyper_parameters": {"strategy": "scratch", "x": Payload()}},
         "weights_only=True"),
        ({"state_dict": {}, "hyper_parameters": {"fan_config": {}}}, "not an AU model"),
        ({"weights": torch.zeros(2)}, "no Lightning state_dict"),
        (b"not a checkpoint", "weights_only=True"),
        (b"", "empty file (0 bytes)"),
    ],
    ids=["pickled-object", "fan-checkpoint", "bare-tensors", "text", "empty"],
)  # fmt: skip
def test_bad_checkpoints_are_refused(content, message, tmp_path, video, capsys):
    path = tmp_path / "model.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(SystemExit):
        main([str(video), "--ckpt", str(path), "--out", str(tmp_path / "au.csv"), "--no-progress"])
    stderr = capsys.readouterr().err
    assert str(path) in stderr and message in stderr
    assert not (tmp_path / "au.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(video, checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(video), "--ckpt", str(checkpoint), "--out", str(tmp_path / "au.csv"),
              "--device", "cuda"])  # fmt: skip
    assert "CUDA requested but torch.cuda.is_available() is False" in capsys.readouterr().err


def test_a_truncated_video_is_reported_and_with_strict_length_refused(tmp_path, checkpoint, capsys):
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(40):  # noise: every frame is a JPEG of its own size
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the header still declares 40 frames
    out = tmp_path / "au.csv"
    main([str(cut), "--ckpt", str(checkpoint), "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    _, rows = read_csv(out)
    decoded = len(rows)
    assert 0 < decoded < 40
    sentence = (
        f"WARNING: {cut} decoded {decoded} of the 40 frames it declares (truncated or damaged?)"
    )
    assert sentence in captured.err.splitlines()
    assert captured.out.strip().endswith(f"; {sentence}")  # and in the summary line

    out.unlink()
    with pytest.raises(SystemExit) as stopped:
        main([str(cut), "--ckpt", str(checkpoint), "--out", str(out), "--strict-length",
              "--no-progress"])  # fmt: skip
    assert stopped.value.code == 2
    assert sentence.removeprefix("WARNING: ") + "; nothing written" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.partial*"))
    main([str(whole), "--ckpt", str(checkpoint), "--out", str(out), "--strict-length",
          "--no-progress"])  # fmt: skip
    assert len(read_csv(out)[1]) == 40 and "WARNING" not in capsys.readouterr().err


def test_a_followed_face_that_no_longer_looks_like_it_is_searched_again_in_that_frame():
    face = astronaut_frame(0.5)
    landmarks = LandmarkDetector().detect(face).landmarks
    detector = ScriptedDetector(landmarks, found=[True, False, True])
    finder = FaceFinder(detector, IMAGE_SIZE, DEFAULT_MARGIN, Stopwatch(), redetect_every=10)
    results = [finder(frame) for frame in (face, face, face)]
    assert detector.searches == 1  # frames 1 and 2 followed the face
    assert [r.confidence for r in results] == [pytest.approx(detection_confidence(2.0))] * 3
    # A blank frame: the followed crop is not the face, so the detector searches this frame,
    # finds nothing, and the previous box is refused too.
    assert finder(blank_frame()) is None
    assert detector.searches == 2
    assert finder(face).confidence == pytest.approx(detection_confidence(2.0))  # searched anew
    assert detector.searches == 3
