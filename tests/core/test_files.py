"""Atomic writes: a failed or interrupted write leaves the old file, and nothing beside it."""

import errno
import os
from pathlib import Path

import pytest

from aunet.files import atomic_path, copy_atomically, format_number, write_json_atomically


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")

    def killed_while_writing() -> None:
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        killed_while_writing()
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def write_report(target: Path) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text("new")


def write_metrics(target: Path) -> None:
    write_json_atomically(target, {"val/icc_mean": 0.5})


@pytest.mark.parametrize("writer", [write_report, write_metrics])
def test_a_write_error_reported_at_sync_keeps_the_old_file(tmp_path, monkeypatch, writer):
    target = tmp_path / "report.json"
    target.write_text("old")

    def full_disk(descriptor: int) -> None:  # as a network file system or a quota reports it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        writer(target)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_a_fixed_partial_name_is_what_a_killed_writer_leaves_and_the_next_write_replaces(
    tmp_path,
):
    target = tmp_path / "last.ckpt"
    partial = tmp_path / ".last.ckpt.partial"
    partial.write_text("left by a killed job")
    with atomic_path(target, partial=partial) as temporary:
        assert temporary == partial
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert sorted(tmp_path.iterdir()) == [target]


def test_the_temporary_file_keeps_the_suffix_that_writers_choose_a_format_by(tmp_path):
    with atomic_path(tmp_path / "out.mp4") as temporary:
        assert temporary.suffix == ".mp4" and temporary.parent == tmp_path
        assert temporary.name.startswith(".")  # hidden until complete
        temporary.write_bytes(b"x")


def test_a_failed_copy_leaves_no_partial_target(tmp_path):
    with pytest.raises(FileNotFoundError):
        copy_atomically(tmp_path / "missing.ckpt", tmp_path / "fan.ckpt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [(0.1234, 3, "0.123"), (-0.0001, 3, "0.000"), (-0.25, 2, "-0.25"), (None, 2, "n/a")],
)
def test_numbers_print_at_their_digits_and_never_as_minus_zero(value, digits, expected):
    assert format_number(value, digits) == expected


def test_a_written_file_gets_the_permissions_of_any_new_file_not_private_ones(tmp_path):
    mask = os.umask(0o022)
    try:
        write_json_atomically(tmp_path / "report.json", {"icc": 0.5})
        with open(tmp_path / "plain.json", "w") as plain:
            plain.write("{}")
    finally:
        os.umask(mask)
    mode = (tmp_path / "report.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o644
