import shutil

import h5py
import numpy as np
import pytest
from raw_datasets import make_bp4d, make_bp4d_release, write_image, write_rows

from aunet.aus import DATASET_AUS
from aunet.data.store import FrameStore
from data_prep.__main__ import run
from data_prep.bp4d import DEVEL_SUBJECTS, TRAIN_SUBJECTS, find_folders, partition
from data_prep.common import ConversionError

pytest.importorskip("dlib")  # BP4D has no landmarks: every frame goes through the detector

NAN = float("nan")
# F001_T1: frame 1 fully labelled, frame 2 with AU06 unknown (9), frame 3 without any label;
# the labels also cover a frame 4 that has no image. F002 comes as a zip archive.
SEQUENCES = {
    ("F001", "T1"): {1: (1, 2, 3, 4, 5), 2: (9, 0, 1, 0, 2), 3: None},
    ("F002", "T2"): {1: (0, 0, 0, 0, 0)},
}


def build(root, make=make_bp4d):
    images, labels = make(root, SEQUENCES, archive=["F002"])
    write_rows(labels / "AU06" / "F001_T1_AU06.csv", [(1, 1), (2, 9), (4, 3)])
    return images, labels


def content(path):
    """Every dataset of a store (variable-length rows as bytes), and its attributes but those
    naming the source folders (``source``, and ``prep_options``, which holds it too)."""
    datasets = {}
    with h5py.File(path, "r") as file:
        for name in file:
            value = file[name][()]
            if value.dtype == object:  # JPEG rows and strings: compare them one by one
                value = [bytes(row) if isinstance(row, np.ndarray) else row for row in value]
            datasets[name] = value
        attributes = {k: v for k, v in file.attrs.items() if k not in ("source", "prep_options")}
    return datasets, attributes


def convert(out, *source):
    run(["bp4d", *source, "--out", str(out), "--workers", "1"])
    return FrameStore(out)


def test_official_partitions():
    assert len(TRAIN_SUBJECTS) == 21
    assert len(DEVEL_SUBJECTS) == 20
    assert partition("F023") == "train"
    assert partition("M017") == "train"
    assert partition("F002") == "devel"
    assert partition("M018") == "devel"
    with pytest.raises(ConversionError, match="F030: not in the FERA2015 training"):
        partition("F030")


def test_converts_folders_and_archives(tmp_path, capsys):
    images, labels = build(tmp_path)
    store = convert(tmp_path / "bp4d.h5", "--images", str(images), "--labels", str(labels))
    assert store.dataset == "bp4d"
    assert store.au_names == DATASET_AUS["fera2015"]
    assert store.subjects.tolist() == ["F001", "F001", "F002"]
    assert store.frames.tolist() == [1, 2, 1]  # frame 3 has no label: left out
    assert store.sequences.tolist() == ["F001_T1", "F001_T1", "F002_T2"]
    assert store.partitions.tolist() == ["train", "train", "devel"]
    np.testing.assert_array_equal(store.au(0), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(store.au(1), [NAN, 0, 1, 0, 2])  # 9 = unknown
    np.testing.assert_array_equal(store.au(2), [0, 0, 0, 0, 0])
    points = store.read_all("landmarks")
    assert np.isfinite(points).all()
    assert (points > 0).all()
    assert (points < 256).all()
    report = capsys.readouterr().out
    assert (
        "F001           2         2             0           1               1  converted" in report
    )
    assert "F001: F001_T1: 1 labelled frame(s) without image" in report


def test_root_finds_the_folders(tmp_path):
    build(tmp_path)
    (tmp_path / "AUCoding").mkdir()
    shutil.move(tmp_path / "AU_INT", tmp_path / "AUCoding" / "AU_INT")
    shutil.move(tmp_path / "images", tmp_path / "Sequences")
    assert find_folders(tmp_path, None, None) == (
        tmp_path / "Sequences",
        tmp_path / "AUCoding" / "AU_INT",
    )
    store = convert(tmp_path / "b.h5", "--root", str(tmp_path), "--subjects", "F002")
    assert store.subjects.tolist() == ["F002"]


def test_root_accepts_the_release_as_shipped(tmp_path):
    release = tmp_path / "release"
    images, labels = build(release, make_bp4d_release)
    assert (release / "AUCoding").is_dir()  # the occurrence codes, not what --root must take
    assert find_folders(release, None, None) == (images, labels)
    convert(tmp_path / "root.h5", "--root", str(release))
    flags = build(tmp_path / "flags")
    convert(tmp_path / "flags.h5", "--images", str(flags[0]), "--labels", str(flags[1]))
    (root_data, root_attrs), (flag_data, flag_attrs) = (
        content(tmp_path / "root.h5"),
        content(tmp_path / "flags.h5"),
    )
    assert root_data.keys() == flag_data.keys()
    assert len(root_data["frame"]) == 3
    for name in root_data:
        np.testing.assert_array_equal(root_data[name], flag_data[name], err_msg=name)
    assert root_attrs.keys() == flag_attrs.keys()
    for name in root_attrs:
        np.testing.assert_array_equal(root_attrs[name], flag_attrs[name], err_msg=name)


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        (
            "BP4D-training",
            "no BP4D frames (looked in it and in Sequences, images and BP4D-training",
        ),
        (
            "AU Intensity Codes3.0",
            "no FERA2015 intensity labels (looked for AU_INT, AUCoding/AU_INT",
        ),
    ],
)
def test_root_names_every_layout_looked_for(tmp_path, missing, named):
    build(tmp_path, make_bp4d_release)
    shutil.rmtree(tmp_path / missing)
    with pytest.raises(ConversionError) as error:
        find_folders(tmp_path, None, None)
    assert str(error.value).startswith(f"{tmp_path}: {named}")
    assert " and no " not in str(error.value)  # only what is missing is named


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no root", "bp4d: give --root DIR, or both --images DIR and --labels DIR"),
        ("au folder", r"AU_INT/AU14: folder missing; expected one folder per FERA2015 AU"),
        ("label file", r"AU10/F001_T1_AU10.csv: label file missing \(1 in all\)"),
        ("range", r"F001_T1_AU12.csv, line 1: intensity 6 outside 0-5 \(9 = unknown\)"),
        ("nan", r"F001_T1_AU12.csv, line 1: intensity 'high' is not a number"),
        ("frames", r"no frames of the labelled sequence F001_T3"),
        ("frame name", r"T1/cover.jpg: a frame file not named by its frame number"),
        ("subject", r"M030: not in the FERA2015 training"),
    ],
)
def test_bad_input_is_named(tmp_path, kind, message):
    images, labels = build(tmp_path)
    source = ["--images", str(images), "--labels", str(labels)]
    if kind == "no root":
        source = ["--images", str(images)]
    elif kind == "au folder":
        shutil.rmtree(labels / "AU14")
    elif kind == "label file":
        (labels / "AU10" / "F001_T1_AU10.csv").unlink()
    elif kind == "range":
        write_rows(labels / "AU12" / "F001_T1_AU12.csv", [(1, 6)])
    elif kind == "nan":
        (labels / "AU12" / "F001_T1_AU12.csv").write_text("1,high\n")
    elif kind == "frames":
        for au in DATASET_AUS["fera2015"]:
            write_rows(labels / au / f"F001_T3_{au}.csv", [(1, 0)])
    elif kind == "frame name":
        write_image(images / "F001" / "T1" / "cover.jpg", np.zeros((4, 4, 3), np.uint8))
    elif kind == "subject":
        for au in DATASET_AUS["fera2015"]:
            write_rows(labels / au / f"M030_T1_{au}.csv", [(1, 0)])
    with pytest.raises(ConversionError, match=message):
        convert(tmp_path / "bad.h5", *source)
