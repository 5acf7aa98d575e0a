"""The SLURM path of `make cv`: the sbatch scripts, the submission, and a real cluster.

The slow tests start a one-node SLURM cluster on this machine (Debian's ``slurm-wlm`` and
``munge``, installed with apt-get when missing; CI runs as root), run a tiny ``make cv ...
LAUNCH=slurm`` on CPU to its report with a 2-task DDP fit per fold under ``srun``, and signal a
running fold as SLURM does before a time limit to see it save, requeue and resume.
"""

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import write_store

from aunet.data.folds import DISFA_SUBJECTS
from aunet.evaluation import cv
from aunet.launch import (
    plan_cross_validation,
    slurm_fold,
    slurm_trainer_flags,
    submit_to_slurm,
)
from aunet.metrics import icc
from aunet.models import FAN, FANConfig, save_fan

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "experiments" / "slurm"
TINY_FAN = FANConfig(num_stacks=1, width=16, depth=2, kernel_size=3, num_landmarks=68)


def sbatch_directives(script: Path) -> dict[str, str]:
    """``#SBATCH --name=value`` lines as a dict (flags without a value map to "")."""
    directives = {}
    for line in script.read_text().splitlines():
        if line.startswith("#SBATCH "):
            name, _, value = line.split()[1].partition("=")
            directives[name] = value
    return directives


def test_fold_script_runs_one_process_per_gpu_under_srun_and_requeues():
    directives = sbatch_directives(SCRIPTS / "fold.sbatch")
    assert directives["--signal"] == "SIGUSR1@90"
    assert "--requeue" in directives
    gpus = directives["--gres"].removeprefix("gpu:")
    assert directives["--ntasks-per-node"] == gpus  # Lightning: one task per GPU
    text = (SCRIPTS / "fold.sbatch").read_text()
    assert re.search(r"^srun .*-m aunet\.launch cv-fold --plan", text, re.MULTILINE)
    assert "--gres" not in sbatch_directives(SCRIPTS / "report.sbatch")
    for script in ("fold.sbatch", "report.sbatch"):
        subprocess.run(["bash", "-n", str(SCRIPTS / script)], check=True)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, []),
        ({"SLURM_NTASKS": "1", "SLURM_NNODES": "1"},
         ["--trainer.num_nodes", "1", "--trainer.devices", "1"]),
        ({"SLURM_NTASKS": "8", "SLURM_NNODES": "2"},
         ["--trainer.num_nodes", "2", "--trainer.devices", "4", "--trainer.strategy", "ddp"]),
    ],
)  # fmt: skip
def test_trainer_flags_match_the_slurm_step(environment, expected):
    assert slurm_trainer_flags(environment) == expected


def make_plan(root: Path, done: tuple[int, ...] = ()) -> cv.CVPlan:
    """A three-fold plan under ``root`` whose tasks in ``done`` have finished and predicted."""
    tasks = []
    for number in (1, 2, 3):
        run_dir = root / "runs" / "adapt" / "disfa" / f"fold{number}" / "t"
        if number in done:
            run_dir.mkdir(parents=True)
            (run_dir / "metrics.json").write_text("{}")
            cv.predictions_file(run_dir, "last").write_text("")
        tasks.append(cv.CVTask(number, number, str(run_dir)))
    plan = cv.CVPlan(
        "adapt", "disfa", "fan.pt", "last", ("--trainer.max_epochs", "2"), tuple(tasks)
    )
    plan.save()
    return plan


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch) -> Path:
    """An ``sbatch`` on the PATH that records its arguments and answers job ids 101, 102, ..."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    script = bin_dir / "sbatch"
    script.write_text(
        f'#!/bin/bash\necho "$AUNET_PYTHON $*" >> {log}\necho $((100 + $(wc -l < {log})))\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    return log


def test_submission_is_an_array_of_the_missing_folds_and_a_dependent_report(fake_sbatch):
    plan = make_plan(Path.cwd(), done=(2,))
    array_job, report_job = submit_to_slurm(plan, ["--partition=gpu"], ["--gres=gpu:8"])
    assert (array_job, report_job) == ("101", "102")
    fold_call, report_call = [line.split() for line in fake_sbatch.read_text().splitlines()]
    assert fold_call[0] == report_call[0] == sys.executable  # the jobs use this environment
    assert "--array=1,3" in fold_call
    assert fold_call[-2:] == [str(SCRIPTS / "fold.sbatch"), str(plan.path.resolve())]
    assert fold_call.index("--partition=gpu") < fold_call.index("--gres=gpu:8")
    assert f"--output={plan.folder.resolve()}/slurm/fold-%A_%a.out" in fold_call
    assert "--dependency=afterok:101" in report_call
    assert "--kill-on-invalid-dep=yes" in report_call
    assert "--gres=gpu:8" not in report_call
    assert report_call[-2:] == [str(SCRIPTS / "report.sbatch"), str(plan.path.resolve())]


def test_submission_with_every_fold_done_is_the_report_alone(fake_sbatch):
    plan = make_plan(Path.cwd(), done=(1, 2, 3))
    assert submit_to_slurm(plan) == (None, "101")
    (report_call,) = fake_sbatch.read_text().splitlines()
    assert "--dependency" not in report_call


def test_seeds_are_array_tasks_like_the_folds_each_fit_with_its_seed(fake_sbatch, monkeypatch):
    plan = plan_cross_validation("adapt", "disfa", "fan.pt", "last", ["--x", "1"], seeds=2)
    submit_to_slurm(plan)
    fold_call = fake_sbatch.read_text().splitlines()[0].split()
    assert "--array=1,2,3,4,5,6" in fold_call
    executed = []
    monkeypatch.setattr(os, "execv", lambda path, argv: executed.append(argv))
    slurm_fold(plan.path, 5)  # seed 1, fold 2
    (command,) = executed
    text = shlex.join(command)
    assert f"--run.dir {plan.task(5).run_dir} " in text and "--data.fold 2 " in text
    assert text.endswith("--x 1 --seed_everything 1")
    slurm_fold(plan.path, 2)
    assert "--seed_everything" not in shlex.join(executed[-1])


def test_fold_task_becomes_its_fit_and_resumes_from_the_newest_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    plan = make_plan(tmp_path)
    run_dir = Path(plan.task(2).run_dir)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run_dir / "hpc_ckpt_1.ckpt").write_bytes(b"")  # saved later, on SLURM's signal
    os.utime(run_dir / "checkpoints" / "last.ckpt", (1, 1))
    executed = []
    monkeypatch.setattr(os, "execv", lambda path, argv: executed.append(argv))
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_NNODES", "1")
    slurm_fold(plan.path, 2)
    (command,) = executed
    text = shlex.join(command)
    assert command[1] == "fit"
    assert f"--run.dir {run_dir} " in text
    assert "--data.fold 2 " in text
    assert f"--ckpt_path {run_dir / 'hpc_ckpt_1.ckpt'} " in text
    # The allocation's shape first, then ARGS (which may override it).
    assert text.endswith(
        "--trainer.num_nodes 1 --trainer.devices 2 --trainer.strategy ddp --trainer.max_epochs 2"
    )
    (run_dir / "metrics.json").write_text("{}")  # finished: a requeued task has nothing to do
    slurm_fold(plan.path, 2)
    assert len(executed) == 1


# --------------------------------------------------------------------------------------------
# A real one-node cluster (tests/slurm_cluster.py, the `cluster` fixture of conftest.py)


@pytest.fixture
def project(tmp_path, cluster) -> tuple[Path, dict[str, str]]:
    """A project folder (experiments, a tiny FAN) and the environment of `make cv` in it."""
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    save_fan(FAN(TINY_FAN), tmp_path / "fan.pt")
    environment = {
        **cluster.environment,
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",  # the node's name need not resolve on a CI runner
        "AUNET_SBATCH_ARGS": "--time=20 --cpus-per-task=1",
        "AUNET_SBATCH_FOLD_ARGS": "--gres=none --ntasks-per-node=2",
    }
    return tmp_path, environment


def make_cv(folder: Path, environment: dict[str, str], dataset: str, epochs: int) -> list[str]:
    """`make cv ... LAUNCH=slurm` in ``folder``; return the array and report job ids."""
    args = (
        "--data.image_size 32 --data.batch_size 8 --data.num_workers 0 --trainer.accelerator cpu "
        f"--trainer.max_epochs {epochs} --trainer.enable_progress_bar false --run.wandb offline"
    )
    command = ["make", "-f", str(REPO / "Makefile"), "-o", ".venv/.installed", "cv", "EXP=adapt",
               f"DATA={dataset}", "LAUNCH=slurm", f"PY={sys.executable}",
               f"FAN={folder / 'fan.pt'}", f"ARGS={args}"]  # fmt: skip
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = re.search(r"submitted fold array job (\d+) .* report job (\d+)", done.stdout)
    assert found, done.stdout
    return list(found.groups())


def logs_of(folder: Path) -> str:
    return "\n".join(path.read_text() for path in sorted(folder.glob("slurm/*.out")))


@pytest.mark.slow
def test_make_cv_on_slurm_runs_a_2_task_ddp_fit_per_fold_then_the_report(project, cluster):
    folder, environment = project
    write_store(folder / "data" / "disfa.h5", DISFA_SUBJECTS, 2, dataset="disfa", image_size=32)
    array_job, report_job = make_cv(folder, environment, "disfa", epochs=2)
    cluster.wait([array_job, report_job], timeout=480)
    cv_dir = folder / "runs" / "cv" / "adapt-disfa"
    logs = logs_of(cv_dir)
    assert cluster.state(report_job) == "COMPLETED", logs[-4000:]
    for task in (1, 2, 3):
        assert cluster.state(f"{array_job}_{task}") == "COMPLETED"
    assert logs.count("All distributed processes registered. Starting with 2 processes") == 3
    plan = cv.CVPlan.load(cv_dir / "plan.json")
    for task in plan.tasks:
        metrics = json.loads((folder / task.run_dir / "metrics.json").read_text())
        # 36 training frames shared by 2 processes: 18 each, 2 full batches of 8 per epoch.
        assert (metrics["epoch"], metrics["global_step"]) == (2, 4)
    report = json.loads((cv_dir / "report.json").read_text())
    predictions = cv.read_predictions(cv_dir / "predictions.csv")
    assert report["frames"] == len(predictions) == 2 * len(DISFA_SUBJECTS)
    assert sorted(set(predictions.fold)) == ["1", "2", "3"]
    pooled = icc(torch.from_numpy(predictions.pred), torch.from_numpy(predictions.true))
    np.testing.assert_array_equal(
        pooled.numpy(), [np.nan if v is None else v for v in report["icc"].values()]
    )
    assert (cv_dir / "report.md").exists() and (cv_dir / "per_au.png").exists()


@pytest.mark.slow
def test_a_signalled_fold_saves_requeues_and_resumes_to_the_same_step(project, cluster):
    """SIGUSR1 as before a time limit: hpc checkpoint, requeue, resume; official partitions."""
    folder, environment = project
    subjects = [f"F{i:03d}" for i in range(1, 9)]
    partitions = {s: "train" if i < 6 else "devel" for i, s in enumerate(subjects)}
    write_store(folder / "data" / "bp4d.h5", subjects, 10, dataset="bp4d", image_size=32,
                partitions=partitions)  # fmt: skip
    epochs = 20
    array_job, report_job = make_cv(folder, environment, "bp4d", epochs=epochs)
    cv_dir = folder / "runs" / "cv" / "adapt-bp4d"
    run_dir = folder / cv.CVPlan.load(cv_dir / "plan.json").task(1).run_dir
    task = f"{array_job}_1"
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "last.ckpt").exists():  # Lightning's handlers are set
        assert time.monotonic() < deadline, logs_of(cv_dir)[-3000:]
        time.sleep(0.2)
    cluster.run("scancel", "--signal=USR1", task)
    while "BeginTime" not in cluster.run("squeue", "-h", "-j", array_job, "-o", "%r", check=False):
        assert time.monotonic() < deadline, logs_of(cv_dir)[-3000:]
        time.sleep(0.5)
    cluster.run("scontrol", "update", f"jobid={task}", "StartTime=now")  # skip the 2-minute wait
    cluster.wait([array_job, report_job], timeout=300)
    logs = logs_of(cv_dir)
    assert cluster.state(report_job) == "COMPLETED", logs[-4000:]
    assert "SLURM is about to stop this job: saving a checkpoint and requeueing" in logs
    assert f"requeued SLURM job {task}" in logs
    assert "Handling auto-requeue signal" not in logs  # Lightning's own handler stayed out
    assert "restart 1" in logs
    assert f"--ckpt_path {run_dir.relative_to(folder)}/hpc_ckpt_1.ckpt" in logs
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # 60 training frames, 30 per process, 3 full batches of 8 per epoch, as if never stopped.
    assert (metrics["epoch"], metrics["global_step"]) == (epochs, epochs * 3)
    run_id = (run_dir / "wandb_id").read_text().strip()
    offline_runs = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(name.endswith(f"-{run_id}") for name in offline_runs)
    report = json.loads((cv_dir / "report.json").read_text())
    assert report["frames"] == 20  # the devel partition: 2 subjects x 10 frames
    assert set(cv.read_predictions(cv_dir / "predictions.csv").fold) == {"devel"}


@pytest.mark.slow
def test_make_curve_on_slurm_runs_each_points_cross_validation_then_the_curve_job(project, cluster):
    """`make curve ... LAUNCH=slurm`: a job array and report per point, then the curve job."""
    folder, environment = project
    write_store(folder / "data" / "disfa.h5", DISFA_SUBJECTS, 2, dataset="disfa", image_size=32)
    args = (
        "--data.image_size 32 --data.batch_size 8 --data.num_workers 0 --trainer.accelerator cpu "
        "--trainer.max_epochs 1 --trainer.enable_progress_bar false --run.wandb offline"
    )
    command = ["make", "-f", str(REPO / "Makefile"), "-o", ".venv/.installed", "curve",
               "EXP=adapt", "DATA=disfa", "SUBJECTS=2 all", "FOLDS=1", "LAUNCH=slurm",
               f"PY={sys.executable}", f"FAN={folder / 'fan.pt'}", f"ARGS={args}"]  # fmt: skip
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    points = re.findall(r"submitted fold array job (\d+) .* report job (\d+)", done.stdout)
    curve_job = re.search(r"submitted curve job (\d+) after report jobs ([\d, ]+):", done.stdout)
    assert len(points) == 2 and curve_job, done.stdout
    assert curve_job.group(2).split(", ") == [report for _, report in points]
    jobs = [job for point in points for job in point] + [curve_job.group(1)]
    cluster.wait(jobs, timeout=600)
    curves = folder / "runs" / "curves" / "disfa"
    logs = logs_of(curves) + logs_of(folder / "runs" / "cv" / "adapt-disfa-subjects2")
    assert cluster.state(curve_job.group(1)) == "COMPLETED", logs[-4000:]
    for array_job, report_job in points:
        assert cluster.state(f"{array_job}_1") == cluster.state(report_job) == "COMPLETED"
    with (curves / "curve.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["experiment"], r["train_subjects"], r["subjects"]) for r in rows] == [
        ("adapt", "2", "2"), ("adapt", "all", "18"),
    ]  # fmt: skip
    two = json.loads((folder / "runs/cv/adapt-disfa-subjects2/report.json").read_text())
    assert float(rows[0]["icc_mean"]) == pytest.approx(two["icc_mean"])
    assert two["frames"] == 2 * len(DISFA_SUBJECTS) // 3  # fold 1's held-out subjects
