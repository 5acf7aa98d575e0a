"""Every transfer strategy: shapes, which parameters train, frozen backbones, reparametrisation."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from aunet.models import (
    FAN,
    LIGHT_FAN_CONFIG,
    NEEDS_FAN,
    STRATEGIES,
    USES_FAN,
    AdaptationNetwork,
    FANConfig,
    ReparamConv2d,
    ReparametrisedFAN,
    ResNet18,
    build_strategy,
)

TINY = FANConfig(width=16, depth=2)
SIZE = 32  # TINY needs multiples of 4 * 2**2
AUS = ("AU01", "AU12", "AU25")
K = len(AUS)
# Small AU-Nets for the adaptation strategies, and a small scratch (which ignores the FAN);
# every other option keeps its default.
OPTIONS = {
    "scratch": {"fan_config": TINY},
    "adapt": {"width": 16},
    "attention": {"width": 16, "au_names": AUS},
    "random_backbone": {"width": 16},
    "adapt_finetune": {"width": 16},
}


def tiny_fan() -> FAN:
    fan = FAN(TINY)
    with torch.no_grad():  # pre-trained-looking BN statistics, so that a frozen BN is visible
        for module in fan.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    return fan.eval()


def build(name: str, fan: FAN | None = None) -> nn.Module:
    return build_strategy(name, K, fan or tiny_fan(), **OPTIONS.get(name, {}))


def images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE)


def frozen_backbone(model: nn.Module) -> FAN | None:
    return model.backbone.fan if isinstance(model, AdaptationNetwork) else None


@pytest.mark.parametrize("name", STRATEGIES)
def test_output_shape_and_kind(name: str) -> None:
    model = build(name)
    out = model(images())
    expected = (2, K) if model.output_kind == "intensities" else (2, K, SIZE // 4, SIZE // 4)
    assert out.shape == expected
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", STRATEGIES)
def test_trainable_parameters_get_gradients_and_frozen_ones_none(name: str) -> None:
    model = build(name).train()
    model(images()).square().mean().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for param_name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, param_name
            assert torch.isfinite(param.grad).all(), param_name
        else:
            assert param.grad is None, param_name


@pytest.mark.parametrize("name", STRATEGIES)
def test_channels_last_gives_the_same_output(name: str) -> None:
    model = build(name).eval()
    x = images()
    with torch.no_grad():
        expected = model(x)
        model.to(memory_format=torch.channels_last)
        actual = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(NEEDS_FAN))
def test_the_given_fan_is_never_modified(name: str) -> None:
    fan = tiny_fan()
    before = copy.deepcopy(fan.state_dict())
    model = build(name, fan).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    model(images()).square().mean().backward()
    torch.optim.SGD(trainable, lr=0.1).step()
    assert all(p.requires_grad for p in fan.parameters())
    assert all(torch.equal(v, before[k]) for k, v in fan.state_dict().items())


@pytest.mark.parametrize("name", ["adapt", "attention", "random_backbone", "adapt_finetune"])
def test_a_frozen_backbone_stays_frozen_through_a_training_step(name: str) -> None:
    model = build(name)
    model.train()  # what the LightningModule does
    backbone = frozen_backbone(model)
    assert not backbone.training
    before = copy.deepcopy(backbone.state_dict())  # weights and BN buffers
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        optimiser.zero_grad()
        model(images()).square().mean().backward()
        optimiser.step()
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())
    assert model.adaptation.features[1].num_batches_tracked == 2  # the new layers did train
    features, heatmaps = model.backbone(images().requires_grad_())
    assert features.grad_fn is None  # no autograd graph kept for the frozen FAN
    assert heatmaps.grad_fn is None


def test_adapt_finetune_unfreezes_the_fan_for_its_second_stage() -> None:
    model = build("adapt_finetune").train()
    frozen = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.unfreeze_backbone()
    fan = frozen_backbone(model)
    assert fan.training
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == frozen + sum(
        p.numel() for p in fan.parameters()
    )
    model(images()).square().mean().backward()
    assert all(p.grad is not None for p in fan.parameters())
    model.eval()
    assert not fan.training


def test_attention_maps_peak_at_the_fans_landmarks() -> None:
    model = build("attention").eval()
    captured = {}
    model.adaptation.guide.register_forward_hook(lambda m, i, o: captured.update(guide=i[0]))
    model(images(1))
    guide = captured["guide"]
    assert guide.shape == (1, K, SIZE // 4, SIZE // 4)
    assert guide.amax(dim=(-2, -1)).le(1.0 + 1e-6).all()  # drawn at intensity 1 (Sec. 4.4)
    assert guide.amax(dim=(-2, -1)).gt(0.3).all()  # every AU is drawn somewhere


def test_adaptation_defaults_follow_the_paper_over_the_light_fan() -> None:
    model = build_strategy("adapt", 12, FAN(LIGHT_FAN_CONFIG))
    convs = [m for m in model.au_net.modules() if isinstance(m, nn.Conv2d)]
    assert {c.kernel_size for c in convs} == {(1, 1)}  # "all filters set to a kernel size of 1"
    assert model.adaptation.features[0].out_channels == 128
    assert model.adaptation.guide[0].in_channels == 68
    assert model.au_net.hourglass.depth == 4


# --- reparametrisation (Sec. 4.5)


def test_reparam_with_identity_projections_is_the_fan() -> None:
    fan = tiny_fan()
    model = ReparametrisedFAN(fan, num_aus=fan.config.num_landmarks).eval()
    model.net.l0.load_state_dict(fan.l0.state_dict())  # the new last layer set to the FAN's
    x = images()
    with torch.no_grad():
        assert torch.equal(model(x), fan(x))


@pytest.mark.parametrize("train_batchnorm", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_fold_gives_a_plain_fan_with_the_same_output(train_batchnorm: bool, training: bool) -> None:
    model = ReparametrisedFAN(tiny_fan(), num_aus=K, train_batchnorm=train_batchnorm)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ReparamConv2d):
                module.projection.add_(0.1 * torch.randn_like(module.projection))
    model.train(training)
    folded = model.fold()
    assert type(folded) is FAN
    assert not any(isinstance(m, ReparamConv2d) for m in folded.modules())
    plain = sum(p.numel() for p in FAN(dataclasses.replace(TINY, num_landmarks=K)).parameters())
    assert sum(p.numel() for p in folded.parameters()) == plain  # costs what a FAN costs
    assert folded.bn1.training == (training and train_batchnorm)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def batch_norm_parameters(model: nn.Module) -> dict[str, int]:
    return {
        f"{module_name}.{param_name}": param.numel()
        for module_name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d)
        for param_name, param in module.named_parameters()
    }


@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_reparam_trains_projections_and_the_last_layer_and_bn_only_if_asked(
    train_batchnorm: bool,
) -> None:
    model = build_strategy("reparam", 12, FAN(LIGHT_FAN_CONFIG), train_batchnorm=train_batchnorm)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    projections = sum(v for n, v in trainable.items() if n.endswith("projection"))
    # sum of C_out^2: conv1 64^2; conv2 64^2 + 32^2 + 32^2 + downsample 128^2;
    # 16 ConvBlocks of 128 (conv3, conv4, 13 Hourglass, top) 64^2 + 32^2 + 32^2; conv_last 128^2
    assert projections == 4096 + (6144 + 16384) + 16 * 6144 + 16384 == 141_312  # paper: ~130K
    last = {"net.l0.weight": 128 * 12, "net.l0.bias": 12}
    batch_norm = batch_norm_parameters(model) if train_batchnorm else {}
    others = {n: v for n, v in trainable.items() if not n.endswith("projection")}
    assert others == {**batch_norm, **last}  # Sec. 4.5: "only the weights W are to be learned"
    assert sum(trainable.values()) == 141_312 + 1_548 + (8_000 if train_batchnorm else 0)


@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_reparam_batch_norm_keeps_the_fans_statistics_unless_trained(train_batchnorm: bool) -> None:
    fan = tiny_fan()
    model = build_strategy("reparam", K, fan, train_batchnorm=train_batchnorm)
    model.train()  # what the LightningModule does every epoch
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(norm.training == train_batchnorm for norm in norms)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(images()).square().mean().backward()
    optimiser.step()
    moved = not torch.equal(model.net.bn1.running_mean, fan.bn1.running_mean)
    assert moved == train_batchnorm
    assert torch.equal(model.net.bn1.weight, fan.bn1.weight) != train_batchnorm
    model.eval()
    assert not any(norm.training for norm in norms)


def test_reparam_training_moves_w_and_never_theta() -> None:
    model = build("reparam").train()
    conv = model.net.conv1
    theta, projection = conv.theta.clone(), conv.projection.clone()
    model(images()).square().mean().backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    assert torch.equal(conv.theta, theta)
    assert not torch.equal(conv.projection, projection)


# --- the registry


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown strategy 'magic'.*scratch, finetune, adapt"):
        build_strategy("magic", K)


@pytest.mark.parametrize("name", sorted(NEEDS_FAN))
def test_transfer_strategies_need_a_fan(name: str) -> None:
    with pytest.raises(ValueError, match=f"strategy '{name}' transfers from a pre-trained FAN"):
        build_strategy(name, K)


def test_unknown_option_names_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown option.*'depht'.*width, depth, kernel_size"):
        build_strategy("adapt", K, tiny_fan(), depht=2)


def test_attention_needs_one_au_name_per_output() -> None:
    with pytest.raises(ValueError, match="one AU name per output"):
        build_strategy("attention", 5, tiny_fan(), au_names=AUS)
    default = build_strategy("attention", 12, tiny_fan(), width=16)  # DISFA's 12 AUs
    assert default.au_names[0] == "AU01"
    assert len(default.au_names) == 12


def test_strategies_without_a_fan_build_random_light_networks() -> None:
    scratch = build_strategy("scratch", 12)
    assert scratch.config == dataclasses.replace(LIGHT_FAN_CONFIG, num_landmarks=12)
    # scratch and resnet18 are the paper's baselines whatever FAN the transfer strategies get
    assert build_strategy("scratch", 12, tiny_fan()).config == scratch.config
    assert isinstance(build_strategy("resnet18", K, tiny_fan()), ResNet18)
    assert set(STRATEGIES) - {"scratch", "resnet18"} == USES_FAN
    random = build_strategy("random_backbone", K, fan_config={"width": 16, "depth": 2})
    assert random.backbone.fan.config == TINY
    assert build_strategy("scratch", K, fan_config=TINY).config.width == 16


def test_random_backbone_takes_the_architecture_not_the_weights_of_a_given_fan() -> None:
    fan = tiny_fan()
    model = build_strategy("random_backbone", K, fan, width=16)
    assert model.backbone.fan.config == fan.config
    assert not torch.equal(model.backbone.fan.conv1.weight, fan.conv1.weight)


def test_finetune_starts_from_the_fan_with_a_new_last_layer() -> None:
    fan = tiny_fan()
    model = build_strategy("finetune", K, fan)
    assert model.training
    assert torch.equal(model.m0.b1_2.conv1.weight, fan.m0.b1_2.conv1.weight)
    assert model.l0.out_channels == K
    assert all(p.requires_grad for p in model.parameters())


# --- ResNet-18 (Sec. 6.1)


def test_resnet18_matches_torchvisions_parameter_count() -> None:
    assert sum(p.numel() for p in ResNet18(1000).parameters()) == 11_689_512  # torchvision's


def test_resnet18_loads_torchvision_style_weights_but_not_other_files(tmp_path) -> None:
    source = ResNet18(1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = ResNet18(K, weights=tmp_path / "resnet18.pth")
    assert torch.equal(model.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert model.fc.out_features == K
    torch.save(FAN(TINY).state_dict(), tmp_path / "fan.pth")
    with pytest.raises(ValueError, match="not a torchvision resnet18 state dict"):
        ResNet18(K, weights=tmp_path / "fan.pth")


@pytest.mark.slow
@pytest.mark.parametrize("name", STRATEGIES)
def test_paper_resolution_over_the_light_fan(name: str) -> None:
    model = build_strategy(name, 12, FAN(LIGHT_FAN_CONFIG)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 256, 256))
    assert out.shape == ((1, 12) if name == "resnet18" else (1, 12, 64, 64))
    assert torch.isfinite(out).all()
