"""Cross-validation: out-of-fold predictions, the aggregated report, the plan, and make cv."""

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from checkpoint_factories import make_command, run_make, tiny_disfa_project, untrained_run
from wandb_records import artifact_table, config_of, records_of, run_records, wait_for_exit

from aunet import launch
from aunet.aus import DATASET_AUS
from aunet.data.datamodule import AUDataModule
from aunet.data.dataset import FrameDataset, collate_frames
from aunet.data.folds import DISFA_SUBJECTS
from aunet.evaluation import cv
from aunet.evaluation.bootstrap import BootstrapSettings, intervals, seed_mean_intervals
from aunet.evaluation.predictions import checkpoint_file, predict_run
from aunet.launch import (
    LaunchError,
    configs,
    cross_validate_locally,
    fit_command,
    flag_value,
    plan_cross_validation,
    task_fit_command,
)
from aunet.launch import main as launch_main
from aunet.metrics import icc, mse
from aunet.runs import best_checkpoint

REPO = Path(__file__).resolve().parents[2]
AUS = ("AU01", "AU02", "AU04")


def fold_predictions(fold: int, frames: int, rng: np.random.Generator) -> cv.Predictions:
    """Random predictions of one fold; AU04 is never labelled in fold 1, AU02 unknown in a row."""
    true = rng.integers(0, 6, size=(frames, len(AUS))).astype(np.float64)
    pred = np.clip(true + rng.normal(fold * 0.5, 1.0, size=true.shape), 0, 5)
    if fold == 1:
        true[:, 2] = np.nan
    true[0, 1] = np.nan
    return cv.Predictions(
        AUS,
        np.array([f"S{fold}{i // 3}" for i in range(frames)], dtype=object),
        np.arange(frames, dtype=np.int64) + 1,
        np.array([str(fold)] * frames, dtype=object),
        true,
        pred,
    )


def finished_run(folder: Path, predictions: cv.Predictions) -> Path:
    """A run folder as a finished fit leaves it, with its predictions already written."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    os.utime(folder / "checkpoints" / "last.ckpt", (1, 1))  # older than the predictions
    (folder / "metrics.json").write_text("{}")
    cv.write_predictions(cv.predictions_file(folder, "last"), predictions)
    return folder


@pytest.fixture
def plan(tmp_path, monkeypatch) -> tuple[cv.CVPlan, list[cv.Predictions]]:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    parts = [fold_predictions(fold, 12 + fold, rng) for fold in (1, 2, 3)]
    tasks = tuple(
        cv.CVTask(fold, fold, str(finished_run(tmp_path / f"run{fold}", part)))
        for fold, part in zip((1, 2, 3), parts, strict=True)
    )
    return cv.CVPlan("adapt", "disfa", None, "last", (), tasks), parts


def read_csv_columns(path: Path) -> dict[str, list[str]]:
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    return {key: [row[key] for row in rows] for key in rows[0]}


def test_report_is_icc_and_mse_of_the_concatenated_predictions_file(plan):
    plan, parts = plan
    report = cv.make_report(plan)
    columns = read_csv_columns(plan.folder / "predictions.csv")
    as_float = lambda cells: [float(c) if c else math.nan for c in cells]  # noqa: E731
    true = torch.tensor([as_float(columns[f"{au}_true"]) for au in AUS], dtype=torch.float64).T
    pred = torch.tensor([as_float(columns[f"{au}_pred"]) for au in AUS], dtype=torch.float64).T
    expected_icc, expected_mse = icc(pred, true), mse(pred, true)
    written = json.loads((plan.folder / "report.json").read_text())
    assert written["icc"] == report["icc"]
    for k, au in enumerate(AUS):
        assert written["icc"][au] == float(expected_icc[k])
        assert written["mse"][au] == float(expected_mse[k])
    assert written["icc_mean"] == pytest.approx(float(expected_icc.mean()))
    assert written["mse_mean"] == pytest.approx(float(expected_mse.mean()))
    assert written["frames"] == sum(len(part) for part in parts) == len(columns["subject"])
    # The pooled ICC is not the mean of the folds' ICCs (Sec. 5.1 asks for the pooled one).
    fold_means = [float(icc(torch.from_numpy(p.pred), torch.from_numpy(p.true))[0]) for p in parts]
    assert abs(written["icc"]["AU01"] - np.mean(fold_means)) > 1e-3


def test_predictions_file_has_the_contract_columns_and_every_fold_in_order(plan):
    plan, parts = plan
    cv.make_report(plan)
    path = plan.folder / "predictions.csv"
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["subject", "frame", "fold", "AU01_true", "AU01_pred", "AU02_true",
                      "AU02_pred", "AU04_true", "AU04_pred"]  # fmt: skip
    columns = read_csv_columns(path)
    assert columns["fold"] == [str(p.fold[0]) for p in parts for _ in range(len(p))]
    assert columns["subject"] == [s for p in parts for s in p.subject]
    assert columns["AU02_true"][0] == ""  # unknown truth is an empty cell
    assert [float(v) for v in columns["AU01_pred"][:3]] == pytest.approx(parts[0].pred[:3, 0])


def test_undefined_icc_is_null_and_the_means_skip_it(tmp_path):
    rng = np.random.default_rng(1)
    part = fold_predictions(1, 10, rng)  # AU04 never labelled: ICC and MSE undefined
    report = cv.score(part)
    assert report["icc"]["AU04"] is None and report["mse"]["AU04"] is None
    for metric in ("icc", "mse"):
        defined = [report[metric][au] for au in ("AU01", "AU02")]
        assert report[f"{metric}_mean"] == pytest.approx(np.mean(defined))
    assert json.loads(json.dumps(report))["icc"]["AU04"] is None  # JSON null, not NaN


def test_report_markdown_plot_and_json_are_written(plan):
    plan, _ = plan
    report = cv.make_report(plan)
    markdown = (plan.folder / "report.md").read_text()
    assert f"| AU01 | {report['icc']['AU01']:.3f} |" in markdown
    assert "| AU04 | n/a |" not in markdown  # AU04 is labelled in folds 2 and 3
    assert "not as a mean of fold scores" in markdown
    assert (plan.folder / "per_au.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(plan.folder.glob(".*"))  # no temporary files left behind


def test_report_gives_subject_bootstrap_intervals_of_the_pooled_predictions(plan):
    plan, _ = plan
    report = cv.make_report(plan, BootstrapSettings(resamples=200, seed=4))
    written = json.loads((plan.folder / "report.json").read_text())["intervals"]
    predictions = cv.read_predictions(plan.folder / "predictions.csv")
    expected = intervals(predictions, BootstrapSettings(resamples=200, seed=4))
    assert written == json.loads(json.dumps(expected))
    assert written["bootstrap"]["subjects"] == len(set(predictions.subject))
    low, high = written["icc_mean"]
    assert low <= report["icc_mean"] <= high
    markdown = (plan.folder / "report.md").read_text()
    assert f"| **mean** | **{report['icc_mean']:.3f}** | [{low:.3f}, {high:.3f}] |" in markdown
    assert "bootstrap over the" in markdown and "200 resamples, seed 4" in markdown


def fold_config(fold: int, run_dir: str) -> dict:
    """The parts of a fold's ``config.yaml`` that matter here: the fold's own and the shared."""
    return {
        "data": {"path": "data/disfa.h5", "fold": fold, "batch_size": 8},
        "model": {"class_path": "aunet.training.AUHeatmapModule",
                  "init_args": {"strategy": "adapt", "lr": 0.0005}},
        "run": {"dir": run_dir, "experiment": "adapt", "wandb": "offline"},
        "seed_everything": 1,
    }  # fmt: skip


def test_the_report_run_holds_the_experiments_config_the_fold_runs_and_the_predictions(
    plan, tmp_path, monkeypatch
):
    """Read back from the report run's offline W&B file, as the dashboard would receive it."""
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # staged artifact files
    plan, _ = plan
    for task in plan.tasks:
        (Path(task.run_dir) / "config.yaml").write_text(
            yaml.safe_dump(fold_config(task.fold, task.run_dir))
        )
    (Path(plan.tasks[0].run_dir) / "wandb_id").write_text("fold1id\n")
    (Path(plan.tasks[1].run_dir) / "wandb_id").write_text("fold2id\n")  # fold 3 logged none
    report = cv.make_report(plan)
    cv.log_report_to_wandb(plan, report, mode="offline")
    wait_for_exit(plan.folder)

    (run,) = run_records(plan.folder)
    assert (run.run_group, run.job_type, run.display_name) == (
        "adapt-disfa", "cv-report", "adapt-disfa-cv",
    )  # fmt: skip
    config = config_of(run)
    # The experiment's settings, nested as the fold runs log theirs; each fold's own left out.
    assert config["model"] == fold_config(1, "")["model"]
    assert config["data"] == {"path": "data/disfa.h5", "batch_size": 8}
    assert config["run"] == {"experiment": "adapt", "wandb": "offline"}
    assert config["seed_everything"] == 1
    assert config["fold_runs"] == {"fold1": "fold1id", "fold2": "fold2id", "fold3": None}
    assert config["plan"]["experiment"] == "adapt"

    # Besides the tables run.log stores as artifacts of their own (type run_table).
    (artifact,) = [a for a in records_of(plan.folder, "artifact") if a.type == "predictions"]
    assert artifact.name == "adapt-disfa-predictions"
    table = artifact_table(artifact, "predictions")
    with (plan.folder / "predictions.csv").open(newline="") as file:
        header, *rows = list(csv.reader(file))
    assert table["columns"] == header
    types = {name: {t["wb_type"] for t in kind["params"]["allowed_types"]}
             for name, kind in table["column_types"]["params"]["type_map"].items()}  # fmt: skip
    assert types["subject"] == {"string", "none"} and types["AU02_true"] == {"number", "none"}
    assert len(table["data"]) == len(rows) == report["frames"]
    for written, row in zip(table["data"], rows, strict=True):
        subject, frame, fold, *values = row
        assert written[:3] == [subject, int(frame), fold]
        assert written[3:] == pytest.approx([float(v) if v else None for v in values])


def test_a_missing_run_stops_the_report_naming_it(plan):
    plan, _ = plan
    (Path(plan.tasks[1].run_dir) / "metrics.json").unlink()
    with pytest.raises(cv.CVError, match=r"fold2 \(.*run2\)"):
        cv.make_report(plan)


def test_read_predictions_rejects_a_wrong_header(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("subject,frame,AU01_true,AU01_pred\nSN001,1,0,0\n")
    with pytest.raises(cv.CVError, match=r"p\.csv: header must be"):
        cv.read_predictions(path)


def test_checkpoint_choice(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    with pytest.raises(cv.CVError, match=r"no last\.ckpt"):
        checkpoint_file(folder.parent, "last")
    (folder / "last.ckpt").write_bytes(b"")
    with pytest.raises(cv.CVError, match=r"no best-epochNNN\.ckpt"):
        checkpoint_file(folder.parent, "best")
    (folder / "best-epoch004.ckpt").write_bytes(b"")
    assert checkpoint_file(folder.parent, "last").name == "last.ckpt"
    assert checkpoint_file(folder.parent, "best").name == "best-epoch004.ckpt"


def test_the_best_checkpoint_is_the_latest_epochs_latest_version_whatever_the_file_times(
    tmp_path,
):
    """Files left by a fit killed between a best save and the next: the newest history wins."""
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for age, name in enumerate(
        ["best-epoch100-v1.ckpt", "best-epoch100.ckpt", "best-epoch099.ckpt"]
    ):
        (folder / name).write_bytes(b"")
        os.utime(folder / name, (1000 - age, 1000 - age))  # v1 the oldest file, as after a copy
    (folder / "best-notes.ckpt").write_bytes(b"")  # not a name aunet writes: ignored
    assert best_checkpoint(folder.parent) == folder / "best-epoch100-v1.ckpt"
    assert checkpoint_file(folder.parent, "best") == folder / "best-epoch100-v1.ckpt"
    assert best_checkpoint(tmp_path / "elsewhere") is None


def test_plan_round_trip_and_a_second_plan_keeps_the_run_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    first = plan_cross_validation("adapt", "disfa", "fan.pt", "last", ["--trainer.max_epochs", "2"])
    assert [task.fold for task in first.tasks] == [1, 2, 3]
    assert [Path(task.run_dir).parts[:4] for task in first.tasks] == [
        ("runs", "adapt", "disfa", f"fold{k}") for k in (1, 2, 3)
    ]
    assert cv.CVPlan.load(first.path) == first
    second = plan_cross_validation(
        "adapt", "disfa", "fan.pt", "best", ["--trainer.max_epochs", "3"]
    )
    assert second.tasks == first.tasks
    assert second.checkpoint == "best"
    assert "finished runs keep theirs" in capsys.readouterr().out
    official = plan_cross_validation("adapt", "bp4d", "fan.pt", "last", [])
    assert [(task.task, task.fold, task.label) for task in official.tasks] == [
        (1, None, "official")
    ]
    assert Path(official.tasks[0].run_dir).parts[:4] == ("runs", "adapt", "bp4d", "official")


def test_plan_load_names_a_bad_file(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text('{"experiment": "adapt"}')
    with pytest.raises(cv.CVError, match=r"plan\.json: not a cross-validation plan"):
        cv.CVPlan.load(path)


def test_predict_run_predicts_every_held_out_frame_with_the_checkpoint(tmp_path, capsys):
    """Against the module applied directly to the fold's held-out frames."""
    run, module, data_config = untrained_run(tmp_path, fold=2, batch_size=5)
    store = data_config["path"]
    (tmp_path / "fan.pt").unlink()  # the checkpoint alone rebuilds the model
    predictions = predict_run(run, "last", device="cpu")
    progress = capsys.readouterr().err.splitlines()  # the bar, one line per tenth off a terminal
    assert progress[-1].startswith(f"predicting {tmp_path.name}/run [####################] 100% "
                                   "4/4 batches")  # fmt: skip

    data = AUDataModule(**data_config)
    rows = data.rows("predict")
    batch = collate_frames([FrameDataset(store, rows, transform=None)[i] for i in range(len(rows))])
    module.eval()
    with torch.no_grad():
        expected, _ = module.predict_intensities(batch["image"])
    assert len(predictions) == len(rows) == 18  # 9 held-out subjects x 2 frames
    assert predictions.pred.std() > 0  # an untrained but not constant model
    assert set(predictions.fold) == {"2"}
    np.testing.assert_allclose(predictions.pred, expected.double().numpy(), atol=1e-5)
    np.testing.assert_array_equal(predictions.true, batch["au"].double().numpy())
    assert list(predictions.subject[:2]) == [data.store.subjects[rows[0]]] * 2


@pytest.mark.slow
def test_make_cv_locally_end_to_end_and_a_rerun_only_does_what_is_missing(tmp_path):
    """`make cv` on a tiny DISFA store: three folds, the report, W&B; then a re-run."""
    fan = tiny_disfa_project(tmp_path)
    args = (
        "--data.image_size 32 --data.batch_size 8 --data.num_workers 0 --trainer.max_epochs 1 "
        "--trainer.enable_progress_bar false --run.wandb offline"
    )
    command = make_command("cv", "EXP=adapt", "DATA=disfa", f"FAN={fan}", f"ARGS={args}")
    first = run_make(tmp_path, command, WANDB_MODE="offline")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    folder = tmp_path / "runs" / "cv" / "adapt-disfa"
    report = json.loads((folder / "report.json").read_text())
    assert report["frames"] == 54
    assert set(report["icc"]) == set(DATASET_AUS["disfa"])
    predictions = cv.read_predictions(folder / "predictions.csv")
    assert sorted(predictions.subject) == sorted(s for s in DISFA_SUBJECTS for _ in range(2))
    pooled = icc(torch.from_numpy(predictions.pred), torch.from_numpy(predictions.true))
    reported = [report["icc"][au] for au in predictions.au_names]
    np.testing.assert_array_equal(pooled.numpy(), [math.nan if v is None else v for v in reported])
    assert list((folder / "wandb").glob("offline-run-*"))
    assert report["intervals"]["bootstrap"]["subjects"] == len(DISFA_SUBJECTS)
    assert "95% intervals over subjects: ICC [" in first.stdout
    plan = cv.CVPlan.load(folder / "plan.json")
    checkpoints = [Path(tmp_path, t.run_dir, "checkpoints", "last.ckpt") for t in plan.tasks]
    stamps = [path.stat().st_mtime for path in checkpoints]

    second = run_make(tmp_path, command, WANDB_MODE="offline")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("has finished; not training it again") == 3
    assert [path.stat().st_mtime for path in checkpoints] == stamps
    assert json.loads((folder / "report.json").read_text())["icc"] == report["icc"]


# --------------------------------------------------------------------------------------------
# Seeds: every fold trained n times (make cv SEEDS=n)


def seed_predictions(seed: int, rng: np.random.Generator) -> list[cv.Predictions]:
    """One seed's fold predictions: the same frames and truth as every seed, its own noise."""
    parts = [fold_predictions(fold, 12 + fold, np.random.default_rng(fold)) for fold in (1, 2, 3)]
    return [
        cv.Predictions(p.au_names, p.subject, p.frame, p.fold, p.true,
                       np.clip(p.pred + rng.normal(0, 0.3 * seed, p.pred.shape), 0, 5))
        for p in parts
    ]  # fmt: skip


@pytest.fixture
def seeded_plan(tmp_path, monkeypatch) -> tuple[cv.CVPlan, list[list[cv.Predictions]]]:
    """A finished plan of three folds by three seeds, tasks numbered seed by seed."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(7)
    by_seed = [seed_predictions(seed, rng) for seed in range(3)]
    tasks = tuple(
        cv.CVTask(
            3 * seed + fold, fold, str(finished_run(tmp_path / f"s{seed}f{fold}", part)), seed
        )
        for seed, parts in enumerate(by_seed)
        for fold, part in zip((1, 2, 3), parts, strict=True)
    )
    return cv.CVPlan("adapt", "disfa", None, "last", (), tasks), by_seed


def pooled_icc_mse(parts: list[cv.Predictions]) -> tuple[np.ndarray, np.ndarray]:
    """ICC and MSE per AU of the folds' predictions stacked: the paper's pooled scores."""
    pred = torch.from_numpy(np.concatenate([p.pred for p in parts]))
    true = torch.from_numpy(np.concatenate([p.true for p in parts]))
    return icc(pred, true).numpy(), mse(pred, true).numpy()


def test_a_report_of_seeds_gives_the_mean_sd_and_range_of_each_seeds_pooled_scores(seeded_plan):
    plan, by_seed = seeded_plan
    settings = BootstrapSettings(resamples=100, seed=3)
    report = cv.make_report(plan, settings)
    written = json.loads((plan.folder / "report.json").read_text())
    assert written == json.loads(json.dumps(report))
    seeds = written["seeds"]
    assert seeds["count"] == 3
    scores = [pooled_icc_mse(parts) for parts in by_seed]
    for k, au in enumerate(AUS):
        for m, metric in enumerate(("icc", "mse")):
            values = np.array([score[m][k] for score in scores])
            figures = seeds["spread"][metric][au]
            assert figures["mean"] == pytest.approx(values.mean())
            assert written[metric][au] == pytest.approx(values.mean())  # the reported figure
            assert figures["sd"] == pytest.approx(values.std(ddof=1))
            assert (figures["min"], figures["max"]) == pytest.approx((values.min(), values.max()))
            assert [e[metric][au] for e in seeds["per_seed"]] == pytest.approx(values)
    means = np.array([np.nanmean(score[0]) for score in scores])
    assert written["icc_mean"] == pytest.approx(means.mean())
    assert seeds["spread"]["icc_mean"]["sd"] == pytest.approx(means.std(ddof=1))
    assert means.std() > 1e-3  # the seeds differ
    # Every seed's pooled predictions are kept, and the report names them and their runs.
    assert [e["predictions"] for e in seeds["per_seed"]] == [
        "predictions.csv", "predictions-seed1.csv", "predictions-seed2.csv"
    ]  # fmt: skip
    for seed, entry in enumerate(seeds["per_seed"]):
        kept = cv.read_predictions(plan.folder / entry["predictions"])
        expected = np.concatenate([p.pred for p in by_seed[seed]])
        np.testing.assert_allclose(kept.pred, expected, rtol=1e-8)  # 9 digits in the CSV
        assert entry["runs"] == [task.run_dir for task in plan.tasks_of(seed)]
    assert [run["label"] for run in written["runs"]] == [
        f"fold{f}{'' if s == 0 else f'-seed{s}'}" for s in range(3) for f in (1, 2, 3)
    ]
    # The intervals are the seed mean's, on the same resamples of subjects for every seed.
    pooled = [cv.read_predictions(plan.folder / e["predictions"]) for e in seeds["per_seed"]]
    assert written["intervals"] == json.loads(json.dumps(seed_mean_intervals(pooled, settings)))
    assert written["intervals"]["bootstrap"]["seeds"] == 3
    markdown = (plan.folder / "report.md").read_text()
    assert "Seeds: 3." in markdown and "mean over the seeds" in markdown
    icc_mean = seeds["spread"]["icc_mean"]
    assert (
        f"| **mean** | **{icc_mean['mean']:.3f}** | {icc_mean['sd']:.3f} | "
        f"{icc_mean['min']:.3f}-{icc_mean['max']:.3f} |" in markdown
    )


def test_a_report_of_one_seed_is_the_report_before_seeds(plan):
    plan, _ = plan
    report = cv.make_report(plan)
    assert set(report) == {"icc", "mse", "icc_mean", "mse_mean", "frames", "intervals",
                           "experiment", "dataset", "checkpoint", "runs"}  # fmt: skip
    assert set(report["intervals"]["bootstrap"]) == {"resamples", "seed", "level", "unit",
                                                     "subjects"}  # fmt: skip
    assert set(report["runs"][0]) == {"label", "run_dir", "frames", "held_out", "icc_mean"}
    assert sorted(path.name for path in plan.folder.glob("predictions*")) == ["predictions.csv"]
    assert "Seeds:" not in (plan.folder / "report.md").read_text()


def test_a_plan_without_seeds_loads_as_seed_0(tmp_path):
    path = tmp_path / "plan.json"
    tasks = [{"task": k, "fold": k, "run_dir": f"runs/adapt/disfa/fold{k}/x"} for k in (1, 2, 3)]
    path.write_text(json.dumps({"experiment": "adapt", "dataset": "disfa", "fan": None,
                                "checkpoint": "last", "extra": [], "tasks": tasks}))  # fmt: skip
    plan = cv.CVPlan.load(path)
    assert [(task.seed, task.label) for task in plan.tasks] == [(0, f"fold{k}") for k in (1, 2, 3)]
    assert plan.seeds == (0,)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    return tmp_path


def test_a_plan_of_seeds_has_a_task_per_fold_and_seed_each_fit_with_its_seed(project):
    one = plan_cross_validation("adapt", "disfa", "fan.pt", "last", ["--x", "1"])
    assert [(t.task, t.fold, t.seed, t.label) for t in one.tasks] == [
        (k, k, 0, f"fold{k}") for k in (1, 2, 3)
    ]
    # One seed: the fits of the launcher before seeds (base.yaml's seed_everything 0).
    for task in one.tasks:
        expected = fit_command(
            "adapt", "disfa", task.fold, "fan.pt", Path(task.run_dir), ["--x", "1"]
        )
        assert task_fit_command(one, task) == expected
        assert "--seed_everything" not in expected
    assert yaml.safe_load((REPO / "experiments" / "base.yaml").read_text())["seed_everything"] == 0
    (project / "runs" / "cv").joinpath("adapt-disfa", "plan.json").unlink()
    plan = plan_cross_validation("adapt", "disfa", "fan.pt", "last", ["--x", "1"], seeds=3)
    assert [(t.task, t.fold, t.seed) for t in plan.tasks] == [
        (3 * s + f, f, s) for s in range(3) for f in (1, 2, 3)
    ]
    assert [t.label for t in plan.tasks[3:5]] == ["fold1-seed1", "fold2-seed1"]
    # Planned in the same second, under the same fold folder: never the same run folder.
    assert len({t.run_dir for t in plan.tasks}) == 9
    assert {Path(t.run_dir).parent.name for t in plan.tasks_of(2)} == {"fold1", "fold2", "fold3"}
    for task in plan.tasks:
        command = task_fit_command(plan, task)
        seeded = command[-2:] == ["--seed_everything", str(task.seed)]
        assert seeded == (task.seed > 0)
        assert command.count("--seed_everything") == (task.seed > 0)
    assert cv.CVPlan.load(plan.path) == plan


@pytest.mark.parametrize("seeds", [0, -1])
def test_fewer_than_one_seed_is_refused_in_one_line(project, seeds, capsys):
    with pytest.raises(LaunchError, match=rf"^SEEDS={seeds}: the number of seeds per fold must"):
        plan_cross_validation("adapt", "disfa", None, "last", [], seeds=seeds)
    with pytest.raises(LaunchError, match=rf"^SEEDS={seeds}: "):
        launch.table("disfa", ["adapt"], "local", None, "last", [], seeds=seeds)
    with pytest.raises(SystemExit) as stopped:
        launch_main(["cv", "--exp", "adapt", "--data", "disfa", "--seeds", str(seeds)])
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"SEEDS={seeds}" in line


def test_more_seeds_extend_a_plan_and_train_only_the_new_runs(project, monkeypatch):
    trained = []

    def fake_fit(command: list[str]) -> None:  # leaves what a finished fit leaves
        run_dir = Path(flag_value(command, "--run.dir"))
        fold = int(flag_value(command, "--data.fold"))
        seed = int(flag_value(command, "--seed_everything") or 0)
        trained.append((fold, seed))
        finished_run(run_dir, seed_predictions(seed, np.random.default_rng(seed))[fold - 1])

    monkeypatch.setattr(configs, "run", fake_fit)
    extra = ["--run.wandb", "disabled"]
    first = plan_cross_validation("adapt", "disfa", None, "last", extra)
    cross_validate_locally(first)
    assert trained == [(1, 0), (2, 0), (3, 0)]
    one_seed = json.loads((first.folder / "report.json").read_text())
    stamps = [(Path(t.run_dir) / "metrics.json").stat().st_mtime_ns for t in first.tasks]

    trained.clear()
    extended = plan_cross_validation("adapt", "disfa", None, "last", extra, seeds=3)
    assert extended.tasks[:3] == first.tasks
    report = cross_validate_locally(extended)
    assert trained == [(f, s) for s in (1, 2) for f in (1, 2, 3)]
    assert [(Path(t.run_dir) / "metrics.json").stat().st_mtime_ns for t in first.tasks] == stamps
    assert report["seeds"]["per_seed"][0]["icc"] == one_seed["icc"]  # seed 0 kept as it was
    # Asked again for fewer seeds: the plan keeps its runs, and nothing trains.
    trained.clear()
    again = plan_cross_validation("adapt", "disfa", None, "last", extra, seeds=2)
    assert again.tasks == extended.tasks
    cross_validate_locally(again)
    assert trained == []


def test_the_report_run_of_seeds_holds_their_figures_and_every_seeds_predictions(
    seeded_plan, tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    plan, _ = seeded_plan
    for task in plan.tasks:
        (Path(task.run_dir) / "config.yaml").write_text(
            yaml.safe_dump(fold_config(task.fold, task.run_dir))
        )
    report = cv.make_report(plan, BootstrapSettings(resamples=50))
    cv.log_report_to_wandb(plan, report, mode="offline")
    wait_for_exit(plan.folder)
    summary = {
        item.key: json.loads(item.value_json)
        for record in records_of(plan.folder, "summary")
        for item in record.update
    }
    spread = report["seeds"]["spread"]["icc_mean"]
    assert summary["cv/seeds"] == 3
    assert summary["cv/icc_mean"] == pytest.approx(spread["mean"])
    for key in ("sd", "min", "max"):
        assert summary[f"cv/icc_mean_{key}"] == pytest.approx(spread[key])
    for entry in report["seeds"]["per_seed"]:
        assert summary[f"cv/seed{entry['seed']}/icc_mean"] == pytest.approx(entry["icc_mean"])
    (artifact,) = [a for a in records_of(plan.folder, "artifact") if a.type == "predictions"]
    for name in ("predictions", "predictions-seed1", "predictions-seed2"):
        assert len(artifact_table(artifact, name)["data"]) == report["frames"]
    assert config_of(run_records(plan.folder)[0])["fold_runs"]["fold3-seed2"] is None
