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
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from aunet.data.folds import DISFA_FOLDS
from aunet.data.store import DEFAULT_ENCODING, Encoding, FrameStoreWriter
from aunet.synthetic.geometry import (
    MAX_INTENSITY,
    SYNTHETIC_AUS,
    Identity,
    Pose,
    mean_identity,
    sample_identity,
)
from aunet.synthetic.render import render_face

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

# Independent random streams of a subject, so that e.g. the AU labels do not change when the
# renderer draws one more random number.
_IDENTITY, _LABELS, _POSE, _FRAME = range(4)
_AU = {name: k for k, name in enumerate(SYNTHETIC_AUS)}


def subject_names(count: int) -> tuple[str, ...]:
    """``count`` subject names: DISFA's, taken in turn from the three folds, then ``SY028``...

    Taking them in turn keeps every fold populated for any ``count`` (``count = 6`` gives two
    subjects per fold); beyond 27 the extra names belong to no DISFA fold (useful only for
    landmark pre-training, which has no folds).

    Raises:
        ValueError: for ``count < 1``.
    """
    if count < 1:
        raise ValueError(f"need at least one subject, got {count}")
    interleaved = [part[i] for i in range(max(map(len, DISFA_FOLDS))) for part in DISFA_FOLDS]
    extra = [f"SY{i:03d}" for i in range(len(interleaved) + 1, count + 1)]
    return tuple((interleaved + extra)[:count])


def _rng(seed: int, subject: str, *stream: int) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process.
    return np.random.default_rng([seed, zlib.crc32(subject.encode()), *stream])


def subject_identity(subject: str, seed: int = 0) -> Identity:
    """The face of ``subject`` under ``seed``: the same in every process and run."""
    return sample_identity(_rng(seed, subject, _IDENTITY))


@dataclass(frozen=True)
class _Event:
    """A kind of facial action episode: AUs that rise, hold and fall together.

    ``coverage`` is the expected fraction of a subject's frames inside such an episode;
    ``members`` are ``(AU, probability of joining an episode, peak relative to the episode's)``.
    """

    coverage: float
    members: tuple[tuple[str, float, float], ...]


# How often each AU shows alone: AU26 seldom (DISFA's jaw drops come with the lips apart), AU5
# a little more, as its cue (sclera above the iris) is the smallest in the image.
_ALONE = {"AU26": 0.01, "AU05": 0.045}
# Expressions as FACS combines them; their coverages set the per-AU base rates (documented in
# docs/synthetic-faces.md: AU25 ~0.35, AU12 ~0.27, AU5/AU9/AU15/AU20 ~0.06-0.09 of the frames).
_EVENTS: tuple[_Event, ...] = (
    _Event(0.20, (("AU12", 1.0, 1.0), ("AU06", 0.7, 0.85), ("AU25", 0.45, 0.8))),  # smile
    _Event(0.20, (("AU25", 1.0, 1.0), ("AU26", 0.65, 0.85))),  # speech, mouth open
    _Event(  # surprise
        0.08,
        (("AU01", 1.0, 1.0), ("AU02", 0.85, 0.95), ("AU05", 0.45, 0.8), ("AU25", 0.3, 0.7)),
    ),
    _Event(0.12, (("AU04", 1.0, 1.0), ("AU09", 0.15, 0.6), ("AU17", 0.3, 0.7))),  # frown
    _Event(0.04, (("AU09", 1.0, 1.0), ("AU04", 0.5, 0.7), ("AU25", 0.3, 0.6))),  # disgust
    _Event(  # sadness
        0.05,
        (("AU15", 1.0, 1.0), ("AU01", 0.5, 0.8), ("AU04", 0.4, 0.7), ("AU17", 0.6, 0.8)),
    ),
    _Event(  # fear
        0.04,
        (("AU20", 1.0, 1.0), ("AU05", 0.5, 0.8), ("AU01", 0.4, 0.7), ("AU25", 0.6, 0.8)),
    ),
    _Event(0.05, (("AU17", 1.0, 1.0), ("AU15", 0.3, 0.6))),  # doubt, chin raise
    # Every AU also alone now and then, so that none is only ever seen with its partners.
    *(_Event(_ALONE.get(name, 0.03), ((name, 1.0, 1.0),)) for name in SYNTHETIC_AUS),
)
_PEAKS = (1, 2, 3, 4, 5)
_PEAK_PROBABILITIES = (0.15, 0.25, 0.27, 0.2, 0.13)
_RISE, _HOLD, _FALL = (3, 10), (3, 25), (3, 12)  # frames, inclusive ranges


def _smoothstep(u: np.ndarray) -> np.ndarray:
    return u * u * (3 - 2 * u)


def _envelope(rise: int, hold: int, fall: int) -> np.ndarray:
    """An episode's 0-1 profile: smooth rise, plateau, smooth fall (all values > 0)."""
    up = _smoothstep(np.arange(1, rise + 1) / (rise + 1))
    down = _smoothstep(np.arange(fall, 0, -1) / (fall + 1))
    return np.concatenate([up, np.ones(hold), down])


def subject_labels(subject: str, n_frames: int, seed: int = 0) -> np.ndarray:
    """DISFA-like AU intensity labels of ``subject``'s first ``n_frames`` frames under ``seed``.

    Each expression kind (:data:`_EVENTS`) places episodes along the sequence as a renewal
    process (gaps between episodes exponential, so that its share of frames matches its coverage,
    scaled by how expressive this subject is); each episode draws a peak intensity and which of
    its AUs take part, and each AU follows the episode's rise-hold-fall profile scaled to its own
    peak. An AU's track is the maximum over episodes, rounded to integers like DISFA's labels.
    Each expression kind draws from its own random stream, so a longer sequence starts with the
    same frames.

    Returns:
        ``n_frames x 12`` float32 intensities in 0-5, integer-valued, ``SYNTHETIC_AUS`` order.
    """
    expressivity = _rng(seed, subject, _LABELS).lognormal(0.0, 0.4, len(_EVENTS))
    track = np.zeros((n_frames, len(SYNTHETIC_AUS)))
    mean_length = np.mean(_RISE) + np.mean(_HOLD) + np.mean(_FALL)
    for k, (event, scale) in enumerate(zip(_EVENTS, expressivity, strict=True)):
        rng = _rng(seed, subject, _LABELS, k)
        coverage = min(0.6, event.coverage * scale)
        mean_gap = mean_length * (1 - coverage) / coverage
        t = -int(rng.uniform(0, mean_length + mean_gap))  # start at a random phase
        while t < n_frames:
            profile = _envelope(
                int(rng.integers(_RISE[0], _RISE[1] + 1)),
                int(rng.integers(_HOLD[0], _HOLD[1] + 1)),
                int(rng.integers(_FALL[0], _FALL[1] + 1)),
            )
            peak = rng.choice(_PEAKS, p=_PEAK_PROBABILITIES)
            for name, probability, relative in event.members:
                joins, noise, lag = rng.random(), rng.normal(0.0, 0.6), int(rng.integers(-2, 3))
                if joins >= probability:
                    continue
                value = np.clip(peak * relative + noise, 0.6, MAX_INTENSITY) * profile
                start = t + lag
                lo, hi = max(start, 0), min(start + len(profile), n_frames)
                if hi > lo:
                    column = track[lo:hi, _AU[name]]
                    np.maximum(column, value[lo - start : hi - start], out=column)
            t += len(profile) + int(rng.exponential(mean_gap))
    return np.floor(track + 0.5).astype(np.float32)


def _wave(rng: np.random.Generator, n_frames: int, amplitude: float) -> np.ndarray:
    """A smooth random signal: three sinusoids with periods of 25-250 frames."""
    t = np.arange(n_frames)[:, None]
    periods = rng.uniform(25, 250, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    weights = rng.normal(0, amplitude / np.sqrt(3), 3)
    return (weights * np.sin(2 * np.pi * t / periods + phases)).sum(axis=1)


def _pose_tracks(n_frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The :class:`Pose` fields of :func:`pose_sequence` as arrays over the frames."""
    tracks = {
        "roll": np.clip(rng.normal(0, 4) + _wave(rng, n_frames, 6.0), -20, 20),
        "yaw": np.clip(rng.normal(0, 6) + _wave(rng, n_frames, 8.0), -25, 25),
        "pitch": np.clip(rng.normal(0, 3) + _wave(rng, n_frames, 4.0), -12, 12),
        "margin": np.clip(rng.uniform(1.24, 1.36) + _wave(rng, n_frames, 0.03), 1.2, 1.4),
        "shift_x": rng.normal(0, 0.012) + _wave(rng, n_frames, 0.012),
        "shift_y": rng.normal(0, 0.012) + _wave(rng, n_frames, 0.012),
        "gaze_x": np.clip(_wave(rng, n_frames, 0.5), -1, 1),
        "gaze_y": np.clip(_wave(rng, n_frames, 0.3), -1, 1),
    }
    blink = np.zeros(n_frames + 3)
    t = int(rng.integers(0, 60))
    while t < n_frames:
        blink[t : t + 3] = (0.5, 1.0, 0.5)
        t += int(rng.integers(30, 90))
    tracks["blink"] = blink[:n_frames]
    return tracks


def _pose_at(tracks: dict[str, np.ndarray], t: int) -> Pose:
    return Pose(**{name: float(values[t]) for name, values in tracks.items()})


def pose_sequence(n_frames: int, rng: np.random.Generator) -> list[Pose]:
    """Smooth head motion, gaze and blinks of one subject's sequence (before per-frame jitter).

    A subject has its own mean pose and crop; roll (kept within +-20 degrees), yaw (+-25), pitch
    (+-12), crop margin (1.2-1.4 x the landmark box) and crop offset wander slowly around them;
    blinks (about one every 60 frames, three frames long) close the eyes.
    """
    tracks = _pose_tracks(n_frames, rng)
    return [_pose_at(tracks, t) for t in range(n_frames)]


def _jitter(pose: Pose, rng: np.random.Generator) -> Pose:
    """Per-frame noise of a face tracker's crop: small rotation, scale and offset errors."""
    return replace(
        pose,
        roll=pose.roll + rng.normal(0, 0.8),
        margin=pose.margin * (1 + rng.normal(0, 0.01)),
        shift_x=pose.shift_x + rng.normal(0, 0.004),
        shift_y=pose.shift_y + rng.normal(0, 0.004),
    )


def landmark_pose(rng: np.random.Generator) -> Pose:
    """A pose for landmark pre-training: wider than the AU sequences' (roll +-45, yaw +-35)."""
    return Pose(
        roll=float(np.clip(rng.normal(0, 15), -45, 45)),
        yaw=rng.uniform(-35, 35),
        pitch=rng.uniform(-15, 15),
        margin=rng.uniform(1.15, 1.5),
        shift_x=rng.normal(0, 0.04),
        shift_y=rng.normal(0, 0.04),
        gaze_x=rng.uniform(-1, 1),
        gaze_y=rng.uniform(-1, 1),
        blink=float(rng.random() < 0.1) * rng.uniform(0.3, 1.0),
    )


def random_intensities(rng: np.random.Generator, active: float = 0.3) -> np.ndarray:
    """Independent random intensities for landmark pre-training: each AU on with ``active``."""
    on = rng.random(len(SYNTHETIC_AUS)) < active
    return np.where(on, rng.uniform(0, MAX_INTENSITY, len(SYNTHETIC_AUS)), 0.0)


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
        poses = _pose_tracks(length, _rng(seed, subject, _POSE))
    for t in numbers:
        rng = _rng(seed, subject, _FRAME, t)
        if landmark_only:
            au, pose = random_intensities(rng), landmark_pose(rng)
        else:
            au, pose = labels[t], _jitter(_pose_at(poses, t), rng)
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
            values[_AU[name]] = level
            if name == "AU26":
                values[_AU["AU25"]] = 2.0  # a jaw drop shows with the lips apart
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
