"""The studies over cross-validations: the paper's table, the data-efficiency curve, robustness."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aunet import progress
from aunet.data.datamodule import AUDataModule
from aunet.data.folds import FOLD_DATASETS, NUM_FOLDS
from aunet.data.store import StoreError
from aunet.evaluation import curve as curves
from aunet.evaluation import robustness, tables
from aunet.evaluation.table_rows import (
    missing_experiments,
    order_experiments,
    report_file,
    table_folder,
)
from aunet.launch.configs import LaunchError, config_files, data_path, wandb_settings
from aunet.launch.inputs import prepare_stores
from aunet.launch.local import (
    cross_validate_locally,
    plan_cross_validation,
    require_seeds,
    train,
)
from aunet.launch.slurm import submit_summary_job, submit_to_slurm
from aunet.runs import (
    last_checkpoint,
    run_root,
)


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
    ordered = order_experiments(experiments)
    missing = missing_experiments(ordered, dataset, seeds=seeds)
    for name in ordered:
        if name not in missing:
            print(f"{name}: {report_file(name, dataset)} exists; not running it again")
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
    job = submit_summary_job(f"table-{dataset}", table_folder(dataset), build,
                             report_jobs, sbatch_args)  # fmt: skip
    print(
        f"submitted table job {job} after report jobs {', '.join(report_jobs)}: "
        f"{table_folder(dataset)}/table.md once it ends"
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
    folds = curves.study_folds(dataset, folds)
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
        write_curve(dataset, experiments, sizes, folds, extra, available)
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
    all_subjects: int | None = None,
) -> None:
    """Write ``runs/curves/<dataset>/curve.{csv,png,md}``, log it to W&B and print it.

    ``all_subjects``: how many training subjects ``all`` is, when the caller counted them
    already (counting opens the store once per fold).
    """
    if all_subjects is None:
        all_subjects = training_subject_count(dataset, curves.study_folds(dataset, folds))
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
