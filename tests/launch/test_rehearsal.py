"""The paper's recipe as a user runs it, on stand-ins for what they hold (``make rehearse``).

A DISFA user converts the release (``make prep DATA=disfa ROOT=...``), plugs in the public
2DFAN-4 weights and runs every experiment of the paper's tables through SLURM (``make table
DATA=disfa FAN=... LAUNCH=slurm``): 256 x 256 inputs, the base schedule of
``experiments/base.yaml`` to its last epoch with its cosine restarts, three folds; then the
robustness study (``make robustness``) and ``aunet-predict`` with the table's best model. Here
each of those steps runs as the user types it, on

- a raw folder in the release's layout, made by ``tests/raw_datasets.py``: one AVI video per
  subject (all 27 of DISFA's), the per-AU label text files and 66-point ``.mat`` landmarks
  (a BP4D/FERA2015 folder of JPEG frames and per-AU label CSVs for the second recipe, which
  uses the official partitions and dlib's landmarks);
- a seeded FAN saved as a bare state dict in the official 2DFAN-4 key format (four stacks, avg
  pooling, nearest upsampling; a reduced width, which :func:`aunet.models.load_fan` reads as
  the official format);
- the one-node SLURM cluster of ``tests/slurm_cluster.py``.

Only the number of batches per epoch is cut (``TRAIN_BATCHES``, ``VAL_BATCHES``) and the batch
size; everything else is the configuration a researcher runs. It passes when every experiment
reaches the end of its schedule (``adapt_finetune`` through its second stage, with its backbone
weights moved, the frozen backbones untouched), the table has every row with the complexity of
the model that produced it, the robustness study writes its curve and ``aunet-predict`` its CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from raw_datasets import make_bp4d, make_disfa

from aunet import launch
from aunet.aus import DATASET_AUS
from aunet.data.folds import DISFA_SUBJECTS
from aunet.evaluation import cv
from aunet.models import FAN, build_strategy, load_fan
from aunet.models.fan import OFFICIAL_2DFAN4_CONFIG

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "experiments" / "base.yaml").read_text())
MAX_EPOCHS = BASE["trainer"]["max_epochs"]
RESTART_EVERY = BASE["model"]["init_args"]["cosine_period_epochs"]
# LightningCLI reads a limit of 1 as 1.0, the whole epoch: 2 is the fewest batches it can mean.
TRAIN_BATCHES, VAL_BATCHES, BATCH_SIZE = 2, 2, 2
#: The stand-in for the public 2DFAN-4: its layout, at a width that trains in seconds on a CPU.
STAND_IN_2DFAN4 = dataclasses.replace(OFFICIAL_2DFAN4_CONFIG, width=16)
#: Experiments whose strategy keeps the given FAN frozen to the end.
FROZEN_BACKBONE = ("adapt", "adapt_1m", "attention", "reparam")
FRAMES_PER_SUBJECT = 4
#: FERA2015 subjects of both official partitions: train F001, F003, F005; devel F002, F004.
BP4D_SUBJECTS = ("F001", "F003", "F005", "F002", "F004")

# Hours, not the suite's 10 minutes: a recipe is dozens of fits through a queue of two CPUs.
pytestmark = [pytest.mark.slow, pytest.mark.rehearsal, pytest.mark.timeout(4 * 3600)]


def experiments() -> list[str]:
    """Every AU experiment with a config: the rows ``make table`` must produce."""
    return [name for name in launch.experiment_names() if name != "fan"]


@pytest.fixture(scope="module")
def official_fan(tmp_path_factory) -> Path:
    """A seeded FAN in the official format: a bare state dict, as face-alignment ships it."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "2DFAN4-stand-in.pth.tar"
    torch.save(FAN(STAND_IN_2DFAN4).state_dict(), path)
    assert load_fan(path).config == STAND_IN_2DFAN4, "load_fan must read it as official"
    return path


def environment(cluster) -> dict[str, str]:
    return {
        **cluster.environment,
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        # One process per fold; two folds at a time on the 2-CPU test node.
        "AUNET_SBATCH_ARGS": "--time=120 --cpus-per-task=1",
        "AUNET_SBATCH_FOLD_ARGS": "--gres=none --ntasks-per-node=1",
    }


def make(folder: Path, env: dict[str, str], target: str, *variables: str) -> str:
    """``make <target> VAR=...`` in ``folder`` as a user types it; return its output."""
    command = ["make", "-f", str(REPO / "Makefile"), "-o", ".venv/.installed", target,
               *variables, f"PY={sys.executable}"]  # fmt: skip
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"make {target}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def fit_flags() -> str:
    """The ``ARGS`` of the rehearsal: fewer batches per epoch, and nothing else of the recipe."""
    return (
        f"--trainer.limit_train_batches {TRAIN_BATCHES} --trainer.limit_val_batches {VAL_BATCHES} "
        f"--data.batch_size {BATCH_SIZE} --data.num_workers 0 --trainer.accelerator cpu "
        "--trainer.enable_progress_bar false"
    )


def wait_for_every_job(cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while cluster.run("squeue", "-h", check=False).strip():
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs still queued after {timeout} s:\n{cluster.run('squeue')}")
        time.sleep(5)


def slurm_logs(folder: Path) -> str:
    return "\n".join(path.read_text()[-2000:] for path in sorted(folder.rglob("slurm/*.out")))


def lr_per_epoch(run_dir: Path) -> list[float]:
    """The learning rate of the head's parameter group at each epoch (LearningRateMonitor).

    With a second group (``adapt_finetune``'s FAN) the monitor names the first ``lr-Adam/pg1``.
    """
    rates = []
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with path.open(newline="") as file:
            for row in csv.DictReader(file):
                rate = row.get("lr-Adam") or row.get("lr-Adam/pg1")
                if rate:
                    rates.append(float(rate))
    return rates


#: Where each strategy keeps the given FAN's tensors in its checkpoint.
FAN_PREFIX = {"reparam": "model.net."}
#: reparam's frozen convolution weights are its ``theta`` (Sec. 4.5: W x_1 theta).
REPARAM_NAMES = ((".weight", ".theta"), (".bias", ".theta_bias"))


def backbone_moved(checkpoint: dict, fan: FAN, strategy: str) -> bool:
    """Whether any FAN tensor inside ``checkpoint`` (BN statistics included) left ``fan``'s value.

    Layers the strategy replaced (those mapping to or from the 68 landmark maps, remade for K
    AU maps: a tensor of theirs is missing or of another shape) are not compared.
    """
    state = checkpoint["state_dict"]
    prefix = FAN_PREFIX.get(strategy, "model.backbone.fan.")
    layers: dict[str, list[tuple[torch.Tensor, torch.Tensor | None]]] = {}
    for key, value in fan.state_dict().items():
        names = [prefix + key] + [prefix + key.removesuffix(old) + new
                                  for old, new in REPARAM_NAMES if key.endswith(old)]  # fmt: skip
        found = next((state[name] for name in names if name in state), None)
        layers.setdefault(key.rsplit(".", 1)[0], []).append((value, found))
    kept = [
        pairs
        for pairs in layers.values()
        if all(found is not None and found.shape == value.shape for value, found in pairs)
    ]
    assert len(kept) > len(layers) // 2, f"the FAN's layers are not under {prefix}"
    return any(not torch.equal(found, value) for pairs in kept for value, found in pairs)


def check_every_run_finished(folder: Path, dataset: str, fan_file: Path) -> None:
    fan = load_fan(fan_file)
    for experiment in experiments():
        plan = cv.CVPlan.load(folder / "runs" / "cv" / f"{experiment}-{dataset}" / "plan.json")
        for task in plan.tasks:
            run_dir = folder / task.run_dir
            metrics = json.loads((run_dir / "metrics.json").read_text())
            checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
            where = f"{experiment} {run_dir}"
            assert metrics["epoch"] == MAX_EPOCHS, where
            assert metrics["global_step"] == MAX_EPOCHS * TRAIN_BATCHES, where
            assert checkpoint["global_step"] == metrics["global_step"], f"last.ckpt of {where}"
            lrs = lr_per_epoch(run_dir)
            assert len(lrs) == MAX_EPOCHS, where
            # Warm restarts: back to the initial rate every RESTART_EVERY epochs.
            assert lrs[RESTART_EVERY] == pytest.approx(lrs[0]), where
            assert lrs[RESTART_EVERY - 1] < lrs[0], where
            if experiment == "adapt_finetune":
                moved = backbone_moved(checkpoint, fan, experiment)
                assert moved, f"stage 2 left the FAN as it was: {where}"
            elif experiment in FROZEN_BACKBONE:
                moved = backbone_moved(checkpoint, fan, experiment)
                assert not moved, f"the frozen FAN moved: {where}"


def check_table(folder: Path, dataset: str, fan_file: Path) -> dict[str, float]:
    """Every experiment a row, with the complexity of what ran; return the ICC averages."""
    table_dir = folder / "runs" / "tables" / dataset
    with (table_dir / "table.csv").open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["source"] == "aunet"]
    icc_rows = {row["experiment"]: row for row in rows if row["block"] == "icc"}
    assert sorted(icc_rows) == sorted(experiments())
    num_aus = len(DATASET_AUS[{"disfa": "disfa", "bp4d": "fera2015"}[dataset]])
    fan = load_fan(fan_file)
    expected = {  # counted here from the networks, independently of the table's code
        "scratch": build_strategy("scratch", num_aus),
        "adapt": build_strategy("adapt", num_aus, fan=fan),
        "finetune": build_strategy("finetune", num_aus, fan=fan),
    }
    for experiment, model in expected.items():
        parameters = sum(p.numel() for p in model.parameters())
        assert int(float(icc_rows[experiment]["params"])) == parameters, experiment
    assert all(row["gflops"] for row in icc_rows.values())
    assert (table_dir / "table.md").exists() and (table_dir / "table.png").exists()
    return {name: float(row["avg"]) if row["avg"] else -1.0 for name, row in icc_rows.items()}


def best_model(folder: Path, dataset: str, averages: dict[str, float], fold: str) -> Path:
    """``last.ckpt`` of the best experiment's run on ``fold`` (``fold1``, ``official``)."""
    best = max(averages, key=averages.get)
    (run,) = sorted((folder / "runs" / best / dataset / fold).glob("*/checkpoints/last.ckpt"))
    return run


def rehearse(folder: Path, env: dict[str, str], cluster, dataset: str, fan: Path) -> Path:
    """``make table`` on SLURM, checks, ``make robustness``; return the best model."""
    before = time.monotonic()
    output = make(folder, env, "table", f"DATA={dataset}", f"FAN={fan}", "LAUNCH=slurm",
                  f"ARGS={fit_flags()}")  # fmt: skip
    assert "submitted table job" in output, output[-2000:]
    wait_for_every_job(cluster, timeout=3 * 3600)
    print(f"\n{dataset}: make table on SLURM took {time.monotonic() - before:.0f} s")
    assert (folder / "runs" / "tables" / dataset / "table.md").exists(), slurm_logs(folder)
    check_every_run_finished(folder, dataset, fan)
    averages = check_table(folder, dataset, fan)
    fold = "fold1" if dataset == "disfa" else "official"
    model = best_model(folder, dataset, averages, fold)
    best = model.parents[4].name
    make(folder, env, "robustness", f"EXP={best}", f"DATA={dataset}", f"ARGS={fit_flags()}")
    study = folder / "runs" / "robustness" / f"{best}-{dataset}"
    assert (study / "robustness.csv").exists() and (study / "robustness.png").exists()
    return model


def predict(folder: Path, env: dict[str, str], inputs: list[Path], model: Path) -> list[dict]:
    out = folder / "predicted.csv"
    command = [str(Path(sys.executable).with_name("aunet-predict")), *map(str, inputs),
               "--ckpt", str(model), "--out", str(out), "--no-progress"]  # fmt: skip
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with out.open(newline="") as file:
        return list(csv.DictReader(file))


def project(folder: Path) -> Path:
    (folder / "experiments").symlink_to(REPO / "experiments")
    return folder


def test_the_disfa_recipe(tmp_path, cluster, official_fan):
    folder, env = project(tmp_path), environment(cluster)
    raw = make_disfa(tmp_path / "DISFA", DISFA_SUBJECTS, FRAMES_PER_SUBJECT, faces=True)
    make(folder, env, "prep", "DATA=disfa", f"ROOT={raw}")
    model = rehearse(folder, env, cluster, "disfa", official_fan)
    video = raw / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    rows = predict(folder, env, [video], model)
    assert len(rows) == FRAMES_PER_SUBJECT
    assert all(row["success"] == "1" for row in rows)
    assert {f"{au}_r" for au in DATASET_AUS["disfa"]} <= set(rows[0])


def test_the_bp4d_recipe(tmp_path, cluster, official_fan):
    folder, env = project(tmp_path), environment(cluster)
    intensities = (0.0, 1.0, 2.0, 3.0, 4.0)
    sequences = {
        (subject, "T1"): {frame: tuple((v + frame) % 6 for v in intensities)
                          for frame in range(1, FRAMES_PER_SUBJECT + 1)}
        for subject in BP4D_SUBJECTS
    }  # fmt: skip
    images, _ = make_bp4d(tmp_path / "BP4D", sequences)
    make(folder, env, "prep", "DATA=bp4d", f"ROOT={tmp_path / 'BP4D'}")
    model = rehearse(folder, env, cluster, "bp4d", official_fan)
    frames = sorted((images / "F002" / "T1").glob("*.jpg"))
    rows = predict(folder, env, [images / "F002" / "T1"], model)  # a folder: one OpenFace CSV
    assert len(rows) == len(frames)
    assert {f"{au}_r" for au in DATASET_AUS["fera2015"]} <= set(rows[0])
