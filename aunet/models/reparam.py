"""Reparametrisation of a frozen FAN (Sec. 4.5, Eq. 3; after Rosenfeld & Tsotsos' deep adaptation).

Every convolution of the FAN keeps its pre-trained filters ``theta`` frozen and gains a learnable
``C_out x C_out`` matrix ``W``, initialised to the identity; the layer convolves with
``W x_1 theta``, the filters mixed along the output-channel mode. (Eq. 3 writes ``theta`` as
``C_in x C_out x k x k`` while ``W`` is ``C_out x C_out``; the product can only be taken along
the output channels, which is mode 1 of PyTorch's ``C_out x C_in x k x k`` weights.) A frozen
bias ``b`` is mixed the same way, ``W b``, so a layer computes exactly ``W`` applied to the
original layer's output channels, and ``W = I`` is the FAN itself.

What trains (Sec. 4.5: "the weights theta_FAN remain frozen, and only the weights W are to be
learned"):

* every ``W``: ~141K parameters in the light FAN (the paper: ~130K; Table 5: 1.79M - 1.65M);
* the new last layer (Sec. 4.5: all layers "but the very last one" keep the FAN's structure);
* BatchNorm, by default, not at all: its affine parameters are frozen and it stays in eval mode
  even when the surrounding LightningModule calls ``train()``, so it normalises with the FAN's
  running statistics throughout. ``train_batchnorm=True`` is the ablation that trains the
  affine parameters (8K in the light FAN) and re-estimates the statistics on the AU data in
  train mode, as in the per-task normalisation of the adaptation literature (mixing the filters
  changes the distribution each BN sees).

At inference the projections fold into plain convolutions (:meth:`ReparametrisedFAN.fold`), so
a trained model costs exactly what a FAN costs (Table 5: same FLOPs as scratch and fine-tuning).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aunet.models.fan import FAN, is_prediction_key, retarget_fan


class ReparamConv2d(nn.Module):
    """A convolution whose filters are ``W x_1 theta``: ``theta`` frozen, ``W`` learnt.

    Args:
        conv: the pre-trained convolution (its weights are copied; it is left unchanged).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError("ReparamConv2d supports ungrouped, zero-padded convolutions only")
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.theta = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        self.theta_bias = (
            None
            if conv.bias is None
            else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        )
        out_channels = conv.out_channels
        eye = torch.eye(out_channels, device=conv.weight.device, dtype=conv.weight.dtype)
        self.projection = nn.Parameter(eye)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve with the projected filters, computed once per call by one matmul."""
        weight, bias = self.projected()
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)

    def projected(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(W x_1 theta, W b)``: the filters and bias the layer convolves with."""
        weight = (self.projection @ self.theta.flatten(1)).view(self.theta.shape)
        bias = None if self.theta_bias is None else self.projection @ self.theta_bias
        return weight, bias


class ReparametrisedFAN(nn.Module):
    """A FAN adapted to AU heatmaps by reparametrising every convolution (Sec. 4.5).

    Args:
        fan: the pre-trained FAN; copied, left unchanged.
        num_aus: output maps; the prediction layers (``l<i>``, and ``al<i>`` between stacks) are
            new, plain and trained.
        train_batchnorm: train the BatchNorm affine parameters and re-estimate its statistics
            (an ablation); by default BN keeps the FAN's, frozen and in eval mode (Sec. 4.5).
    """

    output_kind = "heatmaps"

    def __init__(self, fan: FAN, num_aus: int, train_batchnorm: bool = False) -> None:
        super().__init__()
        self.train_batchnorm = train_batchnorm
        self.net = retarget_fan(fan, num_aus)
        for name, module in list(self.net.named_modules()):
            if isinstance(module, nn.Conv2d) and not is_prediction_key(f"{name}."):
                self.net.set_submodule(name, ReparamConv2d(module))
        if not train_batchnorm:
            for norm in self._batch_norms():
                norm.requires_grad_(False)
        self.train(self.net.training)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W images in [0, 1] -> B x num_aus x H/4 x W/4 AU heatmaps."""
        return self.net(images)

    def train(self, mode: bool = True) -> ReparametrisedFAN:
        """Set the mode; frozen BatchNorm (the default) stays in eval mode whatever ``mode`` is."""
        super().train(mode)
        if not self.train_batchnorm:
            for norm in self._batch_norms():
                norm.eval()
        return self

    def _batch_norms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.net.modules() if isinstance(m, nn.BatchNorm2d)]

    @torch.no_grad()
    def fold(self) -> FAN:
        """A plain :class:`FAN` with every ``W x_1 theta`` folded into its convolution weights.

        Returns:
            A new network on this module's device whose outputs equal this module's, each of
            its layers in the train/eval mode of the layer it replaces (frozen BatchNorm in eval
            mode); it has no projections left to compute.
        """
        state = self.net.state_dict()
        for name, module in self.net.named_modules():
            if isinstance(module, ReparamConv2d):
                for key in ("theta", "theta_bias", "projection"):
                    state.pop(f"{name}.{key}", None)
                weight, bias = module.projected()
                state[f"{name}.weight"] = weight
                if bias is not None:
                    state[f"{name}.bias"] = bias
        folded = FAN(self.net.config)
        folded.load_state_dict(state)
        modes = {name: module.training for name, module in self.net.named_modules()}
        for name, module in folded.named_modules():
            module.training = modes[name]
        reference = next(self.net.parameters())
        return folded.to(device=reference.device, dtype=reference.dtype)
