"""DDP on CPU (gloo): exact validation metrics over 2 processes, and a bf16-mixed DDP fit.

Lightning starts the second DDP process by re-running the command line, so DDP runs here are
``aunet`` subprocesses, never calls inside pytest's process.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from factories import write_store
from pytorch_lightning.callbacks import Callback

from aunet.cli.fit import main as aunet_main
from aunet.data.datamodule import AUDataModule
from aunet.data.dataset import FrameDataset, collate_frames
from aunet.data.folds import DISFA_SUBJECTS
from aunet.metrics import icc
from aunet.models import FAN, FANConfig, load_fan, save_fan
from aunet.training import AUHeatmapModule

pytestmark = pytest.mark.slow

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
AUNET = str(Path(sys.executable).with_name("aunet"))
TINY_FAN = FANConfig(num_stacks=1, width=16, depth=2, kernel_size=3, num_landmarks=68)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A store whose fold 1 holds out 9 subjects x 3 frames = 27: an odd count, which a
    padding sampler over 2 processes would round up to 28 with a repeated frame."""
    folder = tmp_path_factory.mktemp("ddp")
    store = write_store(folder / "disfa.h5", DISFA_SUBJECTS, 3, dataset="disfa", image_size=32)
    save_fan(FAN(TINY_FAN), folder / "fan.pt")
    return store, folder / "fan.pt"


def common_args(
    inputs: tuple[Path, Path], run_dir: Path, batch_size: int, experiment: str = "adapt"
) -> list[str]:
    store, fan = inputs
    return [
        "--config", str(EXPERIMENTS / "base.yaml"),
        "--config", str(EXPERIMENTS / f"{experiment}.yaml"),
        "--data.path", str(store), "--data.image_size", "32",
        "--data.batch_size", str(batch_size), "--data.num_workers", "0",
        "--model.init_args.fan", str(fan), "--run.dir", str(run_dir),
        "--run.experiment", experiment, "--run.wandb", "disabled",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.precision", "32-true",  # compared with a float32 reference below
    ]  # fmt: skip


def run_aunet(arguments: list[str]) -> None:
    """``aunet`` in a child process, which can import this module's callbacks."""
    # The repository, this test's folder (the callback class path names this module) and the
    # shared factories' folder.
    here = Path(__file__).resolve().parent
    path = os.pathsep.join([str(EXPERIMENTS.parent), str(here), str(here.parent)])
    environment = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([AUNET, *arguments], env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def logged_validation(run_dir: Path) -> dict[str, float]:
    """The ``val/...`` values of the run's CSV log."""
    (log,) = run_dir.glob("csv/version_*/metrics.csv")
    with log.open(newline="") as file:
        (row,) = [row for row in csv.DictReader(file) if row.get("val/icc_mean")]
    return {key: float(value) for key, value in row.items() if key.startswith("val/") and value}


def test_two_process_validation_gives_the_one_process_icc(inputs, tmp_path):
    """Batch size 1, so that each frame's prediction is the same whichever process makes it."""
    trained = tmp_path / "trained"
    aunet_main(["fit", *common_args(inputs, trained, 8), "--trainer.max_epochs", "1"])
    checkpoint = str(trained / "checkpoints" / "last.ckpt")
    scores = {}
    for devices in (1, 2):
        run_dir = tmp_path / f"validate{devices}"
        run_aunet(["validate", *common_args(inputs, run_dir, 1), "--ckpt_path", checkpoint,
                   "--trainer.devices", str(devices), "--trainer.strategy",
                   "ddp" if devices > 1 else "auto"])  # fmt: skip
        scores[devices] = logged_validation(run_dir)
    assert set(scores[1]) == set(scores[2]) and len(scores[1]) > 20
    for key, value in scores[1].items():
        if key != "val/loss":  # the loss is a mean of per-process means, not an exact metric
            assert scores[2][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key

    # Both equal ICC(3,1) of the 27 held-out frames, each counted once.
    store, _ = inputs
    module = AUHeatmapModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    rows = AUDataModule(store, fold=1).rows("val")
    assert len(rows) == 27
    batch = collate_frames([FrameDataset(store, rows)[i] for i in range(len(rows))])
    with torch.no_grad():
        preds = torch.cat([module.predict_intensities(batch["image"][i : i + 1])[0]
                           for i in range(len(rows))])  # fmt: skip
    truth = batch["au"]
    expected = icc(preds, truth)
    for k, au in enumerate(module.au_names):
        assert scores[2][f"val/icc/{au}"] == pytest.approx(float(expected[k]), rel=1e-5, abs=1e-8)


def test_a_two_process_bf16_mixed_fit(inputs, tmp_path):
    """DDP and bf16 autocast together; each process trains on half of the 54 frames."""
    run_dir = tmp_path / "run"
    run_aunet(["fit", *common_args(inputs, run_dir, 8), "--trainer.max_epochs", "1",
               "--trainer.devices", "2", "--trainer.strategy", "ddp",
               "--trainer.precision", "bf16-mixed"])  # fmt: skip
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["epoch"], metrics["global_step"]) == (1, 3)  # 27 frames per process: 3 x 8
    assert metrics["val/icc_mean"] is not None
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert all(value.dtype == torch.float32 for value in checkpoint["state_dict"].values()
               if value.is_floating_point())  # fmt: skip


class FanPerProcess(Callback):
    """Save each process's FAN parameters at the end of the fit (``<prefix><rank>.pt``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def on_train_end(self, trainer, pl_module) -> None:
        weights = [p.detach().flatten() for p in pl_module.model.backbone.parameters()]
        torch.save(torch.cat(weights), f"{self.prefix}{trainer.global_rank}.pt")


def test_adapt_finetune_trains_one_fan_over_two_processes(inputs, tmp_path):
    """DDP reduces only what needed gradients when it wrapped the model, and the FAN joins the
    optimiser later (``UnfreezeBackbone``): without its own reduction, each process trained a
    FAN of its own while the heads agreed."""
    run_dir, prefix = tmp_path / "run", str(tmp_path / "fan.rank")
    arguments = common_args(inputs, run_dir, 4, experiment="adapt_finetune")
    run_aunet(["fit", *arguments, "--trainer.devices", "2", "--trainer.strategy", "ddp",
               "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
               "--trainer.limit_val_batches", "1", "--trainer.callbacks.at_epoch", "1",
               "--trainer.callbacks+", "test_ddp_training.FanPerProcess",
               "--trainer.callbacks.prefix", prefix])  # fmt: skip
    first, second = (torch.load(f"{prefix}{rank}.pt", weights_only=True) for rank in (0, 1))
    initial = torch.cat([p.flatten() for p in load_fan(inputs[1]).parameters()])
    assert not torch.equal(first, initial)  # the FAN trained in epoch 1
    assert torch.equal(first, second)  # the same FAN in both processes
