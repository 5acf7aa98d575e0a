"""Training here: one run (``make train``), and a cross-validation's plan and runs (``make cv``)."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from aunet import progress
from aunet.data.folds import FOLD_DATASETS, NUM_FOLDS
from aunet.evaluation import cv
from aunet.evaluation.bootstrap import format_interval
from aunet.evaluation.predictions import run_predictions
from aunet.files import format_number
from aunet.launch import configs
from aunet.launch.configs import LaunchError, config_files, executable, wandb_settings
from aunet.launch.inputs import prepare_inputs
from aunet.runs import (
    METRICS_FILE,
    new_run_folder,
    resume_checkpoint,
    run_root,
)

#: The stages of ``make train``, one progress line each.
TRAIN_STAGES = ("stores", "FAN", "training", "report")


#: What ``make cv`` prepares before its runs (each run then prints its own line).
CV_STAGES = ("stores", "FAN")


def resumable_run(root: Path) -> Path:
    """The newest run folder under ``root`` that has a checkpoint to continue from."""
    candidates = sorted(p for p in root.glob("*") if resume_checkpoint(p) is not None)
    if not candidates:
        raise LaunchError(f"nothing to resume: no {root}/<timestamp>/checkpoints/last.ckpt")
    return candidates[-1]


def fit_command(
    experiment: str,
    dataset: str,
    fold: int | None,
    fan: str | None,
    run_dir: Path,
    extra: Sequence[str],
) -> list[str]:
    """The ``aunet fit`` command of one run, continuing from its checkpoint if it has one."""
    command = [executable("aunet"), "fit"]
    for config in config_files(experiment, dataset):
        command += ["--config", str(config)]
    command += ["--run.dir", str(run_dir), "--run.experiment", experiment]
    if fold is not None:
        command += ["--data.fold", str(fold)]
    if fan is not None:
        command += ["--model.fan", fan]
    checkpoint = resume_checkpoint(run_dir)
    if checkpoint is not None:  # RESUME=1, a re-run, or a requeued job whose folder has one
        command += ["--ckpt_path", str(checkpoint)]
    return command + list(extra)


def train(
    experiment: str,
    dataset: str,
    fold: int | None,
    fan: str | None,
    resume: bool,
    extra: list[str],
    run_dir: Path | None = None,
) -> Path:
    """Train one experiment on one dataset (one fold); return the run folder.

    Prints one line per stage (:data:`TRAIN_STAGES`) with its expected time on this machine.
    """
    stages = progress.Stages(TRAIN_STAGES)
    fan = prepare_inputs(experiment, dataset, fan, stages)
    if dataset in FOLD_DATASETS:
        fold = fold or 1
    elif fold is not None:
        raise LaunchError(f"{dataset} is evaluated on its official partitions: drop FOLD={fold}")
    if run_dir is None:
        root = run_root(experiment, dataset, fold)
        run_dir = resumable_run(root) if resume else new_run_folder(root)
    stages.start("training", f"{experiment} on {dataset} {run_dir.parent.name} in {run_dir} "
                             "(expected time printed after its first steps)")  # fmt: skip
    start = time.perf_counter()
    configs.run(fit_command(experiment, dataset, fold, fan, run_dir, extra))
    stages.start("report", f"{run_dir / 'metrics.json'}")
    print_summary(run_dir, time.perf_counter() - start)
    return run_dir


def print_summary(run_dir: Path, seconds: float) -> None:
    """Print the run's folder, time, W&B upload command and ``metrics.json`` (ICC, MSE per AU)."""
    metrics_file = run_dir / METRICS_FILE
    print(f"\nrun folder: {run_dir}\nwall time: {seconds / 60:.1f} min")
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    if offline:
        print(f"W&B (offline): wandb sync {' '.join(map(str, offline))}")
    if not metrics_file.exists():
        return
    metrics = json.loads(metrics_file.read_text())
    for key in sorted(metrics):
        value = metrics[key]
        text = "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else value
        print(f"  {key:<24} {text}")


def require_seeds(seeds: int) -> None:
    """Refuse a number of seeds below 1 (``make cv SEEDS=0``)."""
    if seeds < 1:
        raise LaunchError(f"SEEDS={seeds}: the number of seeds per fold must be 1 or more")


def plan_cross_validation(
    experiment: str,
    dataset: str,
    fan: str | None,
    checkpoint: str,
    extra: list[str],
    seeds: int = 1,
    train_subjects: cv.TrainSubjects = None,
    folds: Sequence[int] | None = None,
) -> cv.CVPlan:
    """The plan of ``make cv``: one run per fold (or one on the official partitions) and seed.

    ``train_subjects`` makes it a point of the data-efficiency study
    (:mod:`aunet.evaluation.curve`), in a folder of its own; ``folds`` trains only those folds
    (default: all three).

    Tasks are numbered seed by seed: seed 0's folds are tasks 1-3 (as before seeds), seed 1's
    4-6, and so on (one task per seed on official partitions).

    A plan already in ``runs/cv/<experiment>-<dataset>/plan.json`` keeps its run folders, so a
    re-run after a failure trains only what is missing; its settings are updated (a changed
    FAN or ARGS applies to the runs that have not finished, and the launcher says so). Asked
    for more seeds than it has, it gains the missing seeds' tasks; asked for fewer, it keeps
    the seeds it has (their runs are not thrown away), and says so.

    Raises:
        LaunchError: for fewer than one seed, or a fold that is not 1-3.
    """
    require_seeds(seeds)
    if folds is not None and not set(folds) <= set(range(1, NUM_FOLDS + 1)):
        raise LaunchError(f"FOLDS={' '.join(map(str, folds))}: folds are 1 to {NUM_FOLDS}")
    fan = prepare_inputs(experiment, dataset, fan, progress.Stages(CV_STAGES))
    path = cv.cv_folder(experiment, dataset, train_subjects=train_subjects) / "plan.json"
    tasks: tuple[cv.CVTask, ...] = ()
    if path.exists():
        previous = cv.CVPlan.load(path)
        tasks = previous.tasks
        if (previous.fan, previous.extra) != (fan, tuple(extra)):
            print(
                f"note: {path} was made with FAN={previous.fan} ARGS={shlex.join(previous.extra)};"
                " finished runs keep theirs, the others train with "
                f"FAN={fan} ARGS={shlex.join(extra)}"
            )
        if len(previous.seeds) > seeds:
            print(f"note: {path} has {len(previous.seeds)} seeds; SEEDS={seeds} keeps them all")
    if dataset not in FOLD_DATASETS:
        folds = [None]
    elif folds is None:
        folds = range(1, NUM_FOLDS + 1)
    taken = {Path(task.run_dir) for task in tasks}
    for seed in range(len({task.seed for task in tasks}), seeds):
        for fold in sorted(folds, key=lambda k: k or 0):
            root = run_root(experiment, dataset, fold, train_subjects)
            folder = new_run_folder(root, taken)
            taken.add(folder)
            tasks += (cv.CVTask(len(tasks) + 1, fold, str(folder), seed),)
    plan = cv.CVPlan(experiment, dataset, fan, checkpoint, tuple(extra), tasks, train_subjects)
    plan.save()
    return plan


def task_fit_command(plan: cv.CVPlan, task: cv.CVTask, prefix: Sequence[str] = ()) -> list[str]:
    """The ``aunet fit`` command of a plan's task; ``prefix`` flags come before ``ARGS``.

    A task of seed s > 0 ends with ``--seed_everything s``, after ``ARGS`` so that the seeds
    differ even where ``ARGS`` sets a seed; seed 0 keeps the configs' own (0 in
    ``experiments/base.yaml``, or ``ARGS``'s), so one seed trains exactly as before seeds.
    A point of the data-efficiency study trains on its number of subjects, in the nested order
    of the task's seed (:func:`aunet.data.folds.nested_subjects`).
    """
    seed = ["--seed_everything", str(task.seed)] if task.seed else []
    if isinstance(plan.train_subjects, int):
        seed += ["--data.train_subjects", str(plan.train_subjects),
                 "--data.subject_order_seed", str(task.seed)]  # fmt: skip
    return fit_command(
        plan.experiment,
        plan.dataset,
        task.fold,
        plan.fan,
        Path(task.run_dir),
        [*prefix, *plan.extra, *seed],
    )


def cross_validate_locally(plan: cv.CVPlan) -> dict:
    """Train the unfinished runs one after another, predict them, and write the report."""
    for task in plan.tasks:
        if task.finished():
            print(f"{task.label}: {task.run_dir} has finished; not training it again")
        else:
            print(f"\n{task.label}: training in {task.run_dir}")
            configs.run(task_fit_command(plan, task))
        run_predictions(task.run_dir, plan.checkpoint)
    return report(plan)


def report(plan: cv.CVPlan) -> dict:
    """Write the report files, log them to W&B, and print the per-AU table."""
    result = cv.make_report(plan)
    mode, project = wandb_settings(plan.extra)
    cv.log_report_to_wandb(plan, result, mode=mode, project=project)
    print(f"\ncross-validation report: {plan.folder}/report.md ({result['frames']} frames)")
    rows = [*((au, result["icc"][au], result["mse"][au]) for au in result["icc"]),
            ("mean", result["icc_mean"], result["mse_mean"])]  # fmt: skip
    for name, icc_value, mse_value in rows:
        print(f"  {name:<6} ICC {format_number(icc_value):>6}  MSE {format_number(mse_value):>6}")
    bounds = result["intervals"]
    print(f"  95% intervals over subjects: ICC {format_interval(bounds['icc_mean'])}, "
          f"MSE {format_interval(bounds['mse_mean'])}")  # fmt: skip
    seeds = result.get("seeds")
    if seeds:
        icc_spread, mse_spread = (seeds["spread"][key] for key in ("icc_mean", "mse_mean"))
        icc_sd, mse_sd = format_number(icc_spread["sd"]), format_number(mse_spread["sd"])
        print(f"  over {seeds['count']} seeds (means above): ICC sd {icc_sd}, MSE sd {mse_sd}")
    return result
