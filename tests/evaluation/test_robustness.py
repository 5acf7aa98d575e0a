"""make robustness: the crop perturbation, zero noise = the plain evaluation, the study's files."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from checkpoint_factories import make_command, run_make, tiny_disfa_project, untrained_run
from factories import draw_face, face_landmarks, write_store
from wandb_records import artifact_table, config_of, records_of, run_records, wait_for_exit

from aunet import launch
from aunet.data.folds import DISFA_SUBJECTS
from aunet.data.store import FrameStore
from aunet.evaluation import crop_noise, cv, robustness
from aunet.evaluation.predictions import predict_run
from aunet.faces.crop import transform_points
from aunet.files import pyplot

REPO = Path(__file__).resolve().parents[2]


def test_box_noise_shifts_the_crop_by_the_noise_scaled_to_the_stores_side():
    """A box moved right by sigma moves the content left by sigma * side / 256 pixels."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    landmarks = face_landmarks(64, rng)
    # 8 px at 256 x 256 is 2 px in a 64-pixel crop.
    moved, points = crop_noise.perturb_crop(image, landmarks, np.array([1.0, 0.0, 0.0]), 8, "box")
    np.testing.assert_array_equal(moved[:, :62], image[:, 2:])
    assert not moved[:, 62:].any()  # outside the stored crop: black
    np.testing.assert_allclose(points, landmarks - [2.0, 0.0], atol=1e-4)
    # A larger side zooms out about the centre: the centre pixel stays, the landmarks move in.
    _, zoomed = crop_noise.perturb_crop(image, landmarks, np.array([0.0, 0.0, 1.0]), 64, "box")
    centre = (64 - 1) / 2
    np.testing.assert_allclose(zoomed - centre, (landmarks - centre) * 64 / 80, atol=1e-4)


def test_landmark_noise_registers_the_moved_anchors_where_the_clean_ones_are():
    rng = np.random.default_rng(1)
    landmarks = face_landmarks(128, rng)
    image = draw_face(landmarks, 128)
    noise = crop_noise.unit_noise(7, seed=3, mode="landmarks")
    moved_image, moved = crop_noise.perturb_crop(image, landmarks, noise, 20.0, "landmarks")
    anchors = landmarks[list(crop_noise.ANCHORS)]
    noisy_anchors = anchors + noise * 20.0 * 128 / 256
    affine = crop_noise.anchor_affine(anchors, noise * 10.0)
    np.testing.assert_allclose(transform_points(noisy_anchors, affine), anchors, atol=1e-3)
    np.testing.assert_allclose(moved, transform_points(landmarks, affine), atol=1e-3)
    assert moved_image.shape == image.shape and not np.array_equal(moved_image, image)
    # Zero noise is no resampling at all.
    same_image, same = crop_noise.perturb_crop(image, landmarks, noise, 0.0, "landmarks")
    assert same_image is image and same is landmarks


def test_unknown_anchors_fall_back_and_noise_is_per_frame_and_reproducible(tmp_path):
    store_path = write_store(tmp_path / "s.h5", DISFA_SUBJECTS[:3], 2, dataset="disfa",
                             image_size=32, no_landmarks=[1])  # fmt: skip
    store = FrameStore(store_path)
    rows = np.arange(6)
    frames = robustness.PerturbedFrames(store, rows, 32, 30.0, "landmarks", seed=0)
    known = store.read_all("landmarks")[[0, 2, 3, 4, 5]][:, list(crop_noise.ANCHORS)]
    np.testing.assert_allclose(frames.fallback_anchors, np.median(known, axis=0))
    assert not np.array_equal(frames[1]["image"], store.image(1))  # no landmarks, still moved
    # A frame gets the same crop in any subset and order; another seed, another crop.
    alone = robustness.PerturbedFrames(store, np.array([3, 1]), 32, 30.0, "landmarks", seed=0)
    for item, row in enumerate((3, 1)):
        np.testing.assert_array_equal(alone[item]["image"], frames[row]["image"])
    other = robustness.PerturbedFrames(store, rows, 32, 30.0, "landmarks", seed=1)
    assert not np.array_equal(other[3]["image"], frames[3]["image"])
    noise = [crop_noise.unit_noise(row, 0, "box") for row in (1, 2)]
    assert not np.array_equal(*noise)


def tiny_run(tmp_path: Path) -> Path:
    """A run folder with an untrained adapt model over a tiny FAN, and its config."""
    return untrained_run(tmp_path, fold=3, batch_size=4)[0]


def test_zero_noise_is_the_plain_evaluation_and_noise_changes_it(tmp_path):
    run = tiny_run(tmp_path)
    plain = cv.score(predict_run(run, "last", device="cpu"))
    curve = robustness.robustness_curve(
        run / "checkpoints" / "last.ckpt", levels=[0, 40], device="cpu"
    )
    assert [point["noise_px"] for point in curve] == [0.0, 40.0]
    assert [point["noise_store_px"] for point in curve] == [0.0, 5.0]  # 32-pixel crops
    for key in ("icc", "mse", "icc_mean", "mse_mean", "frames"):
        assert curve[0][key] == plain[key]
    assert curve[1]["frames"] == plain["frames"] == 18  # fold 3's nine subjects, two frames each
    assert curve[1]["mse"] != plain["mse"]


def test_study_writes_the_csv_plot_and_markdown(tmp_path):
    run = tiny_run(tmp_path)
    folder = tmp_path / "out"
    curve = robustness.run_study(
        run / "checkpoints" / "last.ckpt", folder, "adapt", "disfa", levels=[0, 10], mode="box",
        every=2, wandb_mode="disabled",
    )  # fmt: skip
    with (folder / "robustness.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [float(row["noise_px"]) for row in rows] == [0.0, 10.0]
    assert int(rows[0]["frames"]) == 9  # every other held-out frame
    assert list(rows[0])[5:9] == ["icc_mean_low", "icc_mean_high", "mse_mean_low", "mse_mean_high"]
    assert list(rows[0])[9:11] == ["icc_AU01", "icc_AU02"] and list(rows[0])[-1] == "mse_AU26"
    assert float(rows[1]["mse_mean"]) == pytest.approx(curve[1]["mse_mean"])
    for row, point in zip(rows, curve, strict=True):  # each level's interval, over subjects
        low, high = point["intervals"]["mse_mean"]
        written = (float(row["mse_mean_low"]), float(row["mse_mean_high"]))
        assert written == pytest.approx((low, high))
        assert low <= point["mse_mean"] <= high
        assert point["intervals"]["bootstrap"]["subjects"] == 9  # fold 3's held-out subjects
    assert (folder / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (folder / "robustness.md").read_text()
    assert "noise model `box`" in markdown
    title = "adapt on disfa, face-box noise: 9 held-out frames of fold 3 (last.ckpt)"
    assert markdown.startswith(f"# Robustness to misalignment: {title}\n")
    assert not (folder / "wandb").exists()


def test_the_curve_names_each_aus_line_and_the_experiment_in_its_title(tmp_path, monkeypatch):
    """The figure as drawn, caught before it is saved."""
    drawn = {}

    def keep(figure, path, title, rect=(0, 0, 1, 1)):
        drawn.update(figure=figure, title=title)
        return path

    monkeypatch.setattr(robustness, "save_figure", keep)
    aus = ["AU01", "AU02", "AU04"]
    point = {"icc": dict.fromkeys(aus, 0.5), "mse": dict.fromkeys(aus, 1.0), "icc_mean": 0.5,
             "mse_mean": 1.0, "intervals": {"icc_mean": [0.4, 0.6], "mse_mean": None}}  # fmt: skip
    curve = [{**point, "noise_px": level} for level in (0.0, 10.0)]
    robustness.plot_curve(tmp_path / "robustness.png", curve, "adapt on disfa")
    figure = drawn["figure"]
    (au_legend,) = figure.legends  # beside the panels, for both
    assert [text.get_text() for text in au_legend.get_texts()] == aus
    colours = {tuple(line.get_color()) for line in au_legend.get_lines()}
    assert len(colours) == len(aus)  # no two AUs drawn alike
    assert figure.axes[0].get_legend().get_texts()[0].get_text() == "mean over AUs"
    assert drawn["title"] == "adapt on disfa"
    pyplot().close(figure)


def test_latest_checkpoint_is_the_run_that_finished_last_not_the_last_name(tmp_path):
    """Folder names (start times) and finish times disagree: the finish time decides."""
    assert robustness.latest_checkpoint(tmp_path) is None
    # (folder, finished at): the first started first but was resumed and finished last; the
    # third never finished; "by-hand" was named with --run.dir.
    for name, finished_at in (("20260101-000000", 3000), ("20260102-000000", 1000),
                              ("20260103-000000", None), ("by-hand", 2000)):  # fmt: skip
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "last.ckpt").write_bytes(b"")
        if finished_at is not None:
            (tmp_path / name / "metrics.json").write_text("{}")
            os.utime(tmp_path / name / "metrics.json", (finished_at, finished_at))
    expected = tmp_path / "20260101-000000" / "checkpoints" / "last.ckpt"
    assert robustness.latest_checkpoint(tmp_path) == expected
    os.utime(tmp_path / "by-hand" / "metrics.json", (4000, 4000))
    assert robustness.latest_checkpoint(tmp_path) == tmp_path / "by-hand/checkpoints/last.ckpt"


def test_the_study_is_a_wandb_run_in_the_experiments_group(tmp_path, monkeypatch):
    """make robustness's W&B run, read back from its offline file as the dashboard gets it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # staged artifact files
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    run = tiny_run(tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())  # the data section
    config["model"] = {"init_args": {"strategy": "adapt", "lr": 0.0005}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "wandb_id").write_text("trained1\n")
    checkpoint = run / "checkpoints" / "last.ckpt"
    folder = launch.robustness_study("adapt", "disfa", checkpoint, None, [0, 10], "box", 0, 3,
                                     ["--run.wandb", "offline"])  # fmt: skip
    wait_for_exit(folder)

    (record,) = run_records(folder)
    assert (record.run_group, record.job_type, record.display_name) == (
        "adapt-disfa", "robustness", "adapt-disfa-robustness",
    )  # fmt: skip
    logged = config_of(record)
    assert (logged["model"], logged["data"]) == (config["model"], config["data"])
    assert logged["robustness"] == {
        "checkpoint": str(checkpoint), "noise": "box", "seed": 0, "every": 3,
        "levels": [0.0, 10.0], "held_out": "3", "source_run": "trained1",
    }  # fmt: skip
    with (folder / "robustness.csv").open(newline="") as file:
        header, *rows = list(csv.reader(file))
    (history,) = records_of(folder, "history")
    logged = {item.nested_key[0] for item in history.item if item.nested_key}
    assert {"robustness/curve", "robustness/plot"} <= logged
    charts = {  # wandb.plot.line: a chart in the config over a table logged beside it
        item.nested_key[-1]: json.loads(item.value_json)["panel_config"]["fieldSettings"]
        for config in records_of(folder, "config")
        for item in config.update
        if list(item.nested_key[:2]) == ["_wandb", "visualize"]
    }
    assert charts["robustness/icc"] == {"x": "noise_px", "y": "icc_mean", "stroke": None}
    assert charts["robustness/mse"]["y"] == "mse_mean"
    assert {"robustness/icc_table", "robustness/mse_table"} <= logged
    (curve,) = [a for a in records_of(folder, "artifact") if "robustnesscurve" in a.name]
    table = artifact_table(curve, "robustness/curve")
    assert table["columns"] == header
    assert table["data"] == [[float(v) if v else None for v in row] for row in rows]
    summary = {
        item.key: json.loads(item.value_json)
        for summary in records_of(folder, "summary")
        for item in summary.update
    }
    for row in rows:
        level = f"{float(row[0]):g}px"
        assert summary[f"robustness/icc_mean/{level}"] == pytest.approx(float(row[3]))
        assert summary[f"robustness/mse_mean/{level}"] == pytest.approx(float(row[4]))
    assert summary["robustness/frames"] == int(rows[0][2]) == 6  # every third of 18 frames


def test_a_checkpoint_outside_a_run_folder_is_refused_naming_the_file(tmp_path):
    with pytest.raises(robustness.RobustnessError, match=r"config\.yaml: cannot rebuild"):
        robustness.held_out_frames(tmp_path / "loose.ckpt")


@pytest.mark.slow
def test_make_robustness_trains_a_run_first_when_there_is_none(tmp_path):
    fan = tiny_disfa_project(tmp_path)
    args = (
        "--data.image_size 32 --data.batch_size 8 --data.num_workers 0 --trainer.max_epochs 1 "
        f"--trainer.enable_progress_bar false --run.wandb disabled --model.fan {fan}"
    )
    done = run_make(tmp_path, make_command("robustness", "EXP=adapt", "DATA=disfa", f"ARGS={args}"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "training one first" in done.stdout
    (run,) = (tmp_path / "runs" / "adapt" / "disfa" / "fold1").iterdir()
    folder = tmp_path / "runs" / "robustness" / "adapt-disfa"
    with (folder / "robustness.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [float(row["noise_px"]) for row in rows] == list(robustness.NOISE_LEVELS)
    checkpoint = run.relative_to(tmp_path) / "checkpoints" / "last.ckpt"
    assert f"Checkpoint `{checkpoint}`" in (folder / "robustness.md").read_text()
