"""Parameters and FLOPs as counted, and the complexity benchmark over every experiment config."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from aunet.models import (
    FAN,
    LIGHT_FAN_CONFIG,
    OFFICIAL_2DFAN4_CONFIG,
    STRATEGIES,
    FANConfig,
    build_strategy,
    fan_layout_name,
    fan_of,
    measure,
    measure_architecture,
)
from bench import complexity

TINY = FANConfig(width=16, depth=2)


def tiny_conv_net() -> nn.Sequential:
    """3 -> 4 channels (3x3, padding 1), ReLU, 4 -> 2 channels (1x1); the first conv frozen."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    net[0].requires_grad_(False)
    return net


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_tiny_conv_net_counts_as_by_hand(device) -> None:
    with torch.device(device):
        cost = measure(tiny_conv_net(), image_size=8)
    # Weights and biases: 4 x 3 x 3 x 3 + 4, then 2 x 4 + 2; the first conv is frozen.
    assert (cost.params, cost.trainable_params) == (122, 10)
    # 2 FLOPs per multiply-add, per output value: 8 x 8 x 4 outputs of 27, 8 x 8 x 2 of 4.
    assert cost.flops == 2 * (64 * 4 * 27 + 64 * 2 * 4)
    assert cost.image_size == 8 and cost.gflops == cost.flops / 1e9
    assert measure(tiny_conv_net(), None).flops is None


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_counting_on_meta_equals_counting_on_the_cpu(strategy) -> None:
    # scratch ignores a given FAN: its own fan_config shapes it as the tiny one.
    options = {"fan_config": TINY} if strategy == "scratch" else {}

    def build() -> nn.Module:
        return build_strategy(strategy, 12, FAN(TINY), **options)  # 12 AUs: attention's default

    assert measure_architecture(build, 32) == measure(build(), 32)


def test_reparametrisation_is_counted_folded() -> None:
    reparam = measure_architecture(lambda: build_strategy("reparam", 5, FAN(TINY)), 32)
    finetune = measure_architecture(lambda: build_strategy("finetune", 5, FAN(TINY)), 32)
    assert reparam.flops == finetune.flops  # the folded network is a plain FAN
    assert reparam.params > finetune.params > reparam.trainable_params


def test_fan_layouts_are_named_whatever_their_number_of_maps() -> None:
    official = dataclasses.replace(OFFICIAL_2DFAN4_CONFIG, num_landmarks=12)
    assert fan_layout_name(official) == "2DFAN-4 (4 stacks, 256 ch)"
    assert fan_layout_name(LIGHT_FAN_CONFIG) == "aunet light FAN (1 stack, 128 ch)"
    # FANConfig() pools after conv2 (the official layout); the light FAN before it.
    assert fan_layout_name(TINY) == "FAN (width=16, depth=2, stem_pool_at=after_conv2)"
    assert fan_of(build_strategy("adapt", 5, FAN(TINY))) == TINY  # its frozen backbone
    assert fan_of(build_strategy("scratch", 5)).num_landmarks == 5  # the AU-Net itself
    assert fan_of(build_strategy("resnet18", 5)) is None


def test_every_strategy_has_an_experiment_and_every_experiment_builds() -> None:
    names = complexity.experiment_names(complexity.EXPERIMENTS)
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
    assert set(results) == set(complexity.experiment_names(complexity.EXPERIMENTS))
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
