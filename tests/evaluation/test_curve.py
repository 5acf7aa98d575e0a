"""The data-efficiency study (make curve): nested subject subsets, equal steps, the curve files."""

import csv
import itertools
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from checkpoint_factories import make_command, run_make, tiny_disfa_project
from factories import write_store
from wandb_records import records_of, run_records, wait_for_exit

from aunet import launch
from aunet.data.datamodule import AUDataModule
from aunet.data.folds import DISFA_FOLDS, DISFA_SUBJECTS, disfa_fold, nested_subjects
from aunet.evaluation import curve, cv
from aunet.launch import LaunchError, plan_cross_validation, slurm, studies, task_fit_command

REPO = Path(__file__).resolve().parents[2]
SUBJECTS = [f"P{k:02d}" for k in range(18)]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_smaller_subject_sets_are_subsets_of_larger_ones_for_each_seed(seed):
    sets = [nested_subjects(SUBJECTS, n, seed) for n in (1, 2, 4, 9, 18)]
    for small, large in itertools.pairwise(sets):
        assert large[: len(small)] == small
    assert [len(s) for s in sets] == [1, 2, 4, 9, 18]
    assert sorted(sets[-1]) == SUBJECTS
    # The order depends on the names only, not on the order they come in.
    assert nested_subjects(reversed(SUBJECTS), 9, seed) == sets[3]


def test_seeds_draw_different_orders_and_each_is_the_same_every_time():
    orders = {nested_subjects(SUBJECTS, 18, seed) for seed in range(5)}
    assert len(orders) == 5
    assert nested_subjects(SUBJECTS, 4, 3) == nested_subjects(SUBJECTS, 4, 3)


@pytest.mark.parametrize("count", [0, 19])
def test_a_count_outside_the_folds_subjects_is_refused(count):
    with pytest.raises(ValueError, match=rf"train_subjects must be 1\.\.18 .*got {count}"):
        nested_subjects(SUBJECTS, count)


@pytest.fixture
def disfa_store(tmp_path) -> Path:
    return write_store(tmp_path / "disfa.h5", DISFA_SUBJECTS, 3, dataset="disfa")


def test_a_subset_trains_only_its_subjects_for_as_many_frames_as_every_subject(disfa_store):
    every = AUDataModule(disfa_store, fold=2, num_workers=0)
    subset = AUDataModule(disfa_store, fold=2, num_workers=0, train_subjects=2,
                          subject_order_seed=5)  # fmt: skip
    train_subjects, held_out = disfa_fold(2)
    chosen = nested_subjects(train_subjects, 2, 5)
    assert subset.chosen_subjects == chosen and subset.training_subjects == tuple(sorted(
        train_subjects))  # fmt: skip
    rows = subset.rows("train")
    assert set(subset.store.subjects[rows]) == set(chosen)
    assert len(rows) == len(every.rows("train")) == 18 * 3
    # Every frame of the two subjects comes back equally often (9 times each here).
    assert set(np.unique(rows, return_counts=True)[1]) == {9}
    for stage in ("val", "test", "predict"):
        np.testing.assert_array_equal(subset.rows(stage), every.rows(stage))
    assert set(subset.store.subjects[subset.rows("test")]) == set(held_out)


def test_too_many_subjects_is_refused_naming_the_store_and_fold(disfa_store):
    with pytest.raises(ValueError, match=r"disfa\.h5, fold 3: train_subjects must be 1\.\.18"):
        AUDataModule(disfa_store, fold=3, num_workers=0, train_subjects=19)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    return tmp_path


def test_a_points_plan_has_its_own_folders_and_fits_on_its_subjects_in_its_seeds_order(project):
    ordinary = plan_cross_validation("adapt", "disfa", "fan.pt", "last", [])
    plan = plan_cross_validation("adapt", "disfa", "fan.pt", "last", ["--x", "1"], seeds=2,
                                 train_subjects=4, folds=[2])  # fmt: skip
    assert plan.folder == Path("runs/cv/adapt-disfa-subjects4") != ordinary.folder
    assert [(t.fold, t.seed) for t in plan.tasks] == [(2, 0), (2, 1)]
    assert {Path(t.run_dir).parent for t in plan.tasks} == {
        Path("runs/adapt/disfa/subjects4/fold2")
    }
    for task in plan.tasks:
        command = shlex.join(task_fit_command(plan, task))
        assert command.endswith(f"--data.train_subjects 4 --data.subject_order_seed {task.seed}"), (
            command
        )
        assert "--x 1" in command
    assert cv.CVPlan.load(plan.path) == plan
    every = plan_cross_validation("adapt", "disfa", None, "last", [], train_subjects="all")
    assert every.folder.name == "adapt-disfa-subjectsall" and len(every.tasks) == 3
    assert "--data.train_subjects" not in task_fit_command(every, every.tasks[0])
    assert all("--data.train_subjects" not in task_fit_command(ordinary, t) for t in ordinary.tasks)


def test_a_plan_written_before_the_study_loads_as_an_ordinary_cross_validation(project):
    plan = plan_cross_validation("adapt", "disfa", None, "last", [])
    data = json.loads(plan.path.read_text())
    del data["train_subjects"]
    plan.path.write_text(json.dumps(data))
    assert cv.CVPlan.load(plan.path) == plan and plan.train_subjects is None


def test_folds_outside_1_to_3_are_refused(project):
    with pytest.raises(LaunchError, match="FOLDS=1 4: folds are 1 to 3"):
        plan_cross_validation("adapt", "disfa", None, "last", [], folds=[1, 4])


@pytest.mark.parametrize(
    ("values", "expected"),
    [(["all", "4", "1"], (1, 4, "all")), (["9"], (9,)), (["all"], ("all",))],
)
def test_sizes_are_counts_in_order_then_all(values, expected):
    assert curve.parse_sizes(values) == expected


@pytest.mark.parametrize("values", [["0"], ["two"], ["2", "2"], ["-1"], ["all", "all"]])
def test_a_bad_size_is_refused_naming_it(values):
    with pytest.raises(curve.CurveError, match="SUBJECTS"):
        curve.parse_sizes(values)


def point_report(icc_mean: float, seeds: int = 1) -> dict:
    report = {
        "icc": {"AU01": icc_mean}, "mse": {"AU01": 1 - icc_mean}, "icc_mean": icc_mean,
        "mse_mean": 1 - icc_mean, "frames": 90,
        "intervals": {"icc_mean": [icc_mean - 0.1, icc_mean + 0.05],
                      "mse_mean": [0.9 - icc_mean, 1.2 - icc_mean]},
    }  # fmt: skip
    if seeds > 1:
        report["seeds"] = {"count": seeds, "spread": {"icc_mean": {"sd": 0.02}}}
    return report


def write_points(root: Path, points: dict[tuple[str, object], dict]) -> None:
    for (experiment, size), report in points.items():
        folder = cv.cv_folder(experiment, "disfa", root, size)
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(report))


def test_the_curve_files_hold_every_points_figures_and_name_the_missing(tmp_path):
    points = {("scratch", 1): point_report(0.1), ("scratch", "all"): point_report(0.4),
              ("reparam", 1): point_report(0.3, seeds=3), ("reparam", 4): point_report(0.45),
              ("reparam", "all"): point_report(0.5)}  # fmt: skip
    write_points(tmp_path / "cv", points)
    files = curve.build_curve("disfa", ["scratch", "reparam"], (1, 4, "all"), 18,
                              tmp_path / "cv", tmp_path / "curves")  # fmt: skip
    with files.csv.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == curve.COLUMNS
    assert [(r["experiment"], r["train_subjects"], r["subjects"]) for r in rows] == [
        ("scratch", "1", "1"), ("scratch", "all", "18"), ("reparam", "1", "1"),
        ("reparam", "4", "4"), ("reparam", "all", "18"),
    ]  # fmt: skip
    reparam_one = rows[2]
    assert float(reparam_one["icc_mean"]) == 0.3
    assert float(reparam_one["icc_low"]) == pytest.approx(0.2)
    assert float(reparam_one["icc_high"]) == pytest.approx(0.35)
    assert (reparam_one["seeds"], reparam_one["icc_sd"]) == ("3", "0.02")
    assert rows[0]["seeds"] == "1" and rows[0]["icc_sd"] == ""
    markdown = files.markdown.read_text()
    assert "| Method | 1 subject | 4 subjects | all (18) |" in markdown
    assert "| scratch | 0.100 [0.000, 0.150] | – | 0.400 [0.300, 0.450] |" in markdown
    assert str(cv.cv_folder("scratch", "disfa", tmp_path / "cv", 4) / "report.json") in markdown
    assert files.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_curve_without_any_report_says_what_to_run(tmp_path):
    with pytest.raises(curve.CurveError, match="run `make curve DATA=disfa` first"):
        curve.build_curve("disfa", ["adapt"], (1,), 18, tmp_path / "cv", tmp_path / "out")


def test_the_curve_on_slurm_is_a_cv_per_point_then_a_curve_job_after_every_report(
    project, monkeypatch
):
    write_store(project / "data" / "disfa.h5", DISFA_SUBJECTS, 1, dataset="disfa")
    submitted, jobs = [], []
    monkeypatch.setattr(
        studies, "submit_to_slurm",
        lambda plan, *_: submitted.append(plan) or ("10", str(20 + len(submitted))),
    )  # fmt: skip
    monkeypatch.setattr(slurm, "sbatch", lambda arguments, env: jobs.append(arguments) or "30")
    launch.data_efficiency_curve("disfa", ["adapt", "reparam"], (2, "all"), [1, 3], "slurm",
                                 None, "last", ["--run.wandb", "offline"])  # fmt: skip
    assert [(p.experiment, p.train_subjects) for p in submitted] == [
        ("adapt", 2),
        ("adapt", "all"),
        ("reparam", 2),
        ("reparam", "all"),
    ]
    assert all([t.fold for t in p.tasks] == [1, 3] for p in submitted)
    (arguments,) = jobs
    assert "--dependency=afterok:21:22:23:24" in arguments
    wrap = next(a for a in arguments if a.startswith("--wrap="))
    assert (f"--wrap={sys.executable} -m aunet.launch curve-report --data disfa --exps adapt "
            "reparam --subjects 2 all --folds 1 3 -- --run.wandb offline") == wrap  # fmt: skip


def test_more_subjects_than_a_fold_has_is_refused_before_anything_is_planned(project):
    write_store(project / "data" / "disfa.h5", DISFA_SUBJECTS, 1, dataset="disfa")
    with pytest.raises(LaunchError, match=r"has 18 training subjects per fold"):
        launch.data_efficiency_curve("disfa", ["adapt"], (4, 20), None, "local", None, "last", [])
    assert not (project / "runs" / "cv").exists()


def test_the_synthetic_default_trains_fold_1_under_the_studys_reduced_budget():
    assert curve.QUICK_FOLDS["synthetic"] == (1,)
    assert curve.settings_flags("synthetic") == ["--config", "experiments/curve/synthetic.yaml"]
    assert curve.settings_flags("disfa") == []  # real datasets keep their own schedule


def test_make_curve_locally_end_to_end_with_its_wandb_summary_run(tmp_path):
    """`make curve` on a tiny DISFA store, fold 1, 1 and all subjects; then a re-run."""
    fan = tiny_disfa_project(tmp_path)
    args = (
        "--data.image_size 32 --data.batch_size 8 --data.num_workers 0 --trainer.max_epochs 1 "
        "--trainer.enable_progress_bar false --run.wandb offline"
    )
    command = make_command("curve", "EXP=adapt", "DATA=disfa", "SUBJECTS=1 all", "FOLDS=1",
                           f"FAN={fan}", f"ARGS={args}")  # fmt: skip
    first = run_make(tmp_path, command, WANDB_MODE="offline")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    one = json.loads((tmp_path / "runs/cv/adapt-disfa-subjects1/report.json").read_text())
    every = json.loads((tmp_path / "runs/cv/adapt-disfa-subjectsall/report.json").read_text())
    assert one["train_subjects"] == 1 and every["train_subjects"] == "all"
    assert one["frames"] == every["frames"] == 2 * len(DISFA_FOLDS[0])  # fold 1's held out
    (run_dir,) = (tmp_path / "runs/adapt/disfa/subjects1/fold1").iterdir()
    config = (run_dir / "config.yaml").read_text()
    assert "train_subjects: 1" in config and "subject_order_seed: 0" in config
    folder = tmp_path / "runs" / "curves" / "disfa"
    with (folder / "curve.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["train_subjects"], r["subjects"]) for r in rows] == [("1", "1"), ("all", "18")]
    assert float(rows[0]["icc_mean"]) == pytest.approx(one["icc_mean"])
    assert "curve: runs/curves/disfa/curve.csv" in first.stdout
    wait_for_exit(folder)
    (record,) = run_records(folder)
    assert (record.run_group, record.job_type, record.display_name) == (
        "curve-disfa", "curve", "curve-disfa",
    )  # fmt: skip
    (history,) = records_of(folder, "history")
    assert {"curve/rows", "curve/plot"} <= {i.nested_key[0] for i in history.item if i.nested_key}
    summary = {
        item.key: json.loads(item.value_json)
        for summary_record in records_of(folder, "summary")
        for item in summary_record.update
    }
    assert summary["curve/icc_mean/adapt/subjects1"] == pytest.approx(one["icc_mean"])
    assert summary["curve/icc_mean/adapt/subjectsall"] == pytest.approx(every["icc_mean"])

    second = run_make(tmp_path, command, WANDB_MODE="offline")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("has finished; not training it again") == 2
    assert os.listdir(tmp_path / "runs/adapt/disfa/subjects1/fold1") == [run_dir.name]
