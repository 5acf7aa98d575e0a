"""Precision chosen by the hardware: the probes monkeypatched as each kind of machine answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from checkpoint_factories import (
    IMAGE_SIZE,
    save_checkpoint,
    tiny_scratch_options,
    untrained_module,
)
from factories import write_store
from hardware import cpu, gpu

from aunet.cli.fit import AUCLI
from aunet.data.datamodule import AUDataModule
from aunet.data.folds import DISFA_SUBJECTS
from aunet.inference.predictor import load_predictor
from aunet.training import AUHeatmapModule
from aunet.training.precision import AUNetTrainer, choose_precision

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.parametrize(
    ("features", "feature"),
    [({"avx512_bf16": True}, "AVX512_BF16"), ({"amx_bf16": True}, "AMX_BF16")],
)
def test_a_cpu_with_native_bf16_gets_bf16_autocast(monkeypatch, features, feature):
    cpu(monkeypatch, level="AVX512", onednn_bf16=True, **features)
    choice = choose_precision("auto", "auto")
    assert (choice.precision, choice.reason) == ("bf16-mixed", f"CPU supports {feature}")
    assert str(choice) == f"precision: bf16-mixed (CPU supports {feature})"


def test_a_cpu_without_native_bf16_gets_float32(monkeypatch):
    cpu(monkeypatch, level="AVX2", onednn_bf16=False)
    choice = choose_precision("auto", "cpu")
    assert str(choice) == "precision: 32-true (no native bf16 on this CPU (AVX2))"
    # oneDNN emulates bf16 on AVX-512 without AVX512_BF16 and says it supports it: not native
    cpu(monkeypatch, level="AVX512", onednn_bf16=True)
    assert choose_precision("auto", "cpu").precision == "32-true"
    # the feature without oneDNN's bf16 kernels in this torch build
    cpu(monkeypatch, level="AVX512", onednn_bf16=False, avx512_bf16=True)
    assert choose_precision(None, "cpu").precision == "32-true"


def test_cuda_with_and_without_native_bf16(monkeypatch):
    gpu(monkeypatch, "NVIDIA A100", (8, 0))
    assert str(choose_precision("auto", "auto")) == (
        "precision: bf16-mixed (GPU NVIDIA A100 (compute capability 8.0) supports bf16)"
    )
    gpu(monkeypatch, "Tesla V100", (7, 0))  # emulated bf16 only: slower, not chosen
    assert str(choose_precision("auto", "gpu")) == (
        "precision: 32-true (no native bf16 on GPU Tesla V100 (compute capability 7.0))"
    )


def test_the_accelerator_decides_which_device_is_asked(monkeypatch):
    cpu(monkeypatch, level="AVX2")
    gpu(monkeypatch, "NVIDIA A100", (8, 0))
    assert choose_precision("auto", "cpu").reason == "no native bf16 on this CPU (AVX2)"
    assert choose_precision("auto", "cuda").precision == "bf16-mixed"


@pytest.mark.parametrize(("requested", "native"), [("bf16-mixed", False), ("32-true", True)])
def test_an_explicit_precision_wins(monkeypatch, requested, native):
    if native:
        cpu(monkeypatch, level="AVX512", onednn_bf16=True, avx512_bf16=True)
    else:
        cpu(monkeypatch, level="AVX2")
    choice = choose_precision(requested, "cpu")
    assert (choice.precision, choice.reason) == (requested, "set by trainer.precision")


def test_the_trainer_accepts_auto_and_resolves_it(monkeypatch):
    cpu(monkeypatch, level="AVX512", onednn_bf16=True, avx512_bf16=True)
    trainer = AUNetTrainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    assert trainer.precision == "bf16-mixed"
    cpu(monkeypatch, level="AVX2")
    assert AUNetTrainer(accelerator="cpu", logger=False).precision == "32-true"
    assert AUNetTrainer(precision="bf16-mixed", accelerator="cpu").precision == "bf16-mixed"


def test_a_fit_with_precision_auto_runs_and_records_what_the_hardware_chose(
    monkeypatch, tmp_path, caplog
):
    """experiments/base.yaml says ``auto``; on a (patched) AVX512_BF16 CPU the fit runs bf16."""
    cpu(monkeypatch, level="AVX512", onednn_bf16=True, avx512_bf16=True)
    store = write_store(tmp_path / "disfa.h5", DISFA_SUBJECTS, 2, dataset="disfa", image_size=32)
    assert yaml.safe_load((EXPERIMENTS / "base.yaml").read_text())["trainer"]["precision"] == "auto"
    run_dir = tmp_path / "run"
    with caplog.at_level("INFO"):
        cli = AUCLI(AUHeatmapModule, AUDataModule, subclass_mode_model=True, args=[
            "fit", "--config", str(EXPERIMENTS / "base.yaml"),
            "--config", str(EXPERIMENTS / "scratch.yaml"),
            "--model.init_args.strategy_args", json.dumps(tiny_scratch_options("scratch")),
            "--data.path", str(store), "--data.image_size", "32", "--data.batch_size", "8",
            "--data.num_workers", "0", "--run.dir", str(run_dir), "--run.wandb", "disabled",
            "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        ])  # fmt: skip
    assert cli.trainer.precision == "bf16-mixed"
    assert "precision: bf16-mixed (CPU supports AVX512_BF16)" in caplog.text
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["trainer"]["precision"] == "bf16-mixed"


def test_inference_under_bf16_autocast_is_close_to_float32(tmp_path):
    checkpoint = save_checkpoint(untrained_module("reparam"), tmp_path / "m.ckpt")
    crops = np.random.default_rng(0).integers(0, 256, (2, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    exact = load_predictor(checkpoint)(crops, heatmaps=True)
    bf16 = load_predictor(checkpoint, precision="bf16-mixed")(crops, heatmaps=True)
    assert bf16.heatmaps.dtype == np.float32
    assert not np.array_equal(bf16.heatmaps, exact.heatmaps)  # autocast did run
    scale = np.abs(exact.heatmaps).max()
    np.testing.assert_allclose(bf16.heatmaps, exact.heatmaps, atol=0.05 * scale)
    with pytest.raises(ValueError, match="precision must be 32-true or bf16-mixed, got '16-mixed'"):
        load_predictor(checkpoint, precision="16-mixed")
