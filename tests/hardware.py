"""Fake hardware for tests: the probes of :mod:`aunet.training.precision` answering as a given
CPU or GPU would (``from hardware import cpu, gpu``)."""

from __future__ import annotations

import torch


def cpu(monkeypatch, level: str = "AVX2", onednn_bf16: bool = False, **features: bool) -> None:
    """Make this CPU answer as one with ``features`` (e.g. ``avx512_bf16=True``)."""
    capabilities = {"avx2": True, "avx512_bf16": False, "amx_bf16": False, **features}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: level)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn_bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def gpu(monkeypatch, name: str, capability: tuple[int, int]) -> None:
    """Make CUDA visible with one device; bf16 is native from compute capability 8.0, as in torch.

    With emulation allowed, torch also answers True for older GPUs (they can hold bf16).
    """
    native = capability >= (8, 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",
        lambda including_emulation=True: native or including_emulation,
    )
