"""The console scripts' exits: input errors in one line (status 2), Ctrl-C 130, SIGTERM 143."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from checkpoint_factories import save_checkpoint, untrained_module

from aunet.cli.guards import DEBUG_VARIABLE, Terminated, command_line, fit_error_reason

REPO = Path(__file__).resolve().parents[2]


def console(main, **options):
    return command_line("prog", (ValueError,), stop_hint="; resume with X", **options)(main)


def exit_of(script) -> int:
    with pytest.raises(SystemExit) as stopped:
        script()
    return stopped.value.code


def test_an_input_error_is_one_line_with_status_2(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)

    def main():
        raise ValueError("data.h5: fold must be one of 1..3, got 7")

    assert exit_of(console(main)) == 2
    assert capsys.readouterr().err == "prog: error: data.h5: fold must be one of 1..3, got 7\n"


def test_debug_shows_the_traceback_and_other_errors_are_not_hidden(monkeypatch):
    def bad_input():
        raise ValueError("bad")

    def bug():
        raise KeyError("a bug, not an input")

    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(ValueError, match="bad"):
        console(bad_input)()
    monkeypatch.delenv(DEBUG_VARIABLE)
    with pytest.raises(KeyError):
        console(bug)()


def test_ctrl_c_is_status_130_even_when_a_library_exits_1(capsys):
    def interrupted():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the signal arrives first

    def lightning_like():  # Lightning catches KeyboardInterrupt, tidies up, then sys.exit(1)
        try:
            interrupted()
        except KeyboardInterrupt:
            sys.exit(1)

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    for main in (interrupted, lightning_like):
        assert exit_of(console(main)) == 130
        assert capsys.readouterr().err == "prog: interrupted (SIGINT); resume with X\n"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_sigterm_unwinds_so_cleanups_run(tmp_path, capsys):
    partial = tmp_path / "out.partial123.csv"

    def main():
        partial.write_text("half")
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated:
            partial.unlink()
            raise

    assert exit_of(console(main)) == 143
    assert capsys.readouterr().err == "prog: stopped by SIGTERM; resume with X\n"
    assert not partial.exists()


def test_a_fit_input_error_through_the_aunet_command(tmp_path):
    """The installed console script: one line, status 2, no traceback."""
    command = [sys.executable, "-c", "from aunet.cli.fit import aunet_command; aunet_command()",
               "fit", "--config", str(REPO / "experiments" / "base.yaml"),
               "--data.path", str(tmp_path / "missing.h5"), "--run.wandb", "disabled",
               "--run.dir", str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop(DEBUG_VARIABLE, None)
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"aunet: error: {tmp_path / 'missing.h5'}: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("overlay", ["overlay.avi", "overlay_pngs"])
def test_sigterm_during_predict_removes_its_partial_outputs(tmp_path, overlay):
    video = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for n in range(2000):
        writer.write(np.full((48, 64, 3), n % 200, np.uint8))
    writer.release()
    checkpoint = save_checkpoint(untrained_module("scratch"), tmp_path / "m.ckpt")
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-c", "from aunet.inference.predict import predict_command; "
               "predict_command()", str(video), "--ckpt", str(checkpoint),
               "--out", str(out / "long.csv"), "--overlay", str(out / overlay),
               "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(out.iterdir()) and time.monotonic() < deadline:  # writing has begun
        time.sleep(0.05)
    assert any(".partial" in p.name for p in out.iterdir())
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == (
        "aunet-predict: stopped by SIGTERM; its partial outputs were removed"
    )
    assert list(out.iterdir()) == []


def test_a_model_error_is_told_without_jsonargparses_wrapping():
    wrapped = ValueError(
        "Does not validate against any of the Union subtypes\n"
        "Subtypes: [<class 'aunet.training.au_module.AUHeatmapModule'>, <class 'NoneType'>]\n"
        "Errors:\n"
        "  - unknown strategy 'reparm'; expected one of: scratch, reparam\n"
        "  - Expected a <class 'NoneType'>\n"
        "Given value type: <class 'jsonargparse._namespace.Namespace'>\n"
        "Given value: Namespace(class_path='aunet.training.AUHeatmapModule', ...)"
    )
    reason = "unknown strategy 'reparm'; expected one of: scratch, reparam"
    assert fit_error_reason(wrapped) == reason
    assert fit_error_reason(ValueError("plain")) == "plain"


@pytest.mark.parametrize("module", ["aunet.inference.predict", "aunet.inference.export"])
def test_help_gives_a_default_only_where_one_means_something(module, capsys):
    with pytest.raises(SystemExit):
        __import__(module, fromlist=["main"]).main(["--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: False)" not in text
    ckpt = next(line for line in text.splitlines() if line.strip().startswith("--ckpt"))
    assert "default" not in ckpt  # required: no default to show
    assert (
        "(default: 16)" in text if module == "aunet.inference.predict" else "(default: 17)" in text
    )
