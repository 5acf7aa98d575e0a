import shutil

import numpy as np
import pytest
from raw_datasets import (
    ASTRONAUT_68,
    FACE_68,
    disfa_label,
    face_frame,
    flat_frame,
    grey_level,
    make_disfa,
    write_rows,
    write_video,
)

from aunet.aus import DATASET_AUS
from aunet.data.store import FrameStore
from aunet.faces.crop import crop_face
from data_prep.__main__ import run
from data_prep.common import ConversionError
from data_prep.disfa import landmarks_66_to_68


def convert(root, out, *extra):
    run(["disfa", "--root", str(root), "--out", str(out), "--workers", "1", *extra])
    return FrameStore(out)


def test_converts_frames_labels_and_landmarks(tmp_path, capsys):
    root = make_disfa(tmp_path / "DISFA")
    store = convert(root, tmp_path / "disfa.h5")
    assert store.dataset == "disfa"
    assert store.au_names == DATASET_AUS["disfa"]
    assert store.image_size == 256
    assert store.subjects.tolist() == ["SN001"] * 3 + ["SN002"] * 3
    assert store.frames.tolist() == [1, 2, 3, 1, 2, 3]
    for row, (s, frame) in enumerate([(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]):
        # label frame i is the i-th decoded frame, whose grey level says which it is
        assert abs(store.image(row).mean() - grey_level(frame)) < 4
        expected = [disfa_label(s, a, frame) for a in range(12)]
        np.testing.assert_array_equal(store.au(row), expected)
    # the landmarks are the 66 points made 68 and moved into the crop, for both file namings
    reference = crop_face(np.zeros((120, 160, 3), np.uint8), FACE_68).landmarks
    for row in (0, 5):
        np.testing.assert_allclose(store.landmarks(row)[:60], reference[:60], atol=1e-3)
        np.testing.assert_allclose(store.landmarks(row)[61:64], reference[61:64], atol=1e-3)
    report = capsys.readouterr().out
    assert "subject  written  detected  no_landmarks  unlabelled  unknown_labels  status" in report
    assert (
        "SN001          3         0             0           0               0  converted" in report
    )
    assert "wrote 6 frames of 2 subject(s)" in report
    assert not (tmp_path / "disfa.h5.parts").exists()


def test_66_to_68_keeps_points_and_fills_inner_mouth_corners():
    full = landmarks_66_to_68(np.delete(ASTRONAUT_68, [60, 64], axis=0))
    keep = [i for i in range(68) if i not in (60, 64)]
    np.testing.assert_array_equal(full[keep], ASTRONAUT_68[keep])
    # by hand: 0.75 * (201, 140) + 0.25 * mean((217, 143), (217, 150)) = (205, 141.625)
    np.testing.assert_allclose(full[60], [205.0, 141.625])
    # and 0.75 * (245, 141) + 0.25 * mean((229, 143), (229, 150)) = (241, 142.375)
    np.testing.assert_allclose(full[64], [241.0, 142.375])
    # and lands within 2 pixels of dlib's own inner corners on the astronaut
    assert np.abs(full[[60, 64]] - ASTRONAUT_68[[60, 64]]).max() <= 2.0


def test_frames_without_landmark_file_use_the_detector(tmp_path, capsys):
    pytest.importorskip("dlib")
    root = make_disfa(tmp_path / "D", ("SN001",), 3, missing_landmarks=[("SN001", 2)], faces=True)
    store = convert(root, tmp_path / "d.h5")
    assert len(store) == 3
    # the same face: the detector's landmarks land where the dataset's (dlib's, rounded) do
    np.testing.assert_allclose(store.landmarks(1), store.landmarks(0), atol=4.0)
    report = capsys.readouterr().out
    assert "SN001          3         1" in report
    assert "SN001: 1 frame(s) without a landmark file: detector used" in report


def test_nested_landmark_folder_is_found(tmp_path, capsys):
    nested = make_disfa(tmp_path / "nested", landmarks="Landmark_Points/Landmark_Points")
    assert not (nested / "Landmark_Points" / "SN001").exists()
    store = convert(nested, tmp_path / "nested.h5")
    report = capsys.readouterr().out
    assert "SN001          3         0             0" in report  # no frame sent to the detector
    assert "SN002          3         0             0" in report
    assert "without a landmark file" not in report
    shipped = convert(make_disfa(tmp_path / "shipped"), tmp_path / "shipped.h5")
    np.testing.assert_array_equal(store.read_all("landmarks"), shipped.read_all("landmarks"))


@pytest.mark.parametrize("layout", ["no folder", "empty folder"])
def test_subject_without_any_landmark_file_is_refused(tmp_path, layout):
    root = make_disfa(tmp_path / "DISFA", missing_landmarks=[("SN002", i) for i in (1, 2, 3)])
    if layout == "no folder":
        shutil.rmtree(root / "Landmark_Points" / "SN002")
    with pytest.raises(ConversionError) as error:
        convert(root, tmp_path / "bad.h5")
    first, second = (
        root / name / "SN002" for name in ("Landmark_Points", "Landmark_Points/Landmark_Points")
    )
    assert str(error.value) == (
        f"SN002: no landmark file for any of its 3 frames (looked in {first} and {second} for "
        "tmp_frame_lm/l0001_lm.mat or tmp_frame_lm/SN002_0000_lm.mat); DISFA ships one per "
        "frame, so check the layout"
    )
    assert not (tmp_path / "bad.h5").exists()


def test_only_chosen_subjects(tmp_path):
    root = make_disfa(tmp_path / "DISFA")
    store = convert(root, tmp_path / "one.h5", "--subjects", "SN002")
    assert set(store.subjects) == {"SN002"}
    with pytest.raises(ConversionError, match=r"--subjects SN009: not in .*found: SN001, SN002"):
        convert(root, tmp_path / "x.h5", "--subjects", "SN009")


def damage(root, kind):
    labels = root / "ActionUnit_Labels" / "SN001"
    if kind == "folder":
        (root / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi").unlink()
        (root / "Videos_LeftCamera" / "LeftVideoSN002_comp.avi").unlink()
        (root / "Videos_LeftCamera").rmdir()
    elif kind == "label file":
        (labels / "SN001_au4.txt").unlink()
    elif kind == "range":
        write_rows(labels / "SN001_au4.txt", [(1, 0), (2, 7), (3, 1)])
    elif kind == "nan":
        (labels / "SN001_au4.txt").write_text("1,0\n2,x\n3,1\n")
    elif kind == "length":
        write_rows(labels / "SN001_au4.txt", [(1, 0), (2, 0)])
    elif kind == "video length":
        for path in labels.iterdir():
            write_rows(path, [(i, 0) for i in range(1, 5)])
    elif kind == "video":
        (root / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi").write_bytes(b"not a video")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("folder", r"Videos_LeftCamera: folder missing; expected the DISFA layout <root>/"),
        ("label file", r"SN001_au4.txt: label file missing; DISFA has one per AU"),
        ("range", r"SN001_au4.txt, line 2: intensity 7 outside 0-5"),
        ("nan", r"SN001_au4.txt, line 2: intensity 'x' is not a number; expected 0-5"),
        ("length", r"SN001_au4.txt: 2 rows, but .*SN001_au1.txt has 3"),
        ("video length", r"LeftVideoSN001_comp.avi: 3 frames, but the label files .* have 4 rows"),
        ("video", r"LeftVideoSN001_comp.avi: OpenCV cannot open this video"),
    ],
)
def test_bad_input_is_named(tmp_path, kind, message):
    root = make_disfa(tmp_path / "DISFA")
    damage(root, kind)
    with pytest.raises(ConversionError, match=message):
        convert(root, tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()


def test_every_problem_is_listed_at_once(tmp_path):
    root = make_disfa(tmp_path / "DISFA")
    damage(root, "range")
    (root / "ActionUnit_Labels" / "SN002" / "SN002_au26.txt").unlink()
    with pytest.raises(ConversionError, match=r"2 problems:\n  .*SN001_au4.*\n  .*SN002_au26"):
        convert(root, tmp_path / "bad.h5")


def test_decoded_length_is_checked_when_the_container_does_not_say(tmp_path, monkeypatch, capsys):
    root = make_disfa(tmp_path / "DISFA", ("SN001",))
    video = root / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    write_video(video, [flat_frame(1), flat_frame(2)])  # one frame short of the labels
    monkeypatch.setattr("data_prep.disfa.frame_count", lambda path: None)
    with pytest.raises(ConversionError, match=r"1 of 1 subject\(s\) failed"):
        convert(root, tmp_path / "bad.h5")
    report = capsys.readouterr().out
    assert "SN001          -         -             -           -               -  failed" in report
    assert f"SN001: {video}: decodes 2 frames, but the label files in" in report


def test_no_face_falls_back_to_the_previous_frames_box(tmp_path, capsys):
    pytest.importorskip("dlib")
    root = make_disfa(tmp_path / "D", ("SN001",), 3, missing_landmarks=[("SN001", 2)], faces=True)
    frames = [face_frame(1), np.zeros_like(face_frame(2)), face_frame(3)]  # frame 2: no face
    write_video(root / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi", frames)
    store = convert(root, tmp_path / "d.h5")
    # frame 2's landmarks were placed in the box of frame 1's (dataset) landmarks
    assert store.frames.tolist() == [1, 2, 3]
    assert "SN001          3         1             0" in capsys.readouterr().out
    box = store.landmarks(0)
    assert (store.landmarks(1).min(0) > box.min(0) - 30).all()
    assert (store.landmarks(1).max(0) < box.max(0) + 30).all()
