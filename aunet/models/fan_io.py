"""Reading and writing FAN weights: the official face-alignment files and aunet's own.

:func:`load_fan` reads three formats and returns a :class:`~aunet.models.fan.FAN` in eval mode:

(a) the official face-alignment 2DFAN state dict: a bare mapping of tensors with keys such as
    ``conv1.weight``, ``m0.b1_4.bn1.weight``, ``top_m_0``, ``conv_last0``, ``bn_end0``, ``l0``,
    ``bl0``, ``al0`` (a ``module.`` prefix from DataParallel is dropped). Stacks, width, depth,
    kernel size and landmarks are inferred from the keys; the format implies average pooling and
    nearest-neighbour upsampling, as in face-alignment's own model.
(b) a TorchScript archive of the same network (face-alignment >= 1.2 ships 2DFAN-4 this way):
    its weights are read from the archive and loaded as (a), so the returned module is aunet's.
(c) aunet's files: a Lightning checkpoint of ``aunet.training.FANModule`` (weights under
    ``fan.``, architecture in ``hyper_parameters["fan_config"]``), or the plain file of
    :func:`save_fan` (``{"format": "aunet-fan", "config": ..., "state_dict": ...}``, and in
    an ``int8`` file also ``"int8": {key: {"values": ..., "scale": ...}}``). Where such
    a file gives no config, the architecture is inferred from the keys as in (a), with the light
    FAN's pooling and upsampling and the stem pooled after ``conv2``, the layout such files have
    always been read with (aunet itself always writes a config). A config without
    ``stem_pool_at`` was written before that option existed and also means the stem pooled after
    ``conv2``.

Pickled files are read with ``weights_only=True``; loading is strict, and a file that is not a
FAN gets a :class:`ValueError` naming its missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from aunet.files import atomic_path
from aunet.models.fan import FAN, LIGHT_FAN_CONFIG, OFFICIAL_2DFAN4_CONFIG, FANConfig

#: The ``format`` tag of :func:`save_fan` files.
AUNET_FAN_FORMAT = "aunet-fan"
#: Attribute under which ``aunet.training.FANModule`` holds its network.
LIGHTNING_PREFIX = "fan."
_DATA_PARALLEL_PREFIX = "module."
_MAX_LISTED_KEYS = 20

StateDict = dict[str, torch.Tensor]
#: Inference defaults for an aunet file without a config: the light FAN as such files have always
#: been read, the stem pooled after ``conv2``.
_CONFIGLESS_AUNET_DEFAULT = dataclasses.replace(LIGHT_FAN_CONFIG, stem_pool_at="after_conv2")


#: How :func:`save_fan` stores the weights: as the network holds them, every floating tensor in
#: float16, or the convolution filters in int8 (below) and the rest in float16.
WeightStorage = Literal["as_is", "float16", "int8"]


def save_fan(fan: FAN, path: str | os.PathLike, storage: WeightStorage = "as_is") -> None:
    """Write ``fan`` as an aunet FAN file, atomically (a temporary name, then a rename).

    ``int8`` stores each filter bank (every tensor of two or more dimensions) as int8 values with
    one float32 scale per output channel, the largest magnitude of that channel's filters over
    127 (symmetric per-channel quantisation, the layout PyTorch's quantised convolutions use);
    the other tensors (biases, BatchNorm) go in float16. :func:`load_fan` multiplies them back
    into float32. The filters are 99% of a FAN's parameters, so the file is a quarter of its
    float32 size.

    Args:
        fan: the network; its weights are written on the CPU.
        path: destination; parent folders are created.
        storage: ``as_is``, ``float16`` or ``int8``.
    """
    if storage not in ("as_is", "float16", "int8"):
        raise ValueError(f"storage must be as_is, float16 or int8, got {storage!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in fan.state_dict().items()}
    payload: dict[str, Any] = {"format": AUNET_FAN_FORMAT, "config": dataclasses.asdict(fan.config)}
    if storage == "int8":
        filters = {k: v for k, v in state.items() if v.is_floating_point() and v.dim() >= 2}
        payload["int8"] = {key: _quantised(value) for key, value in filters.items()}
        state = {key: value for key, value in state.items() if key not in filters}
    if storage in ("float16", "int8"):
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload["state_dict"] = state
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_fan(path: str | os.PathLike) -> FAN:
    """Load a FAN from the official state dict, its TorchScript archive, or an aunet file.

    Args:
        path: the file (formats in the module docstring).

    Returns:
        The network on the CPU, in eval mode; called on B x 3 x 256 x 256 images in [0, 1] it
        returns the last stack's B x 68 x 64 x 64 landmark heatmaps.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if the file cannot be read with ``weights_only=True`` or holds no FAN; the
            message names the missing, unexpected and mis-shaped keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FAN file not found: {path}")
    if _is_torchscript(path):
        state, config = _read_torchscript(path), None
        default = OFFICIAL_2DFAN4_CONFIG
    else:
        state, config, default = _unpack(_read_pickle(path), path)
    config = config or _infer_config(state, default)
    fan = FAN(config)
    fan.load_state_dict(_checked_state(fan, state, path))
    return fan.eval()


def is_face_alignment_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds face-alignment's own weights, formats (a) and (b) above.

    Those were trained on face-alignment's framing of the face (:mod:`aunet.data.framing`);
    aunet's own FAN files, (c), on aunet's stored crops.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if it cannot be read with ``weights_only=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FAN file not found: {path}")
    if _is_torchscript(path):
        return True
    obj = _read_pickle(path)
    return (
        isinstance(obj, Mapping)
        and obj.get("format") != AUNET_FAN_FORMAT
        and not isinstance(obj.get("state_dict"), Mapping)
    )


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``constants.pkl``; ``torch.save`` files lack it."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def _read_torchscript(path: Path) -> StateDict:
    with warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.x; the official 2DFAN-4 is still shipped this way.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    return {key: value.detach() for key, value in module.state_dict().items()}


def _quantised(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """``weight`` as int8 values and one float32 scale per output channel (dimension 0)."""
    weight = weight.float()
    scale = weight.abs().amax(dim=tuple(range(1, weight.dim()))) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel stays 0
    shape = (-1,) + (1,) * (weight.dim() - 1)
    values = torch.round(weight / scale.view(shape)).clamp(-127, 127).to(torch.int8)
    return {"values": values, "scale": scale}


def _dequantised(int8: Any, path: Path) -> StateDict:
    """The float32 filters of an ``int8`` aunet FAN file's ``int8`` section."""
    if int8 is None:
        return {}
    if not isinstance(int8, Mapping):
        raise ValueError(f"{path}: 'int8' must map keys to values and scales")
    state = {}
    for key, entry in int8.items():
        values = entry.get("values") if isinstance(entry, Mapping) else None
        scale = entry.get("scale") if isinstance(entry, Mapping) else None
        if not (
            isinstance(values, torch.Tensor)
            and values.dtype == torch.int8
            and values.dim() >= 2
            and isinstance(scale, torch.Tensor)
            and scale.shape == values.shape[:1]
        ):
            raise ValueError(
                f"{path}: int8 entry {key!r} must hold 'values' (an int8 tensor of two or more "
                f"dimensions) and 'scale' (one value per output channel, shape "
                f"{tuple(values.shape[:1]) if isinstance(values, torch.Tensor) else '(C_out,)'})"
            )
        shape = (-1,) + (1,) * (values.dim() - 1)
        state[key] = values.float() * scale.float().view(shape)
    return state


def _read_pickle(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise ValueError(
            f"{path}: cannot be read as a FAN file with torch.load(weights_only=True): {error}"
        ) from error


def _unpack(obj: Any, path: Path) -> tuple[StateDict, FANConfig | None, FANConfig]:
    """Split a loaded file into (state dict, config if the file gives one, inference defaults)."""
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{path}: expected a FAN state dict or checkpoint, got {type(obj).__name__}"
        )
    if obj.get("format") == AUNET_FAN_FORMAT:
        state = dict(obj.get("state_dict") or {})
        state.update(_dequantised(obj.get("int8"), path))
        return state, _config_from(obj.get("config"), path), _CONFIGLESS_AUNET_DEFAULT
    if isinstance(obj.get("state_dict"), Mapping):  # a Lightning checkpoint of FANModule
        state = dict(obj["state_dict"])
        network = {
            key[len(LIGHTNING_PREFIX) :]: value
            for key, value in state.items()
            if key.startswith(LIGHTNING_PREFIX)
        }
        hyper = obj.get("hyper_parameters") or {}
        # Without `fan.` keys the whole dict goes on, so the error lists what the file does hold.
        fan_config = _config_from(hyper.get("fan_config"), path)
        return network or state, fan_config, _CONFIGLESS_AUNET_DEFAULT
    state = dict(obj)
    if state and all(key.startswith(_DATA_PARALLEL_PREFIX) for key in state):
        state = {key[len(_DATA_PARALLEL_PREFIX) :]: value for key, value in state.items()}
    return state, None, OFFICIAL_2DFAN4_CONFIG


def _config_from(values: Any, path: Path) -> FANConfig | None:
    if values is None:
        return None
    if not isinstance(values, Mapping):
        raise ValueError(f"{path}: the FAN config must be a mapping, got {type(values).__name__}")
    try:
        return FANConfig.from_dict(dict(values))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: invalid FAN config {dict(values)}: {error}") from error


def _infer_config(state: Mapping[str, torch.Tensor], default: FANConfig) -> FANConfig:
    """Read stacks, width, depth, kernel size and landmarks off the keys; ``default`` fills gaps.

    Keys that are absent leave the default in place, so the strict check that follows reports
    them as missing instead of failing here.
    """

    def levels(pattern: str) -> list[int]:
        return [int(m.group(1)) for key in state if (m := re.match(pattern, key))]

    def size(key: str, dim: int, fallback: int) -> int:
        value = state.get(key)
        return (
            int(value.shape[dim])
            if isinstance(value, torch.Tensor) and value.ndim > dim
            else fallback
        )

    stacks, depths = levels(r"m(\d+)\."), levels(r"m0\.b1_(\d+)\.")
    depth = max(depths, default=default.depth)
    return dataclasses.replace(
        default,
        num_stacks=max(stacks, default=default.num_stacks - 1) + 1,
        width=size("conv_last0.weight", 0, default.width),
        depth=depth,
        kernel_size=size(f"m0.b1_{depth}.conv1.weight", -1, default.kernel_size),
        num_landmarks=size("l0.weight", 0, default.num_landmarks),
    )


def _checked_state(fan: FAN, state: Mapping[str, Any], path: Path) -> StateDict:
    """``state`` ready for a strict load into ``fan``, or a ValueError listing every mismatch.

    BatchNorm's ``num_batches_tracked`` counters are optional (files saved before PyTorch 0.4.1
    lack them; they do not affect the output) and are filled in from ``fan`` when absent.
    """
    expected = fan.state_dict()
    optional = {key for key in expected if key.endswith("num_batches_tracked")}
    missing = [key for key in expected if key not in state and key not in optional]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key}: file {_shape(state[key])}, FAN {_shape(expected[key])}"
        for key in expected
        if key in state and _shape(state[key]) != _shape(expected[key])
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not hold a FAN of the inferred architecture {fan.config}:\n"
            f"{_listing('missing keys', missing)}\n"
            f"{_listing('unexpected keys', unexpected)}\n"
            f"{_listing('shape mismatches', mismatched)}"
        )
    return {**{key: expected[key] for key in optional}, **state}


def _shape(value: Any) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED_KEYS])
    more = f", ... (+{len(items) - _MAX_LISTED_KEYS} more)" if len(items) > _MAX_LISTED_KEYS else ""
    return f"  {title} ({len(items)}): {shown or '-'}{more}"
