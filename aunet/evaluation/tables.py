"""The paper's comparison tables from aunet's cross-validation reports (``make table``).

``make table DATA=<dataset>`` cross-validates every experiment (``make cv``) and then lays their
``runs/cv/<experiment>-<dataset>/report.json`` out as the paper's Table 2 (Table 3 for
FERA2017): one row per method in the paper's order, one column per AU and the average, an ICC
block and an MSE block (and an RMSE block for FERA2017, whose errors the paper reports as RMSE),
the best value of each column in bold (highest ICC, lowest error; ties, at the printed
precision, are all bold). Beside it go the complexity of Table 5 and the paper's own numbers for
the same dataset (:mod:`aunet.evaluation.paper_results`; DISFA's for the synthetic faces, which
mimic DISFA): its Table 2 or 3, and its comparisons with earlier work (Tables 4, 6 and 7), where
aunet's rows of the same methods (``scratch``, ``resnet18``, ``adapt``) follow the paper's when
they scored the same partition.

The complexity of a row (parameters, trainable parameters, GFLOPs of one image) is that of the
network its runs trained: rebuilt from the hyperparameters each run's checkpoint saves
(``strategy``, ``fan_config``, ``strategy_args``, ``au_names``), at the input size it was trained
at (``image_size``), and counted by :mod:`aunet.models.complexity` on the ``meta`` device (no
weights read, nothing computed; each distinct network once). Its FAN layout (2DFAN-4, the light
FAN, ...) is named in the settings, so rows over different FANs show it.

Files, in ``runs/tables/<dataset>/``:

- ``table.md``: the tables above, then which settings (``ARGS``) each row was trained with;
- ``table.csv``: one row per (source, block, method): ``source`` (``aunet``, or ``paper
  (<table>)`` for each of the paper's tables shown), ``block`` (``icc``, ``mse``, ``rmse``),
  ``experiment`` (for the paper's other works, their printed name), ``method``, the AU columns,
  ``avg``, ``best_in``
  (the columns where the row is best within its source and block, space-separated),
  ``avg_low`` and ``avg_high`` (the average's 95% subject-bootstrap interval), ``seeds`` (how
  many seeds the row's report averages; empty for the paper's rows) and ``avg_sd`` (the sample
  standard deviation of the average over those seeds, empty for one), in the ICC block
  ``vs_best``, ``vs_best_low``, ``vs_best_high`` (the row's average ICC minus the best row's,
  paired over the same resamples of subjects, and its interval) and ``differs_from_best``
  (1 when that interval excludes 0), ``params``,
  ``trainable_params``, ``gflops``, ``image_size`` (the side GFLOPs are counted at), ``fan`` (the
  FAN layout of the row's network); unrounded values, empty cells for unknown ones;
- ``table.png``: grouped bar charts of ICC and MSE per AU, one bar per method.

The average of a row is the report's ``icc_mean``/``mse_mean``: the mean over the AUs whose
value is defined, as the paper's "Avg." column. A report of several seeds (``make table
SEEDS=n``) gives the mean over its seeds of each figure, and the table shows that mean, with
the spread over seeds beside it. An RMSE row is the square root of each AU's MSE
and, as Avg., the mean of those roots (:func:`root_mean_squared`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aunet.data.folds import FOLD_DATASETS
from aunet.evaluation import cv
from aunet.evaluation.bootstrap import (
    DEFAULT_SETTINGS,
    BootstrapSettings,
    format_interval,
    paired_difference,
)
from aunet.evaluation.paper_results import (
    AVERAGE,
    PAPER_METHODS,
    PAPER_TABLE_5,
    PaperTable,
    paper_comparisons,
    paper_table,
)
from aunet.files import atomic_path, format_number, markdown_table, pyplot, save_figure, write_csv
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
    checkpoint: cv.Checkpoint = "last"
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
    reference = [cv.read_predictions(path) for path in best.predictions]
    comparisons = {}
    for result in scored:
        if result is best:
            continue
        try:
            comparisons[result.experiment] = paired_difference(
                [cv.read_predictions(path) for path in result.predictions], reference, settings
            )
        except ValueError:  # other subjects or AUs: not comparable frame for frame
            continue
    return PairedWithBest(best.experiment, comparisons)


def _confidence_section(
    results: Sequence[MethodResults], paired: PairedWithBest, digits: int
) -> list[str]:
    """How sure each average is, and whether each row differs from the best beyond luck."""
    rows = []
    several = [r for r in results if r.seeds > 1]

    def average(r: MethodResults, metric: str) -> str:
        """The row's average, ``± sd`` over its seeds where it has several."""
        value = format_number(r.block(metric).get(AVERAGE), digits, UNKNOWN)
        sd = r.spread.get(metric)
        return value if sd is None else f"{value} ± {format_number(sd, digits + 1, UNKNOWN)}"

    for r in results:
        against = paired.against_best.get(r.experiment)
        if r.experiment == paired.best:
            gap, gap_interval, differs = "(best)", "", ""
        elif against is None:
            gap, gap_interval, differs = "n/a", "", ""
        else:
            gap = format_number(against["difference"], digits + 1, UNKNOWN)
            gap_interval = format_interval(against["interval"], digits + 1)
            differs = "yes" if against["excludes_zero"] else "no"
        rows.append([
            r.method, average(r, "icc"), format_interval(r.intervals.get("icc"), digits),
            average(r, "mse"), format_interval(r.intervals.get("mse"), digits), gap,
            gap_interval, differs,
        ])  # fmt: skip
    header = ["Method", "ICC Avg.", "95% interval", "MSE Avg.", "95% interval",
              "ICC Avg. - best's", "95% interval", "Differs from the best"]  # fmt: skip
    return [
        "## How sure: intervals and the paired comparison",
        "",
        "95% intervals from a bootstrap over subjects (frames of one subject are not "
        "independent; docs/experiments.md), from each report. The last columns compare each "
        'row with the best average ICC on the same resamples of subjects: "yes" where the '
        "interval of the difference excludes 0. n/a: a report made before intervals, or no "
        "predictions of the same subjects.",
        "",
        *(
            [
                "Seeds: "
                + ", ".join(f"{r.method} {r.seeds}" for r in results)
                + ". A row of several seeds gives the mean over its seeds of each figure "
                "(every table here), ± the sample standard deviation over them here; its "
                "interval and its paired comparison are those of the seed mean, over every "
                "seed's predictions on the same resamples of subjects.",
                "",
            ]
            if several
            else []
        ),
        markdown_table(header, rows, right=1),
        "",
    ]


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


def best_experiments(
    results: Sequence[MethodResults], block: str, column: str, digits: int
) -> set[str]:
    """The experiments whose value in ``column`` is the best of ``results`` as printed.

    Best is the highest ICC or the lowest MSE, compared at ``digits`` decimals (so equal printed
    values are all best, as a reader of the table sees them); unknown values never are.
    """
    higher_is_better = dict((name, high) for name, _, high in BLOCKS)[block]
    printed = {
        r.experiment: round(value, digits)
        for r in results
        if (value := r.block(block).get(column)) is not None
    }
    if not printed:
        return set()
    best = max(printed.values()) if higher_is_better else min(printed.values())
    return {name for name, value in printed.items() if value == best}


def _blocks_table(
    results: Sequence[MethodResults],
    au_names: Sequence[str],
    digits: int,
    blocks: Sequence[str],
    unranked: Sequence[MethodResults] = (),
) -> str:
    """Table 2's layout: a block of rows per metric, the best of each column in bold.

    ``unranked`` rows follow ``results`` in each block and are never bold (aunet's rows under
    the paper's, which are ranked as printed).
    """
    columns = [*au_names, AVERAGE]
    labels = {name: label for name, label, _ in BLOCKS}
    rows = []
    for block in blocks:
        best = {column: best_experiments(results, block, column, digits) for column in columns}
        for i, result in enumerate([*results, *unranked]):
            cells = []
            for column in columns:
                text = format_number(result.block(block).get(column), digits, UNKNOWN)
                ranked = i < len(results) and result.experiment in best[column]
                cells.append(f"**{text}**" if ranked else text)
            rows.append([labels[block] if i == 0 else "", result.method, *cells])
    return markdown_table(["", "Method", *au_names, "Avg."], rows, right=2)


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
                path = cv.checkpoint_file(Path(run_dir), result.checkpoint)
            except cv.CVError:
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


def _millions(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value / 1e6:.2f}M"


def _complexity_table(
    results: Sequence[MethodResults],
    models: Mapping[str, RowModel],
    paper: PaperTable | None,
    digits: int,
) -> str:
    """Table 5's layout: parameters, FLOPs and average ICC, aunet's and the paper's."""
    paper_icc = {r.experiment: r.icc[AVERAGE] for r in paper_results(paper)} if paper else {}
    header = ["Method", "Input", "Params", "Trainable", "GFLOPs", "ICC Avg."]
    if paper:
        header += ["Paper: params", "Paper: GFLOPs", f"Paper: ICC ({paper.dataset})"]
    rows = []
    for result in results:
        cost = models[result.experiment].cost
        size = cost.image_size if cost else None
        row = [
            result.method,
            UNKNOWN if size is None else f"{size} px",
            _millions(cost.params if cost else None),
            _millions(cost.trainable_params if cost else None),
            format_number(cost.gflops if cost else None, 2, UNKNOWN),
            format_number(result.icc[AVERAGE], digits, UNKNOWN),
        ]
        if paper:
            printed = PAPER_TABLE_5.get(result.experiment)
            row += [
                _millions(printed.params) if printed else UNKNOWN,
                format_number(printed.flops / 1e9 if printed else None, 2, UNKNOWN),
                format_number(paper_icc.get(result.experiment), 2, UNKNOWN),
            ]
        rows.append(row)
    return markdown_table(header, rows, right=1)


def _protocol(dataset: str) -> str:
    if dataset in FOLD_DATASETS:
        return (
            "three-fold subject-exclusive cross-validation, each metric computed once on the "
            "aggregated out-of-fold predictions (Sec. 5.1)"
        )
    return (
        "official partitions: trained on `train`, scored on `test` (on `devel` where the store "
        "has no test partition, as FERA2015's public release)"
    )


def _complexity_notes(
    results: Sequence[MethodResults], models: Mapping[str, RowModel]
) -> list[str]:
    """What the complexity block's reader must know: which FANs, what is unknown, and why."""
    layouts: dict[str, list[str]] = {}
    for result in results:
        fan = models[result.experiment].fan
        if fan not in (NO_FAN, UNKNOWN):
            layouts.setdefault(fan, []).append(f"`{result.experiment}`")
    notes = []
    if len(layouts) == 1:
        notes.append(f"The FAN in every row's network has one layout: {next(iter(layouts))}.")
    elif layouts:
        named = "; ".join(f"{fan}: {', '.join(names)}" for fan, names in layouts.items())
        notes.append(
            f"**The rows run over different FAN layouts** ({named}; see Settings), so their "
            "costs differ by that too."
        )
    if "adapt_finetune" in models:
        notes.append(
            "Adaptation + fine-tuning: trainable in its first stage; once it unfreezes the FAN "
            "(`UnfreezeBackbone`), every parameter trains."
        )
    notes += [
        f"{r.method}: not counted, {models[r.experiment].unknown}."
        for r in results
        if models[r.experiment].cost is None
    ]
    return [" ".join(notes), ""] if notes else []


def render_markdown(
    dataset: str,
    results: Sequence[MethodResults],
    au_names: Sequence[str],
    models: Mapping[str, RowModel],
    paper: PaperTable | None,
    missing: Sequence[str] = (),
    digits: int = 2,
    comparisons: Sequence[PaperTable] = (),
    paired: PairedWithBest = PairedWithBest(),
) -> str:
    """The whole ``table.md``: Table 2's layout, intervals, Table 5's, the paper's, settings."""
    blocks = table_blocks(dataset)
    rmse = (
        " RMSE is the square root of each AU's MSE, as the paper's FERA2017 errors (Sec. 7.3); "
        "its Avg. is the mean of those roots, as the paper averages them, which is not the "
        "root of the MSE Avg."
        if "rmse" in blocks
        else ""
    )
    lines = [
        f"# aunet on {dataset}: every method, as the paper's Tables 2 and 3",
        "",
        f"ICC(3,1){', MSE and RMSE' if 'rmse' in blocks else ' and MSE'} per AU (Sec. 5.2), "
        f"{_protocol(dataset)}, from `runs/cv/<experiment>-{dataset}/report.json`. Best per "
        f"column in **bold** (highest ICC, lowest error, compared as printed).{rmse}",
        "",
        _blocks_table(results, au_names, digits, blocks),
        "",
        "![ICC and MSE per AU and method](table.png)",
        "",
        *_confidence_section(results, paired, digits),
    ]
    if missing:
        lines += [f"Not run yet (no report): {', '.join(missing)}.", ""]
    lines += [
        "## Complexity (Table 5 layout)",
        "",
        "Parameters (all, and trainable: a frozen FAN counts in the first only) and GFLOPs of one "
        "image at the row's own input size (Input), of the network each row trained: rebuilt "
        "from its runs' checkpoints (strategy, FAN layout, options and AUs as saved; "
        "reparametrisation folded) and counted by `aunet/models/complexity.py`. Beside them, the "
        "average ICC above"
        + (
            f" and the paper's Table 5 (256 x 256 images over its light FAN) with its "
            f"{paper.dataset} ICC."
            if paper
            else "."
        ),
        "",
        _complexity_table(results, models, paper, digits),
        "",
        *_complexity_notes(results, models),
    ]
    if paper:
        lines += _paper_section(dataset, paper, digits)
    for comparison in comparisons:
        lines += _comparison_section(comparison, results, digits)
    lines += [
        "## Settings",
        "",
        markdown_table(
            ["Experiment", "FAN", "ARGS (extra `aunet fit` flags)", "Frames scored"],
            [
                [
                    f"`{r.experiment}`",
                    models[r.experiment].fan,
                    f"`{r.settings}`" if r.settings else UNKNOWN,
                    str(r.frames),
                ]
                for r in results
            ],
            right=3,
        ),
        "",
        "FAN: the layout of the FAN inside each row's network, read from its checkpoints: the "
        "backbone it transferred from (frozen, or fine-tuned), or, trained from scratch, the "
        "AU-Net's own.",
        "",
    ]
    return "\n".join(lines)


def _paper_section(dataset: str, paper: PaperTable, digits: int) -> list[str]:
    caveat = (
        " They are measured on real DISFA faces, not on these synthetic ones: compare the "
        "ordering of the methods, not the values."
        if paper.dataset != dataset and dataset == "synthetic"
        else ""
    )
    error = (
        f" Its error block is {paper.error_name.upper()} ({paper.error_label})."
        if paper.error_label
        else ""
    )
    return [
        f"## The paper's numbers ({paper.source})",
        "",
        "As printed (`aunet/evaluation/paper_results.py`), best per column in bold."
        f"{caveat}{error}",
        "",
        _blocks_table(
            paper_results(paper), paper.au_names, min(digits, 2), ("icc", paper.error_name)
        ),
        "",
    ]


def _comparison_section(
    table: PaperTable, results: Sequence[MethodResults], digits: int
) -> list[str]:
    """A table of the paper against earlier work, with aunet's rows of the same methods below.

    aunet's rows join only when they scored what the paper's did (the same partition).
    """
    printed = {r.experiment: r for r in paper_results(table)}
    matching = [r for r in results if r.experiment in printed]
    ours = [
        replace(r, method=f"aunet: {r.method} (as {printed[r.experiment].method})")
        for r in matching
        if r.partition == table.partition
    ]
    if ours:
        below = "Below them, aunet's rows of the same methods, on the same partition (not ranked)."
    elif matching:
        scored = ", ".join(sorted({str(r.partition) for r in matching}))
        below = (
            f"aunet's rows of its methods are not shown: they scored {scored}, this table "
            f"{table.partition}."
        )
    else:
        below = ""
    return [
        f"## The paper against earlier work ({table.source})",
        "",
        "As printed (`aunet/evaluation/paper_results.py`), best per column in bold among the "
        "paper's rows: "
        f"(*) results the paper quotes from the reference, † its in-house reproductions, "
        f'"Ours" its adaptation layers; – not reported. {below}'.rstrip(),
        "",
        _blocks_table(
            list(printed.values()),
            table.au_names,
            min(digits, 2),
            ("icc", table.error_name),
            unranked=ours,
        ),
        "",
    ]


def csv_rows(
    results: Sequence[MethodResults],
    au_names: Sequence[str],
    models: Mapping[str, RowModel],
    paper: PaperTable | None,
    digits: int = 2,
    blocks: Sequence[str] = ("icc", "mse"),
    comparisons: Sequence[PaperTable] = (),
    paired: PairedWithBest = PairedWithBest(),
) -> list[dict[str, Any]]:
    """The rows of ``table.csv`` (see the module docstring): aunet's, then each paper table's."""
    columns = [*au_names, AVERAGE]
    sources: list[tuple[str, Sequence[MethodResults], Sequence[str]]] = [("aunet", results, blocks)]
    for table in (paper, *comparisons) if paper else comparisons:
        sources.append((f"paper ({table.source})", paper_results(table), ("icc", table.error_name)))
    rows = []
    for source, source_results, source_blocks in sources:
        for block in source_blocks:
            best = {c: best_experiments(source_results, block, c, digits) for c in columns}
            for result in source_results:
                model = models[result.experiment] if source == "aunet" else RowModel(None)
                rows.append(
                    {
                        "source": source,
                        "block": block,
                        "experiment": result.experiment,
                        "method": result.method,
                        **{c: result.block(block).get(c) for c in columns},
                        "best_in": " ".join(c for c in columns if result.experiment in best[c]),
                        **_interval_cells(result, block, paired),
                        **_complexity_cells(model),
                    }
                )
    return rows


def _interval_cells(result: MethodResults, block: str, paired: PairedWithBest) -> dict[str, Any]:
    """The interval columns of a CSV row: the average's, and in the ICC block the comparison."""
    interval = result.intervals.get(block) or (None, None)
    against = paired.against_best.get(result.experiment) if block == "icc" else None
    gap = against["interval"] if against and against["interval"] else (None, None)
    return {
        "avg_low": interval[0],
        "avg_high": interval[1],
        "seeds": result.seeds if result.frames is not None else None,  # None: a paper row
        "avg_sd": result.spread.get(block),
        "vs_best": against["difference"] if against else None,
        "vs_best_low": gap[0],
        "vs_best_high": gap[1],
        "differs_from_best": (int(against["excludes_zero"]) if against else None),
    }


def _complexity_cells(model: RowModel) -> dict[str, Any]:
    """The :data:`COMPLEXITY_COLUMNS` of a CSV row (None where unknown)."""
    cost = model.cost
    return {
        "params": cost.params if cost else None,
        "trainable_params": cost.trainable_params if cost else None,
        "gflops": cost.gflops if cost else None,
        "image_size": cost.image_size if cost else None,
        "fan": model.fan if cost else None,
    }


def plot_grouped_bars(
    path: Path, results: Sequence[MethodResults], au_names: Sequence[str], title: str
) -> Path:
    """ICC and MSE per AU and on average, one bar per method in each group. Atomic.

    The methods' legend sits above the ICC chart, outside both charts, so that it covers no bar
    however tall (inside, it hid the tallest ones).
    """
    plt = pyplot()

    columns = [*au_names, AVERAGE]
    positions = np.arange(len(columns))
    width = 0.85 / max(len(results), 1)
    legend_columns = max(1, min(len(results), 4))
    legend_rows = -(-len(results) // legend_columns)
    figure, axes = plt.subplots(
        2, 1, figsize=(max(8.0, 1.2 * len(columns)), 7.0 + 0.25 * legend_rows)
    )
    # Ten colours hold all but the full table (11 rows), which gets twenty (light, dark pairs).
    colours = plt.get_cmap("tab10" if len(results) <= 10 else "tab20")
    for axis, (block, label, higher_is_better) in zip(axes, BLOCKS[:2], strict=True):
        for i, result in enumerate(results):
            values = [result.block(block).get(c) for c in columns]
            axis.bar(
                positions + (i - (len(results) - 1) / 2) * width,
                [np.nan if v is None else v for v in values],
                width,
                label=result.method,
                color=colours(i),
            )
        axis.set_xticks(positions, [*au_names, "Avg."], fontsize=10)
        axis.tick_params(axis="y", labelsize=9)
        better = "higher" if higher_is_better else "lower"
        axis.set_ylabel(f"{label} ({better} is better)", fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    # Anchored to the ICC chart's top edge, from outside: tight_layout then makes room for it.
    axes[0].legend(
        fontsize=9, ncol=legend_columns, loc="lower center", bbox_to_anchor=(0.5, 1.02),
        frameon=False,
    )  # fmt: skip
    return save_figure(figure, path, title)


@dataclass(frozen=True)
class TableFiles:
    """What :func:`build_table` wrote, and the rows it wrote them from."""

    folder: Path
    markdown: Path
    csv: Path
    plot: Path
    rows: list[dict[str, Any]]


def build_table(
    dataset: str,
    experiments: Sequence[str] = EXPERIMENT_ORDER,
    cv_root: Path = cv.CV_ROOT,
    out_root: Path = TABLES_ROOT,
    digits: int = 2,
) -> TableFiles:
    """Write ``table.md``, ``table.csv`` and ``table.png`` from the reports that exist.

    Experiments without a report are listed as not run yet.

    Raises:
        TableError: when no experiment has a report, two reports score different AUs, or a
            row's checkpoint cannot be counted (see :meth:`ModelCounter.row_model`).
    """
    ordered = order_experiments(experiments)
    missing = missing_experiments(ordered, dataset, cv_root)
    results = [load_results(name, dataset, cv_root) for name in ordered if name not in missing]
    if not results:
        raise TableError(
            f"no cross-validation report for {dataset} under {cv_root}; run `make table "
            f"DATA={dataset}` (or `make cv EXP=... DATA={dataset}`) first"
        )
    au_names = [name for name in results[0].icc if name != AVERAGE]
    for result in results[1:]:
        if [name for name in result.icc if name != AVERAGE] != au_names:
            raise TableError(
                f"{report_file(result.experiment, dataset, cv_root)} scores other AUs than "
                f"{report_file(results[0].experiment, dataset, cv_root)}; re-run one of them"
            )
    counter = ModelCounter()
    models = {result.experiment: counter.row_model(result) for result in results}
    paper = paper_table(dataset)
    comparisons = paper_comparisons(dataset)
    folder = table_folder(dataset, out_root)
    markdown = folder / "table.md"
    paired = paired_with_best(results)
    with atomic_path(markdown) as temporary:
        temporary.write_text(
            render_markdown(
                dataset, results, au_names, models, paper, missing, digits, comparisons, paired
            )
        )
    rows = csv_rows(
        results, au_names, models, paper, digits, table_blocks(dataset), comparisons, paired
    )
    title = f"aunet on {dataset}: ICC and MSE per AU ({len(results)} methods)"
    return TableFiles(
        folder,
        markdown,
        write_csv(folder / "table.csv", rows),
        plot_grouped_bars(folder / "table.png", results, au_names, title),
        rows,
    )


def log_table_to_wandb(
    files: TableFiles, dataset: str, mode: str = "auto", project: str = "aunet"
) -> str | None:
    """Log the table to W&B as the summary run ``table-<dataset>`` (group ``table-<dataset>``).

    The run holds ``table/rows`` (the CSV as a W&B Table), the bar chart, and each method's
    average ICC and MSE in its summary (``table/icc_mean/<experiment>``, ...). Its id is kept in
    ``runs/tables/<dataset>/wandb_id``, so a re-made table updates the same run.

    Args:
        files: what :func:`build_table` returned.
        dataset: the dataset.
        mode: ``auto``/``online``/``offline`` as ``run.wandb`` (offline unless logged in);
            ``disabled`` or ``WANDB_MODE=disabled`` logs nothing.
        project: the W&B project.

    Returns:
        The W&B run's directory, or None when disabled.
    """
    from aunet.cli.wandb_runs import start_summary_run

    name = f"table-{dataset}"
    run = start_summary_run(
        files.folder,
        mode,
        project,
        group=name,
        name=name,
        job_type="table",
        tags=[dataset, "table"],
    )
    if run is None:
        return None
    import wandb

    columns = list(files.rows[0])
    data = [[row[c] for c in columns] for row in files.rows]
    run.log(
        {
            "table/rows": wandb.Table(columns=columns, data=data),
            "table/plot": wandb.Image(str(files.plot)),
        }
    )
    run.summary.update(
        {
            f"table/{row['block']}_mean/{row['experiment']}": row[AVERAGE]
            for row in files.rows
            if row["source"] == "aunet"
        }
    )
    directory = run.dir
    run.finish()
    return directory
