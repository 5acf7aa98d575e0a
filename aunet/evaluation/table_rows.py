"""The rows of ``make table``: each method's results, its paired comparison, its network.

A row is a method's cross-validation report (:class:`MethodResults`), its paired comparison with
the best row, and the network it was trained with (:class:`ModelCounter`); the paper's own rows
come from :mod:`aunet.evaluation.paper_results`. :mod:`aunet.evaluation.tables` renders them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aunet.evaluation import cv
from aunet.evaluation.bootstrap import (
    DEFAULT_SETTINGS,
    BootstrapSettings,
    paired_difference,
)
from aunet.evaluation.paper_results import (
    AVERAGE,
    PAPER_METHODS,
    PaperTable,
    paper_comparisons,
    paper_table,
)
from aunet.evaluation.predictions import Checkpoint, CVError, checkpoint_file, read_predictions
from aunet.models import Complexity, fan_layout_name, fan_of, measure

TABLES_ROOT = Path("runs/tables")


#: Rows aunet adds to the paper's: its Sec. 6.5 experiment, three ablations (docs/experiments.md).
AUNET_METHODS: tuple[tuple[str, str], ...] = (
    ("adapt_finetune", "Adaptation + fine-tuning"),
    ("fixed_sigma", "Scratch, fixed-size Gaussians"),
    ("reparam_bn", "Reparam. + BN trained"),
    ("adapt_1m", "Adaptation layers, ~1M"),
)


#: Table rows: the paper's methods in its order, then aunet's.
EXPERIMENT_ORDER: tuple[str, ...] = tuple(name for name, _ in (*PAPER_METHODS, *AUNET_METHODS))


METHOD_NAMES: dict[str, str] = dict((*PAPER_METHODS, *AUNET_METHODS))


#: The blocks a table can have: metric, its label, and whether higher is better. Table 2 has
#: ICC and MSE; aunet adds RMSE where the paper's errors are RMSE (FERA2017, Tables 3 and 6).
BLOCKS: tuple[tuple[str, str, bool], ...] = (
    ("icc", "ICC", True),
    ("mse", "MSE", False),
    ("rmse", "RMSE", False),
)


COMPLEXITY_COLUMNS = ("params", "trainable_params", "gflops", "image_size", "fan")


#: The hyperparameters that shape a run's network: runs that agree on them count alike.
ARCHITECTURE_HPARAMS = ("strategy", "au_names", "fan_config", "strategy_args")


NO_FAN = "none (ResNet-18)"


#: A table cell whose value is unknown.
UNKNOWN = "–"


class TableError(RuntimeError):
    """A table that cannot be built; the message names the file or the experiment."""


def table_folder(dataset: str, root: Path = TABLES_ROOT) -> Path:
    """``runs/tables/<dataset>``: where a dataset's table files go."""
    return root / dataset


def report_file(experiment: str, dataset: str, cv_root: Path = cv.CV_ROOT) -> Path:
    """The cross-validation report a table row is read from."""
    return cv.cv_folder(experiment, dataset, cv_root) / "report.json"


def order_experiments(experiments: Sequence[str]) -> list[str]:
    """``experiments`` without repeats, in the rows' order (:data:`EXPERIMENT_ORDER`).

    Raises:
        TableError: for a name that is not a table row (``fan`` is not: it predicts no AU).
    """
    unknown = sorted(set(experiments) - set(EXPERIMENT_ORDER))
    if unknown:
        raise TableError(
            f"no table row for {', '.join(unknown)}; the rows are: {', '.join(EXPERIMENT_ORDER)}"
        )
    return [name for name in EXPERIMENT_ORDER if name in experiments]


def report_seeds(path: Path) -> int:
    """How many seeds a ``report.json`` averages (1 before seeds); 0 if missing or unreadable."""
    try:
        report = json.loads(path.read_text())
        return int((report.get("seeds") or {}).get("count", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def missing_experiments(
    experiments: Sequence[str], dataset: str, cv_root: Path = cv.CV_ROOT, seeds: int = 1
) -> list[str]:
    """The experiments (in row order) without a cross-validation report of ``seeds`` seeds.

    A report of fewer seeds counts as missing: its cross-validation gains the other seeds.
    """
    return [
        name
        for name in order_experiments(experiments)
        if report_seeds(report_file(name, dataset, cv_root)) < seeds
    ]


@dataclass(frozen=True)
class MethodResults:
    """One method's ICC and errors per AU and on average: a row of each block of the table.

    Args:
        experiment: aunet's experiment name (for the paper's other works, their printed name).
        method: the row's name (the paper's).
        icc: AU -> ICC, and ``"avg"``; None where undefined.
        mse: AU -> MSE, and ``"avg"``; None where undefined; empty where not reported.
        rmse: AU -> RMSE, and ``"avg"``, likewise (aunet's: :func:`root_mean_squared`).
        frames: frames scored (None for the paper's rows).
        settings: the extra ``aunet fit`` flags the runs were trained with (``ARGS``).
        run_dirs: the run folders whose predictions were scored, one per fold.
        checkpoint: which checkpoint of each run predicted (``last`` or ``best``).
        partition: what was scored, as :attr:`aunet.evaluation.paper_results.PaperTable.partition`
            (``folds``, ``devel``, ``test``); None where the report does not say.
        intervals: ``icc`` and ``mse`` -> the subject-bootstrap interval of the average
            (:mod:`aunet.evaluation.bootstrap`); None where the report has none.
        predictions: the scored pooled predictions, for paired comparisons: ``predictions.csv``,
            then each further seed's ``predictions-seed<s>.csv``; empty where absent.
        seeds: how many seeds the report's figures are the mean of.
        spread: ``icc`` and ``mse`` -> the sample standard deviation of the average over the
            seeds; empty for one seed.
    """

    experiment: str
    method: str
    icc: dict[str, float | None]
    mse: dict[str, float | None]
    rmse: dict[str, float | None] = field(default_factory=dict)
    frames: int | None = None
    settings: str = ""
    run_dirs: tuple[str, ...] = ()
    checkpoint: Checkpoint = "last"
    partition: str | None = None
    intervals: dict[str, list[float] | None] = field(default_factory=dict)
    predictions: tuple[Path, ...] = ()
    seeds: int = 1
    spread: dict[str, float | None] = field(default_factory=dict)

    def block(self, name: str) -> dict[str, float | None]:
        """The values of block ``name`` (``icc``, ``mse`` or ``rmse``)."""
        return {"icc": self.icc, "mse": self.mse, "rmse": self.rmse}[name]


def root_mean_squared(mse: Mapping[str, float | None]) -> dict[str, float | None]:
    """Per-AU RMSE from per-AU MSE, and their mean over the AUs where it is defined.

    The paper's RMSE average (Tables 3 and 6) is the mean of the per-AU RMSEs, which is not
    the root of the mean MSE: by Jensen's inequality it is never larger, and it is smaller
    whenever the AUs' errors differ.
    """
    per_au = {
        au: None if value is None else math.sqrt(value)
        for au, value in mse.items()
        if au != AVERAGE
    }
    defined = [value for value in per_au.values() if value is not None]
    return {**per_au, AVERAGE: float(np.mean(defined)) if defined else None}


def _scored_partition(held_out: Sequence[str]) -> str | None:
    """``folds`` for held-out folds (``1``-``3``), else the one official partition scored."""
    if held_out and all(value.isdigit() for value in held_out):
        return "folds"
    return held_out[0] if len(set(held_out)) == 1 else None


def load_results(experiment: str, dataset: str, cv_root: Path = cv.CV_ROOT) -> MethodResults:
    """An experiment's row from its ``report.json`` (and its ARGS from ``plan.json``).

    Raises:
        TableError: naming the file, when it is missing or is not a cross-validation report.
    """
    path = report_file(experiment, dataset, cv_root)
    try:
        report = json.loads(path.read_text())
        icc = {**report["icc"], AVERAGE: report["icc_mean"]}
        mse = {**report["mse"], AVERAGE: report["mse_mean"]}
        frames = int(report["frames"])
        runs = report.get("runs", ())
        run_dirs = tuple(str(run["run_dir"]) for run in runs)
        partition = _scored_partition([str(run.get("held_out", "")) for run in runs])
        checkpoint = report.get("checkpoint", "last")
        bounds = report.get("intervals") or {}  # reports made before intervals have none
        intervals = {metric: bounds.get(f"{metric}_mean") for metric in ("icc", "mse")}
        seeds = report.get("seeds") or {"count": 1}
        spread = {
            metric: seeds["spread"][f"{metric}_mean"]["sd"]
            for metric in ("icc", "mse")
            if seeds["count"] > 1
        }
        pooled = [e["predictions"] for e in seeds.get("per_seed", ())] or ["predictions.csv"]
        count = int(seeds["count"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TableError(
            f"{path}: not a cross-validation report ({error!r}); run `make cv EXP={experiment} "
            f"DATA={dataset}`"
        ) from None
    plan_path = path.with_name("plan.json")
    settings = " ".join(cv.CVPlan.load(plan_path).extra) if plan_path.exists() else ""
    predictions = tuple(path.with_name(name) for name in pooled)
    return MethodResults(
        experiment,
        METHOD_NAMES[experiment],
        icc,
        mse,
        root_mean_squared(mse),
        frames,
        settings,
        run_dirs,
        checkpoint,
        partition,
        intervals,
        predictions if all(file.exists() for file in predictions) else (),
        count,
        spread,
    )


@dataclass(frozen=True)
class PairedWithBest:
    """The rows compared with the best one (:func:`paired_with_best`).

    Args:
        best: the experiment with the highest average ICC among rows with predictions.
        against_best: experiment -> :func:`aunet.evaluation.bootstrap.paired_difference` with
            the best.
    """

    best: str | None = None
    against_best: dict[str, dict[str, Any]] = field(default_factory=dict)


def paired_with_best(
    results: Sequence[MethodResults], settings: BootstrapSettings = DEFAULT_SETTINGS
) -> PairedWithBest:
    """Each row's average ICC against the best row's, paired over a bootstrap of subjects.

    The best is the highest average ICC among the rows with predictions; every other row with
    predictions of the same subjects gets :func:`aunet.evaluation.bootstrap.paired_difference` (its
    mean ICC minus the best's: negative, with an interval that excludes 0 when the gap is more
    than the luck of the subjects drawn). A row of several seeds is compared as its seed mean,
    the average the table prints, over every seed's pooled predictions.
    """
    scored = [r for r in results if r.predictions and r.icc.get(AVERAGE) is not None]
    if not scored:
        return PairedWithBest()
    best = max(scored, key=lambda r: r.icc[AVERAGE])
    reference = [read_predictions(path) for path in best.predictions]
    comparisons = {}
    for result in scored:
        if result is best:
            continue
        try:
            comparisons[result.experiment] = paired_difference(
                [read_predictions(path) for path in result.predictions], reference, settings
            )
        except ValueError:  # other subjects or AUs: not comparable frame for frame
            continue
    return PairedWithBest(best.experiment, comparisons)


def paper_results(table: PaperTable) -> list[MethodResults]:
    """The paper's rows of ``table`` as :class:`MethodResults`, in the printed order."""
    return [
        MethodResults(
            name,
            table.labels[name],
            icc=dict(values),
            **{"mse": {}, "rmse": {}, table.error_name: dict(table.error[name])},
        )
        for name, values in table.icc.items()
    ]


def table_blocks(dataset: str) -> tuple[str, ...]:
    """The blocks of aunet's rows on ``dataset``: ICC, MSE, and RMSE where the paper reports it."""
    papers = [table for table in (paper_table(dataset), *paper_comparisons(dataset)) if table]
    rmse = any(table.error_name == "rmse" for table in papers)
    return ("icc", "mse", "rmse") if rmse else ("icc", "mse")


@dataclass(frozen=True)
class RowModel:
    """The network behind a table row, as counted; ``cost`` is None where it is unknown.

    Args:
        cost: its parameters and FLOPs, at ``cost.image_size``.
        fan: the FAN layout inside it (:func:`aunet.models.fan_layout_name`), or
            :data:`NO_FAN`.
        unknown: why ``cost`` is None (no run folders in the report, a deleted checkpoint).
    """

    cost: Complexity | None
    fan: str = UNKNOWN
    unknown: str = ""


class ModelCounter:
    """Counts the networks of table rows, each distinct network once (:meth:`row_model`)."""

    def __init__(self) -> None:
        self._counted: dict[str, RowModel] = {}

    def row_model(self, result: MethodResults) -> RowModel:
        """The network the row's runs trained, rebuilt from their checkpoints and counted.

        Raises:
            TableError: naming the checkpoint, when it is not an aunet AU checkpoint, or when
                two folds of the row trained different networks.
        """
        if not result.run_dirs:
            return RowModel(None, unknown="its report names no run folders")
        counted: dict[str, tuple[Path, RowModel]] = {}
        for run_dir in result.run_dirs:
            try:
                path = checkpoint_file(Path(run_dir), result.checkpoint)
            except CVError:
                return RowModel(None, unknown=f"{run_dir} has no {result.checkpoint} checkpoint")
            key, model = self._count(path)
            counted.setdefault(key, (path, model))
        if len(counted) > 1:
            (first, _), (second, _) = list(counted.values())[:2]
            raise TableError(
                f"{result.experiment}: its folds trained different networks ({first} and "
                f"{second} differ in {', '.join(ARCHITECTURE_HPARAMS)} or image_size); re-run "
                "its cross-validation"
            )
        return next(iter(counted.values()))[1]

    def _count(self, path: Path) -> tuple[str, RowModel]:
        """``(architecture key, counted network)`` of one checkpoint, counted once per key."""
        # Imported here: only counting needs the inference module (and its OpenCV import).
        from aunet.inference.predictor import (
            CheckpointError,
            checkpoint_image_size,
            read_checkpoint,
            rebuild_module,
        )

        try:
            checkpoint = read_checkpoint(path, mmap=True)  # the hyperparameters, not the weights
            image_size = checkpoint_image_size(checkpoint, path)
            hparams = checkpoint["hyper_parameters"]
            shape = {name: hparams.get(name) for name in ARCHITECTURE_HPARAMS}
            key = json.dumps({**shape, "image_size": image_size}, sort_keys=True, default=str)
            if key not in self._counted:
                with torch.device("meta"):
                    network = rebuild_module(checkpoint, path, weights=False).model
                fan = fan_of(network)
                self._counted[key] = RowModel(
                    measure(network, image_size), fan_layout_name(fan) if fan else NO_FAN
                )
        except CheckpointError as error:
            raise TableError(str(error)) from None
        except ValueError as error:  # the saved input size does not fit the network
            raise TableError(f"{path}: cannot count the row's network: {error}") from None
        return key, self._counted[key]
