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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aunet.evaluation import cv
from aunet.evaluation.paper_results import (
    AVERAGE,
    PaperTable,
    paper_comparisons,
    paper_table,
)
from aunet.evaluation.table_markdown import best_experiments, render_markdown
from aunet.evaluation.table_rows import (
    BLOCKS,
    EXPERIMENT_ORDER,
    TABLES_ROOT,
    MethodResults,
    ModelCounter,
    PairedWithBest,
    RowModel,
    TableError,
    load_results,
    missing_experiments,
    order_experiments,
    paired_with_best,
    paper_results,
    report_file,
    table_blocks,
    table_folder,
)
from aunet.files import atomic_path, pyplot, save_figure, write_csv


def csv_rows(
    results: Sequence[MethodResults],
    au_names: Sequence[str],
    models: Mapping[str, RowModel],
    paper: PaperTable | None,
    digits: int = 2,
    blocks: Sequence[str] = ("icc", "mse"),
    comparisons: Sequence[PaperTable] = (),
    paired: PairedWithBest | None = None,
) -> list[dict[str, Any]]:
    """The rows of ``table.csv`` (see the module docstring): aunet's, then each paper table's."""
    paired = paired or PairedWithBest()
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
