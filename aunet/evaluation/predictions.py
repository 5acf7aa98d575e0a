"""Out-of-fold predictions: one run's held-out frames predicted, and the predictions files.

A predictions file (``predictions-<last|best>.csv`` of a run, a cross-validation's pooled
``predictions.csv``) has the columns of docs/cluster.md, "Outputs": ``subject``, ``frame``,
``fold`` (or the partition), then ``<AU>_true`` and ``<AU>_pred`` per AU.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import yaml

from aunet import progress
from aunet.files import (
    atomic_path,
)
from aunet.runs import (
    CHECKPOINT_FOLDER,
    CONFIG_FILE,
    LAST_CHECKPOINT,
    best_checkpoint,
    last_checkpoint,
)

if TYPE_CHECKING:
    from aunet.data.datamodule import AUDataModule


Checkpoint = Literal["last", "best"]


CHECKPOINTS: tuple[str, ...] = ("last", "best")


#: The columns that precede the per-AU pairs in every predictions file.
ID_COLUMNS = ("subject", "frame", "fold")


class CVError(RuntimeError):
    """A cross-validation that cannot go on as asked; the message names the file and the fix."""


@dataclass(frozen=True)
class Predictions:
    """Per-frame predicted and true intensities: the rows of a predictions file.

    Args:
        au_names: the K AUs.
        subject: N subject names.
        frame: N frame numbers.
        fold: N strings: the fold that held the frame out (``1``-``3``), or the official
            partition that was predicted (``test``, or ``devel``).
        true: N x K float64 ground truth, NaN where unknown.
        pred: N x K float64 predictions.
    """

    au_names: tuple[str, ...]
    subject: np.ndarray
    frame: np.ndarray
    fold: np.ndarray
    true: np.ndarray
    pred: np.ndarray

    def __len__(self) -> int:
        return len(self.subject)

    @property
    def columns(self) -> list[str]:
        """``subject``, ``frame``, ``fold``, then ``AU01_true``, ``AU01_pred``, ... per AU."""
        pairs = [f"{au}_{kind}" for au in self.au_names for kind in ("true", "pred")]
        return [*ID_COLUMNS, *pairs]

    def select(self, rows: np.ndarray) -> Predictions:
        """The predictions of the rows ``rows`` (a boolean mask or indices)."""
        return Predictions(
            self.au_names,
            self.subject[rows],
            self.frame[rows],
            self.fold[rows],
            self.true[rows],
            self.pred[rows],
        )

    @classmethod
    def of_held_out(
        cls,
        au_names: Sequence[str],
        rows: dict[str, np.ndarray],
        true: np.ndarray,
        pred: np.ndarray,
    ) -> Predictions:
        """The predictions of a run's held-out rows (``AUDataModule.held_out_rows()``)."""
        held = rows["fold"] if "fold" in rows else rows["partition"]
        return cls(
            tuple(au_names),
            np.asarray(rows["subject"], dtype=object),
            np.asarray(rows["frame"], dtype=np.int64),
            np.asarray([str(value) for value in held], dtype=object),
            true,
            pred,
        )

    @classmethod
    def concatenate(cls, parts: Sequence[Predictions]) -> Predictions:
        """Rows of every part, in order.

        Raises:
            CVError: for no parts, or parts over different AUs.
        """
        if not parts:
            raise CVError("no predictions to concatenate")
        names = {part.au_names for part in parts}
        if len(names) != 1:
            raise CVError(f"the folds predict different AUs: {sorted(names)}")
        fields = ("subject", "frame", "fold", "true", "pred")
        stacked = {name: np.concatenate([getattr(part, name) for part in parts]) for name in fields}
        return cls(parts[0].au_names, **stacked)


def _cell(value: float) -> str:
    """A CSV cell: empty for unknown (NaN), else enough digits to keep a float32 exact."""
    return "" if math.isnan(value) else f"{value:.9g}"


def write_predictions(path: Path, predictions: Predictions) -> Path:
    """Write ``predictions`` as CSV, atomically; unknown values are empty cells.

    The columns are those of docs/cluster.md, "Outputs": ``subject``, ``frame``, ``fold``,
    then ``AU01_true``, ``AU01_pred``, ... per AU.
    """
    interleaved = np.stack((predictions.true, predictions.pred), axis=-1).reshape(
        len(predictions), -1
    )
    with atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(predictions.columns)
        for i in range(len(predictions)):
            identity = (predictions.subject[i], int(predictions.frame[i]), predictions.fold[i])
            writer.writerow([*identity, *(_cell(float(v)) for v in interleaved[i])])
    return path


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read a file written by :func:`write_predictions` (empty cells are NaN).

    Raises:
        CVError: naming the file, for a header that is not ``subject,frame,fold`` followed
            by ``<AU>_true,<AU>_pred`` pairs, or a malformed row.
    """
    path = Path(path)
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        raise CVError(f"{path}: empty file; expected a header {','.join(ID_COLUMNS)},...")
    header, body = rows[0], rows[1:]
    pairs = header[len(ID_COLUMNS) :]
    au_names = tuple(name.removesuffix("_true") for name in pairs[::2])
    expected = [*ID_COLUMNS, *(f"{au}_{kind}" for au in au_names for kind in ("true", "pred"))]
    if header != expected or not au_names:
        raise CVError(
            f"{path}: header must be {','.join(ID_COLUMNS)} then <AU>_true,<AU>_pred per AU; "
            f"got {','.join(header)}"
        )
    try:
        values = np.array(
            [[float(cell) if cell else math.nan for cell in row[3:]] for row in body],
            dtype=np.float64,
        ).reshape(len(body), len(pairs))
    except ValueError as error:
        raise CVError(f"{path}: a row has a bad or missing value ({error})") from None
    return Predictions(
        au_names,
        np.array([row[0] for row in body], dtype=object),
        np.array([int(row[1]) for row in body], dtype=np.int64),
        np.array([row[2] for row in body], dtype=object),
        values[:, 0::2],
        values[:, 1::2],
    )


def predictions_file(run_dir: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """``<run>/predictions-<checkpoint>.csv``: a run's held-out predictions."""
    return Path(run_dir) / f"predictions-{checkpoint}.csv"


def checkpoint_file(run_dir: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """``checkpoints/last.ckpt``, or the run's best checkpoint (:mod:`aunet.runs`).

    Raises:
        CVError: naming the run folder, when it has no such checkpoint.
    """
    path = last_checkpoint(run_dir) if checkpoint == "last" else best_checkpoint(run_dir)
    if path is None or not path.exists():
        wanted = LAST_CHECKPOINT if checkpoint == "last" else "best-epochNNN.ckpt"
        raise CVError(f"{Path(run_dir) / CHECKPOINT_FOLDER}: no {wanted}; has the run trained?")
    return path


def require_same_aus(
    model_aus: Sequence[str], data_aus: Sequence[str], checkpoint: Any, store: Any
) -> None:
    """Refuse to score a checkpoint on a store of other AUs (or another AU order).

    Raises:
        CVError: naming the checkpoint (or its run) and the store.
    """
    if tuple(model_aus) != tuple(data_aus):
        raise CVError(
            f"{checkpoint}: the checkpoint predicts {model_aus} but {store} holds {data_aus}"
        )


def run_data(run_dir: Path) -> AUDataModule:
    """The DataModule of a run folder's held-out frames: its ``config.yaml``'s store and fold.

    Raises:
        CVError: naming the file, when the config is missing or lacks the data settings.
    """
    from aunet.data.datamodule import AUDataModule

    config_path = Path(run_dir) / CONFIG_FILE
    try:
        config = yaml.safe_load(config_path.read_text())["data"]
        return AUDataModule(
            path=config["path"],
            fold=config["fold"],
            batch_size=config["batch_size"],
            num_workers=config["num_workers"],
            image_size=config["image_size"],
            framing=config.get("framing") or "store",  # older runs: the store's framing
        )
    except (OSError, KeyError, TypeError) as error:
        raise CVError(f"{config_path}: cannot rebuild the run's data ({error!r})") from None


@torch.inference_mode()
def predict_run(
    run_dir: str | os.PathLike,
    checkpoint: Checkpoint = "last",
    device: str | torch.device | None = None,
) -> Predictions:
    """Predict a run's held-out frames with one of its checkpoints.

    The data (store, fold, input size, loader settings) come from the run's ``config.yaml``;
    the model from the checkpoint alone (its saved FAN architecture, not the FAN file). The
    loop is plain PyTorch on one device, so it runs the same inside a SLURM allocation of
    any shape and with no Lightning ``Trainer``. A progress bar on stderr counts the batches
    (:func:`aunet.progress.track`): a fold of DISFA takes a minute or more.

    Args:
        run_dir: a run folder of ``aunet fit``.
        checkpoint: ``last`` (default, see the module docstring) or ``best``.
        device: default ``cuda`` when available, else ``cpu``.

    Returns:
        Every held-out frame (the fold's subjects, or the test partition) once, in store order.
    """
    # Imported here: every launcher command imports this module; only predicting needs it.
    from aunet.inference.predictor import load_module
    from aunet.training.checkpoint_io import CheckpointError

    run_dir = Path(run_dir)
    data = run_data(run_dir)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        model = load_module(checkpoint_file(run_dir, checkpoint))  # weights-only read
    except CheckpointError as error:
        raise CVError(str(error)) from None
    require_same_aus(model.au_names, data.au_names, run_dir, data.path)
    model.to(device).eval()
    indices, preds, truth = [], [], []
    loader = data.predict_dataloader()
    label = f"predicting {run_dir.parent.name}/{run_dir.name}"  # fits one terminal line
    batches = progress.track(loader, label, len(loader))
    for batch_idx, batch in enumerate(batches):
        batch = {key: value.to(device) for key, value in batch.items()}
        output = model.predict_step(batch, batch_idx)
        indices.append(output["index"].cpu().numpy())
        preds.append(output["pred"].double().cpu().numpy())
        truth.append(output["true"].double().cpu().numpy())
    held_out = data.held_out_rows()
    index = np.concatenate(indices)
    if not np.array_equal(index, held_out["index"]):
        raise CVError(f"{run_dir}: the predict loader did not cover the held-out rows once")
    return Predictions.of_held_out(
        data.au_names, held_out, np.concatenate(truth), np.concatenate(preds)
    )


def run_predictions(run_dir: str | os.PathLike, checkpoint: Checkpoint = "last") -> Path:
    """``<run>/predictions-<checkpoint>.csv``, predicted now unless newer than the checkpoint.

    So a re-run, or the report job after the fold jobs, does not predict twice.
    """
    run_dir = Path(run_dir)
    target = predictions_file(run_dir, checkpoint)
    source = checkpoint_file(run_dir, checkpoint)
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    print(f"predicting the held-out frames of {run_dir} with {source.name}", flush=True)
    return write_predictions(target, predict_run(run_dir, checkpoint))


def predictions_table(predictions: Predictions) -> Any:
    """``predictions`` as a W&B Table: the columns of ``predictions.csv``, unknown values None."""
    import wandb

    values = np.stack((predictions.true, predictions.pred), axis=-1).reshape(len(predictions), -1)
    cells = values.astype(object)
    cells[np.isnan(values)] = None  # a JSON null in the table, as an empty cell in the CSV
    identity = zip(predictions.subject, predictions.frame.tolist(), predictions.fold, strict=True)
    rows = [[*ids, *row] for ids, row in zip(identity, cells.tolist(), strict=True)]
    # The column types are declared and the rows set at once: given as data, every row is
    # type-checked on its own (0.7 ms a row, 90 s for DISFA's 130,000 frames).
    types = [str, int, str, *[float] * (2 * len(predictions.au_names))]  # as ID_COLUMNS, pairs
    table = wandb.Table(columns=predictions.columns, dtype=types, optional=True)
    table.data = rows
    return table
