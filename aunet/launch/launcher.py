"""The experiment launcher behind ``make train``, ``make cv`` and ``make fan`` (and ``make table``).

It composes an experiment's configs (``experiments/base.yaml``, ``experiments/data/<data>.yaml``,
``experiments/<exp>.yaml``), builds what the built-in synthetic default needs when it is missing
(``data/synthetic.h5``; its FAN is the one ``make fan`` built in ``checkpoints/fan_synthetic.ckpt``,
else the one shipped with aunet), picks the run folder (a new timestamp, or the latest one with
a checkpoint when resuming), runs ``aunet fit`` in a child process (so that DDP can relaunch
it) and prints the run's summary.

Cross-validation (``cv``) plans one run per fold and seed (:class:`aunet.evaluation.cv.CVPlan`),
trains the runs one after another here, or submits them to SLURM as a job array with a dependent
report job (``experiments/slurm/``), and writes the report of :mod:`aunet.evaluation.cv`. The SLURM
jobs call the ``cv-fold``, ``cv-predict`` and ``cv-report`` sub-commands; ``docs/cluster.md`` tells
the story.

Usage: ``python -m aunet.launch train --exp reparam --data synthetic [--fold 1] [--fan PATH]
[--resume] [-- extra aunet fit flags]``, ``python -m aunet.launch cv --exp adapt --data disfa
[--launch local|slurm] [--fan PATH] [--checkpoint last|best] [--seeds N] [--sbatch ARGS]
[--sbatch-fold ARGS] [-- extra aunet fit flags]`` and ``python -m aunet.launch fan
[--data FILE.h5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from aunet import progress, shipped_fan
from aunet.cli.guards import command_line
from aunet.data.datamodule import AUDataModule
from aunet.data.folds import FOLD_DATASETS, NUM_FOLDS
from aunet.data.store import StoreError
from aunet.evaluation import curve as curves
from aunet.evaluation import cv, robustness, tables
from aunet.evaluation.bootstrap import format_interval
from aunet.files import copy_atomically, format_number
from aunet.models import NEEDS_FAN, USES_FAN
from aunet.runs import (
    METRICS_FILE,
    best_checkpoint,
    last_checkpoint,
    new_run_folder,
    resume_checkpoint,
    run_root,
)
from aunet.synthetic import draw as synthetic
from aunet.training.checkpoint_io import CheckpointError
from data_prep import synthetic as data_prep_synthetic

EXPERIMENTS = Path("experiments")
CHECKPOINTS = Path("checkpoints")
SYNTHETIC_LANDMARK_STORE = shipped_fan.LANDMARK_STORE
#: What ``make fan`` writes; the synthetic default prefers it to the shipped FAN.
SYNTHETIC_FAN = CHECKPOINTS / "fan_synthetic.ckpt"
#: Frames drawn to time the drawing of a synthetic store.
PROBE_FRAMES = 8
#: The stages of ``make train``, one progress line each.
TRAIN_STAGES = ("stores", "FAN", "training", "report")
#: What ``make cv`` prepares before its runs (each run then prints its own line).
CV_STAGES = ("stores", "FAN")
SLURM_SCRIPTS = EXPERIMENTS / "slurm"


class LaunchError(RuntimeError):
    """A launch that cannot start; the message says what to do."""


def experiment_names(folder: Path = EXPERIMENTS) -> list[str]:
    """Every experiment with a config in ``folder`` (``experiments/``; ``fan`` included)."""
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "base")


def dataset_names() -> list[str]:
    """Every dataset with a config in ``experiments/data/``."""
    return sorted(p.stem for p in (EXPERIMENTS / "data").glob("*.yaml"))


def config_files(experiment: str, dataset: str) -> list[Path]:
    """The configs an AU experiment composes, checked to exist."""
    if experiment not in experiment_names() or experiment == "fan":
        known = ", ".join(name for name in experiment_names() if name != "fan")
        raise LaunchError(f"unknown experiment {experiment!r}; expected one of: {known}")
    if dataset not in dataset_names():
        raise LaunchError(
            f"unknown dataset {dataset!r}; expected one of: {', '.join(dataset_names())} "
            f"(configs in {EXPERIMENTS / 'data'})"
        )
    return [EXPERIMENTS / "base.yaml", EXPERIMENTS / "data" / f"{dataset}.yaml",
            EXPERIMENTS / f"{experiment}.yaml"]  # fmt: skip


def data_path(dataset: str) -> Path:
    """The frame store a dataset config reads (``data.path``)."""
    config = yaml.safe_load((EXPERIMENTS / "data" / f"{dataset}.yaml").read_text()) or {}
    return Path(config.get("data", {}).get("path", f"data/{dataset}.h5"))


def run(command: list[str]) -> None:
    """Run a child command, echoing it; a failure stops the launch with its exit code."""
    print("+", " ".join(command), flush=True)
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise SystemExit(completed.returncode)


def executable(name: str) -> str:
    """A console script of this environment (``aunet``, ``aunet-fan``)."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise LaunchError(f"{path} is missing: run `make install`")
    return str(path)


def synthetic_draw_flags(landmark_only: bool) -> list[str]:
    """The ``data_prep synthetic`` flags of the synthetic store or of its landmark variant."""
    return ["--landmark-only"] if landmark_only else []


def ensure_synthetic_store(path: Path, landmark_only: bool = False) -> None:
    """Draw the synthetic frame store (or its landmark-only variant) when it is missing.

    A store is drawn once and reused. The writer fills ``<path>.partial`` and renames it to
    ``path`` only when complete, so a draw that was killed leaves no ``path`` and is redone.
    """
    if path.exists():
        return
    print(f"{path} is missing: drawing the synthetic {'landmark ' if landmark_only else ''}faces")
    run([sys.executable, "-m", "data_prep", "synthetic", "--out", str(path),
         *synthetic_draw_flags(landmark_only)])  # fmt: skip


def expected_draw_seconds(path: Path, landmark_only: bool) -> tuple[int, float, int]:
    """The frames ``data_prep synthetic`` draws into ``path``, its expected seconds, its workers.

    Its own defaults (subjects, frames, size, workers) scale a short timing of a few frames
    (:func:`aunet.synthetic.draw.expected_write_seconds`).
    """
    parser = argparse.ArgumentParser()
    data_prep_synthetic.configure(parser)
    settings = parser.parse_args(["--out", str(path), *synthetic_draw_flags(landmark_only)])
    frames = settings.subjects * settings.frames_per_subject
    seconds = synthetic.expected_write_seconds(
        frames, settings.size, landmark_only, settings.workers, settings.encoding, PROBE_FRAMES
    )
    return frames, seconds, settings.workers


def resumable_run(root: Path) -> Path:
    """The newest run folder under ``root`` that has a checkpoint to continue from."""
    candidates = sorted(p for p in root.glob("*") if resume_checkpoint(p) is not None)
    if not candidates:
        raise LaunchError(f"nothing to resume: no {root}/<timestamp>/checkpoints/last.ckpt")
    return candidates[-1]


def pretrain_fan(store: Path, extra: list[str]) -> Path:
    """Pre-train a FAN and copy its best checkpoint to checkpoints/.

    Best by validation NME on the landmark store's held-out subjects, which no AU experiment
    scores on (``last.ckpt`` if no validation ran: :func:`aunet.run_checkpoints.best_checkpoint`).

    The configs are ``experiments/fan.yaml`` and, when there is one, the store's own
    ``experiments/data/<store name>.yaml`` (``synthetic_landmarks.yaml`` sizes the CPU demo).
    """
    if store == SYNTHETIC_LANDMARK_STORE:
        ensure_synthetic_store(store, landmark_only=True)
    elif not store.exists():
        raise LaunchError(
            f"{store}: no such landmark store; build one with `make prep DATA=300w-lp`"
        )
    name = store.stem.removesuffix("_landmarks")
    folder = new_run_folder(run_root("fan", name, None))
    configs = [EXPERIMENTS / "fan.yaml", EXPERIMENTS / "data" / f"{store.stem}.yaml"]
    command = [executable("aunet-fan"), "fit"]
    for config in configs:
        if config.exists():
            command += ["--config", str(config)]
    run([*command, "--data.path", str(store), "--run.dir", str(folder),
         "--run.experiment", "fan", *extra])  # fmt: skip
    source = best_checkpoint(folder) or last_checkpoint(folder)
    target = CHECKPOINTS / f"fan_{name}.ckpt"
    copy_atomically(source, target)
    print(f"FAN checkpoint: {target} (from {source})")
    return target


def experiment_strategy(experiment: str, dataset: str) -> str:
    """The strategy an experiment trains: ``model.init_args.strategy`` of its composed configs."""
    strategy = "scratch"  # AUHeatmapModule's default
    for path in config_files(experiment, dataset):
        config = yaml.safe_load(path.read_text()) or {}
        init_args = (config.get("model") or {}).get("init_args") or {}
        strategy = init_args.get("strategy", strategy)
    return strategy


def prepare_inputs(
    experiment: str, dataset: str, fan: str | None, stages: progress.Stages
) -> str | None:
    """Check the names, build what the run needs and nothing else, and return its FAN.

    Which strategies use a FAN is :mod:`aunet.models.registry`'s answer (``USES_FAN``): a FAN
    given to ``scratch`` or ``resnet18`` (``make table`` and ``make cv`` pass ``FAN=`` to every
    experiment) is dropped with a note. On the synthetic default without ``FAN=``, a strategy
    that uses a FAN gets the synthetic one: ``checkpoints/fan_synthetic.ckpt`` where ``make fan``
    built it, else the one shipped with aunet (:mod:`aunet.shipped_fan`), so nothing is
    pre-trained and the landmark store is not drawn. Prints the lines of the ``stores`` and
    ``FAN`` stages.
    """
    config_files(experiment, dataset)
    strategy = experiment_strategy(experiment, dataset)
    if fan is not None and strategy not in USES_FAN:
        print(f"note: {experiment} uses no FAN (strategy {strategy}): FAN={fan} is not passed")
        fan = None
    prepare_stores(dataset, stages=stages)
    if fan is not None:
        stages.start("FAN", f"{fan} (given)")
    elif strategy not in USES_FAN:
        stages.start("FAN", f"none: {strategy} uses no FAN")
    elif dataset == "synthetic" and SYNTHETIC_FAN.exists():
        stages.start("FAN", f"{SYNTHETIC_FAN} (built by `make fan`)")
        fan = str(SYNTHETIC_FAN)
    elif dataset == "synthetic":
        fan = _relative_if_below(shipped_fan.SHIPPED_FAN, Path.cwd())
        stages.start("FAN", f"{fan}, shipped with aunet ({shipped_fan.describe()})")
    elif strategy in NEEDS_FAN:  # a resumed fit rebuilds it from its checkpoint
        stages.start("FAN", f"none given: {strategy} needs FAN=<path> unless it resumes")
    else:
        stages.start("FAN", f"none given: {strategy} copies the light FAN's architecture")
    return fan


def _relative_if_below(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` when inside it (as configs and logs show it), else as is."""
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


def prepare_stores(dataset: str, stages: progress.Stages) -> None:
    """Draw the synthetic store if it is missing (the ``stores`` stage)."""
    path = data_path(dataset)
    if dataset != "synthetic":
        stages.start("stores", f"{path} (converted by `make prep DATA={dataset}`)")
        return
    if path.exists():
        stages.start("stores", f"{path} exists: reused")
        return
    frames, seconds, workers = expected_draw_seconds(path, landmark_only=False)
    stages.start(
        "stores",
        f"drawing {path} ({frames} frames), expected {progress.format_duration(seconds)} "
        f"({PROBE_FRAMES} frames drawn here first, scaled to the frames over {workers} "
        f"worker{'s' * (workers != 1)})",
    )
    ensure_synthetic_store(path)


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
    run(fit_command(experiment, dataset, fold, fan, run_dir, extra))
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


# --------------------------------------------------------------------------------------------
# Cross-validation


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
            run(task_fit_command(plan, task))
        cv.run_predictions(task.run_dir, plan.checkpoint)
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


def flag_value(flags: Sequence[str], name: str) -> str | None:
    """The value of ``name`` in ``flags`` (``--name value`` or ``--name=value``; the last wins)."""
    value = None
    for i, flag in enumerate(flags):
        if flag == name and i + 1 < len(flags):
            value = flags[i + 1]
        elif flag.startswith(name + "="):
            value = flag.split("=", 1)[1]
    return value


def wandb_settings(flags: Sequence[str]) -> tuple[str, str]:
    """The W&B mode and project that ``aunet fit`` flags choose, for the runs summarising fits.

    ``--run.wandb`` (default ``auto``) and ``--run.wandb_project`` (default ``aunet``).
    """
    return (flag_value(flags, "--run.wandb") or "auto",
            flag_value(flags, "--run.wandb_project") or "aunet")  # fmt: skip


def slurm_trainer_flags(environment: Mapping[str, str]) -> list[str]:
    """``--trainer.num_nodes``/``--trainer.devices`` (and DDP) matching the SLURM job step.

    Lightning's SLURMEnvironment runs one process per SLURM task and requires ``devices`` to
    equal the tasks per node and ``num_nodes`` the nodes; ``ARGS`` come later and may still
    override. Outside SLURM there is nothing to match.
    """
    if "SLURM_NTASKS" not in environment:
        return []
    tasks = int(environment["SLURM_NTASKS"])
    nodes = int(environment.get("SLURM_NNODES", "1"))
    flags = ["--trainer.num_nodes", str(nodes), "--trainer.devices", str(tasks // nodes)]
    if tasks > 1:
        flags += ["--trainer.strategy", "ddp"]
    return flags


def sbatch(arguments: list[str], environment: Mapping[str, str]) -> str:
    """Submit a job with ``sbatch --parsable``; return its id."""
    command = ["sbatch", "--parsable", *arguments]
    print("+", shlex.join(command), flush=True)
    completed = subprocess.run(command, env=dict(environment), capture_output=True, text=True)
    if completed.returncode != 0:
        raise LaunchError(f"sbatch failed ({completed.returncode}): {completed.stderr.strip()}")
    return completed.stdout.strip().split(";")[0]


def submit_to_slurm(
    plan: cv.CVPlan, sbatch_args: Sequence[str] = (), fold_args: Sequence[str] = ()
) -> tuple[str | None, str]:
    """Submit the runs still to do as a job array, and the report as a job that waits for it.

    Array task k runs task k of the plan (``experiments/slurm/fold.sbatch``): the fit under
    ``srun``, one process per GPU, then its predictions. The report job
    (``experiments/slurm/report.sbatch``) starts only if every array task succeeds
    (``--dependency=afterok``) and is cancelled if one fails.

    Args:
        plan: the saved plan.
        sbatch_args: ``sbatch`` options for both jobs (partition, account, time, ...).
        fold_args: ``sbatch`` options for the array only (``--gres``, ``--ntasks-per-node``,
            ``--nodes``, ...), after ``sbatch_args``.

    Returns:
        The array's job id (None when every run is done) and the report job's id.
    """
    if shutil.which("sbatch") is None:
        raise LaunchError("LAUNCH=slurm needs SLURM's sbatch: run `make cv` on a login node")
    logs = plan.folder.resolve() / "slurm"
    logs.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "AUNET_PYTHON": sys.executable}
    common = [f"--chdir={Path.cwd()}", "--export=ALL"]
    name = f"aunet-{plan.experiment}-{plan.dataset}"
    plan_file = str(plan.path.resolve())
    todo = [task.task for task in plan.tasks if not task.predicted(plan.checkpoint)]
    array_job, dependency = None, []
    if todo:
        array_job = sbatch(
            [
                *common,
                f"--job-name={name}",
                f"--array={','.join(map(str, todo))}",
                f"--output={logs}/fold-%A_%a.out",
                *sbatch_args,
                *fold_args,
                str((SLURM_SCRIPTS / "fold.sbatch").resolve()),
                plan_file,
            ],
            environment,
        )
        dependency = [f"--dependency=afterok:{array_job}", "--kill-on-invalid-dep=yes"]
    report_job = sbatch(
        [
            *common,
            f"--job-name={name}-report",
            f"--output={logs}/report-%j.out",
            *dependency,
            *sbatch_args,
            str((SLURM_SCRIPTS / "report.sbatch").resolve()),
            plan_file,
        ],
        environment,
    )
    tasks = ", ".join(str(number) for number in todo) or "none: every run is done"
    print(
        f"submitted fold array job {array_job} (tasks {tasks}) and report job {report_job}\n"
        f"logs: {logs}/\nreport: {plan.folder}/report.md once job {report_job} ends; "
        f"watch with: squeue -j {','.join(filter(None, (array_job, report_job)))}"
    )
    return array_job, report_job


def slurm_fold(plan_file: Path, number: int) -> None:
    """SLURM array task ``number``, one process per task of its ``srun`` step: become its fit.

    The process replaces itself with ``aunet fit`` (``exec``), so that SLURM's signals reach
    Lightning (``SIGUSR1`` before the time limit: save ``hpc_ckpt_<n>.ckpt`` and requeue) and
    a requeued task continues from the newest checkpoint in the same run folder.
    """
    plan = cv.CVPlan.load(plan_file)
    task = plan.task(number)
    if task.finished():
        print(f"{task.label}: {task.run_dir} has finished; nothing to train")
        return
    command = task_fit_command(plan, task, prefix=slurm_trainer_flags(os.environ))
    print("+", shlex.join(command), flush=True)
    os.execv(command[0], command)


# --------------------------------------------------------------------------------------------
# Tables and robustness (make table, make robustness)


def table(
    dataset: str,
    experiments: Sequence[str],
    launch: str,
    fan: str | None,
    checkpoint: str,
    extra: list[str],
    sbatch_args: Sequence[str] = (),
    fold_args: Sequence[str] = (),
    seeds: int = 1,
) -> None:
    """Cross-validate each experiment that has no report yet, then write the table.

    Locally the cross-validations run one after another and the table follows; on SLURM each
    is submitted as ``make cv ... LAUNCH=slurm`` does, and the table as a job that waits for
    every report job (``afterok``). An experiment whose ``report.json`` exists with ``seeds``
    seeds or more is not run again; one with fewer gains the missing seeds' runs.

    Raises:
        LaunchError: for fewer than one seed.
    """
    require_seeds(seeds)
    ordered = tables.order_experiments(experiments)
    missing = tables.missing_experiments(ordered, dataset, seeds=seeds)
    for name in ordered:
        if name not in missing:
            print(f"{name}: {tables.report_file(name, dataset)} exists; not running it again")
    if launch == "local":
        for name in missing:
            print(f"\n=== {name} on {dataset}: cross-validation", flush=True)
            cross_validate_locally(
                plan_cross_validation(name, dataset, fan, checkpoint, extra, seeds)
            )
        write_table(dataset, ordered, extra)
        return
    report_jobs = [
        submit_to_slurm(
            plan_cross_validation(name, dataset, fan, checkpoint, extra, seeds),
            sbatch_args,
            fold_args,
        )[1]
        for name in missing
    ]
    if not report_jobs:
        write_table(dataset, ordered, extra)
        return
    build = ["table-report", "--data", dataset, "--exps", *ordered, "--", *extra]
    job = submit_summary_job(f"table-{dataset}", tables.table_folder(dataset), build,
                             report_jobs, sbatch_args)  # fmt: skip
    print(
        f"submitted table job {job} after report jobs {', '.join(report_jobs)}: "
        f"{tables.table_folder(dataset)}/table.md once it ends"
    )


def submit_summary_job(
    name: str,
    folder: Path,
    launch_args: Sequence[str],
    report_jobs: Sequence[str],
    sbatch_args: Sequence[str],
) -> str:
    """Submit ``python -m aunet.launch <launch_args>`` to run once every report job succeeded.

    The summary (a table, a curve) is a short CPU job, ``aunet-<name>``, logging to
    ``<folder>/slurm/``; it is cancelled if a report job fails (``afterok``). Returns its id.
    """
    logs = folder.resolve() / "slurm"
    logs.mkdir(parents=True, exist_ok=True)
    build = [sys.executable, "-m", "aunet.launch", *launch_args]
    return sbatch(
        [
            f"--chdir={Path.cwd()}",
            "--export=ALL",
            f"--job-name=aunet-{name}",
            f"--output={logs}/{name.split('-')[0]}-%j.out",
            f"--dependency=afterok:{':'.join(report_jobs)}",
            "--kill-on-invalid-dep=yes",
            "--ntasks=1",
            "--cpus-per-task=2",
            "--time=00:30:00",
            *sbatch_args,
            f"--wrap={shlex.join(build)}",
        ],
        os.environ,
    )


def write_table(dataset: str, experiments: Sequence[str], extra: Sequence[str]) -> None:
    """Write ``runs/tables/<dataset>/table.{md,csv,png}``, log it to W&B and print it."""
    files = tables.build_table(dataset, experiments)
    mode, project = wandb_settings(extra)
    tables.log_table_to_wandb(files, dataset, mode=mode, project=project)
    print(f"\n{files.markdown.read_text()}\ntable: {files.markdown}, {files.csv}, {files.plot}")


def training_subject_count(dataset: str, folds: Sequence[int] | None) -> int:
    """How many training subjects the study's ``all`` is: the fewest of the folds trained.

    Raises:
        LaunchError: naming the store, when it cannot be read or split.
    """
    path = data_path(dataset)
    chosen = (folds or range(1, NUM_FOLDS + 1)) if dataset in FOLD_DATASETS else [1]
    try:
        return min(len(AUDataModule(path, fold=k).training_subjects) for k in chosen)
    except (ValueError, StoreError) as error:
        raise LaunchError(str(error)) from None


def data_efficiency_curve(
    dataset: str,
    experiments: Sequence[str],
    sizes: Sequence[int | str],
    folds: Sequence[int] | None,
    launch: str,
    fan: str | None,
    checkpoint: str,
    extra: list[str],
    sbatch_args: Sequence[str] = (),
    fold_args: Sequence[str] = (),
    seeds: int = 1,
) -> None:
    """``make curve``: cross-validate each experiment on each number of training subjects.

    Every point is a cross-validation of its own (:func:`plan_cross_validation` with
    ``train_subjects``) under the dataset's study settings
    (:func:`aunet.evaluation.curve.settings_flags`, then ``extra``) and folds (``folds``, else
    :data:`aunet.evaluation.curve.QUICK_FOLDS`, else all). Locally the points run one after
    another, each skipping the runs that finished, and the curve follows; on SLURM each point is a
    job array with its report job, as ``make cv``'s, and the curve a job that waits for every
    report.

    Raises:
        LaunchError: for fewer than one seed, a number of subjects above the folds' count, or
            a store that cannot be read.
    """
    require_seeds(seeds)
    folds = folds or curves.QUICK_FOLDS.get(dataset)
    prepare_stores(dataset, progress.Stages(("stores",)))
    available = training_subject_count(dataset, folds)
    too_many = [size for size in sizes if size != "all" and int(size) > available]
    if too_many:
        raise LaunchError(
            f"SUBJECTS={' '.join(map(str, sizes))}: {data_path(dataset)} has {available} "
            "training subjects per fold; use counts up to that, or all"
        )
    extra = [*curves.settings_flags(dataset), *extra]
    plans = [
        plan_cross_validation(name, dataset, fan, checkpoint, extra, seeds, size, folds)
        for name in experiments
        for size in sizes
    ]
    if launch == "local":
        for plan in plans:
            subjects = "every" if plan.train_subjects == "all" else plan.train_subjects
            plural = "" if subjects == 1 else "s"
            print(f"\n=== {plan.experiment} on {dataset}, {subjects} training subject{plural}: "
                  "cross-validation", flush=True)  # fmt: skip
            cross_validate_locally(plan)
        write_curve(dataset, experiments, sizes, folds, extra)
        return
    report_jobs = [submit_to_slurm(plan, sbatch_args, fold_args)[1] for plan in plans]
    build = ["curve-report", "--data", dataset, "--exps", *experiments,
             "--subjects", *map(str, sizes),
             *(["--folds", *map(str, folds)] if folds else []), "--", *extra]  # fmt: skip
    folder = curves.curve_folder(dataset)
    job = submit_summary_job(f"curve-{dataset}", folder, build, report_jobs, sbatch_args)
    print(f"submitted curve job {job} after report jobs {', '.join(report_jobs)}: "
          f"{folder}/curve.md once it ends")  # fmt: skip


def write_curve(
    dataset: str,
    experiments: Sequence[str],
    sizes: Sequence[int | str],
    folds: Sequence[int] | None,
    extra: Sequence[str],
) -> None:
    """Write ``runs/curves/<dataset>/curve.{csv,png,md}``, log it to W&B and print it."""
    all_subjects = training_subject_count(dataset, folds or curves.QUICK_FOLDS.get(dataset))
    files = curves.build_curve(dataset, experiments, sizes, all_subjects)
    mode, project = wandb_settings(extra)
    curves.log_curve_to_wandb(files, dataset, mode=mode, project=project)
    print(f"\n{files.markdown.read_text()}\ncurve: {files.csv}, {files.plot}, {files.markdown}")


def robustness_study(
    experiment: str,
    dataset: str,
    checkpoint: Path | None,
    fan: str | None,
    levels: Sequence[float],
    mode: str,
    seed: int,
    every: int,
    extra: list[str],
) -> Path:
    """Evaluate a model under growing crop noise; train one first if there is none.

    The model is ``checkpoint``, else ``last.ckpt`` of the fold-1 run of the experiment on the
    dataset (the official run for FERA) that finished last
    (:func:`aunet.evaluation.robustness.latest_checkpoint`), else a fold-1 run trained now with
    ``extra`` (``make train``'s path). The study is logged to W&B as ``aunet fit``'s
    ``--run.wandb`` and ``--run.wandb_project`` in ``extra`` say. Returns the folder of the results.
    """
    config_files(experiment, dataset)
    if checkpoint is None:
        root = run_root(experiment, dataset, 1 if dataset in FOLD_DATASETS else None)
        checkpoint = robustness.latest_checkpoint(root)
        if checkpoint is None:
            print(f"no finished run in {root}: training one first (make train EXP={experiment} "
                  f"DATA={dataset})", flush=True)  # fmt: skip
            run_dir = train(experiment, dataset, None, fan, False, extra)
            checkpoint = last_checkpoint(run_dir)
    folder = robustness.ROBUSTNESS_ROOT / f"{experiment}-{dataset}"
    print(f"robustness of {checkpoint} ({mode} noise, levels {', '.join(map(str, levels))} px)")
    wandb_mode, project = wandb_settings(extra)
    robustness.run_study(checkpoint, folder, experiment, dataset, levels, mode, seed, every,
                         wandb_mode, project)  # fmt: skip
    print(f"results: {folder}/robustness.csv, robustness.png, robustness.md")
    return folder


def build_parser() -> argparse.ArgumentParser:
    """``train``, ``cv`` and ``fan`` sub-commands; flags after ``--`` go to ``aunet fit``."""
    parser = argparse.ArgumentParser(
        prog="python -m aunet.launch", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train one experiment")
    train_parser.add_argument("--exp", required=True, help="experiment (experiments/<exp>.yaml)")
    train_parser.add_argument("--data", default="synthetic", help="dataset (experiments/data/)")
    train_parser.add_argument("--fold", type=int, help="DISFA-style fold 1-3 (default 1)")
    train_parser.add_argument(
        "--fan", help="FAN weights: 2DFAN-4 .pth(.tar), TorchScript, or aunet"
    )
    train_parser.add_argument("--resume", action="store_true", help="continue the latest run")
    cv_parser = commands.add_parser("cv", help="cross-validate one experiment")
    cv_parser.add_argument("--exp", required=True, help="experiment (experiments/<exp>.yaml)")
    cv_parser.add_argument("--data", default="synthetic", help="dataset (experiments/data/)")
    cv_parser.add_argument(
        "--launch", choices=("local", "slurm"), default="local",
        help="train the folds here, one after another, or as a SLURM job array",
    )  # fmt: skip
    cv_parser.add_argument("--fan", help="FAN weights: 2DFAN-4 .pth(.tar), TorchScript, or aunet")
    cv_parser.add_argument(
        "--checkpoint", choices=cv.CHECKPOINTS, default="last",
        help="which checkpoint predicts (default last: DISFA validates on the test fold)",
    )  # fmt: skip
    cv_parser.add_argument(
        "--seeds", type=int, default=1,
        help="train each fold this many times, seed_everything 0 to N-1 (default 1)",
    )  # fmt: skip
    cv_parser.add_argument(
        "--sbatch", default=os.environ.get("AUNET_SBATCH_ARGS", ""),
        help="sbatch options for every job (default: $AUNET_SBATCH_ARGS)",
    )  # fmt: skip
    cv_parser.add_argument(
        "--sbatch-fold", default=os.environ.get("AUNET_SBATCH_FOLD_ARGS", ""),
        help="sbatch options for the fold array only (default: $AUNET_SBATCH_FOLD_ARGS)",
    )  # fmt: skip
    for name, text in (
        ("cv-fold", "SLURM array task: the fit of one planned run (under srun)"),
        ("cv-predict", "predict the held-out frames of one planned run"),
    ):
        task_parser = commands.add_parser(name, help=text)
        task_parser.add_argument("--plan", type=Path, required=True, help="the plan.json")
        task_parser.add_argument("--task", type=int, required=True, help="1-based task")
    report_parser = commands.add_parser("cv-report", help="(re)make a cross-validation report")
    report_parser.add_argument("--plan", type=Path, required=True, help="the plan.json")
    fan_parser = commands.add_parser("fan", help="pre-train a FAN on a landmark store")
    fan_parser.add_argument(
        "--data",
        type=Path,
        default=SYNTHETIC_LANDMARK_STORE,
        help="landmark frame store (default: synthetic landmark faces)",
    )
    table_parser = commands.add_parser("table", help="cross-validate experiments, make the table")
    table_parser.add_argument("--data", default="synthetic", help="dataset (experiments/data/)")
    table_parser.add_argument(
        "--exps", nargs="+", default=list(tables.EXPERIMENT_ORDER),
        help="experiments, the table's rows (default: all but fan)",
    )  # fmt: skip
    table_parser.add_argument("--launch", choices=("local", "slurm"), default="local")
    table_parser.add_argument("--fan", help="FAN weights for every experiment that uses one")
    table_parser.add_argument("--checkpoint", choices=cv.CHECKPOINTS, default="last")
    table_parser.add_argument("--seeds", type=int, default=1, help="seeds per fold (default 1)")
    table_parser.add_argument("--sbatch", default=os.environ.get("AUNET_SBATCH_ARGS", ""))
    table_parser.add_argument("--sbatch-fold", default=os.environ.get("AUNET_SBATCH_FOLD_ARGS", ""))
    remake_parser = commands.add_parser(
        "table-report", help="(re)make the table from the reports that exist"
    )
    remake_parser.add_argument("--data", default="synthetic", help="dataset")
    remake_parser.add_argument("--exps", nargs="+", default=list(tables.EXPERIMENT_ORDER))
    for name, text in (
        ("curve", "data-efficiency study: cross-validate on 1, 2, 4, 9, all subjects"),
        ("curve-report", "(re)make the curve from the points' reports that exist"),
    ):
        curve_parser = commands.add_parser(name, help=text)
        curve_parser.add_argument("--data", default="synthetic", help="dataset")
        curve_parser.add_argument("--exps", nargs="+", default=list(curves.EXPERIMENTS),
                                  help="experiments, one line each (default: "
                                  f"{' '.join(curves.EXPERIMENTS)})")  # fmt: skip
        curve_parser.add_argument(
            "--subjects", nargs="+", default=[str(size) for size in curves.SIZES],
            help="numbers of training subjects, and/or all (default 1 2 4 9 all)",
        )  # fmt: skip
        curve_parser.add_argument(
            "--folds", type=int, nargs="+",
            help="folds to train (default: all; fold 1 on the synthetic default)",
        )  # fmt: skip
        if name == "curve":
            curve_parser.add_argument("--launch", choices=("local", "slurm"), default="local")
            curve_parser.add_argument("--fan", help="FAN weights for every experiment using one")
            curve_parser.add_argument("--checkpoint", choices=cv.CHECKPOINTS, default="last")
            curve_parser.add_argument("--seeds", type=int, default=1, help="seeds per point")
            curve_parser.add_argument("--sbatch", default=os.environ.get("AUNET_SBATCH_ARGS", ""))
            curve_parser.add_argument(
                "--sbatch-fold", default=os.environ.get("AUNET_SBATCH_FOLD_ARGS", "")
            )
    robust_parser = commands.add_parser("robustness", help="ICC/MSE under test-time crop noise")
    robust_parser.add_argument("--exp", required=True, help="experiment (experiments/<exp>.yaml)")
    robust_parser.add_argument("--data", default="synthetic", help="dataset (experiments/data/)")
    robust_parser.add_argument(
        "--ckpt", type=Path, help="checkpoint in a run folder (default: the latest fold-1 run)"
    )
    robust_parser.add_argument("--fan", help="FAN weights, if a run must be trained first")
    robust_parser.add_argument(
        "--levels", type=float, nargs="+", default=list(robustness.NOISE_LEVELS),
        help="noise standard deviations, px at 256x256 (default 0 5 ... 55)",
    )  # fmt: skip
    robust_parser.add_argument("--noise", choices=robustness.NOISE_MODES, default="landmarks")
    robust_parser.add_argument("--seed", type=int, default=0, help="noise seed")
    robust_parser.add_argument(
        "--every", type=int, default=1, help="evaluate every n-th held-out frame"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """The launcher's command line (``--`` separates flags for ``aunet fit``).

    Errors in the request (an unknown experiment, nothing to resume, a failed fit) end it with
    one line and status 2; Ctrl-C with status 130 (:func:`aunet.cli.guards.command_line`).
    """
    errors = (LaunchError, cv.CVError, tables.TableError, robustness.RobustnessError,
              CheckpointError, curves.CurveError)  # fmt: skip
    # SIGTERM keeps its default: a fit the launcher runs is its own process, which checkpoints.
    command_line("aunet.launch", errors, catch_sigterm=False)(lambda: _run(argv))()


def _run(argv: list[str] | None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    args = build_parser().parse_args(own)
    if args.command == "train":
        train(args.exp, args.data, args.fold, args.fan, args.resume, extra)
    elif args.command == "cv":
        plan = plan_cross_validation(
            args.exp, args.data, args.fan, args.checkpoint, extra, args.seeds
        )
        if args.launch == "local":
            cross_validate_locally(plan)
        else:
            submit_to_slurm(plan, shlex.split(args.sbatch), shlex.split(args.sbatch_fold))
    elif args.command == "cv-fold":
        slurm_fold(args.plan, args.task)
    elif args.command == "cv-predict":
        plan = cv.CVPlan.load(args.plan)
        cv.run_predictions(plan.task(args.task).run_dir, plan.checkpoint)
    elif args.command == "cv-report":
        report(cv.CVPlan.load(args.plan))
    elif args.command == "table":
        table(args.data, args.exps, args.launch, args.fan, args.checkpoint, extra,
              shlex.split(args.sbatch), shlex.split(args.sbatch_fold), args.seeds)  # fmt: skip
    elif args.command == "table-report":
        write_table(args.data, tables.order_experiments(args.exps), extra)
    elif args.command == "curve":
        data_efficiency_curve(args.data, args.exps, curves.parse_sizes(args.subjects), args.folds,
                              args.launch, args.fan, args.checkpoint, extra,
                              shlex.split(args.sbatch), shlex.split(args.sbatch_fold),
                              args.seeds)  # fmt: skip
    elif args.command == "curve-report":
        write_curve(args.data, args.exps, curves.parse_sizes(args.subjects), args.folds, extra)
    elif args.command == "robustness":
        robustness_study(args.exp, args.data, args.ckpt, args.fan, args.levels, args.noise,
                         args.seed, args.every, extra)  # fmt: skip
    else:
        pretrain_fan(args.data, extra)


if __name__ == "__main__":
    main()
