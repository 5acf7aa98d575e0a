"""``make train``'s launcher: which runs get a FAN, which stores are drawn, the stage lines.

The child commands (``data_prep``, ``aunet-fan fit``, ``aunet fit``) are recorded instead of run;
the recorder writes what each would leave behind (a store, a FAN run's ``last.ckpt``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aunet import launch, shipped_fan
from aunet.launch import configs, inputs
from aunet.models import LIGHT_FAN_CONFIG, FANConfig

REPO = Path(__file__).resolve().parents[2]
STORE = Path("data/synthetic.h5")
LANDMARKS = Path("data/synthetic_landmarks.h5")
SYNTHETIC_FAN = Path("checkpoints/fan_synthetic.ckpt")


@pytest.fixture
def commands(tmp_path, monkeypatch) -> list[list[str]]:
    """A project in ``tmp_path`` (the cwd) whose child commands are recorded, not run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    recorded: list[list[str]] = []

    def record(command: list[str]) -> None:
        recorded.append(command)
        if "data_prep" in command:
            store = Path(launch.flag_value(command, "--out"))
            store.parent.mkdir(parents=True, exist_ok=True)
            store.write_bytes(b"")
        elif Path(command[0]).name == "aunet-fan":
            folder = Path(launch.flag_value(command, "--run.dir")) / "checkpoints"
            folder.mkdir(parents=True)
            (folder / "last.ckpt").write_bytes(b"fan")

    monkeypatch.setattr(configs, "run", record)
    return recorded


def names(commands: list[list[str]]) -> list[str]:
    """Each command as ``aunet``, ``aunet-fan`` or ``draw <store>``."""
    return [
        f"draw {launch.flag_value(c, '--out')}" if "data_prep" in c else Path(c[0]).name
        for c in commands
    ]


@pytest.mark.parametrize("experiment", ["scratch", "resnet18"])
def test_the_baselines_get_no_fan_even_when_one_is_given(commands, capsys, experiment):
    STORE.parent.mkdir()
    STORE.write_bytes(b"")
    launch.train(experiment, "synthetic", None, "2DFAN4.pth", False, [])
    assert names(commands) == ["aunet"]
    assert "--model.fan" not in commands[0]
    assert not Path("checkpoints").exists() and not LANDMARKS.exists()
    out = capsys.readouterr().out
    assert f"note: {experiment} uses no FAN (strategy {experiment}): FAN=2DFAN4.pth is not" in out
    assert "[1/4] stores: data/synthetic.h5 exists: reused\n" in out
    assert f"[2/4] FAN: none: {experiment} uses no FAN\n" in out
    assert f"[3/4] training: {experiment} on synthetic fold1 in runs/{experiment}/" in out
    assert "[4/4] report: runs/" in out


def test_the_synthetic_default_trains_from_the_shipped_fan_or_the_one_make_fan_built(
    commands, capsys
):
    launch.train("reparam", "synthetic", None, None, False, [])
    assert names(commands) == [f"draw {STORE}", "aunet"]  # no landmark store, no pre-training
    assert launch.flag_value(commands[-1], "--model.fan") == str(shipped_fan.SHIPPED_FAN)
    assert not LANDMARKS.exists() and not Path("checkpoints").exists()
    out = capsys.readouterr().out
    assert f"[1/4] stores: drawing {STORE} (5400 frames), expected " in out
    assert f"[2/4] FAN: {shipped_fan.SHIPPED_FAN}, shipped with aunet (`make fan` at commit" in out

    commands.clear()
    launch.train("random_backbone", "synthetic", None, None, False, [])  # its architecture
    assert names(commands) == ["aunet"]  # the store is reused
    assert launch.flag_value(commands[-1], "--model.fan") == str(shipped_fan.SHIPPED_FAN)
    assert "[1/4] stores: data/synthetic.h5 exists: reused\n" in capsys.readouterr().out

    SYNTHETIC_FAN.parent.mkdir()
    SYNTHETIC_FAN.write_bytes(b"fan")
    commands.clear()
    launch.train("adapt", "synthetic", None, None, False, [])
    assert launch.flag_value(commands[-1], "--model.fan") == str(SYNTHETIC_FAN)
    assert f"[2/4] FAN: {SYNTHETIC_FAN} (built by `make fan`)" in capsys.readouterr().out


def test_a_path_inside_the_working_folder_is_named_relative_to_it(tmp_path):
    inside = tmp_path / "aunet" / "assets" / "fan.pt"
    assert inputs._relative_if_below(inside, tmp_path) == "aunet/assets/fan.pt"
    assert inputs._relative_if_below(inside, tmp_path / "elsewhere") == str(inside)


def test_without_a_fan_random_backbone_has_the_synthetic_fans_architecture():
    """What makes pre-training a synthetic FAN for random_backbone work it does not use."""
    fan = yaml.safe_load((REPO / "experiments" / "fan.yaml").read_text())
    assert FANConfig.from_dict(fan["model"]["init_args"]["fan_config"]) == LIGHT_FAN_CONFIG


def test_cv_drops_a_given_fan_for_scratch_and_keeps_it_for_the_others(commands, capsys):
    plan = launch.plan_cross_validation("scratch", "disfa", "2DFAN4.pth", "last", [])
    assert plan.fan is None
    out = capsys.readouterr().out
    assert "note: scratch uses no FAN (strategy scratch): FAN=2DFAN4.pth is not passed" in out
    assert "[1/2] stores: data/disfa.h5 (converted by `make prep DATA=disfa`)" in out
    assert launch.plan_cross_validation("adapt", "disfa", "2DFAN4.pth", "last", []).fan == (
        "2DFAN4.pth"
    )
    assert commands == []


def test_a_killed_draw_leaves_no_store_and_is_drawn_again(commands, tmp_path):
    STORE.parent.mkdir()
    draw = subprocess.Popen(
        [sys.executable, "-m", "data_prep", "synthetic", "--out", str(STORE), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    partial = STORE.with_name(STORE.name + ".partial")
    deadline = time.monotonic() + 60
    while not partial.exists() and draw.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # some frames written
    draw.send_signal(signal.SIGKILL)
    draw.wait()
    assert partial.exists() and not STORE.exists()  # half-written, under its own name
    launch.ensure_synthetic_store(STORE)
    assert names(commands) == [f"draw {STORE}"]
    launch.ensure_synthetic_store(STORE)  # now complete: reused
    assert len(commands) == 1
