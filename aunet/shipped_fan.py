"""The synthetic FAN that ships with aunet, so that the CPU demo starts from a trained FAN.

``make train EXP=reparam`` on a fresh clone transfers from a FAN pre-trained on the synthetic
landmark faces. Pre-training one takes longer on a CPU without native bf16 than the whole demo
may (docs/experiments.md, "The CPU demo"), so the package carries the one that ``make fan``
built, its filters in int8 with per-channel scales and the rest in float16 (1.8 MiB, against
6.8 MiB in float32, at the same validation NME), beside a provenance record: the command, the
commit, the machine, the training it had and its validation NME, re-measured on the shipped
weights. ``make fan``
rebuilds an equal one (``checkpoints/fan_synthetic.ckpt``, which the launcher then prefers).

Refresh it after a change to the light FAN, the renderer or ``make fan``'s recipe::

    make fan
    python -m aunet.shipped_fan checkpoints/fan_synthetic.ckpt
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from aunet.data import LandmarkDataModule
from aunet.files import write_text_atomically
from aunet.models import load_fan, save_fan
from aunet.models.fan import FAN
from aunet.training import FANModule
from aunet.training.precision import cpu_bf16

ASSETS = Path(__file__).with_name("assets")
#: The shipped weights (an aunet FAN file, :func:`aunet.models.save_fan`, ``storage="int8"``).
SHIPPED_FAN = ASSETS / "fan_synthetic.pt"
#: Where they come from, as JSON (see :func:`ship`).
SHIPPED_FAN_PROVENANCE = ASSETS / "fan_synthetic.json"
#: The landmark store and crop size ``make fan`` trains the synthetic FAN on.
LANDMARK_STORE = Path("data/synthetic_landmarks.h5")
#: How the weights are stored (:data:`aunet.models.fan_io.WeightStorage`): int8 filters keep the
#: file under 2 MiB and score the float32 network's NME (0.05792 against 0.05797, `make fan`'s
#: FAN of 2026-12-01).
STORAGE = "int8"
IMAGE_SIZE = 64


def validation_nme(
    fan: FAN, store: str | os.PathLike, image_size: int = IMAGE_SIZE, batch_size: int = 32
) -> float:
    """Mean NME of ``fan`` on ``store``'s validation subjects, as ``make fan`` scores it.

    The same split, crops and decoding as the pre-training's validation (``FANModule`` under
    ``LandmarkDataModule``), in float32.
    """
    module = FANModule(fan_config=dataclasses.asdict(fan.config))
    module.fan.load_state_dict(fan.state_dict())
    data = LandmarkDataModule(store, batch_size=batch_size, num_workers=0, image_size=image_size)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (metrics,) = trainer.validate(module, datamodule=data, verbose=False)
    return float(metrics["val/nme"])


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_provenance(path: str | os.PathLike = SHIPPED_FAN_PROVENANCE) -> dict[str, Any]:
    """The provenance record beside the shipped FAN.

    Raises:
        ValueError: naming the file, if it is not a JSON object with the fields :func:`ship`
            writes.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable provenance record ({error})") from None
    missing = [field for field in _FIELDS if not isinstance(record, dict) or field not in record]
    if missing:
        raise ValueError(f"{path}: provenance record without {', '.join(missing)}")
    return record


_FIELDS = ("file", "sha256", "command", "commit", "date", "machine", "training", "val_nme")


def describe(provenance: str | os.PathLike = SHIPPED_FAN_PROVENANCE) -> str:
    """One line on the shipped FAN for the launcher's progress line."""
    record = read_provenance(provenance)
    return (
        f"`{record['command']}` at commit {record['commit'][:10]}, "
        f"validation NME {record['val_nme']:.4f}"
    )


def ship(
    checkpoint: str | os.PathLike,
    store: str | os.PathLike = LANDMARK_STORE,
    target: str | os.PathLike = SHIPPED_FAN,
    command: str = "make fan",
    commit: str | None = None,
) -> dict[str, Any]:
    """Write ``checkpoint``'s FAN as the shipped FAN (int8 filters) with its provenance record.

    The NME recorded is the shipped (quantised) weights' own on ``store``'s validation
    subjects, not the training log's. Both files are written under temporary names and renamed.

    Args:
        checkpoint: what ``make fan`` wrote (``checkpoints/fan_synthetic.ckpt``), or any FAN file.
        store: the landmark store it was trained on.
        target: the weights' path; the record goes beside it as ``.json``.
        command: the command that built ``checkpoint``.
        commit: the commit it was built at; None takes HEAD (``+dirty`` when the tree differs),
            right when shipping straight after ``make fan``.

    Returns:
        The provenance record.
    """
    target = Path(target)
    save_fan(load_fan(checkpoint), target, storage=STORAGE)
    shipped = load_fan(target)
    record = {
        "file": target.name,
        "sha256": sha256(target),
        "bytes": target.stat().st_size,
        "storage": STORAGE,
        "architecture": dataclasses.asdict(shipped.config),
        "command": command,
        "commit": commit or _git_commit(),
        "date": datetime.date.today().isoformat(),
        "machine": _machine(),
        "training": _training_of(checkpoint),
        "store": str(store),
        "val_nme": round(validation_nme(shipped, store), 5),
    }
    write_text_atomically(target.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    return record


def _training_of(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """Epochs, steps and precision of a Lightning checkpoint ({} for a plain FAN file)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "global_step" not in state:
        return {}
    hparams = state.get("hyper_parameters", {})
    return {
        "epochs": int(state["epoch"]) + 1,
        "steps": int(state["global_step"]),
        "lr": hparams.get("lr"),
        "landmark_sigma": hparams.get("landmark_sigma"),
    }


def _git_commit() -> str:
    """HEAD's hash, ``+dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], check=False).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _machine() -> str:
    """CPU model, cores and native bf16 or not: what the recorded figures depend on."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        names = (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        model = next(names, model)
    return f"{model}, {os.cpu_count()} cores, {cpu_bf16().reason}, torch {torch.__version__}"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m aunet.shipped_fan CHECKPOINT [--store FILE.h5]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="the FAN `make fan` built")
    parser.add_argument("--store", default=str(LANDMARK_STORE), help="its landmark store")
    parser.add_argument(
        "--commit", help="the commit `make fan` ran at, when not HEAD (re-encoding an older FAN)"
    )
    args = parser.parse_args(argv)
    record = ship(args.checkpoint, args.store, commit=args.commit)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
