"""AU checkpoints written before ``FANConfig.stem_pool_at`` rebuild the network they trained.

Until the option existed every FAN pooled its stem after ``conv2``; the light FAN now pools
before it. Pooling moves no parameter, so an old checkpoint would load into the new layout
without an error and compute something else.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from checkpoint_factories import save_checkpoint, untrained_module

from aunet.aus import DATASET_AUS
from aunet.inference.predictor import load_module
from aunet.models import LIGHT_FAN_CONFIG, FANConfig
from aunet.training import AUHeatmapModule

AUS = DATASET_AUS["synthetic"]


def outputs(module: AUHeatmapModule, size: int) -> torch.Tensor:
    """The network's maps of two fixed random images."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=generator)
    with torch.no_grad():
        return module.eval()(images)


def as_old_checkpoint(module: AUHeatmapModule, path, fan_config: dict | None):
    """``module`` saved with the ``fan_config`` an older aunet would have written."""
    save_checkpoint(module, path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["fan_config"] = fan_config
    checkpoint["hyper_parameters"]["strategy_args"] = {}  # scratch's fan_config option is newer
    torch.save(checkpoint, path)
    return checkpoint


def test_a_transfer_checkpoint_with_an_old_fan_config_keeps_its_layout(tmp_path) -> None:
    module = untrained_module("finetune")  # over a tiny FAN pooled after conv2
    assert module.stem_layouts() == {"after_conv2"}
    old_config = dataclasses.asdict(module.model.config)
    old_config.pop("stem_pool_at")
    checkpoint = as_old_checkpoint(module, tmp_path / "old.ckpt", old_config)
    loaded = load_module(tmp_path / "old.ckpt")
    assert loaded.stem_layouts() == {"after_conv2"}
    torch.testing.assert_close(outputs(loaded, 32), outputs(module, 32))
    # The test can fail: the same weights in the new layout compute something else.
    new_config = {**old_config, "stem_pool_at": "before_conv2"}
    moved = AUHeatmapModule(**dict(checkpoint["hyper_parameters"], fan_config=new_config))
    moved.load_state_dict(checkpoint["state_dict"])
    assert not torch.allclose(outputs(moved, 32), outputs(module, 32))


def test_an_old_scratch_checkpoint_without_a_fan_config_is_the_old_light_au_net(tmp_path) -> None:
    old_light = dataclasses.replace(LIGHT_FAN_CONFIG, stem_pool_at="after_conv2")
    module = AUHeatmapModule(
        "scratch", AUS, strategy_args={"fan_config": dataclasses.asdict(old_light)}
    )
    checkpoint = as_old_checkpoint(module, tmp_path / "old.ckpt", None)  # scratch, no FAN
    loaded = load_module(tmp_path / "old.ckpt")
    assert loaded.model.config == dataclasses.replace(old_light, num_landmarks=len(AUS))
    torch.testing.assert_close(outputs(loaded, 64), outputs(module, 64))
    # Rebuilt as a new run would be, it gets the paper's layout: the same weights, other outputs.
    fresh = AUHeatmapModule(**checkpoint["hyper_parameters"])
    assert fresh.stem_layouts() == {"before_conv2"}
    fresh.load_state_dict(checkpoint["state_dict"])
    assert not torch.allclose(outputs(fresh, 64), outputs(module, 64))


def test_new_checkpoints_record_the_layout_even_without_a_fan() -> None:
    for strategy, options in (("scratch", {}), ("random_backbone", {"width": 16})):
        module = AUHeatmapModule(strategy, AUS, strategy_args=options)
        assert FANConfig.from_dict(module.hparams.fan_config) == LIGHT_FAN_CONFIG
        assert module.stem_layouts() == {"before_conv2"}


def test_resuming_an_old_checkpoint_into_the_new_layout_is_refused() -> None:
    module = AUHeatmapModule("scratch", AUS)
    old = {"hyper_parameters": {"au_names": list(AUS), "fan_config": None}}
    with pytest.raises(ValueError, match=r"stem pooled after conv2.*stem_pool_at: after_conv2"):
        module.on_load_checkpoint(old)
    module.on_load_checkpoint({"hyper_parameters": dict(module.hparams)})  # a new one resumes
    untrained_module("finetune").on_load_checkpoint(old)  # the old layout takes old weights
