"""The experiment launcher behind ``make train``, ``cv``, ``fan``, ``table``, ``curve`` and more.

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

The package, in the order a launch goes through it: :mod:`~aunet.launch.configs` (experiments,
datasets, their config files; ``run``, the one place a child process starts),
:mod:`~aunet.launch.inputs` (stores and FAN), :mod:`~aunet.launch.local` (a run, a
cross-validation's plan and its runs here), :mod:`~aunet.launch.slurm` (the same as SLURM jobs),
:mod:`~aunet.launch.studies` (table, curve, robustness) and :mod:`~aunet.launch.command_line`.
The names below are the launcher's public API, importable from ``aunet.launch``.
"""

from __future__ import annotations

from aunet.launch.command_line import (
    build_parser,
    main,
)
from aunet.launch.configs import (
    EXPERIMENTS,
    LaunchError,
    config_files,
    data_path,
    dataset_names,
    experiment_names,
    experiment_strategy,
    flag_value,
    run,
    wandb_settings,
)
from aunet.launch.inputs import (
    SYNTHETIC_FAN,
    SYNTHETIC_LANDMARK_STORE,
    ensure_synthetic_store,
    prepare_inputs,
    pretrain_fan,
)
from aunet.launch.local import (
    cross_validate_locally,
    fit_command,
    plan_cross_validation,
    report,
    resumable_run,
    task_fit_command,
    train,
)
from aunet.launch.slurm import (
    sbatch,
    slurm_fold,
    slurm_trainer_flags,
    submit_summary_job,
    submit_to_slurm,
)
from aunet.launch.studies import (
    data_efficiency_curve,
    robustness_study,
    table,
    training_subject_count,
    write_curve,
    write_table,
)

__all__ = [
    "EXPERIMENTS",
    "SYNTHETIC_FAN",
    "SYNTHETIC_LANDMARK_STORE",
    "LaunchError",
    "build_parser",
    "config_files",
    "cross_validate_locally",
    "data_efficiency_curve",
    "data_path",
    "dataset_names",
    "ensure_synthetic_store",
    "experiment_names",
    "experiment_strategy",
    "fit_command",
    "flag_value",
    "main",
    "plan_cross_validation",
    "prepare_inputs",
    "pretrain_fan",
    "report",
    "resumable_run",
    "robustness_study",
    "run",
    "sbatch",
    "slurm_fold",
    "slurm_trainer_flags",
    "submit_summary_job",
    "submit_to_slurm",
    "table",
    "task_fit_command",
    "train",
    "training_subject_count",
    "wandb_settings",
    "write_curve",
    "write_table",
]
