"""Cross-validation: the plan of a ``make cv`` run, out-of-fold predictions and the report.

DISFA has no official split; the paper follows earlier work with a three-fold subject-exclusive
cross-validation and reports "the ICC measured on the aggregated predictions for the whole
dataset, each returned by its corresponding model" (Sec. 5.1, and Table 4 in Sec. 7.2). So the
report is computed once, on every frame's prediction by the model of the fold that held its
subject out, and never as a mean of per-fold scores (ICC is not additive: the mean of three
fold ICCs differs from the ICC of the pooled predictions). ICC(3,1) and MSE per AU (Sec. 5.2)
come from :func:`aunet.metrics.icc` and :func:`aunet.metrics.mse`.

Datasets with official partitions (FERA2015 as ``bp4d``, FERA2017) have no folds: their
"cross-validation" is one run trained on ``train`` whose predictions on the ``test`` partition
(``devel`` where the store has no test partition, as FERA2015's public release) make the same
report files.

Which checkpoint predicts: the DISFA protocol validates and tests on the same held-out part
(:class:`aunet.data.datamodule.AUDataModule`), so the checkpoint that is best by validation ICC
was selected on the very frames it is then scored on, an optimistic bias. The default is
therefore the final model (``last.ckpt``); ``best`` is an option for comparison.

Files, all written atomically (a temporary name in the same folder, then a rename):

- ``runs/cv/<experiment>-<dataset>/plan.json``: which run folder trains each fold
  (:class:`CVPlan`), so that re-running ``make cv`` or a requeued SLURM task finds them again;
- ``<run folder>/predictions-<last|best>.csv``: one fold's predictions;
- ``runs/cv/<experiment>-<dataset>/predictions.csv``, ``report.json``, ``report.md`` and
  ``per_au.png``: the aggregated predictions and their report (docs/cluster.md, "Outputs");
- with ``make cv SEEDS=n`` (n > 1), ``predictions-seed<s>.csv`` beside them: the aggregated
  predictions of seed s's runs (``predictions.csv`` is seed 0's). Each seed is one complete
  cross-validation, scored as above; the report gives the mean of the seeds' figures and their
  spread (``report["seeds"]``), and its intervals are those of the seed mean
  (:func:`aunet.evaluation.bootstrap.seed_mean_intervals`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
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
from aunet.cli.wandb_runs import logged_run_id, run_config, shared_config, start_evaluation_run
from aunet.evaluation.bootstrap import (
    DEFAULT_SETTINGS,
    BootstrapSettings,
    format_interval,
    seed_mean_intervals,
)
from aunet.files import (
    atomic_path,
    format_number,
    json_number,
    markdown_table,
    pyplot,
    save_figure,
    write_json_atomically,
    write_text_atomically,
)
from aunet.metrics import icc, mse
from aunet.runs import (
    CHECKPOINT_FOLDER,
    CONFIG_FILE,
    LAST_CHECKPOINT,
    best_checkpoint,
    has_finished,
    last_checkpoint,
)

if TYPE_CHECKING:
    from aunet.cli.wandb_runs import WandbMode
    from aunet.data.datamodule import AUDataModule

CV_ROOT = Path("runs/cv")
Checkpoint = Literal["last", "best"]
CHECKPOINTS: tuple[str, ...] = ("last", "best")
#: The columns that precede the per-AU pairs in every predictions file.
ID_COLUMNS = ("subject", "frame", "fold")


class CVError(RuntimeError):
    """A cross-validation that cannot go on as asked; the message names the file and the fix."""


#: How many training subjects a cross-validation's runs train on: None for an ordinary one
#: (every subject), else a point of the data-efficiency study (``make curve``): a count, or
#: ``"all"`` (every subject, under the study's settings).
TrainSubjects = int | Literal["all"] | None


def cv_folder(
    experiment: str, dataset: str, root: Path = CV_ROOT, train_subjects: TrainSubjects = None
) -> Path:
    """Where a cross-validation's plan and report live.

    ``runs/cv/<experiment>-<dataset>``, or ``...-subjects<n>`` for a point of the
    data-efficiency study (:data:`TrainSubjects`).
    """
    suffix = "" if train_subjects is None else f"-subjects{train_subjects}"
    return root / f"{experiment}-{dataset}{suffix}"


# --------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class CVTask:
    """One training run of a cross-validation.

    Args:
        task: 1-based position; the SLURM array index of the run.
        fold: the held-out fold (1-3), or None for a dataset's official partitions.
        run_dir: the run folder, fixed when the plan is made so that a re-run or a requeued
            job resumes the same run.
        seed: the repetition (``make cv SEEDS=n`` trains seeds 0 to n-1 of every fold); seed
            ``s`` fits with ``seed_everything`` s, seed 0 with the configs' own (0). Plans
            written before seeds have none: their tasks are seed 0.
    """

    task: int
    fold: int | None
    run_dir: str
    seed: int = 0

    @property
    def label(self) -> str:
        """``fold<k>`` or ``official``, with ``-seed<s>`` for seeds after 0."""
        name = "official" if self.fold is None else f"fold{self.fold}"
        return name if self.seed == 0 else f"{name}-seed{self.seed}"

    def finished(self) -> bool:
        """Whether the run's fit ended (``metrics.json`` is written at the end of a fit)."""
        return has_finished(self.run_dir)

    def predicted(self, checkpoint: Checkpoint) -> bool:
        """Whether the run has finished and its predictions file exists."""
        return self.finished() and predictions_file(self.run_dir, checkpoint).exists()


@dataclass(frozen=True)
class CVPlan:
    """What ``make cv`` runs: the experiment, its settings, and one :class:`CVTask` per fold.

    Args:
        experiment: the experiment (``experiments/<experiment>.yaml``).
        dataset: the dataset (``experiments/data/<dataset>.yaml``).
        fan: the FAN weights every fold's fit transfers from, if any.
        checkpoint: which checkpoint of each run predicts its held-out frames.
        extra: flags for every fold's ``aunet fit`` (``make cv ... ARGS=``).
        tasks: the runs: seed 0's in fold order, then each further seed's.
        train_subjects: None for an ordinary cross-validation; a point of the data-efficiency
            study trains on that many of each fold's training subjects (:data:`TrainSubjects`).
    """

    experiment: str
    dataset: str
    fan: str | None
    checkpoint: Checkpoint
    extra: tuple[str, ...]
    tasks: tuple[CVTask, ...]
    train_subjects: TrainSubjects = None

    @property
    def folder(self) -> Path:
        """``runs/cv/<experiment>-<dataset>`` (:func:`cv_folder`)."""
        return cv_folder(self.experiment, self.dataset, train_subjects=self.train_subjects)

    @property
    def path(self) -> Path:
        """The plan's file, ``<folder>/plan.json``."""
        return self.folder / "plan.json"

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds the plan trains, in order (``(0,)`` for one run per fold)."""
        return tuple(sorted({task.seed for task in self.tasks}))

    def tasks_of(self, seed: int) -> tuple[CVTask, ...]:
        """The tasks of one seed, in fold order: one complete cross-validation."""
        return tuple(task for task in self.tasks if task.seed == seed)

    def task(self, number: int) -> CVTask:
        """The task with this 1-based number.

        Raises:
            CVError: naming the plan file, for a number it does not hold.
        """
        for task in self.tasks:
            if task.task == number:
                return task
        known = ", ".join(str(task.task) for task in self.tasks)
        raise CVError(f"{self.path}: no task {number}; the plan has tasks {known}")

    def save(self) -> Path:
        """Write the plan to :attr:`path` (atomically) and return the path."""
        data = dataclasses.asdict(self)
        data["extra"] = list(self.extra)
        write_json_atomically(self.path, data)
        return self.path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CVPlan:
        """Read a plan written by :meth:`save`.

        Raises:
            CVError: naming the file, when it is not such a plan.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            tasks = tuple(CVTask(**task) for task in data.pop("tasks"))
            plan = cls(**{**data, "extra": tuple(data["extra"]), "tasks": tasks})
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise CVError(f"{path}: not a cross-validation plan ({error!r})") from None
        if plan.checkpoint not in CHECKPOINTS:
            raise CVError(f"{path}: checkpoint must be one of {CHECKPOINTS}")
        return plan


# --------------------------------------------------------------------------------------------
# Predictions


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
    """``checkpoints/last.ckpt``, or the run's best checkpoint (:mod:`aunet.run_checkpoints`).

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


# --------------------------------------------------------------------------------------------
# The report


def _mean_of_defined(values: torch.Tensor) -> float | None:
    """The mean over the AUs whose value is defined (as the training logs do), or None."""
    return float(values.nanmean()) if values.isfinite().any() else None


def score(predictions: Predictions) -> dict[str, Any]:
    """ICC(3,1) and MSE per AU and their means, on all rows of ``predictions`` together.

    Returns:
        ``{"icc": {"AU01": ...}, "mse": {...}, "icc_mean": ..., "mse_mean": ..., "frames": N}``;
        an undefined value (an AU never active, or never labelled) is None and the means skip it.
    """
    true = torch.from_numpy(predictions.true)
    pred = torch.from_numpy(predictions.pred)
    result: dict[str, Any] = {}
    for name, metric in (("icc", icc), ("mse", mse)):
        values = metric(pred, true)
        result[name] = {
            au: json_number(float(v)) for au, v in zip(predictions.au_names, values, strict=True)
        }
        result[f"{name}_mean"] = _mean_of_defined(values)
    result["frames"] = len(predictions)
    return result


def report_markdown(report: dict[str, Any], plan: CVPlan) -> str:
    """The report as Markdown: the per-AU table, then each run for reference."""
    if len(plan.tasks) > 1:
        scope = (
            f"on the aggregated out-of-fold predictions of {report['frames']} frames: each "
            "frame predicted by the model of the fold that held its subject out, all scored "
            "together (Sec. 5.1), not as a mean of fold scores."
        )
    else:
        partition = report["runs"][0]["held_out"]
        scope = (
            f"on the {report['frames']} frames of the official `{partition}` partition (the "
            "test partition, or devel where the store has none), predicted by one model."
        )
    bounds = report["intervals"]
    settings = bounds["bootstrap"]
    seeds = report.get("seeds")
    spread = seeds["spread"] if seeds else None
    lines = [
        f"# {plan.experiment} on {plan.dataset}: cross-validation report",
        "",
        f"ICC(3,1) and MSE per AU (Sec. 5.2) {scope}",
        f"Checkpoint: `{plan.checkpoint}`.",
        "",
    ]
    if seeds:
        lines += [
            f"Seeds: {seeds['count']}. Every fold was trained once per seed s = 0 to "
            f"{seeds['count'] - 1} (`--seed_everything s`; seed 0 with the configs' own seed); "
            "each seed's aggregated predictions are scored as above "
            "(`predictions.csv` is seed 0's, `predictions-seed<s>.csv` seed s's), and each "
            "figure is the mean of the seeds' figures, with the sample standard deviation "
            "(sd) and the range (min-max) over the seeds.",
            "",
        ]
    lines += [
        f"Intervals: {settings['level']:.0%} percentile intervals from a bootstrap over the "
        f"{settings['subjects']} subjects ({settings['resamples']} resamples, seed "
        f"{settings['seed']}; docs/experiments.md), n/a where the statistic is undefined in "
        "many resamples"
        + (
            ": each resample scores every seed's predictions on the same subjects and takes "
            "the mean over the seeds, so the interval is that of the seed mean."
            if seeds
            else "."
        ),
        "",
    ]
    metric_columns = ["sd", "min-max"] if spread else []
    header = ["AU", *(c for m in ("ICC", "MSE") for c in (m, *metric_columns, f"{m} interval"))]

    def cells(metric: str, au: str | None, value: str) -> list[str]:
        """A metric's value for an AU (None: the mean), its spread over seeds, its interval."""
        interval = format_interval(bounds[f"{metric}_mean"] if au is None else bounds[metric][au])
        if not spread:
            return [value, interval]
        figures = spread[f"{metric}_mean"] if au is None else spread[metric][au]
        span = (
            "n/a"
            if figures["min"] is None
            else f"{format_number(figures['min'])}-{format_number(figures['max'])}"
        )
        return [value, format_number(figures["sd"]), span, interval]

    rows = [
        [au, *cells("icc", au, format_number(report["icc"][au])),
         *cells("mse", au, format_number(report["mse"][au]))]
        for au in report["icc"]
    ]  # fmt: skip
    icc_mean, mse_mean = (f"**{format_number(report[key])}**" for key in ("icc_mean", "mse_mean"))
    rows.append(["**mean**", *cells("icc", None, icc_mean), *cells("mse", None, mse_mean)])
    lines += [markdown_table(header, rows, right=1), "", "![ICC and MSE per AU](per_au.png)", ""]
    if seeds:
        per_seed = [
            [str(entry["seed"]), format_number(entry["icc_mean"]),
             format_number(entry["mse_mean"]), f"`{entry['predictions']}`"]
            for entry in seeds["per_seed"]
        ]  # fmt: skip
        header = ["seed", "ICC mean", "MSE mean", "predictions"]
        lines += [markdown_table(header, per_seed), ""]
    runs = [
        [run["label"], str(run["frames"]), format_number(run["icc_mean"]), f"`{run['run_dir']}`"]
        for run in report["runs"]
    ]
    header = ["run", "frames", "ICC mean of this run alone", "folder"]
    lines += [
        markdown_table(header, runs, right=1),
        "",
        "Per-run means are for reference only: the figures above are computed on all frames "
        "together.",
        "",
    ]
    return "\n".join(lines)


def plot_per_au(path: Path, report: dict[str, Any], title: str) -> Path:
    """Bar charts of ICC and MSE per AU (undefined values left out), with their means. Atomic."""
    plt = pyplot()
    names = list(report["icc"])
    figure, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.9 * len(names) + 3), 3.6))
    for axis, metric, colour in zip(axes, ("icc", "mse"), ("tab:blue", "tab:orange"), strict=True):
        values = [np.nan if report[metric][au] is None else report[metric][au] for au in names]
        axis.bar(names, values, color=colour)
        mean = report[f"{metric}_mean"]
        if mean is not None:
            axis.axhline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
            axis.legend(loc="upper right", fontsize=8)
        axis.set_title(metric.upper())
        axis.tick_params(axis="x", labelrotation=90, labelsize=8)
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(min(0.0, axes[0].get_ylim()[0]), 1.0)  # ICC(3,1) may be negative
    return save_figure(figure, path, title)


def pooled_predictions_file(folder: Path, seed: int) -> Path:
    """``predictions.csv`` for seed 0 (the file before seeds), else ``predictions-seed<s>.csv``."""
    return folder / ("predictions.csv" if seed == 0 else f"predictions-seed{seed}.csv")


#: What :func:`spread` gives of a figure over seeds.
SPREAD_KEYS = ("mean", "sd", "min", "max")


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean, sample standard deviation (n - 1), min and max of a figure over two or more seeds.

    All None when a seed's figure is undefined: a mean over the other seeds would compare
    unlike things (and the bootstrap's seed mean is undefined there too).
    """
    if any(value is None for value in values):
        return dict.fromkeys(SPREAD_KEYS)
    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(array.mean()),
        "sd": float(array.std(ddof=1)),
        "min": float(array.min()),
        "max": float(array.max()),
    }


def seed_spread(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`spread` of every figure of :func:`score` over the seeds' scores."""
    result: dict[str, Any] = {}
    for metric in ("icc", "mse"):
        result[metric] = {au: spread([s[metric][au] for s in scores]) for au in scores[0][metric]}
        result[f"{metric}_mean"] = spread([s[f"{metric}_mean"] for s in scores])
    return result


def make_report(plan: CVPlan, bootstrap: BootstrapSettings = DEFAULT_SETTINGS) -> dict[str, Any]:
    """Aggregate every run's predictions, score them, and write the report files.

    Writes ``predictions.csv``, ``report.json``, ``report.md`` and ``per_au.png`` in
    :attr:`CVPlan.folder`; the report is computed from ``predictions.csv`` as written, so it
    equals :func:`aunet.metrics.icc` on that file. Every figure has its subject-bootstrap
    interval (``report["intervals"]``, :func:`aunet.evaluation.bootstrap.intervals`).

    A plan of several seeds also writes ``predictions-seed<s>.csv`` per further seed; each
    figure is then the mean over the seeds of that seed's figure on its own aggregated file,
    ``report["seeds"]`` holds each seed's figures and runs and the spread
    (:data:`SPREAD_KEYS`) over seeds, and the intervals are those of the seed mean
    (:func:`aunet.evaluation.bootstrap.seed_mean_intervals`).

    Raises:
        CVError: naming the run, when a run has not finished.
    """
    unfinished = [task for task in plan.tasks if not task.finished()]
    if unfinished:
        names = ", ".join(f"{task.label} ({task.run_dir})" for task in unfinished)
        raise CVError(
            f"not every run has finished: {names}; run `make cv` again to train what is missing"
        )
    parts = {
        task: read_predictions(run_predictions(task.run_dir, plan.checkpoint))
        for task in plan.tasks
    }
    pooled = []
    for seed in plan.seeds:
        target = pooled_predictions_file(plan.folder, seed)
        write_predictions(target, Predictions.concatenate([parts[t] for t in plan.tasks_of(seed)]))
        pooled.append(read_predictions(target))
    scores = [score(predictions) for predictions in pooled]
    spreads = seed_spread(scores) if len(scores) > 1 else None
    if spreads is None:
        report = scores[0]
    else:
        report = {
            "icc": {au: figures["mean"] for au, figures in spreads["icc"].items()},
            "mse": {au: figures["mean"] for au, figures in spreads["mse"].items()},
            "icc_mean": spreads["icc_mean"]["mean"],
            "mse_mean": spreads["mse_mean"]["mean"],
            "frames": scores[0]["frames"],
        }
    try:
        report["intervals"] = seed_mean_intervals(pooled, bootstrap)
    except ValueError as error:  # a store changed between seeds' runs
        raise CVError(f"{plan.folder}: {error}; re-run the seeds on one store") from None
    report.update(
        experiment=plan.experiment,
        dataset=plan.dataset,
        checkpoint=plan.checkpoint,
        runs=[
            {
                "label": task.label,
                "run_dir": task.run_dir,
                "frames": len(part),
                "held_out": ",".join(sorted(set(part.fold))),
                "icc_mean": score(part)["icc_mean"],
            }
            for task, part in parts.items()
        ],
    )
    if plan.train_subjects is not None:
        report["train_subjects"] = plan.train_subjects
    if spreads is not None:
        report["seeds"] = {
            "count": len(scores),
            "spread": spreads,
            "per_seed": [
                {
                    "seed": seed,
                    "predictions": pooled_predictions_file(plan.folder, seed).name,
                    "runs": [task.run_dir for task in plan.tasks_of(seed)],
                    **seed_score,
                }
                for seed, seed_score in zip(plan.seeds, scores, strict=True)
            ],
        }
    write_json_atomically(plan.folder / "report.json", report)
    write_text_atomically(plan.folder / "report.md", report_markdown(report, plan))
    title = (
        f"{plan.experiment} on {plan.dataset} ({report['frames']} frames, "
        f"{plan.checkpoint} checkpoint)"
    )
    plot_per_au(plan.folder / "per_au.png", report, title)
    return report


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


def log_report_to_wandb(
    plan: CVPlan, report: dict[str, Any], mode: WandbMode = "auto", project: str = "aunet"
) -> str | None:
    """Log the report to W&B as run ``<experiment>-<dataset>-cv`` in the folds' group.

    The run (job type ``cv-report``) holds:

    - its config: the experiment's resolved config, the settings on which every fold's
      ``config.yaml`` agrees (:func:`aunet.cli.wandb_runs.shared_config`), nested as the fold
      runs' own, so that parallel coordinates across experiments compare them with the
      figures below; the plan (``plan``); and each fold run's W&B id (``fold_runs``, by label);
    - the per-AU table (``cv/per_au``) and the bar chart;
    - every value in its summary (``cv/icc/AU01``, ..., ``cv/icc_mean``, ``cv/mse_mean``, and
      the means' intervals ``cv/icc_mean_low``/``_high``, ``cv/mse_mean_low``/``_high``); with
      several seeds also ``cv/seeds``, the means' spread over seeds (``cv/icc_mean_sd``,
      ``_min``, ``_max``, likewise for MSE) and each seed's (``cv/seed<s>/icc_mean``, ...);
    - the pooled predictions (``predictions.csv``: subject, frame, fold, true and predicted
      intensity per AU) as the W&B Table ``predictions`` (and each further seed's
      ``predictions-seed<s>.csv`` as ``predictions-seed<s>``) of an artifact
      ``<experiment>-<dataset>-predictions`` of type ``predictions``, which the run logs as its
      output: the run makes the pooled predictions, in W&B's single-run mode of creating an
      artifact version (a re-made report whose predictions changed adds a version).

    Its id is kept in ``<cv folder>/wandb_id``: re-making the report updates the same run.

    Args:
        plan: the cross-validation.
        report: what :func:`make_report` returned.
        mode: ``auto``/``online``/``offline`` as the ``run.wandb`` setting of ``aunet fit``
            (offline unless logged in); ``disabled`` or ``WANDB_MODE=disabled`` logs nothing.
        project: the W&B project (``run.wandb_project``).

    Returns:
        The W&B run's directory, or None when disabled.
    """
    fold_runs = {task.label: logged_run_id(task.run_dir) for task in plan.tasks}
    config = shared_config([run_config(task.run_dir) for task in plan.tasks])
    config.update(plan=dataclasses.asdict(plan), fold_runs=fold_runs)
    # A point of the data-efficiency study is named apart from the experiment's own report.
    name = "cv" if plan.train_subjects is None else f"cv-subjects{plan.train_subjects}"
    run = start_evaluation_run(
        plan.folder, plan.experiment, plan.dataset, "cv-report", name, config, mode, project
    )
    if run is None:
        return None
    import wandb

    rows = [[au, report["icc"][au], report["mse"][au]] for au in report["icc"]]
    run.log(
        {
            "cv/per_au": wandb.Table(columns=["AU", "ICC", "MSE"], data=rows),
            "cv/per_au_plot": wandb.Image(str(plan.folder / "per_au.png")),
        }
    )
    artifact = wandb.Artifact(
        f"{plan.experiment}-{plan.dataset}-predictions",
        type="predictions",
        description="Out-of-fold predictions: each frame by the model that held it out",
        metadata={
            "checkpoint": plan.checkpoint,
            "frames": report["frames"],
            "fold_runs": fold_runs,
        },
    )
    for seed in plan.seeds:
        path = pooled_predictions_file(plan.folder, seed)
        pooled = read_predictions(path)  # the file the report scored
        # W&B converts a Table cell by cell: 45 s for DISFA's 130,000 frames on 2 CPU cores.
        print(f"W&B: adding the {len(pooled)} pooled predictions of {path.name}", flush=True)
        artifact.add(predictions_table(pooled), path.stem)
    run.log_artifact(artifact)
    summary: dict[str, Any] = {
        f"cv/{name}/{au}": value for name in ("icc", "mse") for au, value in report[name].items()
    }
    summary.update({f"cv/{key}": report[key] for key in ("icc_mean", "mse_mean", "frames")})
    for key in ("icc_mean", "mse_mean"):  # the subject-bootstrap interval, for error bars
        low, high = report["intervals"][key] or (None, None)
        summary.update({f"cv/{key}_low": low, f"cv/{key}_high": high})
    seeds = report.get("seeds")
    if seeds:
        summary["cv/seeds"] = seeds["count"]
        for key in ("icc_mean", "mse_mean"):
            summary.update({f"cv/{key}_{k}": seeds["spread"][key][k] for k in ("sd", "min", "max")})
            summary.update({f"cv/seed{e['seed']}/{key}": e[key] for e in seeds["per_seed"]})
    run.summary.update(summary)
    directory = run.dir
    run.finish()
    return directory
