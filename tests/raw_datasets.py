"""Tiny raw datasets in each layout the converters read, written by the tests themselves.

Frames are either flat grey images whose level encodes the frame (so a test can tell from a crop
which source frame it came from) or the astronaut photograph of scikit-image (a real face, for
the detector).
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from scipy.io import savemat
from skimage.data import astronaut

from aunet.aus import DATASET_AUS

#: dlib's 68 iBUG points on ``skimage.data.astronaut()`` (512 x 512), rounded to pixels.
ASTRONAUT_68 = np.array(
    [
        [179, 104], [179, 116], [180, 127], [181, 139], [185, 151], [191, 160], [200, 169],
        [209, 176], [221, 178], [232, 177], [243, 171], [253, 164], [260, 154], [265, 144],
        [268, 132], [270, 120], [272, 108], [186, 94], [192, 88], [200, 87], [208, 89],
        [216, 92], [236, 93], [244, 91], [252, 91], [260, 92], [265, 98], [225, 103],
        [225, 111], [225, 119], [225, 127], [214, 131], [219, 132], [224, 134], [229, 133],
        [234, 132], [195, 101], [200, 98], [207, 98], [212, 104], [206, 104], [199, 104],
        [238, 105], [244, 101], [250, 101], [255, 104], [250, 107], [244, 106], [201, 140],
        [209, 139], [218, 139], [223, 141], [229, 140], [237, 140], [245, 141], [237, 151],
        [229, 155], [222, 156], [216, 155], [208, 150], [204, 141], [217, 143], [223, 144],
        [229, 143], [243, 142], [229, 150], [223, 150], [217, 150],
    ],
    dtype=np.float32,
)  # fmt: skip
#: Size (width, height) of the flat test frames, and the face the test landmarks outline there.
FRAME_SIZE = (160, 120)
FACE_68 = (ASTRONAUT_68 - ASTRONAUT_68.min(0)) * 0.5 + np.float32([55, 35])


def grey_level(frame: int) -> int:
    """The grey level of flat test frame ``frame`` (from 1): neighbours differ by 30 levels."""
    return 20 + 30 * ((frame - 1) % 8)


def flat_frame(frame: int, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A flat grey RGB frame whose level identifies it."""
    return np.full((size[1], size[0], 3), grey_level(frame), np.uint8)


def face_frame(frame: int = 1) -> np.ndarray:
    """The astronaut, slightly brighter frame by frame (a real face for the detector)."""
    return np.clip(astronaut().astype(np.int16) + 2 * frame, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 25.0) -> Path:
    """An MJPG .avi of RGB frames (MJPG is what OpenCV's headless build always writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def write_image(path: Path, image: np.ndarray) -> Path:
    """An RGB image as a JPEG file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]))
    return path


def write_rows(path: Path, rows: Sequence[tuple[int, float]]) -> Path:
    """A headerless ``frame,intensity`` label file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{frame},{value:g}\n" for frame, value in rows))
    return path


def disfa_label(subject_index: int, au_index: int, frame: int) -> float:
    """The intensity the test DISFA gives (subject, AU, frame): integers 0-5 that vary."""
    return float((subject_index + au_index + frame) % 6)


def without_inner_corners(points: np.ndarray) -> np.ndarray:
    """68 points to DISFA's 66 (drop the inner mouth corners 60 and 64)."""
    return np.delete(points, [60, 64], axis=0)


def make_disfa(
    root: Path,
    subjects: Sequence[str] = ("SN001", "SN002"),
    num_frames: int = 3,
    missing_landmarks: Sequence[tuple[str, int]] = (),
    faces: bool = False,
    landmarks: str = "Landmark_Points",
) -> Path:
    """A DISFA tree: flat frames (or astronaut ``faces``), labels, 66-point landmark files.

    SN001 names its landmark files ``l0001_lm.mat`` (from 1), the others ``SN002_0000_lm.mat``
    (from 0). ``missing_landmarks`` lists (subject, frame) pairs without a landmark file.
    ``landmarks`` is the landmark folder under ``root`` (e.g. the nested
    ``Landmark_Points/Landmark_Points`` that public DISFA scripts read).
    """
    for s, subject in enumerate(subjects):
        frames = [face_frame(i) if faces else flat_frame(i) for i in range(1, num_frames + 1)]
        write_video(root / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi", frames)
        for a, au in enumerate(DATASET_AUS["disfa"]):
            rows = [(i, disfa_label(s, a, i)) for i in range(1, num_frames + 1)]
            write_rows(
                root / "ActionUnit_Labels" / subject / f"{subject}_au{int(au[2:])}.txt", rows
            )
        folder = root / landmarks / subject / "tmp_frame_lm"
        folder.mkdir(parents=True, exist_ok=True)
        points = without_inner_corners(ASTRONAUT_68 if faces else FACE_68)
        for i in range(1, num_frames + 1):
            if (subject, i) in missing_landmarks:
                continue
            name = f"l{i:04d}_lm.mat" if subject == "SN001" else f"{subject}_{i - 1:04d}_lm.mat"
            savemat(folder / name, {"pts": points})
    return root


def make_bp4d(
    root: Path,
    sequences: dict[tuple[str, str], dict[int, tuple[float, ...] | None]],
    archive: Sequence[str] = (),
    images_folder: str = "images",
    labels_folder: str = "AU_INT",
) -> tuple[Path, Path]:
    """BP4D frames (astronaut faces) under ``root/images`` and FERA2015 labels in
    ``root/AU_INT`` (or the ``images_folder`` and ``labels_folder`` given).

    ``sequences[(subject, task)][frame]`` is the frame's five intensities (9 = unknown), or None
    for a frame with an image but no label row; frame files are zero-padded to ``frame`` digits
    (1.jpg, 02.jpg, 003.jpg) to exercise the padding. Subjects in ``archive`` become
    ``<subject>.zip`` archives of the same tree.
    """
    images, labels = root / images_folder, root / labels_folder
    for (subject, task), frames in sequences.items():
        for frame in frames:
            write_image(images / subject / task / f"{frame:0{frame}d}.jpg", face_frame(frame))
        for k, au in enumerate(DATASET_AUS["fera2015"]):
            rows = [(f, values[k]) for f, values in frames.items() if values is not None]
            write_rows(labels / au / f"{subject}_{task}_{au}.csv", rows)
    for subject in archive:
        folder = images / subject
        with zipfile.ZipFile(images / f"{subject}.zip", "w") as zipped:
            for path in sorted(folder.rglob("*.jpg")):
                zipped.write(path, path.relative_to(images).as_posix())
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        folder.rmdir()
    return images, labels


def make_bp4d_release(
    root: Path,
    sequences: dict[tuple[str, str], dict[int, tuple[float, ...] | None]],
    archive: Sequence[str] = (),
) -> tuple[Path, Path]:
    """The FERA2015 BP4D release as shipped: ``root/BP4D-training/F001/T1/*.jpg`` and
    ``root/AU Intensity Codes3.0/AU06/F001_T1_AU06.csv``, the layout OpenFace's FERA2015
    scripts read.

    Beside them, ``root/AUCoding/`` holds occurrence files (``F001_T1.csv``: a header row of AU
    numbers, then a frame number and 0/1 codes per row), which must not pass for intensities.
    The frames and labels are those :func:`make_bp4d` writes for the same ``sequences``.
    """
    images, labels = make_bp4d(
        root,
        sequences,
        archive,
        images_folder="BP4D-training",
        labels_folder="AU Intensity Codes3.0",
    )
    for subject, task in sequences:
        occurrence = root / "AUCoding" / f"{subject}_{task}.csv"
        occurrence.parent.mkdir(parents=True, exist_ok=True)
        occurrence.write_text(
            "0,1,2,4\n" + "".join(f"{frame},0,0,0\n" for frame in sequences[subject, task])
        )
    return images, labels


def make_300w_lp(root: Path) -> Path:
    """300W-LP: AFW with two faces (one without landmarks), AFW_Flip without a landmark folder."""
    for subset, names in (("AFW", ("AFW_1_0", "AFW_2_0", "AFW_3_0")), ("AFW_Flip", ("AFW_1_0",))):
        for i, name in enumerate(names, 1):
            write_image(root / subset / f"{name}.jpg", flat_frame(i))
    for name in ("AFW_1_0", "AFW_3_0"):
        folder = root / "landmarks" / "AFW"
        folder.mkdir(parents=True, exist_ok=True)
        savemat(folder / f"{name}_pts.mat", {"pts_2d": FACE_68})
    return root


def write_manifest(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    """A manifest CSV with the union of the rows' keys as its header (missing cells empty)."""
    header: list[str] = []
    for row in rows:
        header += [key for key in row if key not in header]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def landmark_cells(points: np.ndarray) -> dict[str, float]:
    """OpenFace-style ``x_i``/``y_i`` cells of 68 points."""
    cells = {f"x_{i}": float(x) for i, (x, _) in enumerate(points)}
    cells.update({f"y_{i}": float(y) for i, (_, y) in enumerate(points)})
    return cells
