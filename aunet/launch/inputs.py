"""What a run needs before it trains: the synthetic stores, drawn once, and the FAN."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aunet import progress, shipped_fan
from aunet.files import copy_atomically
from aunet.launch import configs
from aunet.launch.configs import (
    EXPERIMENTS,
    LaunchError,
    config_files,
    data_path,
    executable,
    experiment_strategy,
)
from aunet.models import NEEDS_FAN, USES_FAN
from aunet.runs import (
    best_checkpoint,
    last_checkpoint,
    new_run_folder,
    run_root,
)
from aunet.synthetic import draw as synthetic
from data_prep import synthetic as data_prep_synthetic

CHECKPOINTS = Path("checkpoints")


SYNTHETIC_LANDMARK_STORE = shipped_fan.LANDMARK_STORE


#: What ``make fan`` writes; the synthetic default prefers it to the shipped FAN.
SYNTHETIC_FAN = CHECKPOINTS / "fan_synthetic.ckpt"


#: Frames drawn to time the drawing of a synthetic store.
PROBE_FRAMES = 8


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
    configs.run([sys.executable, "-m", "data_prep", "synthetic", "--out", str(path),
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


def pretrain_fan(store: Path, extra: list[str]) -> Path:
    """Pre-train a FAN and copy its best checkpoint to checkpoints/.

    Best by validation NME on the landmark store's held-out subjects, which no AU experiment
    scores on (``last.ckpt`` if no validation ran: :func:`aunet.runs.best_checkpoint`).

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
    configs.run([*command, "--data.path", str(store), "--run.dir", str(folder),
         "--run.experiment", "fan", *extra])  # fmt: skip
    source = best_checkpoint(folder) or last_checkpoint(folder)
    target = CHECKPOINTS / f"fan_{name}.ckpt"
    copy_atomically(source, target)
    print(f"FAN checkpoint: {target} (from {source})")
    return target


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
