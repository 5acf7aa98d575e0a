"""The experiment configs build their models, and the complexity benchmark counts them right."""

from __future__ import annotations

import json

import pytest

from aunet.models import FAN, LIGHT_FAN_CONFIG, STRATEGIES, FANConfig
from bench import complexity

TINY = FANConfig(width=16, depth=2)


def test_every_strategy_has_an_experiment_and_every_experiment_builds() -> None:
    names = complexity.experiment_names()
    assert set(STRATEGIES) | {"fan"} <= set(names)  # and ablations of them
    for name in names:
        model = complexity.build_model(name, TINY)
        section = complexity.model_section(name)
        if name == "fan":
            assert isinstance(model, FAN)
            assert model.config == LIGHT_FAN_CONFIG  # Sec. 4.1: the light FAN
        else:
            strategy = section["init_args"]["strategy"]
            assert strategy == name if name in STRATEGIES else strategy in STRATEGIES
            assert section["class_path"] == "aunet.training.AUHeatmapModule"


def test_merge_restarts_init_args_when_the_class_changes() -> None:
    base = {"model": {"class_path": "A", "init_args": {"strategy": "scratch", "x": 1}}}
    same = complexity.merge(base, {"model": {"init_args": {"strategy": "adapt"}}})
    assert same["model"]["init_args"] == {"strategy": "adapt", "x": 1}
    other = complexity.merge(base, {"model": {"class_path": "B", "init_args": {"y": 2}}})
    assert other["model"] == {"class_path": "B", "init_args": {"y": 2}}


@pytest.mark.slow
def test_benchmark_writes_every_experiment_and_counts_the_au_net_by_hand(tmp_path) -> None:
    out = tmp_path / "complexity.json"
    complexity.main(["--out", str(out)])
    results = json.loads(out.read_text())
    assert set(results) == set(complexity.experiment_names())
    # Light AU-Net, 12 AUs, 256 x 256: weights x output pixels per conv, 2 FLOPs a multiply-add.
    block = 101_376  # ConvBlock(128, 128) weights
    macs = (
        9_408 * 128**2  # conv1 (stride 2)
        + (64_512 + 8_192) * 64**2  # conv2, pooled before it (the light FAN)
        + 2 * block * 64**2  # conv3, conv4
        + block * (4096 + 2 * 1024 + 1024 + 2 * 256 + 256 + 2 * 64 + 64 + 3 * 16)  # Hourglass
        + block * 64**2  # top ConvBlock
        + (128 * 128 + 128 * 12) * 64**2  # conv_last, last conv
    )
    assert results["scratch"] == {
        "params": 1_730_252,
        "trainable_params": 1_730_252,
        "gflops": round(2 * macs / 1e9, 3),
    }
    assert results["reparam"]["gflops"] == results["scratch"]["gflops"]  # folded
    assert results["adapt"]["params"] == results["fan"]["params"] + 207_884
    # The ablations: BN affine parameters (2 x 4,000 channels of the light FAN's BN) train too;
    # targets drawn otherwise change no network; the paper's ~1M new parameters, 2.65M in all.
    reparam, reparam_bn = results["reparam"], results["reparam_bn"]
    assert reparam_bn == {**reparam, "trainable_params": reparam["trainable_params"] + 8_000}
    assert results["fixed_sigma"] == results["scratch"]
    assert results["adapt_1m"]["trainable_params"] == pytest.approx(1.0e6, rel=0.1)
    assert results["adapt_1m"]["params"] == pytest.approx(2.65e6, rel=0.1)
