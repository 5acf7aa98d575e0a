"""FAN, its layers and file formats, against an independent statement of face-alignment's FAN."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from aunet.models import (
    FAN,
    LIGHT_FAN_CONFIG,
    OFFICIAL_2DFAN4_CONFIG,
    ConvBlock,
    FANConfig,
    Hourglass,
    load_fan,
    retarget_fan,
    save_fan,
)
from aunet.models.layers import downsample2x, upsample2x
from aunet.training import FANModule

TINY = FANConfig(width=16, depth=2)


# --- An independent re-statement of the public face-alignment 2DFAN (BSD-3), from its published
# architecture: pre-activated ConvBlocks, average pooling, nearest upsampling, the stem pooled
# after conv2. Written without aunet.models, so it checks module names and the forward pass.


class RefBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout // 2)
        self.bn3 = nn.BatchNorm2d(cout // 4)
        self.conv1 = nn.Conv2d(cin, cout // 2, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 2, cout // 4, 3, 1, 1, bias=False)
        self.conv3 = nn.Conv2d(cout // 4, cout // 4, 3, 1, 1, bias=False)
        self.downsample = None
        if cin != cout:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False)
            )

    def forward(self, x):
        a = self.conv1(torch.relu(self.bn1(x)))
        b = self.conv2(torch.relu(self.bn2(a)))
        c = self.conv3(torch.relu(self.bn3(b)))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.cat([a, b, c], 1) + skip


class RefHourGlass(nn.Module):
    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        self.depth = depth
        for level in range(1, depth + 1):
            for name in ("b1_", "b2_", "b3_"):
                self.add_module(f"{name}{level}", RefBlock(width, width))
        self.add_module("b2_plus_1", RefBlock(width, width))

    def run(self, level, x):
        up = getattr(self, f"b1_{level}")(x)
        low = getattr(self, f"b2_{level}")(F.avg_pool2d(x, 2, 2))
        low = self.run(level - 1, low) if level > 1 else self.b2_plus_1(low)
        low = getattr(self, f"b3_{level}")(low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x):
        return self.run(self.depth, x)


class RefFAN(nn.Module):
    def __init__(self, stacks: int, width: int, depth: int, landmarks: int = 68) -> None:
        super().__init__()
        self.stacks = stacks
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2, self.conv3 = RefBlock(64, 128), RefBlock(128, 128)
        self.conv4 = RefBlock(128, width)
        for i in range(stacks):
            setattr(self, f"m{i}", RefHourGlass(depth, width))
            setattr(self, f"top_m_{i}", RefBlock(width, width))
            setattr(self, f"conv_last{i}", nn.Conv2d(width, width, 1))
            setattr(self, f"bn_end{i}", nn.BatchNorm2d(width))
            setattr(self, f"l{i}", nn.Conv2d(width, landmarks, 1))
            if i < stacks - 1:
                setattr(self, f"bl{i}", nn.Conv2d(width, width, 1))
                setattr(self, f"al{i}", nn.Conv2d(landmarks, width, 1))

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.avg_pool2d(self.conv2(x), 2, 2)))
        out = x
        for i in range(self.stacks):
            ll = getattr(self, f"top_m_{i}")(getattr(self, f"m{i}")(x))
            ll = torch.relu(getattr(self, f"bn_end{i}")(getattr(self, f"conv_last{i}")(ll)))
            out = getattr(self, f"l{i}")(ll)
            if i < self.stacks - 1:
                x = x + getattr(self, f"bl{i}")(ll) + getattr(self, f"al{i}")(out)
        return out


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so that a wrong layer order or stat shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            if key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif key.endswith(".weight") and value.ndim == 1:  # BN scale
                value.copy_(1 + 0.1 * torch.randn(value.shape, generator=generator))
            else:
                fan_in = value[0].numel() if value.ndim > 1 else 10
                value.copy_(torch.randn(value.shape, generator=generator) / fan_in**0.5)
    return module.eval()


def assert_same_output(ours: nn.Module, reference: nn.Module, size: int = 32) -> None:
    images = torch.rand(2, 3, size, size)
    with torch.no_grad():
        expected = reference(images)
        actual = ours(images)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max())


# --- layers


def test_pooling_and_upsampling_by_hand() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert downsample2x(x, "max").item() == 4.0
    assert downsample2x(x, "avg").item() == 2.5
    ramp = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    # half-pixel bilinear: output x-centres at input coordinates -0.25, 0.25, 0.75, 1.25 (clamped)
    assert upsample2x(ramp, "bilinear")[0, 0, 0].tolist() == [0.0, 0.25, 0.75, 1.0]
    assert upsample2x(ramp, "nearest")[0, 0, 0].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_convblock_parameters_and_identity_residual() -> None:
    block = ConvBlock(128, 128)  # 3x3: 128*64 + 64*32 + 32*32 weights per tap, BN 2*(128+64+32)
    assert sum(p.numel() for p in block.parameters()) == 9 * (8192 + 2048 + 1024) + 448
    assert sum(p.numel() for p in ConvBlock(128, 128, kernel_size=1).parameters()) == 11264 + 448
    for conv in (block.conv1, block.conv2, block.conv3):
        nn.init.zeros_(conv.weight)
    x = torch.randn(2, 128, 4, 4)
    torch.testing.assert_close(block.eval()(x), x)  # equal channels: the residual is the input
    changing = ConvBlock(8, 16).eval()
    assert changing(torch.randn(1, 8, 4, 4)).shape == (1, 16, 4, 4)


def test_convblock_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        ConvBlock(8, 10)
    with pytest.raises(ValueError, match="odd"):
        ConvBlock(8, 8, kernel_size=2)


def test_hourglass_options_change_the_output() -> None:
    x = torch.randn(1, 8, 8, 8)
    outputs = []
    for pooling, upsampling in (("max", "bilinear"), ("avg", "nearest")):
        torch.manual_seed(1)
        hourglass = Hourglass(8, depth=2, pooling=pooling, upsampling=upsampling).eval()
        outputs.append(hourglass(x))
    assert outputs[0].shape == x.shape
    assert not torch.allclose(outputs[0], outputs[1])


# --- FAN


def test_light_fan_matches_the_papers_description() -> None:
    fan = FAN(LIGHT_FAN_CONFIG)
    block, stem_block = 9 * 11264 + 448, 9 * (4096 + 2048 + 1024) + 320 + 128 + 64 * 128
    stem = 3 * 64 * 49 + 64 + 128  # conv1 + bn1
    heads = 128 * 128 + 128 + 256 + 128 * 68 + 68  # conv_last, bn_end, l
    # stem, conv2 (64 -> 128), conv3, conv4 (128 -> 128), 13 Hourglass blocks, top ConvBlock
    expected = stem + stem_block + 2 * block + 13 * block + block + heads
    assert sum(p.numel() for p in fan.parameters()) == expected == 1_737_476  # Sec. 3.3: ~1.6M
    features, heatmaps = fan.eval().features_and_heatmaps(torch.rand(1, 3, 64, 64))
    assert features.shape == (1, 128, 16, 16)
    assert heatmaps.shape == (1, 68, 16, 16)


def conv2_input_side(config: FANConfig, size: int) -> int:
    fan = FAN(config).eval()
    sides = []
    fan.conv2.register_forward_pre_hook(lambda module, inputs: sides.append(inputs[0].shape[-1]))
    with torch.no_grad():
        assert fan(torch.rand(1, 3, size, size)).shape[-1] == size // 4
    return sides[0]


def test_the_light_fan_pools_before_conv2_and_the_official_layout_after() -> None:
    old_light = dataclasses.replace(LIGHT_FAN_CONFIG, stem_pool_at="after_conv2")
    assert conv2_input_side(LIGHT_FAN_CONFIG, 64) == 16  # Table 5's FLOPs: conv2 at 64 x 64
    assert conv2_input_side(old_light, 64) == 32  # face-alignment's layout: at 128 x 128
    assert OFFICIAL_2DFAN4_CONFIG.stem_pool_at == "after_conv2"
    # A config that does not say (every config written before the option) is the old layout.
    assert FANConfig() == FANConfig.from_dict(dataclasses.asdict(old_light)) == old_light
    with pytest.raises(ValueError, match="stem_pool_at"):
        FANConfig(stem_pool_at="before_conv3")


def test_pooling_before_conv2_saves_three_quarters_of_its_flops() -> None:
    def flops(config: FANConfig) -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            FAN(config).eval()(torch.rand(1, 3, 64, 64))
        return counter.get_total_flops()

    # conv2 = ConvBlock(64, 128): 3x3 convs 64->64, 64->32, 32->32 and the 1x1 64->128 shortcut.
    conv2_weights = 9 * (64 * 64 + 64 * 32 + 32 * 32) + 64 * 128
    old_light = dataclasses.replace(LIGHT_FAN_CONFIG, stem_pool_at="after_conv2")
    saved = 2 * conv2_weights * (32 * 32 - 16 * 16)  # 2 FLOPs a multiply-add, 64 px input
    assert flops(old_light) - flops(LIGHT_FAN_CONFIG) == saved


@pytest.mark.parametrize("size", [32, 64, 96])
def test_fan_outputs_a_quarter_of_any_valid_size(size: int) -> None:
    fan = FAN(dataclasses.replace(TINY, num_stacks=2)).eval()
    images = torch.rand(2, 3, size, size)
    stacks = fan.stack_heatmaps(images)
    assert [s.shape for s in stacks] == [(2, 68, size // 4, size // 4)] * 2
    torch.testing.assert_close(fan(images), stacks[-1])
    torch.testing.assert_close(fan.features_and_heatmaps(images)[1], stacks[-1])


def test_fan_refuses_sizes_the_hourglass_cannot_halve() -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        FAN(TINY)(torch.rand(1, 3, 40, 40))


def test_config_validation_and_from_dict() -> None:
    assert FANConfig.from_dict(dataclasses.asdict(OFFICIAL_2DFAN4_CONFIG)) == OFFICIAL_2DFAN4_CONFIG
    with pytest.raises(ValueError, match="unknown FANConfig field"):
        FANConfig.from_dict({"stacks": 2})
    with pytest.raises(ValueError, match="pooling"):
        FANConfig(pooling="median")
    with pytest.raises(ValueError, match="width"):
        FANConfig(width=30)


def test_retarget_keeps_everything_but_the_prediction_layers() -> None:
    fan = randomise(FAN(dataclasses.replace(TINY, num_stacks=2)))
    target = retarget_fan(fan, 5)
    assert target.config.num_landmarks == 5
    source, new = fan.state_dict(), target.state_dict()
    for key, value in new.items():
        if key.startswith(("l0.", "l1.")):
            assert value.shape[0] == 5
        elif key == "al0.weight":
            assert value.shape[1] == 5
        elif not key.startswith("al0."):
            assert torch.equal(value, source[key]), key
    assert not target.training  # follows the source's mode


# --- official weights: same module names, same output


@pytest.mark.parametrize("stacks", [1, 2])
def test_official_state_dict_loads_strictly_and_gives_the_same_output(stacks, tmp_path) -> None:
    reference = randomise(RefFAN(stacks, width=32, depth=2))
    path = tmp_path / "2DFAN.pth"
    torch.save(reference.state_dict(), path)
    fan = load_fan(path)
    assert fan.config == FANConfig(
        num_stacks=stacks, width=32, depth=2, pooling="avg", upsampling="nearest"
    )
    assert not fan.training
    assert_same_output(fan, reference)


def test_official_file_without_bn_counters_or_with_dataparallel_prefix(tmp_path) -> None:
    reference = randomise(RefFAN(1, width=16, depth=2))
    state = {
        f"module.{key}": value
        for key, value in reference.state_dict().items()
        if not key.endswith("num_batches_tracked")  # files from PyTorch < 0.4.1 have none
    }
    torch.save(state, tmp_path / "old.pth")
    assert_same_output(load_fan(tmp_path / "old.pth"), reference)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_loads_as_the_same_network(tmp_path) -> None:
    reference = randomise(RefFAN(2, width=16, depth=2))
    traced = torch.jit.trace(reference, torch.rand(1, 3, 32, 32))
    traced.save(str(tmp_path / "2DFAN.zip"))
    fan = load_fan(tmp_path / "2DFAN.zip")
    assert isinstance(fan, FAN)
    assert fan.config.num_stacks == 2
    assert_same_output(fan, reference)


@pytest.mark.slow
def test_official_2dfan4_shapes_and_contract(tmp_path) -> None:
    reference = randomise(RefFAN(4, width=256, depth=4))
    torch.save(reference.state_dict(), tmp_path / "2DFAN4.pth")
    fan = load_fan(tmp_path / "2DFAN4.pth")
    assert fan.config == OFFICIAL_2DFAN4_CONFIG
    assert sum(p.numel() for p in fan.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    with torch.no_grad():
        # 68 maps at a quarter of the input side
        assert fan(torch.rand(1, 3, 256, 256)).shape == (1, 68, 64, 64)
    assert_same_output(fan, reference, size=64)


# --- aunet's own files


def test_save_fan_round_trip_keeps_config_and_weights(tmp_path) -> None:
    config = dataclasses.replace(TINY, kernel_size=1, pooling="avg", num_landmarks=5)
    fan = randomise(FAN(config))
    path = tmp_path / "sub" / "fan.pt"
    save_fan(fan, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["fan.pt"]  # no temporary left
    loaded = load_fan(path)
    assert loaded.config == config
    assert_same_output(loaded, fan)


def test_int8_storage_rounds_each_filter_to_its_channel_scale_and_loads_as_float32(
    tmp_path,
) -> None:
    fan = randomise(FAN(TINY)).eval()
    path = tmp_path / "fan.pt"
    save_fan(fan, path, storage="int8")
    stored = torch.load(path, weights_only=True)
    filters = {k for k, v in fan.state_dict().items() if v.dim() >= 2}
    assert set(stored["int8"]) == filters
    loaded = load_fan(path)
    for key, original in fan.state_dict().items():
        restored = loaded.state_dict()[key]
        assert restored.dtype == original.dtype
        if key in filters:
            # Symmetric per-output-channel scale: the channel's largest magnitude over 127,
            # so each value is off by at most half a step of its own channel.
            step = original.abs().flatten(1).amax(dim=1) / 127
            error = (restored - original).abs().flatten(1).amax(dim=1)
            assert torch.all(error <= step / 2 + 1e-7), key
            assert torch.equal(restored.abs().flatten(1).amax(dim=1), step * 127), key
        elif original.is_floating_point():
            assert torch.equal(restored, original.half().float()), key
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(images), fan(images), atol=0.05 * fan(images).abs().max())
    assert path.stat().st_size < 0.35 * _float32_size(fan, tmp_path)


def _float32_size(fan: FAN, folder) -> int:
    path = folder / "fan32.pt"
    save_fan(fan, path)
    return path.stat().st_size


def test_an_int8_entry_without_per_channel_scales_is_named(tmp_path) -> None:
    fan = FAN(TINY)
    path = tmp_path / "fan.pt"
    save_fan(fan, path, storage="int8")
    payload = torch.load(path, weights_only=True)
    payload["int8"]["conv1.weight"]["scale"] = torch.ones(3)
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"fan\.pt: int8 entry 'conv1\.weight' must hold"):
        load_fan(path)
    with pytest.raises(ValueError, match="storage must be as_is, float16 or int8"):
        save_fan(fan, path, storage="int4")


@pytest.mark.parametrize("with_config", [True, False])
def test_lightning_checkpoint_of_fanmodule(with_config: bool, tmp_path) -> None:
    fan = randomise(FAN(dataclasses.replace(TINY, upsampling="nearest")))
    hyper = {"fan_config": dataclasses.asdict(fan.config), "lr": 1e-3} if with_config else {}
    checkpoint = {
        "epoch": 3,
        "global_step": 30,
        "pytorch-lightning_version": "2.6.0",
        "state_dict": {f"fan.{key}": value for key, value in fan.state_dict().items()},
        "hyper_parameters": hyper,
        "optimizer_states": [],
        "callbacks": {},
    }
    torch.save(checkpoint, tmp_path / "last.ckpt")
    loaded = load_fan(tmp_path / "last.ckpt")
    # without a config the keys give the shape and the light FAN the pooling and upsampling
    expected = fan.config if with_config else dataclasses.replace(TINY)
    assert loaded.config == expected
    if with_config:
        assert_same_output(loaded, fan)


def test_fan_files_written_before_the_stem_option_keep_their_layout(tmp_path) -> None:
    reference = randomise(RefFAN(1, width=16, depth=2))  # pools after conv2, as aunet did
    old_config = {"num_stacks": 1, "width": 16, "depth": 2, "kernel_size": 3,
                  "num_landmarks": 68, "pooling": "avg", "upsampling": "nearest"}  # fmt: skip
    state = reference.state_dict()
    torch.save({"format": "aunet-fan", "config": old_config, "state_dict": state},
               tmp_path / "fan.pt")  # fmt: skip
    lightning = {f"fan.{key}": value for key, value in state.items()}
    torch.save({"state_dict": lightning, "hyper_parameters": {"fan_config": old_config}},
               tmp_path / "last.ckpt")  # fmt: skip
    for name in ("fan.pt", "last.ckpt"):
        loaded = load_fan(tmp_path / name)
        assert loaded.config.stem_pool_at == "after_conv2"
        assert_same_output(loaded, reference)
    module = FANModule(fan_config=old_config)  # a FANModule rebuilt from an old checkpoint
    module.fan.load_state_dict(state)
    assert_same_output(module.fan.eval(), reference)
    assert FANModule().fan.config == LIGHT_FAN_CONFIG  # a new run: the paper's layout


# --- wrong files


def test_a_file_that_is_not_a_fan_gets_the_key_lists(tmp_path) -> None:
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    torch.save(other.state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="missing keys") as error:
        load_fan(tmp_path / "other.pth")
    message = str(error.value)
    assert "other.pth" in message
    assert "conv1.weight" in message  # missing
    assert "unexpected keys (7): 0.weight, 0.bias, 1.weight, 1.bias" in message


def test_a_mis_shaped_tensor_is_named(tmp_path) -> None:
    state = randomise(RefFAN(1, width=16, depth=2)).state_dict()
    state["conv2.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"conv2\.conv1\.weight: file \(64, 64, 1, 1\)"):
        load_fan(tmp_path / "bad.pth")


class NotWeights:
    pass


def test_files_that_weights_only_refuses_or_that_are_missing(tmp_path) -> None:
    torch.save({"state_dict": NotWeights()}, tmp_path / "pickle.pt")
    with pytest.raises(ValueError, match="weights_only"):
        load_fan(tmp_path / "pickle.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="got Tensor"):
        load_fan(tmp_path / "tensor.pt")
    with pytest.raises(FileNotFoundError):
        load_fan(tmp_path / "absent.pt")
