"""A fit's W&B run and its evaluations', read back from the offline run files.

One fit of three epochs (checkpoints logged as artifacts) and one ``aunet validate --config
<run>/config.yaml`` of its final model, as a dashboard user would make them; each test reads
what the run files hold: the summary, the config, the runs and their links, the artifacts.
"""

import base64
import hashlib
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch
from test_wandb_runs import command, write_inputs
from wandb_records import read_records

from aunet.cli.fit import main as aunet_main
from aunet.runs import best_checkpoint, last_checkpoint


def records(run_folder: Path) -> dict[str, list[Any]]:
    """Every record of the offline W&B runs directly under ``run_folder/wandb``, by type."""
    found = defaultdict(list)
    for path in sorted((run_folder / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in read_records(path):
            kind = record.WhichOneof("record_type")
            found[kind].append(getattr(record, kind))
    return found


def _items(updates) -> dict[str, Any]:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in updates}


def final_summary(run_folder: Path) -> dict[str, Any]:
    """The run summary W&B ends with: every summary record's updates, in order."""
    summary: dict[str, Any] = {}
    for record in records(run_folder)["summary"]:
        summary.update(_items(record.update))
    return summary


def validation_history(run_folder: Path) -> dict[int, dict[str, Any]]:
    """The ``val/...`` values logged in the run's history, by epoch."""
    epochs: dict[int, dict[str, Any]] = {}
    for record in records(run_folder)["history"]:
        row = _items(record.item)
        values = {key: value for key, value in row.items() if key.startswith("val/")}
        if values:
            epochs.setdefault(row["epoch"], {}).update(values)
    return epochs


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("runs")
    inputs = write_inputs(folder)
    trained = folder / "train"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DATA_DIR", str(folder / "wandb-data"))  # artifact staging copies
        aunet_main(
            command(
                "fit", inputs, trained, "--trainer.max_epochs", "3",
                "--run.wandb_checkpoints", "true",
            )
        )  # fmt: skip
        config = (trained / "config.yaml").read_text()
        aunet_main(["validate", "--config", str(trained / "config.yaml"), "--ckpt_path", "last"])
        plain = folder / "plain"
        aunet_main(command("fit", inputs, plain, "--trainer.max_epochs", "1"))
    return {"trained": trained, "config": config, "plain": plain}


def test_summary_describes_the_final_models_epoch(runs):
    trained = runs["trained"]
    summary, history = final_summary(trained), validation_history(trained)
    final = torch.load(last_checkpoint(trained), weights_only=True)["epoch"]
    assert summary["epoch"] == final == max(history) == 2
    values = {key: value for key, value in summary.items() if key.startswith("val/")}
    assert set(values) == set(history[final]) and "val/icc/AU01" in values
    for key, value in values.items():  # every one a plain number, of that epoch
        assert same(value, history[final][key]), key
    # The best epoch beside it, under names of its own.
    best_epoch = max(history, key=lambda epoch: history[epoch]["val/icc_mean"])
    assert summary["best/val/icc_mean"] == pytest.approx(history[best_epoch]["val/icc_mean"])
    assert summary["best/epoch"] == best_epoch
    assert best_checkpoint(trained).name == f"best-epoch{best_epoch:03d}.ckpt"
    # Validating the final model measures what the summary says.
    (evaluation,) = trained.glob("validate/*")
    measured = final_summary(evaluation)
    assert same(measured["val/icc_mean"], summary["val/icc_mean"])
    assert measured["epoch"] == final  # the evaluated checkpoint's epoch


def test_config_is_logged_once_and_complete(runs):
    trained = runs["trained"]
    updates = [_items(record.update) for record in records(trained)["config"]]
    keys = [key for update in updates for key in update]
    assert len(keys) == len(set(keys))  # no key logged twice
    config = {key: value for update in updates for key, value in update.items()}
    assert {"model", "data", "trainer", "run"} <= set(config)
    assert not {"strategy", "au_names", "lr"} & set(config)  # no flat copy of the module's
    built = torch.load(last_checkpoint(trained), weights_only=True)["hyper_parameters"]
    init_args = config["model"]["init_args"]
    assert init_args["au_names"] == built["au_names"] and len(built["au_names"]) == 12
    assert init_args["fan_config"] == built["fan_config"] is not None
    assert init_args["image_size"] == config["data"]["image_size"] == 32
    assert config["run"]["wandb_checkpoints"] is True


def test_evaluation_has_its_own_folder_and_run_linked_to_training(runs):
    trained = runs["trained"]
    assert (trained / "config.yaml").read_text() == runs["config"]  # a fit can run it again
    training_id = (trained / "wandb_id").read_text().strip()
    (run,) = records(trained)["run"]  # the evaluation added no segment to the training run
    assert (run.run_id, run.job_type) == (training_id, "train")
    (evaluation,) = trained.glob("validate/*")
    (evaluated,) = records(evaluation)["run"]
    assert evaluated.job_type == "validate" and evaluated.run_id != training_id
    link = _items(evaluated.config.update)["training_run"]
    assert link == {
        "dir": str(trained),
        "wandb_id": training_id,
        "checkpoint": str(last_checkpoint(trained)),
        "epoch": 2,
    }
    assert str(last_checkpoint(trained)) in (evaluation / "config.yaml").read_text()


def _md5(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def test_checkpoints_are_artifacts_only_when_asked(runs):
    trained = runs["trained"]
    training_id = (trained / "wandb_id").read_text().strip()
    logged = records(trained)["artifact"]
    assert [(a.name, a.type) for a in logged] == [(f"model-{training_id}", "model")] * 2
    for artifact, path, alias in zip(
        logged, [best_checkpoint(trained), last_checkpoint(trained)], ["best", "last"], strict=True
    ):
        (entry,) = artifact.manifest.contents
        assert (entry.path, entry.digest) == (path.name, _md5(path))
        assert alias in artifact.aliases
    plain = records(runs["plain"])
    assert plain["run"] and not plain["artifact"]  # off by default
    (evaluation,) = trained.glob("validate/*")
    assert not records(evaluation)["artifact"]
