"""What a synthetic subject does over time: its face, its AU episodes, its head pose.

Each subject draws from independent random streams (its identity, labels, pose and frames), so
that, for example, its AU labels do not change when the renderer draws one more random number.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from aunet.data.folds import DISFA_FOLDS
from aunet.synthetic.geometry import AU_INDEX, MAX_INTENSITY, SYNTHETIC_AUS, Pose
from aunet.synthetic.identity import Identity, sample_identity

# Independent random streams of a subject, so that e.g. the AU labels do not change when the
# renderer draws one more random number.
_IDENTITY, _LABELS, POSE_STREAM, FRAME_STREAM = range(4)


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


def subject_rng(seed: int, subject: str, *stream: int) -> np.random.Generator:
    """The random generator of one of a subject's streams, the same in every process."""
    # crc32, not hash(): Python salts str hashes per process.
    return np.random.default_rng([seed, zlib.crc32(subject.encode()), *stream])


def subject_identity(subject: str, seed: int = 0) -> Identity:
    """The face of ``subject`` under ``seed``: the same in every process and run."""
    return sample_identity(subject_rng(seed, subject, _IDENTITY))


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
    expressivity = subject_rng(seed, subject, _LABELS).lognormal(0.0, 0.4, len(_EVENTS))
    track = np.zeros((n_frames, len(SYNTHETIC_AUS)))
    mean_length = np.mean(_RISE) + np.mean(_HOLD) + np.mean(_FALL)
    for k, (event, scale) in enumerate(zip(_EVENTS, expressivity, strict=True)):
        rng = subject_rng(seed, subject, _LABELS, k)
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
                    column = track[lo:hi, AU_INDEX[name]]
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


def pose_tracks(n_frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
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


def pose_at(tracks: dict[str, np.ndarray], t: int) -> Pose:
    """The pose of frame ``t`` of :func:`pose_tracks`."""
    return Pose(**{name: float(values[t]) for name, values in tracks.items()})


def pose_sequence(n_frames: int, rng: np.random.Generator) -> list[Pose]:
    """Smooth head motion, gaze and blinks of one subject's sequence (before per-frame jitter).

    A subject has its own mean pose and crop; roll (kept within +-20 degrees), yaw (+-25), pitch
    (+-12), crop margin (1.2-1.4 x the landmark box) and crop offset wander slowly around them;
    blinks (about one every 60 frames, three frames long) close the eyes.
    """
    tracks = pose_tracks(n_frames, rng)
    return [pose_at(tracks, t) for t in range(n_frames)]


def jittered(pose: Pose, rng: np.random.Generator) -> Pose:
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
