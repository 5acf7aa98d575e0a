"""``aunet-export``: a trained AU model as ONNX or TorchScript, for use without aunet.

Usage::

    aunet-export --ckpt CKPT --format onnx|torchscript --out FILE [--image-size S] [--opset 17]

The exported network is the bare model of :mod:`aunet.inference.predictor` (the reparametrised FAN
folded, Sec. 4.5): input ``images``, B x 3 x S x S float32 RGB in [0, 1] (a face crop made as
:func:`aunet.faces.crop.crop_face` makes them, divided by 255; no mean or standard deviation);
output ``heatmaps``, B x K x S/4 x S/4 (``resnet18``: ``intensities``, B x K). The batch axis is
dynamic, the side S fixed. Intensities are the maps' maxima clamped to [0, 5], locations their
argmax (Sec. 3.4); the exporter leaves that decoding to the caller so the maps stay available.

The AU names, S and the output kind travel with the file: ONNX ``metadata_props`` and the
TorchScript archive's extra file ``aunet.json`` hold ``{"au_names": [...], "image_size": S,
"output": "heatmaps"}``. After writing, the file is loaded back (onnxruntime on CPU when
installed, ``torch.jit.load``) and its outputs compared with PyTorch's on a random batch.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from aunet.cli.guards import DefaultsHelpFormatter
from aunet.files import atomic_path
from aunet.inference.predictor import AUPredictor, load_predictor
from aunet.training.checkpoint_io import CheckpointError

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17
#: The export must reproduce PyTorch's outputs within this (absolute, plus relative to them).
TOLERANCE = 1e-4
METADATA_FILE = "aunet.json"


class ExportError(ValueError):
    """An export that failed or whose file disagrees with PyTorch."""


def metadata(predictor: AUPredictor) -> dict[str, object]:
    """What a user of the exported file needs to know: AU order, input side, output kind."""
    return {
        "au_names": list(predictor.au_names),
        "image_size": predictor.image_size,
        "output": "heatmaps" if predictor.regresses_heatmaps else "intensities",
    }


def _example(predictor: AUPredictor, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    side = predictor.image_size
    return torch.rand(batch, 3, side, side, generator=generator)


def export_onnx(predictor: AUPredictor, out: Path, opset: int = DEFAULT_OPSET) -> None:
    """Write the network as ONNX (TorchScript-based exporter: no onnxscript needed)."""
    output = str(metadata(predictor)["output"])
    network = predictor.network.eval().to("cpu", memory_format=torch.contiguous_format)
    with warnings.catch_warnings():
        # The FAN's input-shape check becomes a constant of the trace: S is fixed, as intended.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notice
        torch.onnx.export(
            network,
            (_example(predictor, 2, seed=0),),
            str(out),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=[output],
            dynamic_axes={"images": {0: "batch"}, output: {0: "batch"}},
        )
    import onnx

    model = onnx.load(str(out))
    for key, value in metadata(predictor).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(out))


def export_torchscript(predictor: AUPredictor, out: Path) -> None:
    """Write the network as a traced TorchScript archive with ``aunet.json`` inside."""
    network = predictor.network.eval().to("cpu", memory_format=torch.contiguous_format)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(network, _example(predictor, 2, seed=0))
    extra = {METADATA_FILE: json.dumps(metadata(predictor))}
    torch.jit.save(traced, str(out), _extra_files=extra)


def exported_runner(path: Path, fmt: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function running the exported file on a float32 batch, or None (no onnxruntime)."""
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: session.run(None, {"images": images})[0]
    module = torch.jit.load(str(path), map_location="cpu")

    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(images)).numpy()

    return run


def check_export(predictor: AUPredictor, path: Path, fmt: str, batch: int = 3) -> float | None:
    """The largest difference between the exported file's outputs and PyTorch's, or None.

    A batch size other than the traced one checks the dynamic batch axis too.

    Raises:
        ExportError: if the outputs differ by more than :data:`TOLERANCE`.
    """
    run = exported_runner(path, fmt)
    if run is None:
        return None
    images = _example(predictor, batch, seed=1)
    with torch.no_grad():
        expected = predictor.network(images).float().numpy()
    actual = run(images.numpy())
    if actual.shape != expected.shape:
        raise ExportError(f"{path}: output shape {actual.shape}, PyTorch gives {expected.shape}")
    difference = float(np.abs(actual - expected).max())
    if not np.allclose(actual, expected, atol=TOLERANCE, rtol=TOLERANCE):
        raise ExportError(f"{path}: outputs differ from PyTorch's by up to {difference:.2e}")
    return difference


def export(
    checkpoint: str | os.PathLike,
    fmt: str,
    out: str | os.PathLike,
    image_size: int | None = None,
    opset: int = DEFAULT_OPSET,
) -> float | None:
    """Export an ``aunet fit`` checkpoint's network and check the file against PyTorch.

    Args:
        checkpoint: the checkpoint.
        fmt: ``onnx`` or ``torchscript``.
        out: the file to write (written to a temporary name, renamed once checked).
        image_size: input side; default: the one the model was trained at.
        opset: ONNX opset (at least 17).

    Returns:
        The largest output difference from PyTorch, or None when onnxruntime is missing.

    Raises:
        CheckpointError: for a file that is not an aunet AU checkpoint.
        ExportError: for an unknown format or an export that disagrees with PyTorch.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {FORMATS}, got {fmt!r}")
    if opset < DEFAULT_OPSET:
        raise ExportError(f"ONNX opset must be at least {DEFAULT_OPSET}, got {opset}")
    predictor = load_predictor(checkpoint, "cpu", image_size)
    with atomic_path(out) as temporary:
        if fmt == "onnx":
            export_onnx(predictor, temporary, opset)
        else:
            export_torchscript(predictor, temporary)
        return check_export(predictor, temporary, fmt)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``aunet-export``."""
    parser = argparse.ArgumentParser(
        prog="aunet-export",
        description="Export a trained AU model (aunet fit checkpoint) as ONNX or TorchScript.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint of `aunet fit` (.ckpt)")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument("--out", required=True, help="the file to write (.onnx, .pt)")
    parser.add_argument("--image-size", type=int, help="input side (default: from the checkpoint)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    args = parser.parse_args(argv)
    try:
        difference = export(args.ckpt, args.fmt, args.out, args.image_size, args.opset)
    except (CheckpointError, ExportError, OSError) as error:
        parser.exit(2, f"aunet-export: error: {error}\n")
    check = (
        f"outputs match PyTorch's to {difference:.1e}"
        if difference is not None
        else "not checked (onnxruntime is not installed)"
    )
    print(f"wrote {args.out} ({args.fmt}); {check}")


if __name__ == "__main__":
    main()
