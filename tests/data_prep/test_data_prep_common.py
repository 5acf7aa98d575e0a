import errno
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from raw_datasets import make_disfa
from scipy.io import savemat

import data_prep.common
from aunet.data.store import FrameStore
from data_prep.__main__ import CONVERTERS, build_parser, main, run
from data_prep.common import (
    ConversionError,
    SubjectReport,
    format_report,
    lock_path,
    part_path,
    read_label_file,
)

REPO = Path(__file__).resolve().parents[2]


def test_label_file_reading(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("1,0\n\n2 3.5\n3,9\n")
    frames, values = read_label_file(path, unknown=9)
    assert frames.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(values, [0, 3.5, np.nan])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,0\n2,1,4\n", r"l.csv, line 2: expected 'frame,intensity', got '2,1,4'"),
        ("one,0\n", r"l.csv, line 1: frame 'one' is not an integer"),
        ("1,0\n1,2\n", r"l.csv: frame 1 appears more than once"),
        ("1,-1\n", r"l.csv, line 1: intensity -1 outside 0-5"),
        ("1,nan\n", r"l.csv, line 1: intensity 'nan' is not a number"),
    ],
)
def test_label_file_errors(tmp_path, text, message):
    path = tmp_path / "l.csv"
    path.write_text(text)
    with pytest.raises(ConversionError, match=message):
        read_label_file(path)


def test_report_table():
    reports = [
        SubjectReport("SN001", written=4845, detected=12, unknown_labels=3, status="resumed"),
        SubjectReport("SN002", status="failed", notes=["x.avi: OpenCV cannot open this video"]),
        SubjectReport("SN003", written=10, no_landmarks=2, unlabelled=1),
    ]
    assert format_report(reports) == "\n".join(
        [
            "subject  written  detected  no_landmarks  unlabelled  unknown_labels  status",
            "SN001       4845        12             0           0               3  resumed",
            "SN002          -         -             -           -               -  failed",
            "SN003         10         0             2           1               0  converted",
            "total       4855        12             2           1               3",
            "SN002: x.avi: OpenCV cannot open this video",
        ]
    )


def convert(root, out, *extra):
    run(["disfa", "--root", str(root), "--out", str(out), "--workers", "1", *extra])
    return FrameStore(out)


def same_rows(a, b):
    assert a.subjects.tolist() == b.subjects.tolist()
    assert a.frames.tolist() == b.frames.tolist()
    np.testing.assert_array_equal(a.read_all("au"), b.read_all("au"))
    np.testing.assert_array_equal(a.read_all("landmarks"), b.read_all("landmarks"))
    for i in range(len(a)):
        np.testing.assert_array_equal(a.image(i), b.image(i))


def interrupt_at_crop(monkeypatch, number):
    """Make the ``number``-th face crop raise KeyboardInterrupt (as Ctrl-C would)."""
    real_crop, calls = data_prep.common.crop_face, []

    def crop_until_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == number:
            raise KeyboardInterrupt
        return real_crop(*args, **kwargs)

    monkeypatch.setattr(data_prep.common, "crop_face", crop_until_interrupted)


def test_interrupted_conversion_resumes(tmp_path, monkeypatch, capsys):
    root = make_disfa(tmp_path / "DISFA", num_frames=3)
    out = tmp_path / "disfa.h5"
    interrupt_at_crop(monkeypatch, 5)  # the second frame of the second subject
    with pytest.raises(KeyboardInterrupt):
        convert(root, out)
    assert not out.exists()  # no store under the final name, not even a partial one
    assert sorted(p.name for p in (tmp_path / "disfa.h5.parts").iterdir()) == ["SN001.h5"]
    monkeypatch.undo()
    capsys.readouterr()
    resumed = convert(root, out)
    report = capsys.readouterr().out
    assert "SN001          3         0             0           0               0  resumed" in report
    assert (
        "SN002          3         0             0           0               0  converted" in report
    )
    same_rows(resumed, convert(root, tmp_path / "fresh.h5"))
    assert not (tmp_path / "disfa.h5.parts").exists()


def test_parts_of_other_options_are_redone(tmp_path, monkeypatch, capsys):
    root = make_disfa(tmp_path / "DISFA", num_frames=2)
    out = tmp_path / "d.h5"
    interrupt_at_crop(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        convert(root, out)
    monkeypatch.undo()
    capsys.readouterr()
    convert(root, out, "--margin", "0.3")
    assert "SN001          2         0             0           0               0  converted" in (
        capsys.readouterr().out
    )
    assert FrameStore(out).attrs["crop_margin"] == 0.3


def test_failed_subject_keeps_the_finished_ones(tmp_path, capsys):
    root = make_disfa(tmp_path / "DISFA", num_frames=2)
    out = tmp_path / "d.h5"
    landmarks = root / "Landmark_Points" / "SN002" / "tmp_frame_lm" / "SN002_0001_lm.mat"
    good = landmarks.read_bytes()
    savemat(landmarks, {"pts": np.zeros((10, 2))})  # found only while converting SN002
    with pytest.raises(ConversionError, match=r"1 of 2 subject\(s\) failed \(SN002; see the"):
        convert(root, out)
    assert f"SN002: {landmarks}: 'pts' has shape (10, 2), expected 66 x 2 or 68 x 2" in (
        capsys.readouterr().out
    )
    assert part_path(out, "SN001").exists()
    assert not part_path(out, "SN002").exists()
    assert not out.exists()
    landmarks.write_bytes(good)
    convert(root, out)
    report = capsys.readouterr().out
    assert "SN001          2         0             0           0               0  resumed" in report
    assert (
        "SN002          2         0             0           0               0  converted" in report
    )


def test_damaged_part_is_redone(tmp_path, capsys):
    root = make_disfa(tmp_path / "DISFA", ("SN001",), num_frames=2)
    out = tmp_path / "d.h5"
    part = part_path(out, "SN001")
    part.parent.mkdir()
    part.write_bytes(b"truncated by a crash")
    convert(root, out)
    assert "SN001          2         0             0           0               0  converted" in (
        capsys.readouterr().out
    )


@pytest.mark.slow  # starting two worker processes takes seconds on a small machine
def test_workers_give_the_same_store(tmp_path):
    root = make_disfa(tmp_path / "DISFA", num_frames=2)
    start = time.perf_counter()
    run(["disfa", "--root", str(root), "--out", str(tmp_path / "two.h5"), "--workers", "2"])
    print(f"2 workers: {time.perf_counter() - start:.1f} s")
    same_rows(FrameStore(tmp_path / "two.h5"), convert(root, tmp_path / "one.h5"))


def test_help_lists_every_converter_and_every_one_takes_root():
    text = build_parser([]).format_help()
    for name in CONVERTERS:
        assert name in text
    # `make prep DATA=<dataset> ROOT=<dir> ARGS=...` passes --root and --out to each of them
    for name in ("disfa", "bp4d", "manifest", "fera2017", "300w-lp"):
        extra = ["--csv", "f.csv"] if name in ("manifest", "fera2017") else []
        args = build_parser([name]).parse_args([name, "--root", "r", "--out", "data/x.h5", *extra])
        assert args.root == Path("r")
        assert args.out == Path("data/x.h5")


def test_command_line_errors_end_with_the_message_and_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["disfa", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "x.h5")])
    assert exit_.value.code == 2
    line = capsys.readouterr().err
    assert re.fullmatch(
        r"python -m data_prep: error: .*missing: folder missing; expected the DISFA.*\n", line
    )


@pytest.mark.slow
def test_killed_conversion_resumes(tmp_path):
    """A real SIGKILL in the middle of a run; the re-run finishes the job."""
    root = make_disfa(tmp_path / "DISFA", num_frames=150)
    out = tmp_path / "disfa.h5"
    command = [sys.executable, "-m", "data_prep", "disfa", "--root", str(root), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([*command, "--workers", "1"], env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while not part_path(out, "SN001").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert part_path(out, "SN001").exists()
    assert not out.exists()
    finished = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "SN001        150         0             0           0               0  resumed" in (
        finished.stdout
    )
    assert len(FrameStore(out)) == 300


@pytest.mark.parametrize(
    ("converter", "flag", "value", "expected"),
    [
        ("synthetic", "--size", "0", "expected a whole number >= 16, got 0"),
        ("synthetic", "--subjects", "0", "expected a whole number >= 1, got 0"),
        ("synthetic", "--frames-per-subject", "x", "expected a whole number, got 'x'"),
        ("synthetic", "--workers", "-1", "expected a whole number >= 1, got -1"),
        ("disfa", "--size", "8", "expected a whole number >= 16, got 8"),
        ("disfa", "--margin", "-1", "expected a finite number >= 0.0, got -1"),
        ("disfa", "--margin", "nan", "expected a finite number >= 0.0, got nan"),
        ("bp4d", "--margin", "inf", "expected a finite number >= 0.0, got inf"),
        ("disfa", "--jpeg-quality", "101", "expected a whole number from 1 to 100, got 101"),
        ("disfa", "--detect-side", "-5", "expected a whole number >= 0, got -5"),
    ],
)
def test_an_option_out_of_range_is_one_line_with_exit_2(
    tmp_path, capsys, converter, flag, value, expected
):
    argv = [converter, "--out", str(tmp_path / "out.h5"), flag, value]
    argv += [] if converter == "synthetic" else ["--root", str(tmp_path)]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"python -m data_prep {converter}: error: argument {flag}: {expected}"
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_cannot_be_locked_warns_and_converts(tmp_path, monkeypatch):
    def unsupported(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", unsupported)  # as on a file system without flock
    root = make_disfa(tmp_path / "DISFA", ("SN001",), num_frames=2)
    out = tmp_path / "d.h5"
    warning = f"--out {out}: cannot lock {lock_path(out)} (No locks available); a second " + (
        "conversion into this file would not be stopped"
    )
    with pytest.warns(UserWarning, match=re.escape(warning)):
        assert len(convert(root, out)) == 2
    assert not lock_path(out).exists()


def test_a_conversion_refused_while_planning_leaves_no_lock_and_no_folder(tmp_path):
    out = tmp_path / "new" / "folder" / "d.h5"
    with pytest.raises(ConversionError, match="folder missing"):
        convert(tmp_path / "missing", out)  # the lock was taken (its folders made) first
    assert list(tmp_path.iterdir()) == []
