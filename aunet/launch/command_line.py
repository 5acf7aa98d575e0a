"""``python -m aunet.launch``: the launcher's command line."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from aunet.cli.guards import command_line
from aunet.evaluation import crop_noise, cv, robustness
from aunet.evaluation import curve as curves
from aunet.evaluation.predictions import CVError, run_predictions
from aunet.evaluation.table_rows import EXPERIMENT_ORDER, TableError, order_experiments
from aunet.launch.configs import LaunchError
from aunet.launch.inputs import SYNTHETIC_LANDMARK_STORE, pretrain_fan
from aunet.launch.local import cross_validate_locally, plan_cross_validation, report, train
from aunet.launch.slurm import slurm_fold, submit_to_slurm
from aunet.launch.studies import (
    data_efficiency_curve,
    robustness_study,
    table,
    write_curve,
    write_table,
)
from aunet.training.checkpoint_io import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    """``train``, ``cv`` and ``fan`` sub-commands; flags after ``--`` go to ``aunet fit``."""
    parser = argparse.ArgumentParser(
        prog="python -m aunet.launch",
        description="The experiment launcher behind make train, cv, fan, table, curve, robustness.",
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
        "--exps", nargs="+", default=list(EXPERIMENT_ORDER),
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
    remake_parser.add_argument("--exps", nargs="+", default=list(EXPERIMENT_ORDER))
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
    robust_parser.add_argument("--noise", choices=crop_noise.NOISE_MODES, default="landmarks")
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
    errors = (LaunchError, CVError, TableError, robustness.RobustnessError,
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
        run_predictions(plan.task(args.task).run_dir, plan.checkpoint)
    elif args.command == "cv-report":
        report(cv.CVPlan.load(args.plan))
    elif args.command == "table":
        table(args.data, args.exps, args.launch, args.fan, args.checkpoint, extra,
              shlex.split(args.sbatch), shlex.split(args.sbatch_fold), args.seeds)  # fmt: skip
    elif args.command == "table-report":
        write_table(args.data, order_experiments(args.exps), extra)
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
