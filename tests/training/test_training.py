"""Training end to end on tiny stores: every experiment config, loss, metrics.json, resume."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from checkpoint_factories import TINY_FAN, tiny_scratch_options
from factories import write_store
from pytorch_lightning.callbacks import Callback

from aunet.aus import DATASET_AUS
from aunet.cli.fit import AUCLI
from aunet.cli.fit import main as aunet_main
from aunet.data.dataset import FrameDataset, collate_frames
from aunet.data.folds import DISFA_SUBJECTS
from aunet.launch import experiment_names
from aunet.models import FAN, LIGHT_FAN_CONFIG, FANConfig, load_fan, save_fan
from aunet.runs import resume_checkpoint
from aunet.training import AUHeatmapModule, au_module

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
AU_EXPERIMENTS = [name for name in experiment_names() if name != "fan"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "synthetic.h5"
    return write_store(path, DISFA_SUBJECTS, frames_per_subject=2, image_size=32)


@pytest.fixture(scope="module")
def fan_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fan") / "fan.pt"
    save_fan(FAN(TINY_FAN), path)
    return path


def fit_args(experiment: str, store: Path, fan: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config", str(EXPERIMENTS / "base.yaml"),
        "--config", str(EXPERIMENTS / f"{experiment}.yaml"),
        "--data.path", str(store),
        "--data.image_size", "32",
        "--data.batch_size", "8",
        "--data.num_workers", "0",
        "--model.init_args.fan", str(fan),
        "--run.dir", str(run_dir),
        "--run.experiment", experiment,
        "--run.wandb", "offline",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        # Only where needed: it would replace an experiment's own (reparam_bn's).
        *(["--model.init_args.strategy_args", json.dumps(tiny_scratch_options(experiment))]
          if tiny_scratch_options(experiment) else []),
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("experiment", AU_EXPERIMENTS)
def test_every_experiment_config_runs_a_fast_dev_run(experiment, store, fan_file, tmp_path):
    aunet_main(
        fit_args(experiment, store, fan_file, tmp_path / "run", "--trainer.fast_dev_run", "1")
    )


def test_a_full_epoch_writes_the_run_folder_contract(store, fan_file, tmp_path):
    run_dir = tmp_path / "run"
    aunet_main(fit_args("reparam", store, fan_file, run_dir, "--trainer.max_epochs", "1",
                        "--run.overlay_every_n_epochs", "1"))  # fmt: skip
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/icc_mean", "val/mse_mean", "val/icc/AU01", "val/mse/AU26"} <= set(metrics)
    assert metrics["global_step"] > 0
    assert metrics["epoch"] == 1
    assert (run_dir / "config.yaml").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert list((run_dir / "checkpoints").glob("best-epoch*.ckpt"))
    assert list((run_dir / "overlays").glob("epoch*.png"))
    assert list(run_dir.glob("csv/version_*/metrics.csv"))
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["fan_config"]["width"] == TINY_FAN.width


@pytest.mark.parametrize("experiment", ["scratch", "adapt"])
def test_loss_falls_on_a_tiny_overfit_set(experiment, fan_file, tmp_path):
    store = write_store(tmp_path / "tiny.h5", DISFA_SUBJECTS[:3], frames_per_subject=4,
                        image_size=32)  # fmt: skip
    batch = collate_frames([FrameDataset(store)[i] for i in range(12)])
    module = AUHeatmapModule(experiment, au_names=DATASET_AUS["synthetic"], fan=str(fan_file),
                             strategy_args=tiny_scratch_options(experiment), lr=3e-3,
                             cosine_period_epochs=None)  # fmt: skip
    optimiser = module.optimiser_settings.build(module, max_epochs=1)["optimizer"]
    module.train()
    losses = []
    for _ in range(40):
        optimiser.zero_grad()
        output = module(batch["image"])
        loss = module._heatmap_loss(output, batch["landmarks"], batch["au"], image_size=32)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_scratch_and_resnet18_never_read_a_given_fan_and_random_backbone_copies_its_shape(
    tmp_path, monkeypatch
):
    """Sec. 3.3 and 6.1 baselines whatever FAN is given; Sec. 6.4's control copies its shape."""
    from test_models_fan import RefFAN

    official = tmp_path / "2DFAN.pth"  # the face-alignment package's layout, two stacks
    torch.save(RefFAN(2, width=32, depth=2).state_dict(), official)
    aus = DATASET_AUS["disfa"]
    control = AUHeatmapModule("random_backbone", au_names=aus, fan=str(official),
                              strategy_args={"width": 16})  # fmt: skip
    assert control.model.backbone.fan.config == load_fan(official).config

    def refuse(path):
        raise AssertionError(f"{path} was read")

    monkeypatch.setattr(au_module, "load_fan", refuse)
    scratch = AUHeatmapModule("scratch", au_names=aus, fan=str(official))
    # The AU-Net for DISFA's 12 AUs (docs/models.md; the paper's Table 5 rounds to 1.65M)
    assert sum(p.numel() for p in scratch.model.parameters()) == 1_730_252
    assert scratch.model.config == dataclasses.replace(LIGHT_FAN_CONFIG, num_landmarks=12)
    # No FAN recorded; fan_config names scratch's own layout (the light FAN's).
    assert scratch.hparams.fan is None
    assert FANConfig.from_dict(scratch.hparams.fan_config) == LIGHT_FAN_CONFIG
    resnet = AUHeatmapModule("resnet18", au_names=aus, fan=str(official))
    assert resnet.model.output_kind == "intensities"
    assert (resnet.hparams.fan, resnet.hparams.fan_config) == (None, None)


def test_fan_pretraining_writes_a_checkpoint_that_load_fan_reads(tmp_path):
    from aunet.cli.fit import fan_main
    from aunet.models import load_fan

    store = write_store(tmp_path / "landmarks.h5", DISFA_SUBJECTS[:6], frames_per_subject=3,
                        au_names=(), image_size=32)  # fmt: skip
    run_dir = tmp_path / "run"
    fan_main([
        "fit", "--config", str(EXPERIMENTS / "fan.yaml"),
        "--model.init_args.fan_config", json.dumps(dataclasses.asdict(TINY_FAN)),
        "--data.path", str(store), "--data.image_size", "32", "--data.batch_size", "6",
        "--data.num_workers", "0", "--data.val_fraction", "0.3", "--run.dir", str(run_dir),
        "--run.wandb", "disabled", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val/nme"] > 0
    fan = load_fan(run_dir / "checkpoints" / "last.ckpt")
    assert fan.config == TINY_FAN
    assert fan(torch.rand(1, 3, 32, 32)).shape == (1, 68, 8, 8)


def test_checkpoints_record_the_crop_margin_of_the_training_store(fan_file, tmp_path):
    from aunet.synthetic.draw import write_store as write_synthetic_store

    store = tmp_path / "synthetic.h5"
    write_synthetic_store(store, subjects=3, frames_per_subject=4, size=32)
    run_dir = tmp_path / "run"
    aunet_main(fit_args("scratch", store, fan_file, run_dir, "--trainer.max_epochs", "1",
                        "--data.batch_size", "2", "--run.wandb", "disabled"))  # fmt: skip
    hparams = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)[
        "hyper_parameters"
    ]
    assert hparams["crop_margin"] == pytest.approx(0.3)
    assert hparams["image_size"] == 32


# --------------------------------------------------------------------------------------------
# adapt_finetune: the FAN joins the optimiser at `at_epoch`, on the head's cosine schedule

LR, AT_EPOCH, LR_FACTOR = 5e-4, 1, 0.1


class EpochRecorder(Callback):
    """Each epoch's learning rates (per group), and the FAN's parameters at its start and ends."""

    def __init__(self) -> None:
        self.lrs: dict[int, list[float]] = {}
        self.backbone: dict[int, torch.Tensor] = {}
        self.groups_at_start: list[int] = []

    @staticmethod
    def _weights(pl_module) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in pl_module.model.backbone.parameters()])

    def on_train_start(self, trainer, pl_module) -> None:
        self.groups_at_start.append(len(trainer.optimizers[0].param_groups))
        self.backbone[trainer.current_epoch - 1] = self._weights(pl_module).clone()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Lightning steps epoch schedulers after an epoch's last batch, before its end hooks.
        lrs = [group["lr"] for group in trainer.optimizers[0].param_groups]
        assert self.lrs.setdefault(trainer.current_epoch, lrs) == lrs  # one rate per epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.backbone[trainer.current_epoch] = self._weights(pl_module).clone()


def cosine(epoch: int, period: int | None, epochs: int) -> float:
    """Sec. 5.3's schedule, written out: SGDR with period ``period``, else one cosine."""
    position, length = (epoch % period, period) if period else (epoch, epochs)
    return LR * (1 + math.cos(math.pi * position / length)) / 2


def finetune_fit(store, fan, run_dir, period, epochs, *extra) -> None:
    aunet_main(fit_args(
        "adapt_finetune", store, fan, run_dir, "--run.wandb", "disabled",
        "--model.init_args.lr", str(LR), "--model.init_args.cosine_period_epochs", str(period),
        "--trainer.callbacks.at_epoch", str(AT_EPOCH),
        "--trainer.callbacks.lr_factor", str(LR_FACTOR), "--data.batch_size", "4",
        "--trainer.max_epochs", str(epochs), "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--run.overlay_every_n_epochs", "0", *extra,
    ))  # fmt: skip


@pytest.mark.parametrize(
    ("period", "resume_after"),
    [(2, 2), (None, None)],
    ids=["warm-restarts-resumed-after-unfreezing", "one-cosine"],
)
def test_adapt_finetune_unfreezes_the_fan_on_the_heads_schedule(
    period, resume_after, store, fan_file, tmp_path, monkeypatch
):
    """Three epochs, the FAN unfrozen at epoch 1. The warm-restart schedule (period 2: rates
    1, 0.5, then 1 again, times LR) failed at the end of epoch 1 on the group it did not know;
    with ``resume_after`` the fit stops after epoch 1 and resumes from that ``last.ckpt``."""
    recorder = EpochRecorder()
    run_callbacks = AUCLI.run_callbacks
    monkeypatch.setattr(AUCLI, "run_callbacks",
                        lambda self, folder, settings: [*run_callbacks(self, folder, settings),
                                                        recorder])  # fmt: skip
    run_dir, epochs = tmp_path / "run", 3
    finetune_fit(store, fan_file, run_dir, "null" if period is None else period,
                 resume_after or epochs)  # fmt: skip
    if resume_after:
        saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        assert len(saved["optimizer_states"][0]["param_groups"]) == 2
        assert saved["lr_schedulers"][0]["base_lrs"] == pytest.approx([LR, LR * LR_FACTOR])
        finetune_fit(store, fan_file, run_dir, period, epochs,
                     "--ckpt_path", str(resume_checkpoint(run_dir)))  # fmt: skip
        assert recorder.groups_at_start == [1, 2]  # the resumed fit starts with both groups
    assert json.loads((run_dir / "metrics.json").read_text())["epoch"] == epochs

    for epoch in range(epochs):
        head = cosine(epoch, period, epochs)
        expected = [head] + ([head * LR_FACTOR] if epoch >= AT_EPOCH else [])
        assert recorder.lrs[epoch] == pytest.approx(expected, rel=1e-6), epoch
    backbone = recorder.backbone
    assert torch.equal(backbone[0], backbone[-1])  # frozen in epoch 0
    assert not torch.equal(backbone[1], backbone[0])  # trained from at_epoch
    assert not torch.equal(backbone[2], backbone[1])  # and on, after the resume too
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    _, fan_group = final["optimizer_states"][0]["param_groups"]  # two, none added again
    assert len(fan_group["params"]) == len(list(FAN(TINY_FAN).parameters()))  # the whole FAN
