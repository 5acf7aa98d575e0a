"""Interrupted conversion: a converter killed at random points and re-run gives the same store.

``python -m data_prep disfa`` (two worker processes) is started again and again in one output
place and killed at a random moment of each run, by SIGKILL or SIGTERM to its whole process
group (workers included, as a cluster or Ctrl-C stops a job), until it has been killed ten times;
then it is run to its end. After every kill the store is either absent or complete and equal to
an uninterrupted conversion's (never half-written); at the end it holds the same content as the
uninterrupted conversion (every dataset byte for byte, the attributes, and the per-subject
report but for the statuses ``converted``/``resumed``), and no part or partial file is left.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from raw_datasets import make_disfa

from data_prep.common import parts_folder

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KILLS = 10
SEED = 20260422


def start(root: Path, out: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "data_prep", "disfa", "--root", str(root), "--out", str(out),
               "--workers", "2"]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("a") as output:
        output.write(f"\n+ {' '.join(command)}\n")
        output.flush()
        return subprocess.Popen(command, cwd=REPO, env=environment, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def contents(path: Path) -> dict:
    """Every dataset (JPEG rows as bytes) and attribute; the report without its statuses."""
    with h5py.File(path, "r") as file:
        data = {
            name: [bytes(row) for row in file[name]]
            if file[name].dtype.kind == "O" and name == "images"
            else file[name][:].tolist()
            for name in file
        }
        attrs = {key: np.asarray(value).tolist() for key, value in file.attrs.items()}
    report = json.loads(attrs.pop("prep_report"))
    for subject in report:
        assert subject.pop("status") in ("converted", "resumed")
    return {"data": data, "attrs": attrs, "report": report}


def leftovers(out: Path) -> list[str]:
    """What a killed conversion left: finished and partial parts, a partial or complete store."""
    parts = (
        sorted(p.name for p in parts_folder(out).glob("*")) if parts_folder(out).exists() else []
    )
    return [*parts, *(p.name for p in sorted(out.parent.glob(f"{out.name}*")) if p.is_file())]


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text().splitlines()[-lines:])


def part_names(out: Path, pattern: str) -> set[str]:
    """The names in ``<out>.parts/`` matching ``pattern``; none once the folder is gone.

    The conversion removes the folder after merging, possibly while it is being listed.
    """
    try:
        return {p.name for p in parts_folder(out).glob(pattern)}
    except FileNotFoundError:
        return set()


def finished_parts(out: Path) -> set[str]:
    return part_names(out, "*.h5")


#: Moments of a conversion to kill it at (each followed by a random delay): while it starts and
#: checks its inputs, while subjects convert, just after a subject's part is complete, while
#: the parts merge into ``<out>.partial``, and after the rename, before the parts are removed.
MOMENTS: dict[str, Callable[[Path, set[str]], bool]] = {
    "starting": lambda out, before: True,
    "converting": lambda out, before: bool(part_names(out, "*.h5.partial")),
    "part finished": lambda out, before: bool(finished_parts(out) - before),
    "merging": lambda out, before: Path(f"{out}.partial").exists(),
    "merged": lambda out, before: out.exists(),
}
#: Ten kills spread over the moments.
PLAN = ["starting", "starting", "converting", "converting", "part finished", "part finished",
        "part finished", "merging", "merging", "merged"]  # fmt: skip


def test_a_conversion_killed_at_ten_random_points_gives_the_uninterrupted_store(tmp_path):
    rng = random.Random(SEED)
    root = make_disfa(tmp_path / "DISFA", ("SN001", "SN002", "SN003"), num_frames=200)
    log = tmp_path / "conversions.log"
    reference = start(root, tmp_path / "uninterrupted.h5", log)
    assert reference.wait(timeout=600) == 0, tail(log)
    expected = contents(tmp_path / "uninterrupted.h5")
    assert len(expected["data"]["frame"]) == 600

    out = tmp_path / "disfa.h5"
    plan = rng.sample(PLAN, len(PLAN))
    kills, missed = [], []
    while plan:
        assert len(missed) < KILLS, f"moments the runs ended before: {missed}"
        moment, signum = plan.pop(0), rng.choice([signal.SIGKILL, signal.SIGTERM])
        before = finished_parts(out)
        process = start(root, out, log)
        while process.poll() is None and not MOMENTS[moment](out, before):
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.5 if moment == "starting" else 0.05))
        if process.poll() is not None:  # it ended first: try this moment again later
            assert process.returncode == 0, tail(log)
            missed.append(moment)
            plan.append(moment)
            continue
        os.killpg(process.pid, signum)
        process.wait(timeout=60)
        kills.append((moment, signum.name, leftovers(out)))
        if out.exists():  # after a kill, only if it came after the store's final rename
            assert contents(out) == expected
    print("kills (moment, signal, what was left):", *kills, f"retried: {missed}", sep="\n  ")
    assert len(kills) == KILLS

    final = start(root, out, log)
    assert final.wait(timeout=600) == 0, tail(log)
    assert contents(out) == expected
    assert not parts_folder(out).exists()
    assert sorted(p.name for p in tmp_path.glob("disfa.h5*")) == ["disfa.h5"]
