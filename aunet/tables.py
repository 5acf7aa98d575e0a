"""The paper's comparison tables from aunet's cross-validation reports (``make table``).

``make table DATA=<dataset>`` cross-validates every experiment (``make cv``) and then lays their
``runs/cv/<experiment>-<dataset>/report.json`` out as the paper's Table 2 (Table 3 for
FERA2017): one row per method in the paper's order, one column per AU and the average, an ICC
block and an MSE block, the best value of each column in bold (highest ICC, lowest MSE; ties,
at the printed precision, are all bold). Beside it go the complexity of Table 5 (parameters,
trainable parameters and GFLOPs from ``bench/results/complexity.json``) and the paper's own
numbers for the same dataset (:mod:`aunet.paper_results`; DISFA's for the synthetic faces,
which mimic DISFA).

Files, in ``runs/tables/<dataset>/``:

- ``table.md``: the tables above, then which settings (``ARGS``) each row was trained with;
- ``table.csv``: one row per (source, block, method): ``source`` (``aunet`` or ``paper``),
  ``block`` (``icc``/``mse``), ``experiment``, ``method``, the AU columns, ``avg``, ``best_in``
  (the columns where the row is best within its source and block, space-separated), ``params``,
  ``trainable_params``, ``gflops``; unrounded values, empty cells for unknown ones;
- ``table.png``: grouped bar charts of ICC and MSE per AU, one bar per method.

The average of a row is the report's ``icc_mean``/``mse_mean``: the mean over the AUs whose
value is defined, as the paper's "Avg." column.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aunet import cv
from aunet.data.folds import FOLD_DATASETS
from aunet.paper_results import AVERAGE, PAPER_METHODS, PAPER_TABLE_5, PaperTable, paper_table

TABLES_ROOT = Path("runs/tables")
COMPLEXITY_FILE = Path("bench/results/complexity.json")
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
#: The two blocks of Table 2: metric, its label, and whether higher is better.
BLOCKS: tuple[tuple[str, str, bool], ...] = (("icc", "ICC", True), ("mse", "MSE", False))
COMPLEXITY_COLUMNS = ("params", "trainable_params", "gflops")


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


def missing_experiments(
    experiments: Sequence[str], dataset: str, cv_root: Path = cv.CV_ROOT
) -> list[str]:
    """The experiments (in row order) whose cross-validation report does not exist yet."""
    return [
        name
        for name in order_experiments(experiments)
        if not report_file(name, dataset, cv_root).exists()
    ]


@dataclass(frozen=True)
class MethodResults:
    """One method's ICC and MSE per AU and on average: two rows of the table.

    Args:
        experiment: aunet's experiment name.
        method: the row's name (the paper's).
        icc: AU -> ICC, and ``"avg"``; None where undefined.
        mse: AU -> MSE, and ``"avg"``; None where undefined.
        frames: frames scored (None for the paper's rows).
        settings: the extra ``aunet fit`` flags the runs were trained with (``ARGS``).
    """

    experiment: str
    method: str
    icc: dict[str, float | None]
    mse: dict[str, float | None]
    frames: int | None = None
    settings: str = ""

    def block(self, name: str) -> dict[str, float | None]:
        """The ``icc`` or ``mse`` values."""
        return self.icc if name == "icc" else self.mse


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
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TableError(
            f"{path}: not a cross-validation report ({error!r}); run `make cv EXP={experiment} "
            f"DATA={dataset}`"
        ) from None
    plan_path = path.with_name("plan.json")
    settings = " ".join(cv.CVPlan.load(plan_path).extra) if plan_path.exists() else ""
    return MethodResults(experiment, METHOD_NAMES[experiment], icc, mse, frames, settings)


def paper_results(table: PaperTable) -> list[MethodResults]:
    """The paper's rows of ``table`` as :class:`MethodResults`, in the table's order."""
    return [
        MethodResults(name, METHOD_NAMES[name], dict(table.icc[name]), dict(table.mse[name]))
        for name in EXPERIMENT_ORDER
        if name in table.icc
    ]


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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 0) -> str:
    """A Markdown table; the columns from index ``right`` on are right-aligned (numbers)."""
    rule = ["---" if i < right else "---:" for i in range(len(header))]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _number(value: float | None, digits: int) -> str:
    """``value`` at ``digits`` decimals (never "-0.00"), or a dash when unknown."""
    return "–" if value is None else f"{round(value, digits) + 0.0:.{digits}f}"


def _blocks_table(results: Sequence[MethodResults], au_names: Sequence[str], digits: int) -> str:
    """Table 2's layout: an ICC block and an MSE block, the best of each column in bold."""
    columns = [*au_names, AVERAGE]
    rows = []
    for block, label, _ in BLOCKS:
        best = {column: best_experiments(results, block, column, digits) for column in columns}
        for i, result in enumerate(results):
            cells = []
            for column in columns:
                text = _number(result.block(block).get(column), digits)
                cells.append(f"**{text}**" if result.experiment in best[column] else text)
            rows.append([label if i == 0 else "", result.method, *cells])
    return markdown_table(["", "Method", *au_names, "Avg."], rows, right=2)


def load_complexity(path: Path = COMPLEXITY_FILE) -> dict[str, dict[str, Any]]:
    """``bench/results/complexity.json`` (``make bench-complexity``), or ``{}`` if missing."""
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise TableError(f"{path}: not JSON ({error}); re-run `make bench-complexity`") from None


def _millions(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e6:.2f}M"


def _complexity_table(
    results: Sequence[MethodResults],
    complexity: Mapping[str, Mapping[str, Any]],
    paper: PaperTable | None,
    digits: int,
) -> str:
    """Table 5's layout: parameters, FLOPs and average ICC, aunet's and the paper's."""
    paper_icc = {r.experiment: r.icc[AVERAGE] for r in paper_results(paper)} if paper else {}
    header = ["Method", "Params", "Trainable", "GFLOPs", "ICC Avg."]
    if paper:
        header += ["Paper: params", "Paper: GFLOPs", f"Paper: ICC ({paper.dataset})"]
    rows = []
    for result in results:
        measured = complexity.get(result.experiment, {})
        row = [
            result.method,
            _millions(measured.get("params")),
            _millions(measured.get("trainable_params")),
            _number(measured.get("gflops"), 2),
            _number(result.icc[AVERAGE], digits),
        ]
        if paper:
            printed = PAPER_TABLE_5.get(result.experiment)
            row += [
                _millions(printed.params) if printed else "–",
                _number(printed.flops / 1e9 if printed else None, 2),
                _number(paper_icc.get(result.experiment), 2),
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


def render_markdown(
    dataset: str,
    results: Sequence[MethodResults],
    au_names: Sequence[str],
    complexity: Mapping[str, Mapping[str, Any]],
    paper: PaperTable | None,
    missing: Sequence[str] = (),
    digits: int = 2,
) -> str:
    """The whole ``table.md``: Table 2 layout, Table 5 layout, the paper's table, the settings."""
    lines = [
        f"# aunet on {dataset}: every method, as the paper's Tables 2 and 3",
        "",
        f"ICC(3,1) and MSE per AU (Sec. 5.2), {_protocol(dataset)}, from "
        f"`runs/cv/<experiment>-{dataset}/report.json`. Best per column in **bold** (highest "
        f"ICC, lowest MSE, compared as printed).",
        "",
        _blocks_table(results, au_names, digits),
        "",
        "![ICC and MSE per AU and method](table.png)",
        "",
    ]
    if missing:
        lines += [f"Not run yet (no report): {', '.join(missing)}.", ""]
    lines += [
        "## Complexity (Table 5 layout)",
        "",
        "Parameters (all, and trainable: a frozen FAN counts in the first only) and GFLOPs of one "
        "256 x 256 image for 12 AUs, from `bench/results/complexity.json` "
        "(`make bench-complexity`: the paper-size models over `experiments/fan.yaml`'s FAN, "
        "whatever size the runs above were trained at), beside the average ICC above"
        + (f" and the paper's Table 5 with its {paper.dataset} ICC." if paper else "."),
        "",
        _complexity_table(results, complexity, paper, digits),
        "",
    ]
    if not complexity:
        lines += ["`bench/results/complexity.json` is missing: run `make bench-complexity`.", ""]
    if paper:
        lines += _paper_section(dataset, paper, digits)
    lines += [
        "## Settings",
        "",
        markdown_table(
            ["Experiment", "ARGS (extra `aunet fit` flags)", "Frames scored"],
            [
                [f"`{r.experiment}`", f"`{r.settings}`" if r.settings else "–", str(r.frames)]
                for r in results
            ],
            right=2,
        ),
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
    error = "" if paper.error_name == "MSE" else f" Its error block is {paper.error_name}."
    return [
        f"## The paper's numbers ({paper.source})",
        "",
        f"As printed (`aunet/paper_results.py`), best per column in bold.{caveat}{error}",
        "",
        _blocks_table(paper_results(paper), paper.au_names, min(digits, 2)),
        "",
    ]


def csv_rows(
    results: Sequence[MethodResults],
    au_names: Sequence[str],
    complexity: Mapping[str, Mapping[str, Any]],
    paper: PaperTable | None,
    digits: int = 2,
) -> list[dict[str, Any]]:
    """The rows of ``table.csv`` (see the module docstring), aunet's then the paper's."""
    columns = [*au_names, AVERAGE]
    sources: list[tuple[str, Sequence[MethodResults]]] = [("aunet", results)]
    if paper:
        sources.append((f"paper ({paper.source})", paper_results(paper)))
    rows = []
    for source, source_results in sources:
        for block, _, _ in BLOCKS:
            best = {c: best_experiments(source_results, block, c, digits) for c in columns}
            for result in source_results:
                measured = complexity.get(result.experiment, {}) if source == "aunet" else {}
                rows.append(
                    {
                        "source": source,
                        "block": block,
                        "experiment": result.experiment,
                        "method": result.method,
                        **{c: result.block(block).get(c) for c in columns},
                        "best_in": " ".join(c for c in columns if result.experiment in best[c]),
                        **{c: measured.get(c) for c in COMPLEXITY_COLUMNS},
                    }
                )
    return rows


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write dict rows as CSV (atomically); None and NaN are empty cells."""
    with cv.atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return path


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def plot_grouped_bars(
    path: Path, results: Sequence[MethodResults], au_names: Sequence[str], title: str
) -> Path:
    """ICC and MSE per AU and on average, one bar per method in each group. Atomic."""
    plt = cv.pyplot()

    columns = [*au_names, AVERAGE]
    positions = np.arange(len(columns))
    width = 0.85 / max(len(results), 1)
    figure, axes = plt.subplots(2, 1, figsize=(max(8.0, 1.2 * len(columns)), 7.0))
    colours = plt.get_cmap("tab10")
    for axis, (block, label, _) in zip(axes, BLOCKS, strict=True):
        for i, result in enumerate(results):
            values = [result.block(block).get(c) for c in columns]
            axis.bar(
                positions + (i - (len(results) - 1) / 2) * width,
                [np.nan if v is None else v for v in values],
                width,
                label=result.method,
                color=colours(i % 10),
            )
        axis.set_xticks(positions, [*au_names, "Avg."], fontsize=8)
        axis.set_ylabel(label)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=min(len(results), 4), loc="upper left")
    return cv.save_figure(figure, path, title)


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
    complexity_file: Path = COMPLEXITY_FILE,
    digits: int = 2,
) -> TableFiles:
    """Write ``table.md``, ``table.csv`` and ``table.png`` from the reports that exist.

    Experiments without a report are listed as not run yet.

    Raises:
        TableError: when no experiment has a report, or two reports score different AUs.
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
    complexity = load_complexity(complexity_file)
    paper = paper_table(dataset)
    folder = table_folder(dataset, out_root)
    markdown = folder / "table.md"
    with cv.atomic_path(markdown) as temporary:
        temporary.write_text(
            render_markdown(dataset, results, au_names, complexity, paper, missing, digits)
        )
    rows = csv_rows(results, au_names, complexity, paper, digits)
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
    from aunet.cli import start_summary_run

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
