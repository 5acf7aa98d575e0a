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

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from aunet.cli.wandb_runs import logged_run_id, run_config, shared_config, start_evaluation_run
from aunet.evaluation.bootstrap import (
    DEFAULT_SETTINGS,
    BootstrapSettings,
    seed_mean_intervals,
)
from aunet.evaluation.cv_files import plot_per_au, report_markdown
from aunet.evaluation.predictions import (
    CHECKPOINTS,
    Checkpoint,
    CVError,
    Predictions,
    predictions_file,
    predictions_table,
    read_predictions,
    run_predictions,
    write_predictions,
)
from aunet.files import (
    json_number,
    write_json_atomically,
    write_text_atomically,
)
from aunet.metrics import icc, mse
from aunet.runs import (
    has_finished,
)

if TYPE_CHECKING:
    from aunet.cli.wandb_runs import WandbMode

CV_ROOT = Path("runs/cv")


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
