"""The catalogue of bad inputs (docs/errors.md): one test per entry, checking the exact message.

Each test makes the bad input, runs the real code path, checks the message against the template
that docs/errors.md shows for its entry (read from the page itself), and checks that no partial
output was left behind.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import fcntl
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from checkpoint_factories import save_checkpoint, untrained_module
from factories import write_store
from lightning_fabric.utilities.exceptions import MisconfigurationException
from raw_datasets import (
    FACE_68,
    flat_frame,
    landmark_cells,
    make_bp4d,
    make_disfa,
    without_inner_corners,
    write_image,
    write_manifest,
    write_rows,
    write_video,
)
from scipy.io import savemat

from aunet import launch, runs
from aunet.aus import AU_LOCATIONS
from aunet.cli.fit import main as aunet_main
from aunet.cli.guards import (
    ResumeConfigError,
    RunFolderError,
    fit_error_reason,
    lock_run_folder,
    run_folders_released,
)
from aunet.data.datamodule import AUDataModule
from aunet.data.folds import DISFA_FOLDS, DISFA_SUBJECTS
from aunet.data.store import FrameStore, StoreError
from aunet.inference.predict import main as predict_main
from aunet.models import FAN, FANConfig, load_fan, save_fan
from aunet.models.registry import STRATEGIES
from aunet.models.resnet import ResNet18
from aunet.training import AUHeatmapModule
from aunet.training.checkpoint_io import AtomicCheckpointIO, CheckpointError
from data_prep.__main__ import run as data_prep
from data_prep.common import ConversionError, lock_path, part_path, parts_folder

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "docs" / "errors.md"
EXPERIMENTS = REPO / "experiments"
TINY_FAN = FANConfig(num_stacks=1, width=16, depth=2, kernel_size=3, num_landmarks=68)


# --------------------------------------------------------------------------------------------
# The catalogue and its templates


def catalogue() -> dict[str, tuple[str, str]]:
    """Entry id (``E01``) -> (message template, test name), as docs/errors.md shows them."""
    entries = {}
    for section in re.split(r"^### ", CATALOGUE.read_text(), flags=re.MULTILINE)[1:]:
        entry = re.match(r"(E\d\d)\. ", section)
        template = re.search(r"```text\n(.*?)\n```", section, flags=re.DOTALL)
        test = re.search(r"^Test: `(\w+)`$", section, flags=re.MULTILINE)
        assert entry and template and test, f"malformed entry in {CATALOGUE}: {section[:60]!r}"
        entries[entry[1]] = (template[1], test[1])
    return entries


ENTRIES = catalogue()


def expect(entry: str, message: str, **values: object) -> None:
    """Assert that ``message`` is the entry's template with ``values`` filled in.

    ``{name}`` takes ``str(values[name])``; ``{...}`` matches any text (the system's part).
    """
    template = ENTRIES[entry][0]
    pieces = re.split(r"\{(\w+|\.\.\.)\}", template)
    pattern = "".join(
        re.escape(piece)
        if i % 2 == 0
        else ".+?"
        if piece == "..."
        else re.escape(str(values[piece]))
        for i, piece in enumerate(pieces)
    )
    assert re.fullmatch(pattern, message, flags=re.DOTALL), (
        f"{entry}: the message differs from docs/errors.md\n"
        f"template: {template}\nvalues:   {values}\nmessage:  {message}"
    )


def test_every_entry_has_its_test_and_the_catalogue_is_long_enough():
    tests = {name for name in globals() if name.startswith("test_")}
    names = [test for _, test in ENTRIES.values()]
    assert len(ENTRIES) >= 20
    assert sorted(ENTRIES) == [f"E{i:02d}" for i in range(1, len(ENTRIES) + 1)]
    assert len(set(names)) == len(names)
    assert set(names) <= tests, f"entries without a test: {set(names) - tests}"


def test_expect_fills_values_and_matches_system_text_only_where_the_template_says():
    ENTRIES["T"] = ("{path}: bad ({...}); see {path}", "")
    try:
        expect("T", "/a.h5: bad (anything at all); see /a.h5", path="/a.h5")
        with pytest.raises(AssertionError):
            expect("T", "/b.h5: bad (x); see /b.h5", path="/a.h5")
        with pytest.raises(AssertionError):
            expect("T", "/a.h5: bad (x); see /a.h5 and more", path="/a.h5")
    finally:
        del ENTRIES["T"]


# --------------------------------------------------------------------------------------------
# Data preparation


def convert_disfa(root: Path, out: Path) -> None:
    data_prep(["disfa", "--root", str(root), "--out", str(out), "--workers", "1"])


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not Path(f"{out}.partial").exists()
    assert not parts_folder(out).exists()


def failure_note(report: str, subject: str) -> str:
    """The note a failed subject gets in the conversion report."""
    assert f"{subject}  " in report and " failed" in report
    return next(line for line in report.splitlines() if line.startswith(f"{subject}: "))[
        len(subject) + 2 :
    ]


def assert_subject_failed(out: Path, subject: str) -> None:
    """A failed subject: no store, no part of it (and no partial file), the parts folder kept."""
    assert not out.exists()
    assert parts_folder(out).is_dir()
    assert not list(parts_folder(out).glob(f"{subject}.h5*"))


@pytest.fixture
def disfa(tmp_path) -> Path:
    return make_disfa(tmp_path / "DISFA", ("SN001",), num_frames=3)


def labels(root: Path, au: int) -> Path:
    return root / "ActionUnit_Labels" / "SN001" / f"SN001_au{au}.txt"


def test_missing_dataset_folder(tmp_path):
    out = tmp_path / "disfa.h5"
    with pytest.raises(ConversionError) as error:
        convert_disfa(tmp_path / "DISFA", out)
    expect("E01", str(error.value), root=tmp_path / "DISFA")
    assert_nothing_written(out)


def test_missing_label_file(disfa, tmp_path):
    labels(disfa, 4).unlink()
    with pytest.raises(ConversionError) as error:
        convert_disfa(disfa, tmp_path / "disfa.h5")
    expect("E02", str(error.value), path=labels(disfa, 4))
    assert_nothing_written(tmp_path / "disfa.h5")


def test_label_file_of_the_wrong_length(disfa, tmp_path):
    write_rows(labels(disfa, 4), [(1, 0), (2, 1)])
    with pytest.raises(ConversionError) as error:
        convert_disfa(disfa, tmp_path / "disfa.h5")
    expect("E03", str(error.value), path=labels(disfa, 4), first=labels(disfa, 1))
    assert_nothing_written(tmp_path / "disfa.h5")


def test_video_and_labels_of_different_lengths(disfa, tmp_path):
    video = disfa / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    write_video(video, [flat_frame(1), flat_frame(2)])
    with pytest.raises(ConversionError) as error:
        convert_disfa(disfa, tmp_path / "disfa.h5")
    expect("E04", str(error.value), video=video, labels=labels(disfa, 1).parent)
    assert_nothing_written(tmp_path / "disfa.h5")


def bad_intensity(entry, value, disfa, tmp_path):
    labels(disfa, 4).write_text(f"1,0\n2,{value}\n3,1\n")
    with pytest.raises(ConversionError) as error:
        convert_disfa(disfa, tmp_path / "disfa.h5")
    expect(entry, str(error.value), path=labels(disfa, 4))
    assert_nothing_written(tmp_path / "disfa.h5")


def test_intensity_outside_0_to_5(disfa, tmp_path):
    bad_intensity("E05", "7", disfa, tmp_path)


def test_intensity_not_a_number(disfa, tmp_path):
    bad_intensity("E06", "x", disfa, tmp_path)


def manifest(tmp_path: Path, first: dict, second: dict) -> Path:
    """A manifest of two image rows of subject A (AU1 known, AU4 not), updated by the dicts."""
    rows = []
    for i, update in enumerate((first, second), 1):
        write_image(tmp_path / f"a{i}.jpg", flat_frame(i))
        rows.append({"image": f"a{i}.jpg", "subject": "A", "AU1": i, "AU4": 9, **update})
    return write_manifest(tmp_path / "frames.csv", rows)


def convert_manifest(csv: Path, out: Path, *extra: str) -> None:
    data_prep(["manifest", "--csv", str(csv), "--out", str(out), "--workers", "1", *extra])


def test_au_column_all_unknown(tmp_path):
    csv = manifest(tmp_path, {"AU4": ""}, {"AU4": "NaN"})
    with pytest.raises(ConversionError) as error:
        convert_manifest(csv, tmp_path / "mine.h5")
    expect("E07", str(error.value), csv=csv)
    assert_nothing_written(tmp_path / "mine.h5")


def test_unknown_au(tmp_path):
    csv = manifest(tmp_path, {"AU4": 1, "AU99": 2}, {"AU4": 1, "AU99": 2})
    with pytest.raises(ConversionError) as error:
        convert_manifest(csv, tmp_path / "mine.h5")
    expect("E08", str(error.value), csv=csv, known=", ".join(AU_LOCATIONS))
    assert_nothing_written(tmp_path / "mine.h5")
    with pytest.raises(ValueError, match=re.escape(str(error.value).split(": ", 1)[1])):
        AUHeatmapModule("scratch", au_names=["AU99"])


def test_video_that_cannot_be_opened(disfa, tmp_path):
    video = disfa / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    video.write_bytes(video.read_bytes()[:200])  # cut short by an interrupted copy
    with pytest.raises(ConversionError) as error:
        convert_disfa(disfa, tmp_path / "disfa.h5")
    expect("E09", str(error.value), video=video)
    assert_nothing_written(tmp_path / "disfa.h5")


def test_empty_video(disfa, tmp_path, capsys):
    video = disfa / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120)).release()
    with pytest.raises(ConversionError, match=r"1 of 1 subject\(s\) failed"):
        convert_disfa(disfa, tmp_path / "disfa.h5")
    expect("E10", failure_note(capsys.readouterr().out, "SN001"), video=video)
    assert_subject_failed(tmp_path / "disfa.h5", "SN001")


def test_image_file_that_is_not_an_image(tmp_path, capsys):
    cells = landmark_cells(FACE_68)
    csv = manifest(tmp_path, cells, cells)
    (tmp_path / "a2.jpg").write_text("not a JPEG")
    with pytest.raises(ConversionError, match=r"1 of 1 subject\(s\) failed"):
        convert_manifest(csv, tmp_path / "mine.h5", "--aus", "AU1")
    expect("E11", failure_note(capsys.readouterr().out, "A"), image=tmp_path / "a2.jpg")
    assert_subject_failed(tmp_path / "mine.h5", "A")


def test_landmarks_with_nan(tmp_path):
    cells = landmark_cells(FACE_68)
    csv = manifest(tmp_path, {**cells, "x_5": "nan", "y_5": 70.5}, cells)
    with pytest.raises(ConversionError) as error:
        convert_manifest(csv, tmp_path / "mine.h5", "--aus", "AU1")
    expect("E12", str(error.value), csv=csv)
    assert_nothing_written(tmp_path / "mine.h5")


def refused_manifest(tmp_path: Path, content: bytes) -> tuple[Path, str]:
    """Convert a manifest of this content (one image, a1.jpg): its path and the refusal."""
    write_image(tmp_path / "a1.jpg", flat_frame(1))
    csv = tmp_path / "frames.csv"
    csv.write_bytes(content)
    with pytest.raises(ConversionError) as error:
        convert_manifest(csv, tmp_path / "mine.h5")
    assert_nothing_written(tmp_path / "mine.h5")
    return csv, str(error.value)


def test_manifest_row_with_a_field_too_many(tmp_path):
    csv, message = refused_manifest(tmp_path, b"image,subject,AU1\na1.jpg,A,1,3\n")
    expect("E49", message, csv=csv, line=2, columns=3)


def test_manifest_column_given_twice(tmp_path):
    csv, message = refused_manifest(tmp_path, b"image,subject,AU1,subject\na1.jpg,A,1,B\n")
    expect("E50", message, csv=csv)


def test_manifest_that_is_not_utf8(tmp_path):
    content = "image,subject,AU1\na1.jpg,José,1\n".encode("latin-1")
    csv, message = refused_manifest(tmp_path, content)
    expect("E51", message, csv=csv, byte="e9")


def test_landmark_file_that_holds_no_numbers(disfa, tmp_path, capsys):
    landmarks = disfa / "Landmark_Points" / "SN001" / "tmp_frame_lm" / "l0001_lm.mat"
    savemat(landmarks, {"pts": "not points"})
    with pytest.raises(ConversionError, match=r"1 of 1 subject\(s\) failed"):
        convert_disfa(disfa, tmp_path / "disfa.h5")
    note = failure_note(capsys.readouterr().out, "SN001")
    dtype = re.search(r"holds (\S+) values", note)[1]
    expect("E52", note, file=landmarks, dtype=dtype)
    assert dtype.startswith("<U")  # text
    assert_subject_failed(tmp_path / "disfa.h5", "SN001")


def test_bp4d_root_in_no_known_layout(tmp_path):
    make_bp4d(tmp_path / "BP4D", {("F001", "T1"): {1: (0, 0, 0, 0, 0)}})
    out = tmp_path / "bp4d.h5"
    with pytest.raises(ConversionError) as error:  # --root one level above the dataset
        data_prep(["bp4d", "--root", str(tmp_path), "--out", str(out), "--workers", "1"])
    expect("E53", str(error.value), root=tmp_path)
    assert_nothing_written(out)


def test_disfa_subject_without_any_landmark_file(disfa, tmp_path):
    (disfa / "Landmark_Points").rename(disfa / "Landmarks")  # a layout the converter does not know
    with pytest.raises(ConversionError) as error:
        convert_disfa(disfa, tmp_path / "disfa.h5")
    first, second = (
        disfa / "Landmark_Points" / "SN001",
        disfa / "Landmark_Points" / "Landmark_Points" / "SN001",
    )
    expect("E54", str(error.value), subject="SN001", count=3, first=first, second=second)
    assert_nothing_written(tmp_path / "disfa.h5")


def test_landmarks_outside_the_image(disfa, tmp_path, capsys):
    landmarks = disfa / "Landmark_Points" / "SN001" / "tmp_frame_lm" / "l0001_lm.mat"
    savemat(landmarks, {"pts": without_inner_corners(FACE_68) * 4})  # for a 4x larger video
    with pytest.raises(ConversionError, match=r"1 of 1 subject\(s\) failed"):
        convert_disfa(disfa, tmp_path / "disfa.h5")
    note = failure_note(capsys.readouterr().out, "SN001")
    x, y = re.search(r"centred at \((\d+), (\d+)\)", note).groups()
    assert int(x) > 160 and int(y) > 120
    expect("E13", note, file=landmarks, x=x, y=y)
    assert_subject_failed(tmp_path / "disfa.h5", "SN001")


def test_output_that_cannot_be_written(disfa, tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the output folder should be")
    out = blocker / "disfa.h5"
    with pytest.raises(ConversionError) as error:
        convert_disfa(disfa, out)
    expect("E14", str(error.value), out=out, folder=blocker)
    assert blocker.read_text() == "a file where the output folder should be"


def test_full_disk_while_writing_a_store(disfa, tmp_path, monkeypatch, capsys):
    out = tmp_path / "disfa.h5"
    old = write_store(out, DISFA_SUBJECTS[:1], 1, dataset="disfa")
    before = out.read_bytes()

    def full_disk(self, key, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full_disk)
    with pytest.raises(ConversionError, match=r"1 of 1 subject\(s\) failed"):
        convert_disfa(disfa, out)
    part = part_path(out, "SN001")
    expect("E15", failure_note(capsys.readouterr().out, "SN001"),
           partial=f"{part}.partial", part=part)  # fmt: skip
    assert out.read_bytes() == before and len(FrameStore(old)) == 1
    assert not list(parts_folder(out).iterdir())


def convert_bp4d(images: Path, labels: Path, out: Path) -> None:
    data_prep(["bp4d", "--images", str(images), "--labels", str(labels), "--out", str(out),
               "--workers", "1"])  # fmt: skip


def zip_members(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zipped:
        return {name: zipped.read(name) for name in zipped.namelist()}


def flip_a_bit(archive: Path, member: str) -> None:
    """Damage a member's data in place, as a faulty copy would: its CRC-32 no longer matches."""
    with zipfile.ZipFile(archive) as zipped:
        info = zipped.getinfo(member)
    data = bytearray(archive.read_bytes())
    # The data follow the member's 30-byte local header and its name (and a short extra field).
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0x10
    archive.write_bytes(bytes(data))


def test_damaged_member_of_a_zip_archive(tmp_path, capsys):
    pytest.importorskip("dlib")  # BP4D has no landmarks: its frames go through the detector
    label = (1, 2, 3, 4, 5)
    sequences = {("F001", "T1"): {1: label, 2: label}, ("F002", "T1"): {1: label}}
    images, labels = make_bp4d(tmp_path / "BP4D", sequences, archive=["F001"])
    archive, member, out = images / "F001.zip", "F001/T1/1.jpg", tmp_path / "bp4d.h5"
    members = zip_members(archive)
    flip_a_bit(archive, member)
    with pytest.raises(ConversionError, match=r"1 of 2 subject\(s\) failed \(F001;"):
        convert_bp4d(images, labels, out)
    note = failure_note(capsys.readouterr().out, "F001")
    expect("E43", note, archive=archive, member=member)
    assert "Bad CRC-32" in note
    assert_subject_failed(out, "F001")
    assert part_path(out, "F002").is_file()  # the finished subject is kept for the re-run

    with zipfile.ZipFile(archive, "w") as zipped:  # a member that is not an image
        for name, data in {**members, member: b"not a JPEG"}.items():
            zipped.writestr(name, data)
    with pytest.raises(ConversionError, match=r"1 of 2 subject\(s\) failed \(F001;"):
        convert_bp4d(images, labels, out)
    report = capsys.readouterr().out
    assert " resumed" in report.split("\nF002 ", 1)[1].splitlines()[0]
    expect("E43", failure_note(report, "F001"), archive=archive, member=member)
    assert "(not a readable image)" in failure_note(report, "F001")

    archive.write_bytes(b"not a zip archive")  # caught while planning, before any decoding
    with pytest.raises(ConversionError) as error:
        convert_bp4d(images, labels, out)
    assert str(error.value) == (
        f"{archive}: not a readable zip archive (File is not a zip file); re-extract or "
        "re-download the archive"
    )


@contextlib.contextmanager
def lock_holder(code: str, path: Path) -> Iterator[subprocess.Popen]:
    """Another process that runs ``code`` (a lock on ``path``, then "held"), SIGKILLed after."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time\nfrom pathlib import Path\n{code}", str(path)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_two_conversions_into_one_output(disfa, tmp_path):
    out = tmp_path / "disfa.h5"
    hold = (
        "from data_prep.common import one_writer\n"
        "with one_writer(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)"
    )
    with lock_holder(hold, out) as holder:
        with pytest.raises(ConversionError) as error:
            convert_disfa(disfa, out)
        expect("E44", str(error.value), out=out, pid=holder.pid, host=socket.gethostname())
        assert sorted(p.name for p in tmp_path.iterdir()) == ["DISFA", "disfa.h5.lock"]
    # Killed with SIGKILL: the lock file stays behind, naming a dead process.
    assert lock_path(out).read_text() == f"pid {holder.pid} on {socket.gethostname()}\n"
    convert_disfa(disfa, out)  # the dead holder's lock is taken over
    assert len(FrameStore(out)) == 3
    assert not lock_path(out).exists()  # removed as the conversion ended


# --------------------------------------------------------------------------------------------
# Frame stores


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "disfa.h5"
    return write_store(path, DISFA_SUBJECTS, 2, dataset="disfa", image_size=32)


def store_error(path: Path) -> str:
    with pytest.raises(StoreError) as error:
        FrameStore(path)
    return str(error.value)


def test_missing_frame_store(tmp_path):
    expect("E16", store_error(tmp_path / "disfa.h5"), path=tmp_path / "disfa.h5")


def test_conversion_that_did_not_finish(tmp_path):
    parts = parts_folder(tmp_path / "disfa.h5")
    parts.mkdir()
    path = tmp_path / "disfa.h5"
    expect("E17", store_error(path), path=path, parts=parts)


def test_truncated_hdf5(store, tmp_path):
    path = tmp_path / "disfa.h5"
    path.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    expect("E18", store_error(path), path=path)


def edited_copy(store: Path, tmp_path: Path, edit) -> Path:
    path = tmp_path / "disfa.h5"
    path.write_bytes(store.read_bytes())
    with h5py.File(path, "a") as file:
        edit(file)
    return path


def test_hdf5_of_an_older_schema_version(store, tmp_path):
    path = edited_copy(store, tmp_path, lambda file: file.attrs.__setitem__("schema_version", 0))
    expect("E19", store_error(path), path=path)


def test_hdf5_of_a_newer_schema_version(store, tmp_path):
    path = edited_copy(store, tmp_path, lambda file: file.attrs.__setitem__("schema_version", 2))
    expect("E20", store_error(path), path=path)


def test_hdf5_missing_a_dataset(store, tmp_path):
    path = edited_copy(store, tmp_path, lambda file: file.__delitem__("au"))
    expect("E21", store_error(path), path=path)


@pytest.mark.parametrize("value", [9.0, -1.0])
def test_hdf5_edited_after_it_was_written(store, tmp_path, value):
    def set_label(file):
        file["au"][5, 3] = value

    path = edited_copy(store, tmp_path, set_label)
    au = repr(FrameStore(store).au_names[3])
    expect("E41", store_error(path), path=path, row=5, au=au, value=value)

    def set_landmark(file):
        file["landmarks"][7, 30, 0] = np.inf

    path = edited_copy(store, tmp_path, set_landmark)
    assert "landmarks of row 7 are infinite in the file" in store_error(path)


# --------------------------------------------------------------------------------------------
# Configuration


def launch_error(capsys, monkeypatch, tmp_path: Path, *argv: str) -> str:
    """``python -m aunet.launch ...`` from the repository, with runs/ in ``tmp_path``: its one
    line (status 2), without its prefix."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(runs, "RUNS_ROOT", tmp_path / "runs")
    with pytest.raises(SystemExit) as error:
        launch.main(list(argv))
    assert error.value.code == 2
    line = capsys.readouterr().err
    assert line.startswith("aunet.launch: error: ") and line.count("\n") == 1
    return line.strip().removeprefix("aunet.launch: error: ")


def test_unknown_experiment(capsys, monkeypatch, tmp_path):
    argv = ("train", "--exp", "reparm", "--data", "disfa")
    message = launch_error(capsys, monkeypatch, tmp_path, *argv)
    known = [name for name in launch.experiment_names() if name != "fan"]
    expect("E22", message, experiments=", ".join(known))
    assert not (tmp_path / "runs").exists()


def test_unknown_dataset(capsys, monkeypatch, tmp_path):
    argv = ("train", "--exp", "reparam", "--data", "disfaa")
    message = launch_error(capsys, monkeypatch, tmp_path, *argv)
    expect("E23", message, datasets=", ".join(launch.dataset_names()))
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def fan_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fan") / "fan.pt"
    save_fan(FAN(TINY_FAN), path)
    return path


def fit_args(store: Path, fan: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config", str(EXPERIMENTS / "base.yaml"),
        "--config", str(EXPERIMENTS / "adapt.yaml"),
        "--data.path", str(store), "--data.image_size", "32", "--data.batch_size", "8",
        "--data.num_workers", "0", "--model.init_args.fan", str(fan),
        "--run.dir", str(run_dir), "--run.experiment", "adapt", "--run.wandb", "disabled",
        "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


def test_unknown_strategy(store, fan_file, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="unknown strategy") as error:
        aunet_main(fit_args(store, fan_file, run_dir, "--model.init_args.strategy", "reparm"))
    line = next(line for line in str(error.value).splitlines() if "unknown strategy" in line)
    expect("E24", line.strip().removeprefix("- "))
    assert ", ".join(STRATEGIES) in line
    assert not run_dir.exists()


def test_transfer_strategy_without_a_fan():
    with pytest.raises(ValueError, match="transfers from a pre-trained FAN") as error:
        AUHeatmapModule("adapt", au_names=["AU01", "AU12"])
    expect("E25", str(error.value))


def test_fan_file_of_another_architecture(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(ResNet18(num_outputs=12).state_dict(), path)
    with pytest.raises(ValueError, match="does not hold a FAN") as error:
        load_fan(path)
    expect("E26", str(error.value), path=path)
    assert "missing keys (0)" not in str(error.value)  # it lists what a FAN needs


def test_fold_out_of_range(store):
    with pytest.raises(ValueError, match="fold") as error:
        AUDataModule(store, fold=4, num_workers=0)
    expect("E27", str(error.value), path=store)


def test_empty_fold(tmp_path):
    present = [*DISFA_FOLDS[0][:2], *DISFA_FOLDS[2][:2]]  # fold 2's subjects are missing
    path = write_store(tmp_path / "disfa.h5", present, 1, dataset="disfa", image_size=16)
    with pytest.raises(ValueError, match="no frames") as error:
        AUDataModule(path, fold=2, num_workers=0)
    expect("E28", str(error.value), path=path, held_out=", ".join(DISFA_FOLDS[1]),
           present=", ".join(sorted(present)))  # fmt: skip


def test_image_size_the_network_cannot_take(store, fan_file, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"data\.image_size") as error:
        aunet_main(fit_args(store, fan_file, run_dir, "--data.image_size", "100"))
    expect("E48", fit_error_reason(error.value), size=100, strategy="adapt", depth=2, multiple=16,
           nearest="96 or 112")  # the tiny FAN: depth 2  # fmt: skip
    assert not run_dir.exists()
    with pytest.raises(ValueError, match="multiples of 64") as error:
        AUHeatmapModule("scratch", au_names=["AU01"], image_size=50)
    expect("E48", str(error.value), size=50, strategy="scratch", depth=4, multiple=64, nearest="64")


def test_nothing_to_resume(capsys, monkeypatch, tmp_path):
    argv = ("train", "--exp", "adapt", "--data", "disfa", "--fold", "2", "--resume")
    message = launch_error(capsys, monkeypatch, tmp_path, *argv)
    expect("E29", message, root=tmp_path / "runs" / "adapt" / "disfa" / "fold2")


# --------------------------------------------------------------------------------------------
# Training and checkpoints


def test_cuda_requested_where_there_is_none(store, fan_file, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run_dir = tmp_path / "run"
    with pytest.raises(MisconfigurationException) as error:
        aunet_main(fit_args(store, fan_file, run_dir, "--trainer.accelerator", "gpu"))
    expect("E30", str(error.value))
    assert not run_dir.exists()


def test_run_folder_that_cannot_be_written(store, fan_file, tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs folder should be")
    with pytest.raises(RunFolderError) as error:
        aunet_main(fit_args(store, fan_file, blocker / "adapt"))
    expect("E31", str(error.value), folder=blocker / "adapt")


def test_run_folder_another_fit_is_writing(store, fan_file, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    hold = "from aunet.cli.guards import lock_run_folder\nlock_run_folder(Path(sys.argv[1]))\n" \
           "print('held', flush=True); time.sleep(120)"  # fmt: skip
    with lock_holder(hold, run_dir) as holder:
        with pytest.raises(RunFolderError) as error:
            aunet_main(fit_args(store, fan_file, run_dir))
        expect("E42", str(error.value), folder=run_dir, pid=holder.pid, host=socket.gethostname())
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing of the 2nd fit
    with run_folders_released():  # the killed holder's lock is taken over
        lock_run_folder(run_dir)
        assert (run_dir / ".lock").read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"


def test_nan_loss(store, fan_file, tmp_path, monkeypatch):
    heatmap_loss = AUHeatmapModule._heatmap_loss

    def nan_at_the_second_step(self, *args):
        loss = heatmap_loss(self, *args)
        return loss * float("nan") if self.training and self.global_step == 1 else loss

    monkeypatch.setattr(AUHeatmapModule, "_heatmap_loss", nan_at_the_second_step)
    seen = []
    monkeypatch.setattr(
        AUHeatmapModule,
        "on_train_batch_start",
        lambda self, batch, batch_idx: seen.append(batch["index"].tolist()),
        raising=False,
    )
    run_dir = tmp_path / "run"
    with pytest.raises(FloatingPointError) as error:
        aunet_main(fit_args(store, fan_file, run_dir, "--run.checkpoint_every_n_steps", "1"))
    rows = ", ".join(map(str, seen[1][:8])) + (", ..." if len(seen[1]) > 8 else "")
    expect("E32", str(error.value), rows=rows)
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 1  # the step before the NaN, and only finite weights
    assert all(value.isfinite().all() for value in saved["state_dict"].values())
    assert not (run_dir / "metrics.json").exists()


def touch(path: str) -> None:
    """What an unsafe checkpoint would run when unpickled (here: leave a mark)."""
    pathlib.Path(path).touch()


class RunsCodeWhenUnpickled:
    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self):
        return touch, (str(self.mark),)


def test_checkpoint_that_is_not_weights_only(tmp_path):
    path, mark = tmp_path / "last.ckpt", tmp_path / "unpickled"
    torch.save({"state_dict": {}, "extra": RunsCodeWhenUnpickled(mark)}, path)
    with pytest.raises(CheckpointError) as error:
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)  # asked for, refused
    expect("E33", str(error.value), path=path)
    assert not mark.exists()


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError) as error:
        AtomicCheckpointIO().load_checkpoint(path)
    expect("E34", str(error.value), path=path)


@pytest.fixture(scope="module")
def trained(store, fan_file, tmp_path_factory) -> Path:
    """The last.ckpt of a one-step fit (each test loads its own copy)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    aunet_main(fit_args(store, fan_file, run_dir, "--trainer.limit_train_batches", "1"))
    return run_dir / "checkpoints" / "last.ckpt"


def test_checkpoint_trained_on_other_aus(store, fan_file, trained, tmp_path):
    checkpoint = torch.load(trained, weights_only=True)
    names = checkpoint["hyper_parameters"]["au_names"]
    data = list(names)
    names[0], names[1] = names[1], names[0]  # same AUs, another order
    path = tmp_path / "other-aus.ckpt"
    torch.save(checkpoint, path)
    run_dir = tmp_path / "second"
    same = ("--trainer.limit_train_batches", "1")  # the config it was trained with
    with pytest.raises(ValueError, match="trained on AUs") as error:
        aunet_main(fit_args(store, fan_file, run_dir, *same, "--ckpt_path", str(path)))
    expect("E35", str(error.value), path=path, trained=names, data=data)
    assert not (run_dir / "checkpoints").exists()


def test_resume_with_a_changed_config(store, fan_file, trained, tmp_path, caplog):
    lr = torch.load(trained, weights_only=True)["hyper_parameters"]["lr"]
    run_dir = tmp_path / "second"
    resume = ("--trainer.limit_train_batches", "1", "--trainer.max_epochs", "2",
              "--ckpt_path", str(trained), "--data.batch_size", "4",
              "--model.init_args.lr", str(lr * 2))  # fmt: skip
    with pytest.raises(ResumeConfigError) as error:
        aunet_main(fit_args(store, fan_file, run_dir, *resume))
    changes = f"data.batch_size 8 -> 4; model.init_args.lr {lr!r} -> {lr * 2!r}"
    expect("E45", str(error.value), path=trained, changes=changes)
    assert not run_dir.exists()
    # Lightning's "last" names the same file when the run folder is given.
    before = sorted(trained.parent.iterdir())
    with pytest.raises(ResumeConfigError):
        aunet_main(fit_args(store, fan_file, trained.parents[1], *resume[:4],
                            "--ckpt_path", "last", "--data.batch_size", "4"))  # fmt: skip
    assert sorted(trained.parent.iterdir()) == before
    # Evaluating a checkpoint resumes nothing: any batch size.
    aunet_main(["validate", *fit_args(store, fan_file, tmp_path / "eval")[1:],
                "--ckpt_path", str(trained), "--data.batch_size", "4"])  # fmt: skip
    # Allowed: the data change applies, the model's is said not to, the safe ones apply.
    aunet_main(fit_args(store, fan_file, run_dir, *resume, "--run.allow_config_change", "true"))
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resume: ")]
    assert "resume: trainer.max_epochs 1 -> 2 (applied)" in said
    assert "resume: data.batch_size 8 -> 4 (applied: --run.allow_config_change)" in said
    assert any(line.startswith("resume: model.init_args.lr") and "not applied" in line
               for line in said)  # fmt: skip
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == torch.load(trained, weights_only=True)["epoch"] + 1
    assert resumed["aunet_config"]["data"]["batch_size"] == 4
    assert resumed["aunet_config"]["model"]["init_args"]["lr"] == lr  # what ran
    assert resumed["optimizer_states"][0]["param_groups"][0]["initial_lr"] == lr


def test_checkpoint_that_names_a_class_outside_aunet(
    store, fan_file, trained, tmp_path, monkeypatch
):
    mark = tmp_path / "imported"
    (tmp_path / "marker_module.py").write_text(
        f"import pathlib\npathlib.Path({str(mark)!r}).touch()\nclass Model: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    checkpoint = torch.load(trained, weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "marker_module.Model"
    path = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError) as error:
        aunet_main(fit_args(store, fan_file, tmp_path / "second", "--ckpt_path", str(path)))
    expect("E37", str(error.value), path=path)
    assert not mark.exists()
    assert not (tmp_path / "second").exists()


def test_full_disk_while_writing_a_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 4}, path)
    good = path.read_bytes()

    def fill_the_disk(obj, file):
        file.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fill_the_disk)
    with pytest.raises(OSError, match="no space left") as error:
        io.save_checkpoint({"global_step": 5}, path)
    expect("E36", str(error.value), path=path)
    assert error.value.errno == errno.ENOSPC
    assert path.read_bytes() == good
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    monkeypatch.undo()
    assert io.load_checkpoint(path) == {"global_step": 4}


# --------------------------------------------------------------------------------------------
# Safety (docs/security.md)


def checkpoint_loads(path: Path) -> list[ast.Call]:
    """The calls of ``torch.load``, ``pl_load`` and ``*.load_from_checkpoint`` in a file."""
    return [
        node
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and (
            ast.unparse(node.func) in ("torch.load", "pl_load")
            or ast.unparse(node.func).endswith(".load_from_checkpoint")
        )
    ]


def test_every_checkpoint_load_in_the_code_is_weights_only():
    calls = [
        (path, call)
        for folder in ("aunet", "data_prep", "bench")
        for path in sorted((REPO / folder).rglob("*.py"))
        for call in checkpoint_loads(path)
    ]
    assert len(calls) >= 3  # fan_io, resnet and cv load checkpoints
    for path, call in calls:
        weights_only = {k.arg: ast.unparse(k.value) for k in call.keywords}.get("weights_only")
        assert weights_only == "True", (
            f"{path.relative_to(REPO)}:{call.lineno}: {ast.unparse(call)}"
        )


def test_resume_through_the_cli_refuses_a_checkpoint_that_is_not_weights_only(
    store, fan_file, tmp_path
):
    path, mark = tmp_path / "evil.ckpt", tmp_path / "unpickled"
    torch.save({"state_dict": {}, "extra": RunsCodeWhenUnpickled(mark)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        aunet_main(fit_args(store, fan_file, tmp_path / "run", "--ckpt_path", str(path),
                            "--weights_only", "false"))  # fmt: skip
    assert not mark.exists()


@pytest.mark.slow
def test_wandb_api_key_never_lands_in_the_run_folder(store, fan_file, tmp_path, monkeypatch):
    secret = "secret-test-key-0123456789abcdef0123"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    run_dir = tmp_path / "run"
    aunet_main(fit_args(store, fan_file, run_dir, "--run.wandb", "offline",
                        "--trainer.limit_train_batches", "2"))  # fmt: skip
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)  # W&B did write its run files
    assert (run_dir / "config.yaml").exists() and json.loads((run_dir / "metrics.json").read_text())
    leaks = [str(p.relative_to(run_dir)) for p in files if secret.encode() in p.read_bytes()]
    assert leaks == []


# --------------------------------------------------------------------------------------------
# Inference outputs


def predict_refusal(capsys, *argv: str) -> str:
    """aunet-predict's one-line refusal (exit status 2), without its prefix."""
    with pytest.raises(SystemExit) as stopped:
        predict_main(list(argv))
    assert stopped.value.code == 2
    return capsys.readouterr().err.strip().removeprefix("aunet-predict: error: ")


@pytest.fixture
def recording(tmp_path) -> tuple[Path, Path]:
    """A 3-frame video and a file standing for the checkpoint (never loaded: refused first)."""
    video, checkpoint = tmp_path / "rec.avi", tmp_path / "m.ckpt"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for _ in range(3):
        writer.write(np.full((48, 64, 3), 90, np.uint8))
    writer.release()
    checkpoint.write_bytes(b"weights")
    return video, checkpoint


def test_an_output_that_is_an_input_is_refused_before_any_work(recording, tmp_path, capsys):
    video, checkpoint = recording
    before = video.read_bytes()
    message = predict_refusal(capsys, str(video), "--ckpt", str(checkpoint), "--out", str(video))
    expect("E38", message, flag="--out", path=video, what=f"input {video}")
    link, hard = tmp_path / "link.avi", tmp_path / "hard.avi"
    link.symlink_to(video)
    hard.hardlink_to(video)
    for output in (link, hard):
        message = predict_refusal(
            capsys, str(video), "--ckpt", str(checkpoint), "--out", str(tmp_path / "a.csv"),
            "--overlay", str(output),
        )  # fmt: skip
        expect("E38", message, flag="--overlay", path=output, what=f"input {video}")
    message = predict_refusal(
        capsys, str(video), "--ckpt", str(checkpoint), "--out", "a.csv", "--plot", str(checkpoint)
    )
    expect("E38", message, flag="--plot", path=checkpoint, what=f"--ckpt {checkpoint}")
    assert video.read_bytes() == before and checkpoint.read_bytes() == b"weights"
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["hard.avi", "link.avi", "m.ckpt", "rec.avi"]  # no CSV, no partial file


def test_two_outputs_on_one_file_are_refused(recording, tmp_path, capsys):
    video, checkpoint = recording
    out = tmp_path / "au.csv"
    message = predict_refusal(
        capsys, str(video), "--ckpt", str(checkpoint), "--out", str(out), "--plot", str(out)
    )
    expect("E39", message, first="--out", second="--plot", path=out)
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "000001.png"), np.full((48, 64, 3), 90, np.uint8))
    message = predict_refusal(
        capsys, str(frames), "--ckpt", str(checkpoint), "--out", str(out),
        "--overlay", str(frames),
    )  # fmt: skip
    assert message == (
        f"--overlay {frames}: is the folder of the input {frames / '000001.png'}, where the "
        "overlay PNGs would overwrite or mix with it; choose another folder"
    )
    assert not out.exists() and sorted(p.name for p in frames.iterdir()) == ["000001.png"]


def test_a_converter_option_out_of_range(tmp_path, capsys):
    out = tmp_path / "faces.h5"
    with pytest.raises(SystemExit) as stopped:
        data_prep(["disfa", "--root", str(tmp_path), "--out", str(out), "--margin", "nan"])
    assert stopped.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    expect("E40", message, converter="disfa", flag="--margin", value="nan")
    assert not out.exists()


def test_a_run_folder_that_cannot_be_locked_warns_and_is_not_held(tmp_path, monkeypatch):
    def unsupported(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", unsupported)
    with run_folders_released():
        with pytest.warns(UserWarning, match="No locks available"):
            lock_run_folder(tmp_path)
        assert (tmp_path / ".lock").read_text() == ""  # no holder written: not held


def untrained_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(untrained_module("scratch"), tmp_path / "scratch.ckpt")


def test_full_disk_while_writing_predictions(recording, tmp_path, capsys, monkeypatch):
    video, _ = recording
    checkpoint, out = untrained_checkpoint(tmp_path), tmp_path / "out" / "rec.csv"
    out.parent.mkdir()

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the system reports it when the file is synced
    message = predict_refusal(capsys, str(video), "--ckpt", str(checkpoint), "--out", str(out),
                              "--no-progress")  # fmt: skip
    expect("E46", message, path=out)
    assert list(out.parent.iterdir()) == []


def test_overlay_video_that_does_not_read_back_whole(recording, tmp_path, capsys, monkeypatch):
    video, _ = recording
    checkpoint, out = untrained_checkpoint(tmp_path), tmp_path / "out"
    out.mkdir()
    real_writer = cv2.VideoWriter

    class LosingWriter:
        """A VideoWriter that loses every second frame and says nothing, as on a full disk."""

        def __init__(self, *args):
            self.writer, self.count = real_writer(*args), 0

        def isOpened(self):  # noqa: N802 (OpenCV's name)
            return self.writer.isOpened()

        def write(self, image):
            self.count += 1
            if self.count % 2:
                self.writer.write(image)

        def release(self):
            self.writer.release()

    monkeypatch.setattr(cv2, "VideoWriter", LosingWriter)
    overlay = out / "overlay.avi"
    argv = (str(video), "--ckpt", str(checkpoint), "--out", str(out / "rec.csv"),
            "--overlay", str(overlay), "--no-progress")  # fmt: skip
    message = predict_refusal(capsys, *argv)
    expect("E47", message, path=overlay)
    assert list(out.iterdir()) == []  # neither the video nor the CSV beside it
