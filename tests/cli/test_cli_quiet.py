"""The command line as researchers use it directly: run names, quiet fits, batch limits, make help.

- every experiment YAML names its experiment, so a direct ``aunet fit --config ...`` files its
  run under ``runs/<experiment>/`` as the launcher does;
- a fit prints none of the four third-party notices it used to (:mod:`aunet.training.notices`),
  while real warnings and aunet's own lines still show;
- ``--trainer.limit_train_batches 1`` is one batch, not the whole epoch (1.0);
- ``make help`` shows the Makefile's own defaults.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from factories import write_store
from pytorch_lightning.cli import LightningArgumentParser

from aunet import launch
from aunet.cli.fit import main as aunet_main
from aunet.data.folds import DISFA_SUBJECTS
from aunet.models import FAN, FANConfig, save_fan
from aunet.training.notices import (
    LEAFSPEC_MODULE,
    TIP_PREFIX,
    AUNetWandbLogger,
    LightningTips,
    silence_third_party_notices,
)
from aunet.training.precision import AUNetTrainer

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
TINY_FAN = FANConfig(num_stacks=1, width=16, depth=2, kernel_size=3, num_landmarks=68)
#: Three of the four notices every fit printed (aunet.training.notices); the fourth, the
#: deprecation of ``skip_none`` in aunet/cli/fit.py, is told by its place: Lightning's own cli.py
#: passes ``skip_none`` too, which shows with warnings on and is Lightning's to change.
NOTICES = (
    "The anonymous setting has no effect",
    "Tip: For seamless cloud logging",
    "isinstance(treespec, LeafSpec)",
)
#: A deprecation warning raised by aunet's code, as Python prints it.
AUNET_DEPRECATION = re.escape(str(REPO / "aunet")) + r"/\S+\.py:\d+: \w*(Deprecation|Future)Warning"
#: The module that builds ``LeafSpec()`` in Lightning 2.6.
LIGHTNING = "pytorch_lightning.utilities._pytree"
LEAFSPEC_TEXT = (
    "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
    "treespec.is_leaf()` instead."
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny DISFA-like store (4 training batches of 8 in fold 1) and a tiny FAN."""
    folder = tmp_path_factory.mktemp("inputs")
    store = write_store(folder / "disfa.h5", DISFA_SUBJECTS, 2, dataset="disfa", image_size=32)
    fan = folder / "fan.pt"
    save_fan(FAN(TINY_FAN), fan)
    return store, fan


def direct_fit_args(store: Path, fan: Path, *extra: str) -> list[str]:
    """``aunet fit`` as a user types it: the configs, no ``--run.experiment``."""
    return [
        "fit",
        "--config", str(EXPERIMENTS / "base.yaml"),
        "--config", str(EXPERIMENTS / "adapt.yaml"),
        "--data.path", str(store), "--data.image_size", "32", "--data.batch_size", "8",
        "--data.num_workers", "0", "--model.init_args.fan", str(fan),
        "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--run.overlay_every_n_epochs", "0",
        *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Every experiment names its runs


def test_every_experiment_yaml_names_its_experiment(monkeypatch, tmp_path):
    names = launch.experiment_names()
    assert "adapt" in names and "base" not in names
    for name in names:
        config = yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text()) or {}
        assert config.get("run", {}).get("experiment") == name, f"experiments/{name}.yaml"
    # The launcher passes the same name, after the configs.
    monkeypatch.chdir(REPO)
    for name in (n for n in names if n != "fan"):
        command = launch.fit_command(name, "synthetic", None, None, tmp_path / name, [])
        assert launch.flag_value(command, "--run.experiment") == name


# --------------------------------------------------------------------------------------------
# Quiet fits


def test_a_direct_fit_is_quiet_and_lands_in_its_experiments_folder(inputs, tmp_path, capfd):
    """The ``aunet`` console script, as a user runs it (W&B offline), with warnings shown.

    ``PYTHONWARNINGS=default`` shows deprecation warnings from every module once (as pytest and
    a developer's shell do), so that aunet's own deprecated calls would show too.
    """
    store, fan = inputs
    environment = {**os.environ, "PYTHONWARNINGS": "default", "WANDB_MODE": "offline"}
    for name in ("WANDB_SERVICE", "WANDB_SILENT"):  # a service of this process; no W&B lines
        environment.pop(name, None)
    aunet = Path(sys.executable).with_name("aunet")
    done = subprocess.run(
        [str(aunet), *direct_fit_args(store, fan, "--run.wandb", "auto")],
        cwd=tmp_path,
        env=environment,
        timeout=300,
        check=False,
    )
    output = capfd.readouterr()
    text = output.out + output.err
    assert done.returncode == 0, text
    for notice in NOTICES:
        assert notice not in text, notice
    assert not re.search(AUNET_DEPRECATION, text), text
    # What still shows: aunet's own lines (through the logger the tip was dropped from), W&B's
    # own, and Lightning's real warnings.
    assert "precision: 32-true" in text
    assert "wandb: " in text
    assert "The number of training batches (4) is smaller than the logging interval" in text
    # Named by experiments/adapt.yaml: runs/adapt/<dataset>/fold1/<stamp>/, not runs/adhoc/.
    (run_dir,) = (tmp_path / "runs").glob("*/*/*/*")
    assert run_dir.relative_to(tmp_path / "runs").parts[:3] == ("adapt", "disfa", "fold1")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["experiment"] == "adapt"


def test_the_filters_are_only_for_those_notices():
    """Lightning's LeafSpec deprecation from its _pytree module only; its tips only."""
    assert re.match(LEAFSPEC_MODULE, LIGHTNING)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        silence_third_party_notices()
        silence_third_party_notices()  # idempotent: one filter, one log filter
        warnings.warn_explicit(LEAFSPEC_TEXT, FutureWarning, "_pytree.py", 21, module=LIGHTNING)
        warnings.warn_explicit(LEAFSPEC_TEXT, FutureWarning, "mine.py", 1, module="aunet.mine")
        warnings.warn_explicit("something else", FutureWarning, "_pytree.py", 22, module=LIGHTNING)
    assert [(str(w.message), w.filename) for w in shown] == [
        (LEAFSPEC_TEXT, "mine.py"),
        ("something else", "_pytree.py"),
    ]
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert sum(isinstance(f, LightningTips) for f in rank_zero.filters) == 1

    def record(module: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(rank_zero.name, logging.INFO, f"{module}.py", 1, message, (),
                                 None)  # fmt: skip

    tips = LightningTips()
    assert not tips.filter(record("logger_connector", f"{TIP_PREFIX} logging, try litlogger"))
    assert tips.filter(record("logger_connector", "GPU available: False, used: False"))
    assert tips.filter(record("cli", f"{TIP_PREFIX}: aunet's own line"))


def test_the_wandb_logger_passes_no_anonymous_setting(tmp_path):
    assert "anonymous" not in AUNetWandbLogger(save_dir=str(tmp_path), offline=True)._wandb_init
    given = AUNetWandbLogger(save_dir=str(tmp_path), offline=True, anonymous=True)
    assert given._wandb_init["anonymous"] == "allow"  # asked for: kept, and W&B says it is moot


# --------------------------------------------------------------------------------------------
# Batch limits


@pytest.mark.parametrize(
    ("given", "parsed"), [("1", 1), ("2", 2), ("0", 0), ("1.0", 1.0), ("0.25", 0.25)]
)
def test_an_integer_batch_limit_stays_an_integer(given, parsed):
    parser = LightningArgumentParser()
    parser.add_lightning_class_args(AUNetTrainer, "trainer")
    limits = ("limit_train_batches", "limit_val_batches", "limit_test_batches",
              "limit_predict_batches", "overfit_batches")  # fmt: skip
    trainer = parser.parse_args([f"--trainer.{name}={given}" for name in limits]).trainer
    for name in limits:
        assert type(trainer[name]) is type(parsed) and trainer[name] == parsed, name


def test_limit_train_batches_1_trains_one_batch(inputs, tmp_path):
    store, fan = inputs
    run_dir = tmp_path / "run"
    aunet_main(direct_fit_args(store, fan, "--run.dir", str(run_dir), "--run.wandb", "disabled",
                               "--trainer.limit_train_batches", "1"))  # fmt: skip
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 1  # not 4
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["trainer"]["limit_train_batches"] == 1


# --------------------------------------------------------------------------------------------
# make help


def makefile_defaults() -> dict[str, str]:
    """``VAR ?= value`` of the Makefile: VAR -> value (empty when none)."""
    assignments = re.findall(r"^([A-Z_]+)\s*\?=[ \t]*(.*?)\s*$", (REPO / "Makefile").read_text(),
                             flags=re.MULTILINE)  # fmt: skip
    return dict(assignments)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_help_shows_the_makefiles_defaults():
    """A bare ``VAR=value`` in ``make help`` is VAR's ``?=`` default; every VAR is used."""
    makefile = (REPO / "Makefile").read_text()
    defaults = makefile_defaults()
    assert defaults["EXP"] == "reparam" and defaults["DATA"] == "synthetic"
    shown = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "help"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    lines = [line.split("\t", 1) for line in shown.splitlines()]
    assert len(lines) > 10 and all(len(parts) == 2 for parts in lines), shown
    claims = 0
    for target, text in lines:
        for name in re.findall(r"\b([A-Z][A-Z_]*)=", text):
            assert f"$({name})" in makefile, f"{target}: {name} is not a Makefile variable"
        bare = re.sub(r"\[[^\]]*\]", "", text)  # optional settings: examples, not defaults
        for name, value in re.findall(r"\b([A-Z][A-Z_]*)=(\S+)", bare):
            if value.startswith("<"):  # a placeholder
                continue
            assert name in defaults, f"{target}: {name}={value}, but {name} has no ?= default"
            assert value == defaults[name], f"{target}: {name}={value}, default {defaults[name]}"
            claims += 1
    assert claims >= 8  # train, cv, robustness: EXP and DATA; prep and table: DATA
