"""The data-efficiency study (``make curve``): held-out ICC against the AU-labelled subjects.

The paper's argument is about scarcity (Sec. 1, 4): AU labels exist for a few dozen subjects,
landmark labels for many thousands of faces, so a FAN trained on landmarks should carry over to
AUs when the AU labels are few. The study shows it as a curve: each experiment is
cross-validated with 1, 2, 4, 9 and all of each fold's training subjects, and the held-out ICC
of its pooled predictions (:mod:`aunet.evaluation.cv`, with the subject-bootstrap interval of
:mod:`aunet.evaluation.bootstrap`) is plotted against the number of training subjects, one line
per method.

How a point is trained (:class:`aunet.data.datamodule.AUDataModule`, ``train_subjects``):

- the subjects are the first n of a fixed random order of the fold's training subjects, one
  order per seed (:func:`aunet.data.folds.nested_subjects`), so a smaller set is a subset of
  every larger one and the curve adds faces rather than swapping them;
- their frames are repeated to the length of an epoch of all the subjects, so every point
  trains the same number of steps on the same schedule: only the number of labelled faces
  changes, not the compute;
- the held-out subjects, and so the frames each point is scored on, are those of the ordinary
  cross-validation.

Each point is a cross-validation of its own in ``runs/cv/<experiment>-<dataset>-subjects<n>``
(``...-subjectsall``) with its runs under ``runs/<experiment>/<dataset>/subjects<n>/``, so a
re-run trains only what is missing and ``make cv``'s runs and report are never touched. A
dataset may hold a reduced budget for the study in ``experiments/curve/<dataset>.yaml`` (an
``aunet fit`` config applied after the experiment's) and a reduced set of folds in
:data:`QUICK_FOLDS`; the synthetic default has both. The results:
``runs/curves/<dataset>/curve.csv``, ``curve.png``, ``curve.md`` and a W&B summary run of job
type ``curve``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aunet.evaluation import cv
from aunet.evaluation.bootstrap import format_interval
from aunet.files import atomic_path, markdown_table, pyplot, save_figure, write_csv

CURVES_ROOT = Path("runs/curves")
#: The study's settings per dataset: an ``aunet fit`` config applied after the experiment's.
SETTINGS_FOLDER = Path("experiments/curve")
#: The numbers of training subjects of the study (``all``: every training subject).
SIZES: tuple[int | str, ...] = (1, 2, 4, 9, "all")
#: The experiments of ``make curve`` without ``EXP``: scratch and three transfer strategies.
EXPERIMENTS = ("scratch", "finetune", "adapt", "reparam")
#: Folds a dataset's study trains by default where it is not all of them: the synthetic
#: default's reduced budget (fold 1 only, with ``experiments/curve/synthetic.yaml``) keeps the
#: whole study under an hour on two CPU cores. ``--folds 1 2 3`` trains every fold.
QUICK_FOLDS: Mapping[str, tuple[int, ...]] = {"synthetic": (1,)}


def study_folds(dataset: str, folds: Sequence[int] | None) -> tuple[int, ...] | None:
    """The folds asked for, else the dataset's :data:`QUICK_FOLDS`, else None (every fold)."""
    chosen = folds or QUICK_FOLDS.get(dataset)
    return tuple(chosen) if chosen else None


#: The columns of ``curve.csv``, one row per experiment and number of subjects.
COLUMNS = (
    "experiment", "train_subjects", "subjects", "icc_mean", "icc_low", "icc_high",
    "mse_mean", "mse_low", "mse_high", "seeds", "icc_sd", "frames", "report",
)  # fmt: skip


class CurveError(RuntimeError):
    """A study that cannot be built as asked; the message names the file and the fix."""


def parse_sizes(values: Sequence[str]) -> tuple[int | str, ...]:
    """``["1", "2", "all"]`` as ``(1, 2, "all")``: positive counts, ascending, then ``all``.

    Raises:
        CurveError: for a value that is neither a positive whole number nor ``all``, or a
            repeated one.
    """
    counts, every = [], False
    for value in values:
        if value == "all":
            every = True
        elif value.isdigit() and int(value) >= 1:
            counts.append(int(value))
        else:
            raise CurveError(f"SUBJECTS: {value!r} is not a number of subjects (1, 2, ...) or all")
    if len(set(counts)) != len(counts) or list(values).count("all") > 1:
        raise CurveError(f"SUBJECTS: {' '.join(values)} repeats a number of subjects")
    return (*sorted(counts), *(("all",) if every else ()))


def settings_flags(dataset: str) -> list[str]:
    """``--config experiments/curve/<dataset>.yaml`` where the dataset has study settings."""
    path = SETTINGS_FOLDER / f"{dataset}.yaml"
    return ["--config", str(path)] if path.exists() else []


def curve_folder(dataset: str, root: Path = CURVES_ROOT) -> Path:
    """``runs/curves/<dataset>``: where the study's files live."""
    return root / dataset


@dataclass(frozen=True)
class CurveFiles:
    """What :func:`build_curve` wrote, and the rows it wrote them from."""

    folder: Path
    csv: Path
    plot: Path
    markdown: Path
    rows: list[dict[str, Any]]


def _point_row(
    experiment: str, size: int | str, subjects: int, report: Mapping[str, Any], path: Path
) -> dict[str, Any]:
    icc_low, icc_high = report["intervals"]["icc_mean"] or (None, None)
    mse_low, mse_high = report["intervals"]["mse_mean"] or (None, None)
    seeds = report.get("seeds")
    return {
        "experiment": experiment,
        "train_subjects": str(size),
        "subjects": subjects,
        "icc_mean": report["icc_mean"],
        "icc_low": icc_low,
        "icc_high": icc_high,
        "mse_mean": report["mse_mean"],
        "mse_low": mse_low,
        "mse_high": mse_high,
        "seeds": seeds["count"] if seeds else 1,
        "icc_sd": seeds["spread"]["icc_mean"]["sd"] if seeds else None,
        "frames": report["frames"],
        "report": str(path),
    }


def load_rows(
    dataset: str,
    experiments: Sequence[str],
    sizes: Sequence[int | str],
    all_subjects: int,
    cv_root: Path = cv.CV_ROOT,
) -> tuple[list[dict[str, Any]], list[Path]]:
    """One row per point whose ``report.json`` exists, and the reports still missing.

    Args:
        dataset: the dataset.
        experiments: the methods, in the order of the table's rows.
        sizes: the numbers of training subjects (``all`` included as such).
        all_subjects: how many training subjects ``all`` is (a fold's), the plot's x there.
        cv_root: where the points' cross-validations live.
    """
    rows, missing = [], []
    for experiment in experiments:
        for size in sizes:
            path = cv.cv_folder(experiment, dataset, cv_root, size) / "report.json"
            if not path.exists():
                missing.append(path)
                continue
            report = json.loads(path.read_text())
            subjects = all_subjects if size == "all" else int(size)
            rows.append(_point_row(experiment, size, subjects, report, path))
    return rows, missing


def _cell(row: Mapping[str, Any]) -> str:
    value = row["icc_mean"]
    if value is None:
        return "–"
    return f"{value:.3f} {format_interval(_interval(row))}"


def _interval(row: Mapping[str, Any]) -> tuple[float, float] | None:
    if row["icc_low"] is None:
        return None
    return row["icc_low"], row["icc_high"]


def _column(label: str, subjects: int) -> str:
    if label == "all":
        return f"all ({subjects})"
    return f"{subjects} subject{'s' * (subjects != 1)}"


def render_markdown(
    dataset: str, rows: Sequence[Mapping[str, Any]], missing: Sequence[Path]
) -> str:
    """``curve.md``: held-out ICC [95% interval] by method (rows) and training subjects."""
    labels = list(dict.fromkeys((row["train_subjects"], row["subjects"]) for row in rows))
    labels.sort(key=lambda label: label[1])
    header = ["Method", *(_column(k, n) for k, n in labels)]
    by_point = {(row["experiment"], row["train_subjects"]): row for row in rows}
    table_rows = []
    for experiment in dict.fromkeys(row["experiment"] for row in rows):
        cells = [by_point.get((experiment, k)) for k, _ in labels]
        table_rows.append([experiment, *("–" if c is None else _cell(c) for c in cells)])
    lines = [
        f"# Data efficiency on {dataset}: held-out ICC against AU-labelled training subjects",
        "",
        "Mean ICC(3,1) over the AUs of each point's pooled out-of-fold predictions, with its 95% "
        "interval from a bootstrap over the held-out subjects (docs/experiments.md). Every point "
        "trains the same number of steps; only the number of training subjects changes.",
        "",
        markdown_table(header, table_rows, right=1),
    ]
    if missing:
        lines += ["", "Not run yet:", *(f"- {path}" for path in missing)]
    return "\n".join(lines) + "\n"


def plot_curve(path: Path, rows: Sequence[Mapping[str, Any]], title: str) -> Path:
    """ICC (with its interval as error bars) and MSE against training subjects. Atomic."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11.0, 4.5))
    experiments = list(dict.fromkeys(row["experiment"] for row in rows))
    colours = plt.get_cmap("tab10")
    for i, experiment in enumerate(experiments):
        points = sorted((r for r in rows if r["experiment"] == experiment),
                        key=lambda r: r["subjects"])  # fmt: skip
        x = np.array([r["subjects"] for r in points], dtype=float)
        for axis, metric in zip(axes, ("icc", "mse"), strict=True):
            y = np.array([_or_nan(r[f"{metric}_mean"]) for r in points])
            low = np.array([_or_nan(r[f"{metric}_low"]) for r in points])
            high = np.array([_or_nan(r[f"{metric}_high"]) for r in points])
            error = np.nan_to_num(np.stack((y - low, high - y)), nan=0.0)
            axis.errorbar(x, y, yerr=error, marker="o", capsize=3, color=colours(i % 10),
                          label=experiment)  # fmt: skip
    ticks = sorted({row["subjects"] for row in rows})
    for axis, label in zip(axes, ("mean ICC (higher is better)", "mean MSE (lower is better)"),
                           strict=True):  # fmt: skip
        axis.set_xscale("log", base=2)
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.minorticks_off()
        axis.set_xlabel("AU-labelled training subjects")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=9)
    return save_figure(figure, path, title)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def build_curve(
    dataset: str,
    experiments: Sequence[str],
    sizes: Sequence[int | str],
    all_subjects: int,
    cv_root: Path = cv.CV_ROOT,
    out_root: Path = CURVES_ROOT,
) -> CurveFiles:
    """Write ``curve.csv``, ``curve.png`` and ``curve.md`` from the points' reports.

    Raises:
        CurveError: when no point has a report yet.
    """
    rows, missing = load_rows(dataset, experiments, sizes, all_subjects, cv_root)
    if not rows:
        raise CurveError(
            f"no report of the study on {dataset} under {cv_root} (the first expected: "
            f"{missing[0]}); run `make curve DATA={dataset}` first"
        )
    folder = curve_folder(dataset, out_root)
    markdown = folder / "curve.md"
    with atomic_path(markdown) as temporary:
        temporary.write_text(render_markdown(dataset, rows, missing))
    frames = sorted({row["frames"] for row in rows})
    title = (
        f"Data efficiency on {dataset}: held-out ICC by training subjects "
        f"({'/'.join(map(str, frames))} frames scored, 95% subject-bootstrap intervals)"
    )
    return CurveFiles(
        folder,
        write_csv(folder / "curve.csv", rows),
        plot_curve(folder / "curve.png", rows, title),
        markdown,
        rows,
    )


def log_curve_to_wandb(
    files: CurveFiles, dataset: str, mode: str = "auto", project: str = "aunet"
) -> str | None:
    """Log the study as the summary run ``curve-<dataset>`` (job type ``curve``).

    The run holds ``curve/rows`` (the CSV as a W&B Table, for W&B's own line plots), the
    figure, and every point's mean ICC in its summary
    (``curve/icc_mean/<experiment>/subjects<n>``). Its id is kept in
    ``runs/curves/<dataset>/wandb_id``, so a re-made curve updates the same run.

    Returns:
        The W&B run's directory, or None when disabled.
    """
    from aunet.cli.wandb_runs import start_summary_run

    name = f"curve-{dataset}"
    run = start_summary_run(files.folder, mode, project, group=name, name=name,
                            job_type="curve", tags=[dataset, "curve"])  # fmt: skip
    if run is None:
        return None
    import wandb

    data = [[row[c] for c in COLUMNS] for row in files.rows]
    run.log(
        {
            "curve/rows": wandb.Table(columns=list(COLUMNS), data=data),
            "curve/plot": wandb.Image(str(files.plot)),
        }
    )
    run.summary.update(
        {
            f"curve/icc_mean/{row['experiment']}/subjects{row['train_subjects']}": row["icc_mean"]
            for row in files.rows
        }
    )
    directory = run.dir
    run.finish()
    return directory
