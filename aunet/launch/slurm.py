"""SLURM: a cross-validation as a job array with a report job after it, and summary jobs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aunet.evaluation import cv
from aunet.launch.configs import EXPERIMENTS, LaunchError
from aunet.launch.local import task_fit_command

SLURM_SCRIPTS = EXPERIMENTS / "slurm"


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
