"""What a W&B dashboard receives from a fit, read back from the offline run files."""

from pathlib import Path

import pytest
import wandb
from factories import write_store
from wandb_records import run_records, wait_for_exit

from aunet.cli.fit import main as aunet_main
from aunet.cli.wandb_runs import start_summary_run
from aunet.data.folds import DISFA_SUBJECTS
from aunet.models import FAN, FANConfig, save_fan

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def write_inputs(folder: Path) -> tuple[Path, Path]:
    """A tiny DISFA-like store and a tiny FAN for ``adapt`` fits."""
    store = write_store(folder / "disfa.h5", DISFA_SUBJECTS, 2, dataset="disfa", image_size=32)
    fan = folder / "fan.pt"
    save_fan(FAN(FANConfig(num_stacks=1, width=16, depth=2, kernel_size=3)), fan)
    return store, fan


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    return write_inputs(tmp_path_factory.mktemp("inputs"))


def command(subcommand: str, inputs: tuple[Path, Path], run_dir: Path, *extra: str) -> list[str]:
    store, fan = inputs
    return [
        subcommand,
        "--config", str(EXPERIMENTS / "base.yaml"), "--config", str(EXPERIMENTS / "adapt.yaml"),
        "--data.path", str(store), "--data.image_size", "32", "--data.batch_size", "8",
        "--data.num_workers", "0", "--model.init_args.fan", str(fan),
        "--run.dir", str(run_dir), "--run.wandb", "offline", "--trainer.accelerator", "cpu",
        "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", *extra,
    ]  # fmt: skip


def test_fold_runs_carry_group_and_job_type(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    trained = tmp_path / "train"
    aunet_main(command("fit", inputs, trained, "--trainer.max_epochs", "1"))
    assert wandb.run is None  # finished with the fit: its file is complete, nothing reuses it
    (run,) = run_records(trained)
    assert (run.run_group, run.job_type, run.display_name) == (
        "adapt-disfa", "train", "adapt-disfa-fold1",
    )  # fmt: skip
    assert list(run.tags) == ["adapt", "disfa", "fold1"]
    checkpoint = trained / "checkpoints" / "last.ckpt"
    evaluated = tmp_path / "validate"
    aunet_main(command("validate", inputs, evaluated, "--ckpt_path", str(checkpoint)))
    (run,) = run_records(evaluated)  # a run of its own, not the training run reused
    assert (run.run_group, run.job_type) == ("adapt-disfa", "validate")


def test_summary_runs_opened_from_different_working_folders_each_write_their_file(
    tmp_path, monkeypatch
):
    """Cross-validation, table and robustness runs go to relative folders (runs/...)."""
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        start_summary_run(Path("summary"), "offline", "aunet", name=name).finish()
    for name in ("first", "second"):
        folder = tmp_path / name / "summary"
        wait_for_exit(folder)
        assert [run.display_name for run in run_records(folder)] == [name]
