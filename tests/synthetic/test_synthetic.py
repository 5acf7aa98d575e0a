"""The synthetic faces: determinism, landmarks, where each AU shows, label statistics, the CLI."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pytest

from aunet.aus import NUM_LANDMARKS
from aunet.data.folds import DISFA_FOLDS, DISFA_SUBJECTS
from aunet.data.store import FrameStore
from aunet.synthetic.draw import (
    SYNTHETIC_AUS,
    Pose,
    contact_sheet,
    generate,
    landmark_pose,
    mean_identity,
    pose_sequence,
    render_face,
    subject_frames,
    subject_identity,
    subject_labels,
    subject_names,
    write_store,
)
from data_prep import synthetic as synthetic_cli

SIZE = 128


def intensities(**levels: float) -> np.ndarray:
    values = np.zeros(len(SYNTHETIC_AUS))
    for name, level in levels.items():
        values[SYNTHETIC_AUS.index(name)] = level
    return values


def clean(size: int = SIZE, pose: Pose | None = None, **levels: float):
    """The average face, no clutter: only the AUs change the image."""
    return render_face(mean_identity(), intensities(**levels), pose, size, clutter=False)


# --- determinism and layout -------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_faces():
    first = list(generate(["SN001", "SN013"], 3, size=48, seed=5))
    again = list(generate(["SN001", "SN013"], 3, size=48, seed=5))
    other = list(generate(["SN001", "SN013"], 3, size=48, seed=6))
    assert [(f.subject, f.frame) for f in first] == [
        ("SN001", 0),
        ("SN001", 1),
        ("SN001", 2),
        ("SN013", 0),
        ("SN013", 1),
        ("SN013", 2),
    ]
    for a, b, c in zip(first, again, other, strict=True):
        assert a.image.tobytes() == b.image.tobytes()
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        np.testing.assert_array_equal(a.au, b.au)
        assert not np.array_equal(a.image, c.image)


def test_a_frame_does_not_depend_on_which_other_frames_are_drawn():
    sequence = list(subject_frames("SN003", 6, size=48, seed=1))
    alone = next(subject_frames("SN003", [4], size=48, seed=1))
    assert alone.image.tobytes() == sequence[4].image.tobytes()
    np.testing.assert_array_equal(alone.au, sequence[4].au)
    np.testing.assert_array_equal(subject_labels("SN003", 40)[:20], subject_labels("SN003", 20))


def test_identities_are_per_subject_and_seed():
    assert subject_identity("SN001", 0) == subject_identity("SN001", 0)
    assert subject_identity("SN001", 0) != subject_identity("SN002", 0)
    assert subject_identity("SN001", 0) != subject_identity("SN001", 1)


def test_subjects_are_disfa_names_spread_over_the_folds():
    assert sorted(subject_names(27)) == list(DISFA_SUBJECTS)
    six = subject_names(6)
    assert [sum(s in part for s in six) for part in DISFA_FOLDS] == [2, 2, 2]
    assert subject_names(29)[27:] == ("SY028", "SY029")
    with pytest.raises(ValueError, match="at least one"):
        subject_names(0)


@pytest.mark.parametrize("size", [64, 96, 128, 256])
def test_landmarks_are_finite_pixels_of_a_face_filling_the_crop(size):
    for frame in generate(["SN001", "SN002"], 4, size=size):
        assert frame.image.shape == (size, size, 3)
        assert frame.image.dtype == np.uint8
        assert frame.landmarks.shape == (NUM_LANDMARKS, 2)
        assert frame.landmarks.dtype == np.float32
        assert np.isfinite(frame.landmarks).all()
        assert (frame.landmarks >= 0).all()
        assert (frame.landmarks <= size - 1).all()
        # The crop is the landmarks' box enlarged 1.2-1.4x (a little more with expressions
        # moving the points and the tracker jitter): the face fills most of the image.
        box = (frame.landmarks.max(0) - frame.landmarks.min(0)).max()
        assert 0.62 * size < box < 0.9 * size


def test_landmarks_are_where_the_features_are_drawn():
    # At any roll, the eye centre is on the dark iris and just below a brow landmark (the brow's
    # upper edge) is brow while just above it is skin.
    for roll in (0.0, 20.0):
        image, points = clean(pose=Pose(roll=roll))
        grey = image.astype(float).mean(axis=-1)

        def at(xy, grey=grey):
            return grey[round(float(xy[1])), round(float(xy[0]))]

        for eye in (slice(36, 42), slice(42, 48)):
            assert at(points[eye].mean(0)) < 90
        skin = at(points[33] + (0, -12))
        down = np.array([-np.sin(np.radians(roll)), np.cos(np.radians(roll))])
        for index in (19, 20, 23, 24):
            assert at(points[index] + 3 * down) < 0.5 * skin
            assert at(points[index] - 3 * down) > 0.8 * skin


# --- where each AU shows ----------------------------------------------------------------------


def _regions(points: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Face regions in pixels, from the landmarks of the face at rest."""
    y, x = np.mgrid[:size, :size]
    m = 0.05 * size

    def box(x0, x1, y0, y1):
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)

    p = points
    eye_top = p[[37, 38, 43, 44], 1].min()
    return {
        "brows": y < eye_top,
        "eyes": box(p[36, 0] - m, p[39, 0] + m, p[37, 1] - 2 * m, p[41, 1] + m)
        | box(p[42, 0] - m, p[45, 0] + m, p[43, 1] - 2 * m, p[47, 1] + m),
        "cheeks": (y >= eye_top) & (y <= p[33, 1]) & ~box(p[31, 0], p[35, 0], 0, size),
        "nose": box(p[31, 0] - 2 * m, p[35, 0] + 2 * m, p[27, 1] - m, p[51, 1]),
        "corners": (np.hypot(x - p[48, 0], y - p[48, 1]) < 3 * m)
        | (np.hypot(x - p[54, 0], y - p[54, 1]) < 3 * m),
        "chin": y > p[62, 1] - m / 2,
        "mouth": box(p[48, 0] - m, p[54, 0] + m, p[51, 1] - m, p[57, 1] + m),
    }


# AU -> the region FACS says it changes, and the least share of the pixel change found there.
WHERE = {
    "AU01": ("brows", 0.9),
    "AU02": ("brows", 0.9),
    "AU04": ("brows", 0.7),
    "AU05": ("eyes", 0.9),
    "AU06": ("cheeks", 0.6),
    "AU09": ("nose", 0.5),
    "AU12": ("corners", 0.75),
    "AU15": ("corners", 0.75),
    "AU17": ("chin", 0.9),
    "AU20": ("corners", 0.75),
    "AU25": ("mouth", 0.75),
    "AU26": ("chin", 0.9),
}


def _change(au: str, level: float) -> np.ndarray:
    base = {"AU25": 2.0} if au == "AU26" else {}  # the jaw drops with the lips apart (AU25+26)
    before, _ = clean(**base)
    after, _ = clean(**base, **{au: level})
    return np.abs(after.astype(float) - before).sum(axis=-1)


@pytest.mark.parametrize("au", SYNTHETIC_AUS)
def test_each_au_changes_the_pixels_where_facs_says_and_more_with_intensity(au):
    _, rest = clean()
    region, least = WHERE[au]
    change = {level: _change(au, level) for level in (1, 3, 5)}
    share = change[5][_regions(rest, SIZE)[region]].sum() / change[5].sum()
    assert share >= least, f"{au}: only {share:.2f} of the change in the {region}"
    mass = [change[level].sum() for level in (1, 3, 5)]
    assert mass[0] > 0
    assert mass[0] < mass[1] < mass[2]


@pytest.mark.parametrize(
    ("au", "corner", "offset"),
    [
        ("AU06", 36, (-0.07, 0.0)),  # crow's-feet beside the outer eye corner
        ("AU09", 28, (0.0, 0.0)),  # wrinkles across the nose bridge
    ],
)
def test_texture_shows_intensity_where_no_landmark_moves(au, corner, offset):
    _, rest = clean()
    _, moved = clean(**{au: 5})
    centre = rest[corner] + np.array(offset) * SIZE
    near = np.hypot(*(rest - centre).T) < 0.08 * SIZE
    assert np.abs(moved - rest)[near].max() < 1.0  # the landmarks there stay put ...
    half = int(0.04 * SIZE)
    x, y = np.round(centre).astype(int)
    window = (slice(y - half, y + half + 1), slice(x - half, x + half + 1))
    darkening = [
        clean()[0][window].astype(float).mean() - clean(**{au: level})[0][window].mean()
        for level in (1, 3, 5)
    ]
    assert 0 < darkening[0] < darkening[1] < darkening[2]  # ... the skin creases all the same
    assert darkening[2] > 5


def test_aus_stay_visible_at_64_pixels():
    for au in SYNTHETIC_AUS:
        base = {"AU25": 2.0} if au == "AU26" else {}
        before, _ = clean(64, **base)
        after, _ = clean(64, **base, **{au: 3})
        assert np.abs(after.astype(float) - before).sum(-1).max() > 60, au


def test_bad_inputs_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="12 AUs"):
        render_face(mean_identity(), np.zeros(5), clutter=False)
    with pytest.raises(ValueError, match="0-5"):
        render_face(mean_identity(), intensities(AU12=6), clutter=False)
    with pytest.raises(ValueError, match="rng"):
        render_face(mean_identity(), intensities())
    with pytest.raises(ValueError, match="at least 16"):
        render_face(mean_identity(), intensities(), size=8, clutter=False)


def test_glasses_and_clutter_change_the_image_not_the_landmarks():
    identity = replace(mean_identity(), glasses=True)
    plain, points = clean()
    glasses, same = render_face(identity, intensities(), None, SIZE, clutter=False)
    noisy, again = render_face(mean_identity(), intensities(), None, SIZE, np.random.default_rng(0))
    np.testing.assert_array_equal(points, same)
    np.testing.assert_array_equal(points, again)
    assert not np.array_equal(plain, glasses)
    assert not np.array_equal(plain, noisy)


# --- labels -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    """27 subjects x 300 frames x 12 AUs."""
    return np.stack([subject_labels(s, 300, seed=0) for s in DISFA_SUBJECTS])


def test_labels_are_integers_0_to_5_mostly_zero_with_disfa_like_base_rates(labels):
    assert labels.dtype == np.float32
    assert np.array_equal(labels, np.round(labels))
    assert labels.min() == 0
    assert labels.max() == 5
    active = dict(zip(SYNTHETIC_AUS, (labels > 0).reshape(-1, 12).mean(0), strict=True))
    assert all(rate < 0.5 for rate in active.values()), active
    assert max(active, key=active.get) == "AU25"
    for rare in ("AU05", "AU09", "AU15", "AU20"):
        assert 0.03 < active[rare] < min(active["AU25"], active["AU12"]) / 2, active
    # Enough of every AU, at every level, for ICC on a held-out third of the subjects.
    held_out = labels[[DISFA_SUBJECTS.index(s) for s in DISFA_FOLDS[0]]].reshape(-1, 12)
    for k, au in enumerate(SYNTHETIC_AUS):
        assert len(np.unique(held_out[:, k])) >= 5, au
        assert (held_out[:, k] > 0).sum() >= 60, au


def test_labels_co_occur_as_in_facs(labels):
    flat = labels.reshape(-1, 12)
    corr = np.corrcoef(flat.T)
    k = {name: i for i, name in enumerate(SYNTHETIC_AUS)}
    for a, b in (("AU06", "AU12"), ("AU01", "AU02"), ("AU25", "AU26")):
        assert corr[k[a], k[b]] > 0.35, (a, b)
    assert abs(corr[k["AU04"], k["AU12"]]) < 0.15
    jaw = flat[:, k["AU26"]] > 0
    assert (flat[jaw, k["AU25"]] > 0).mean() > 0.8  # AU26 mostly with AU25


def test_labels_rise_hold_and_fall_smoothly(labels):
    steps = np.abs(np.diff(labels, axis=1))
    assert steps.max() <= 2
    assert (steps > 1).mean() < 0.005
    assert steps.mean() < 0.06
    # Episodes last tens of frames.
    runs = []
    for track in labels.transpose(0, 2, 1).reshape(-1, 300):
        edges = np.flatnonzero(np.diff(np.r_[0, (track > 0).astype(int), 0]))
        runs += list(edges[1::2] - edges[::2])
    assert 10 < np.median(runs) < 60


# --- the landmark-only variant and the store --------------------------------------------------


def test_landmark_only_variant_has_wider_poses_and_no_labels():
    rng = np.random.default_rng(0)
    rolls = np.array([landmark_pose(rng).roll for _ in range(400)])
    sequence = np.array([pose.roll for pose in pose_sequence(400, np.random.default_rng(0))])
    assert np.abs(sequence).max() <= 20
    assert np.abs(rolls).max() > 30
    frame = next(generate(["SN001"], 1, size=64, landmark_only=True))
    assert frame.au.shape == (0,)
    assert frame.landmarks.shape == (NUM_LANDMARKS, 2)


def _cli(tmp_path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    synthetic_cli.configure(parser)
    out = tmp_path / "synthetic.h5"
    return parser.parse_args(
        [
            "--out",
            str(out),
            "--subjects",
            "3",
            "--frames-per-subject",
            "4",
            "--size",
            "32",
            "--workers",
            "1",
            *extra,
        ]
    )


def test_cli_writes_a_store_with_the_generated_frames(tmp_path, capsys):
    args = _cli(tmp_path, "--encoding", "raw", "--seed", "3")
    synthetic_cli.main(args)
    assert "wrote 12 frames" in capsys.readouterr().out
    store = FrameStore(args.out)
    assert store.dataset == "synthetic"
    assert store.au_names == SYNTHETIC_AUS
    assert len(store) == 12
    expected = list(generate(subject_names(3), 4, size=32, seed=3))
    assert list(store.subjects) == [f.subject for f in expected]
    assert list(store.frames) == [f.frame for f in expected]
    assert list(store.sequences) == [f.subject for f in expected]
    for i, frame in enumerate(expected):
        np.testing.assert_array_equal(store.image(i), frame.image)
        np.testing.assert_array_equal(store.landmarks(i), frame.landmarks)
        np.testing.assert_array_equal(store.au(i), frame.au)
    assert int(store.attrs["seed"]) == 3


def test_cli_landmark_only_store_has_no_au_columns(tmp_path):
    args = _cli(tmp_path, "--landmark-only")
    synthetic_cli.main(args)
    store = FrameStore(args.out)
    assert store.dataset == "synthetic_landmarks"
    assert store.au_names == ()
    assert store.read_all("au").shape == (12, 0)


@pytest.mark.slow
def test_store_is_the_same_whatever_the_number_of_workers(tmp_path):
    one = write_store(tmp_path / "one.h5", 2, 70, size=32, workers=1, encoding="raw")
    two = write_store(tmp_path / "two.h5", 2, 70, size=32, workers=2, encoding="raw")
    assert one.frames == two.frames == 140
    a, b = FrameStore(one.path), FrameStore(two.path)
    for i in range(len(a)):
        np.testing.assert_array_equal(a.image(i), b.image(i))
    np.testing.assert_array_equal(a.read_all("landmarks"), b.read_all("landmarks"))


def test_contact_sheet_shows_every_au_at_every_level():
    sheet = contact_sheet(size=32, levels=(0, 5))
    assert sheet.dtype == np.uint8
    assert sheet.ndim == 3
    assert sheet.shape[2] == 3
    # Four rows of three AU cells (label + 32 px faces) above one strip of sample frames.
    assert sheet.shape[0] > 4 * 32 + 32
