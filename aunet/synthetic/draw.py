"""Synthetic faces: aunet's embedded default dataset, a DISFA stand-in that needs no licence.

Each subject is one continuous "video" of procedurally drawn faces (see
:mod:`aunet.synthetic.render`) with exact 68-point landmarks and the 12 DISFA AU
intensities. Subjects carry DISFA's names (``SN001`` ...), so the standard three DISFA folds
(:data:`aunet.data.folds.DISFA_FOLDS`) split them subject-exclusively as the paper does (Sec. 5.1).

Labels follow DISFA's statistics (docs/synthetic-faces.md): integer intensities 0-5, most frames 0
for most AUs, AU25/AU12/AU4 common and AU5/AU9/AU15/AU20 rare, smooth episodes that rise, hold and
fall over tens of frames, and FACS co-occurrences (AU6 with AU12 in smiles, AU1 with AU2 in brow
raises, AU26 mostly with AU25). The intensity a frame shows is exactly its label.

Everything is deterministic in ``(seed, subject, frame)``: a frame can be drawn on its own, by any
process, and comes out byte-identical.

Example:
    >>> frames = list(generate(["SN001", "SN002"], frames_per_subject=3, size=64, seed=0))
    >>> [(f.subject, f.frame) for f in frames][:4]
    [('SN001', 0), ('SN001', 1), ('SN001', 2), ('SN002', 0)]
    >>> frames[0].image.shape, frames[0].landmarks.shape, frames[0].au.shape
    ((64, 64, 3), (68, 2), (12,))
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from aunet.data.store import DEFAULT_ENCODING, Encoding
from aunet.data.store_writer import FrameStoreWriter
from aunet.synthetic.geometry import AU_INDEX, SYNTHETIC_AUS, Pose
from aunet.synthetic.identity import Identity, mean_identity, sample_identity
from aunet.synthetic.render import render_face
from aunet.synthetic.sequences import (
    FRAME_STREAM,
    POSE_STREAM,
    jittered,
    landmark_pose,
    pose_at,
    pose_sequence,
    pose_tracks,
    random_intensities,
    subject_identity,
    subject_labels,
    subject_names,
    subject_rng,
)

__all__ = [
    "SYNTHETIC_AUS",
    "Identity",
    "Pose",
    "SyntheticFrame",
    "generate",
    "landmark_pose",
    "mean_identity",
    "pose_sequence",
    "random_intensities",
    "render_face",
    "sample_identity",
    "subject_frames",
    "subject_identity",
    "subject_labels",
    "subject_names",
    "write_store",
]


class SyntheticFrame(NamedTuple):
    """One generated frame: its subject and frame number, image, landmarks and AU labels."""

    subject: str
    frame: int
    image: np.ndarray  # S x S x 3 uint8 RGB
    landmarks: np.ndarray  # 68 x 2 float32, pixels
    au: np.ndarray  # 12 float32 intensities (SYNTHETIC_AUS order); empty when landmark-only


def subject_frames(
    subject: str,
    frames: Iterable[int] | int,
    size: int = 128,
    seed: int = 0,
    landmark_only: bool = False,
) -> Iterator[SyntheticFrame]:
    """The frames of one subject's sequence (all of ``range(frames)``, or the given numbers).

    Frame ``t`` is the same whichever other frames are drawn and in whatever order or process.

    Args:
        subject: the subject's name (any string; DISFA's names put it in a DISFA fold).
        frames: how many frames from 0, or an iterable of frame numbers.
        size: image side in pixels.
        seed: the dataset's seed.
        landmark_only: the landmark pre-training variant: wider, independent poses per frame and
            random AUs; its ``au`` is empty (shape 0).
    """
    numbers = list(range(frames)) if isinstance(frames, int) else [int(t) for t in frames]
    if any(t < 0 for t in numbers):
        raise ValueError(f"frame numbers must be >= 0, got {min(numbers)}")
    identity = subject_identity(subject, seed)
    length = max(numbers, default=-1) + 1
    if not landmark_only:
        labels = subject_labels(subject, length, seed)
        poses = pose_tracks(length, subject_rng(seed, subject, POSE_STREAM))
    for t in numbers:
        rng = subject_rng(seed, subject, FRAME_STREAM, t)
        if landmark_only:
            au, pose = random_intensities(rng), landmark_pose(rng)
        else:
            au, pose = labels[t], jittered(pose_at(poses, t), rng)
        image, landmarks = render_face(identity, au, pose, size, rng)
        yield SyntheticFrame(
            subject, t, image, landmarks, np.zeros(0, np.float32) if landmark_only else au
        )


def generate(
    subjects: Iterable[str] | int,
    frames_per_subject: int,
    size: int = 128,
    seed: int = 0,
    landmark_only: bool = False,
) -> Iterator[SyntheticFrame]:
    """Frames for several subjects, subject by subject (see :func:`subject_frames`).

    Args:
        subjects: subject names, or a count for :func:`subject_names`.
        frames_per_subject: frames of each subject's sequence, numbered from 0.
        size: image side in pixels (64, 96, 128, 256, ...; the features scale with it).
        seed: the dataset's seed; the same seed gives byte-identical frames.
        landmark_only: the landmark pre-training variant (no AU labels).
    """
    names = subject_names(subjects) if isinstance(subjects, int) else list(subjects)
    for subject in names:
        yield from subject_frames(subject, frames_per_subject, size, seed, landmark_only)


#: Frames per parallel task: small enough to balance the workers, large enough to amortise.
_CHUNK = 64


@dataclass(frozen=True)
class StoreSummary:
    """What :func:`write_store` wrote: rows per subject, time and speed, AU base rates."""

    path: str
    frames_per_subject: dict[str, int]
    seconds: float
    positive_rate: dict[str, float]  # share of frames with intensity > 0, per AU

    @property
    def frames(self) -> int:
        """Rows written."""
        return sum(self.frames_per_subject.values())

    @property
    def frames_per_second(self) -> float:
        """Rows written per second of wall-clock time, rendering and writing included."""
        return self.frames / max(self.seconds, 1e-9)


def _render_chunk(task: tuple[str, int, int, int, int, bool]) -> dict[str, np.ndarray | list]:
    subject, start, stop, size, seed, landmark_only = task
    frames = list(subject_frames(subject, range(start, stop), size, seed, landmark_only))
    return {
        "images": np.stack([f.image for f in frames]),
        "landmarks": np.stack([f.landmarks for f in frames]),
        "au": np.stack([f.au for f in frames]),
        "subject": [subject] * len(frames),
        "frame": [f.frame for f in frames],
    }


def _worker_init() -> None:
    # The workers are the parallelism; OpenCV's own thread pool would only oversubscribe them.
    cv2.setNumThreads(1)


def write_store(
    path: str | os.PathLike,
    subjects: Iterable[str] | int = 27,
    frames_per_subject: int = 200,
    size: int = 128,
    seed: int = 0,
    landmark_only: bool = False,
    workers: int = 1,
    encoding: Encoding = DEFAULT_ENCODING,
    progress: Callable[[int], object] | None = None,
) -> StoreSummary:
    """Render a synthetic dataset into an aunet frame store (``docs/data-format.md``).

    The AU set is written as dataset ``synthetic`` with the 12 DISFA AUs; the landmark-only
    variant as ``synthetic_landmarks`` with no AU columns. Rows come subject by subject in frame
    order, with ``sequence`` = the subject (each subject is one video); the file is byte-for-byte
    the same for any ``workers``.

    Args:
        path: the ``.h5`` file to write (atomically: ``<path>.partial`` until done).
        subjects: names, or a count for :func:`subject_names` (27 = all of DISFA's).
        frames_per_subject: frames per subject.
        size: image side in pixels.
        seed: the dataset's seed.
        landmark_only: write the landmark pre-training variant.
        workers: processes rendering in parallel (1 = in this process).
        encoding: image encoding of the store (``jpeg`` or ``raw``).
        progress: called with the number of frames after each block is written (e.g. a tqdm's
            ``update``).

    Raises:
        ValueError: for ``frames_per_subject < 1``, ``workers < 1`` or a size below 16.
    """
    names = subject_names(subjects) if isinstance(subjects, int) else list(subjects)
    if frames_per_subject < 1 or workers < 1 or size < 16:
        raise ValueError(
            f"need frames_per_subject >= 1, workers >= 1 and size >= 16; got "
            f"{frames_per_subject}, {workers}, {size}"
        )
    tasks = [
        (name, start, min(start + _CHUNK, frames_per_subject), size, seed, landmark_only)
        for name in names
        for start in range(0, frames_per_subject, _CHUNK)
    ]
    au_names = () if landmark_only else SYNTHETIC_AUS
    attrs = {
        "seed": seed,
        "generator": "aunet.synthetic.draw",
        "frames_per_subject": frames_per_subject,
        "landmark_only": landmark_only,
        # The crops' nominal margin in aunet.faces.crop's terms (side = 1.3 x the landmark box;
        # poses vary it), so aunet-predict crops real faces like these by default.
        "crop_margin": Pose().margin - 1.0,
    }
    dataset = "synthetic_landmarks" if landmark_only else "synthetic"
    counts = dict.fromkeys(names, 0)
    positives = np.zeros(len(au_names))
    started = time.perf_counter()
    with (
        FrameStoreWriter(path, dataset, au_names, size, encoding=encoding, attrs=attrs) as writer,
        contextlib.ExitStack() as stack,
    ):
        if workers == 1:
            blocks: Iterator[dict] = map(_render_chunk, tasks)
        else:
            # forkserver: workers start from a clean process (no inherited OpenCV or torch
            # threads), with this module imported once in the server.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            pool = stack.enter_context(context.Pool(workers, initializer=_worker_init))
            blocks = pool.imap(_render_chunk, tasks)  # in task order: deterministic rows
        for block in blocks:
            writer.append(**block, sequence=block["subject"])
            counts[block["subject"][0]] += len(block["frame"])
            positives += (block["au"] > 0).sum(axis=0)
            if progress is not None:
                progress(len(block["frame"]))
    total = sum(counts.values())
    return StoreSummary(
        path=str(path),
        frames_per_subject=counts,
        seconds=time.perf_counter() - started,
        positive_rate={name: float(p / total) for name, p in zip(au_names, positives, strict=True)},
    )


def expected_write_seconds(
    frames: int,
    size: int = 128,
    landmark_only: bool = False,
    workers: int = 1,
    encoding: Encoding = DEFAULT_ENCODING,
    probe_frames: int = 8,
) -> float:
    """Seconds :func:`write_store` should take for ``frames`` frames on this machine.

    Measured, not recorded: ``probe_frames`` frames are rendered, encoded and written here, in
    this process, to a temporary store, and the time per frame is scaled to ``frames`` shared
    by the ``workers`` (taken to divide the work evenly, which more workers than free cores do
    not).
    """
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        write_store(Path(folder) / "probe.h5", subjects=1, frames_per_subject=probe_frames,
                    size=size, landmark_only=landmark_only, encoding=encoding)  # fmt: skip
        per_frame = (time.perf_counter() - started) / probe_frames
    return per_frame * frames / max(1, workers)


_AU_TITLES = {
    "AU01": "inner brow raiser",
    "AU02": "outer brow raiser",
    "AU04": "brow lowerer",
    "AU05": "upper lid raiser",
    "AU06": "cheek raiser",
    "AU09": "nose wrinkler",
    "AU12": "lip corner puller",
    "AU15": "lip corner depressor",
    "AU17": "chin raiser",
    "AU20": "lip stretcher",
    "AU25": "lips part",
    "AU26": "jaw drop (with AU25 at 2)",
}


def contact_sheet(
    size: int = 88, levels: tuple[int, ...] = (0, 1, 3, 5), seed: int = 0
) -> np.ndarray:
    """A figure to check the faces by eye.

    Every AU at ``levels`` on the average face, then sample frames of the dataset under ``seed``,
    every other one with its landmarks in green.

    Returns:
        An RGB uint8 image.
    """
    label_height, gap = max(14, size // 6), 6
    cells = []
    for name in SYNTHETIC_AUS:
        faces = []
        for level in levels:
            values = np.zeros(len(SYNTHETIC_AUS))
            values[AU_INDEX[name]] = level
            if name == "AU26":
                values[AU_INDEX["AU25"]] = 2.0  # a jaw drop shows with the lips apart
            faces.append(render_face(mean_identity(), values, None, size, clutter=False)[0])
        cell = np.full((label_height + size, len(levels) * size, 3), 255, np.uint8)
        cell[label_height:] = np.concatenate(faces, axis=1)
        title = f"{name} {_AU_TITLES[name]}: " + " ".join(map(str, levels))
        cv2.putText(
            cell,
            title,
            (3, label_height - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            label_height / 40,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        cells.append(cell)
    columns = 3
    pad = np.full((cells[0].shape[0], gap, 3), 255, np.uint8)
    rows = [
        np.concatenate([part for cell in cells[i : i + columns] for part in (cell, pad)][:-1], 1)
        for i in range(0, len(cells), columns)
    ]
    width = rows[0].shape[1]
    samples = []
    names = subject_names(27)
    for i, name in enumerate(names[: min(10, width // size)]):  # 10 keep the PNG < 300 KB
        frame = next(subject_frames(name, [17 * i + 5], size, seed))
        image = frame.image.copy()
        for x, y in frame.landmarks if i % 2 else ():
            cv2.circle(image, (round(x), round(y)), 0, (0, 255, 0), -1)
        samples.append(image)
    strip = np.concatenate(samples, axis=1)
    strip = np.pad(strip, ((0, 0), (0, width - strip.shape[1]), (0, 0)), constant_values=255)
    blank = np.full((gap, width, 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, blank)] + [strip], axis=0)


def save_contact_sheet(path: str | os.PathLike, **kwargs) -> None:
    """Write :func:`contact_sheet` as a PNG (e.g. ``docs/synthetic_faces.png``)."""
    image = contact_sheet(**kwargs)
    if not cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write the contact sheet to {path}")
