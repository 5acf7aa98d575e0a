import numpy as np
import pytest
from raw_datasets import (
    FACE_68,
    face_frame,
    flat_frame,
    grey_level,
    landmark_cells,
    write_image,
    write_manifest,
    write_video,
)

from aunet.aus import DATASET_AUS
from aunet.data.store import FrameStore
from aunet.faces.crop import crop_face
from data_prep.__main__ import run
from data_prep.common import ConversionError

NAN = float("nan")


def build(root, extra_rows=()):
    """Subject A: two image rows and an unlabelled one; B: video frames 3 and 1, out of order."""
    write_image(root / "img" / "a1.jpg", flat_frame(1))
    write_image(root / "img" / "a2.jpg", flat_frame(2))
    write_video(root / "clip.avi", [flat_frame(i) for i in range(1, 5)])
    face = landmark_cells(FACE_68)
    rows = [
        {"image": "img/a1.jpg", "subject": "A", "partition": "train", "AU1": 1, "AU12": 2, **face},
        {"image": "img/a2.jpg", "subject": "A", "partition": "train", "AU1": "", "AU12": 4, **face},
        {"image": "img/a2.jpg", "subject": "A", "partition": "train", "AU1": 9, "AU12": "NaN"},
        {
            "video": "clip.avi",
            "frame": 3,
            "subject": "B",
            "partition": "test",
            "AU1": 3,
            "AU12": 0.5,
            **face,
        },
        {
            "video": "clip.avi",
            "frame": 1,
            "subject": "B",
            "partition": "test",
            "AU1": 0,
            "AU12": 5,
            **face,
        },
        *extra_rows,
    ]
    return write_manifest(root / "frames.csv", rows)


def convert(out, *args):
    run(["manifest", *args, "--out", str(out), "--workers", "1"])
    return FrameStore(out)


def test_images_and_video_frames(tmp_path, capsys):
    csv = build(tmp_path)
    store = convert(tmp_path / "m.h5", "--csv", str(csv), "--name", "mine")
    assert store.dataset == "mine"
    assert store.au_names == ("AU01", "AU12")
    assert store.subjects.tolist() == ["A", "A", "B", "B"]
    assert store.frames.tolist() == [1, 2, 1, 3]  # image rows numbered; video rows by frame
    assert store.partitions.tolist() == ["train", "train", "test", "test"]
    assert store.sequences is None
    for row, frame in enumerate([1, 2, 1, 3]):
        assert abs(store.image(row).mean() - grey_level(frame)) < 4
    np.testing.assert_array_equal(store.read_all("au"), [[1, 2], [NAN, 4], [0, 5], [3, 0.5]])
    reference = crop_face(flat_frame(1), FACE_68).landmarks
    np.testing.assert_allclose(store.landmarks(3), reference, atol=1e-3)
    report = capsys.readouterr().out
    assert (
        "A              2         0             0           1               1  converted" in report
    )


def test_fera2017_preset_orders_its_aus_and_needs_them_all(tmp_path):
    write_image(tmp_path / "f.jpg", flat_frame(1))
    aus = {au.replace("AU0", "AU"): i % 6 for i, au in enumerate(DATASET_AUS["fera2017"])}
    row = {"image": "f.jpg", "subject": "F001", "frame": 7, **dict(reversed(aus.items()))}
    csv = write_manifest(tmp_path / "fera.csv", [{**row, **landmark_cells(FACE_68)}])
    run(["fera2017", "--root", str(tmp_path), "--csv", str(csv), "--out", str(tmp_path / "f.h5")])
    store = FrameStore(tmp_path / "f.h5")
    assert store.dataset == "fera2017"
    assert store.au_names == DATASET_AUS["fera2017"]
    np.testing.assert_array_equal(store.au(0), [0, 1, 2, 3, 4, 5, 0])
    assert store.frames.tolist() == [7]
    del row["AU14"]
    write_manifest(tmp_path / "fera.csv", [row])
    with pytest.raises(ConversionError, match=r"AU column\(s\) AU14 missing \(needed: AU01, AU04"):
        run(["fera2017", "--csv", str(csv), "--out", str(tmp_path / "g.h5")])


def test_rows_without_landmarks_use_the_detector(tmp_path):
    pytest.importorskip("dlib")
    write_image(tmp_path / "face.jpg", face_frame(1))
    csv = write_manifest(tmp_path / "m.csv", [{"image": "face.jpg", "subject": "S", "AU12": 3}])
    store = convert(tmp_path / "m.h5", "--csv", str(csv), "--aus", "AU12")
    points = store.landmarks(0)
    # the astronaut's face, cropped with the default margin: its box spans 1/1.5 of the crop
    extent = points.max(0) - points.min(0)
    assert 0.55 * 256 < extent.max() < 0.75 * 256


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"image": "img/a1.jpg", "video": "clip.avi"},
            r"line 7: give exactly one of 'image' and 'video'",
        ),
        ({"image": "img/none.jpg"}, r"line 7: .*img/none.jpg: no such image file"),
        ({"image": "img/a1.jpg", "partition": "val"}, r"line 7: partition 'val' not one of"),
        (
            {"image": "img/a1.jpg", "AU1": "much"},
            r"line 7, column AU1: intensity 'much' is not a number",
        ),
        (
            {"image": "img/a1.jpg", "AU12": 5.5},
            r"line 7, column AU12: intensity 5.5 outside 0-5 \(9 = unknown\)",
        ),
        (
            {"video": "clip.avi", "frame": 9},
            r"line 7: frame 9 asked of .*clip.avi, which has 4 frames",
        ),
        ({"video": "clip.avi", "frame": 3}, r"frame 3 of .*clip.avi is listed more than once"),
        ({"video": "clip.avi", "frame": 0}, r"line 7: a video row needs its frame number, from 1"),
        ({"image": "img/a1.jpg", "x_3": "left"}, r"line 7: x_3 = 'left' is not a number"),
    ],
)
def test_bad_rows_are_named(tmp_path, row, message):
    csv = build(tmp_path, [{"subject": "B", "partition": "test", **row}])
    with pytest.raises(ConversionError, match=message):
        convert(tmp_path / "bad.h5", "--csv", str(csv))


def test_bad_header_is_named(tmp_path):
    csv = write_manifest(tmp_path / "m.csv", [{"image": "a.jpg", "AU1": 1}])
    with pytest.raises(ConversionError, match="the header needs a 'subject' column"):
        convert(tmp_path / "bad.h5", "--csv", str(csv))
    csv = write_manifest(tmp_path / "m.csv", [{"image": "a.jpg", "subject": "S", "AU7": 1}])
    with pytest.raises(ConversionError, match=r"AU\(s\) \['AU07'\] have no location in Table 1"):
        convert(tmp_path / "bad.h5", "--csv", str(csv))


@pytest.mark.parametrize(
    ("brow", "smile"),
    [("AU1", "AU12"), ("AU_1", "au12_r"), ("AU 01", "AU12_r"), ("au01", "AU_12")],
)
def test_the_au_spellings_of_researchers_files_are_read(tmp_path, brow, smile):
    write_image(tmp_path / "a1.jpg", flat_frame(1))
    face = landmark_cells(FACE_68)
    csv = write_manifest(
        tmp_path / "m.csv", [{"image": "a1.jpg", "subject": "S", brow: 2, smile: 4.5, **face}]
    )
    store = convert(tmp_path / "m.h5", "--csv", str(csv))
    assert store.au_names == ("AU01", "AU12")
    np.testing.assert_array_equal(store.read_all("au"), [[2, 4.5]])


@pytest.mark.parametrize("column", ["AU12_c", "AU12-intensity", "au5r"])
def test_a_column_that_looks_like_an_au_but_is_not_an_intensity_is_refused(tmp_path, column):
    csv = write_manifest(
        tmp_path / "m.csv", [{"image": "a.jpg", "subject": "S", "AU12_r": 1, column: 1}]
    )
    with pytest.raises(ConversionError, match=rf"column\(s\) '{column}' look like AUs but"):
        convert(tmp_path / "bad.h5", "--csv", str(csv))
    assert not (tmp_path / "bad.h5").exists()


def test_two_columns_of_one_au_and_two_rows_of_one_frame_are_refused(tmp_path):
    csv = write_manifest(tmp_path / "m.csv", [{"image": "a.jpg", "subject": "S", "AU12": 1,
                                              "AU12_r": 2}])  # fmt: skip
    with pytest.raises(ConversionError, match="columns 'AU12' and 'AU12_r' both name AU12"):
        convert(tmp_path / "bad.h5", "--csv", str(csv))
    write_image(tmp_path / "a1.jpg", flat_frame(1))
    write_image(tmp_path / "a2.jpg", flat_frame(2))
    rows = [
        {"image": "a1.jpg", "subject": "S", "frame": 7, "AU12": 1},
        {"image": "a2.jpg", "subject": "S", "frame": 7, "AU12": 4},  # conflicting labels
    ]
    csv = write_manifest(tmp_path / "m.csv", rows)
    with pytest.raises(ConversionError, match="lines 2 and 3: subject 'S' frame 7 is listed twice"):
        convert(tmp_path / "bad.h5", "--csv", str(csv))
