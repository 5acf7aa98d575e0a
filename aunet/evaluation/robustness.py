"""Robustness to misalignment: ICC and MSE while the test-time face crop is perturbed.

The BMVC predecessor (Sanchez-Lozano et al., 2018) registers each face from three landmarks (the
chin and the outer eye corners, 0-based iBUG 8, 36 and 45, mapped by an affine transform onto
fixed points of a 256 x 256 image; its released ``AUmaps.transform``), perturbs the landmarks with
Gaussian noise of growing standard deviation, up to about 55 px at 256 x 256, and reports that
the heatmap network is stable up to about 13 px. ``make robustness`` repeats the study on any
trained aunet model.

The frame stores hold crops already made from clean landmarks (:mod:`aunet.faces.crop`), so the
study perturbs each stored crop as the noisy landmarks would have cropped it: it resamples the
stored crop by the affine map between the clean and the noisy registration, then evaluates as
usual (resize to the network's input, predict, ICC(3,1) and MSE per AU on all frames). Two noise
models (``--noise``):

- ``landmarks`` (default, the BMVC protocol): the three anchor landmarks each move by
  N(0, sigma^2) per coordinate; the registration the moved anchors give maps them onto where the
  clean anchors are, so the crop rotates, shears, scales and shifts as it would under that
  landmark error. A frame whose anchors are unknown uses the median anchors of the store's
  frames (the crops are registered alike, so the median is where a face's anchors usually are).
- ``box``: aunet's own crop (a square box around the landmarks, :func:`aunet.faces.crop.face_box`)
  with its centre x, centre y and side each moved by N(0, sigma^2), the error of a face box from a
  jittery detector. The side never shrinks below a quarter of the crop.

Noise levels are in pixels of a 256 x 256 crop, whatever the store's crop side A: a level sigma
moves points by sigma * A / 256 stored pixels. Outside the stored crop the image is black.

Reproducibility: a frame's standard-normal noise vector is drawn from ``(seed, store row)`` and
scaled by each level, so every level perturbs every frame in the same direction, growing in size
(common random numbers: the curve's differences between levels are not sampling noise), and the
curve does not depend on the batch size, the worker count or which other frames are evaluated.
Level 0 is the plain evaluation exactly (no resampling).

Each level's means have a 95% interval from a bootstrap over the held-out subjects
(:mod:`aunet.evaluation.bootstrap`).

Outputs (``runs/robustness/<experiment>-<dataset>/``): ``robustness.csv`` (one row per level:
``noise_px``, ``noise_store_px``, ``frames``, ``icc_mean``, ``mse_mean``, ``icc_mean_low``,
``icc_mean_high``, ``mse_mean_low``, ``mse_mean_high``, then ``icc_<AU>`` and ``mse_<AU>``),
``robustness.png`` (ICC and MSE against the noise, the means' intervals shaded, each AU in a
colour of its own, titled with the experiment, the dataset and the frames scored),
``robustness.md``, and the W&B run ``<experiment>-<dataset>-robustness`` (job type
``robustness``, in the training runs' group: :func:`log_study_to_wandb`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from aunet import progress
from aunet.cli.wandb_runs import logged_run_id, run_config, start_evaluation_run
from aunet.data.dataset import collate_frames
from aunet.data.store import FrameStore
from aunet.evaluation import cv
from aunet.evaluation.bootstrap import DEFAULT_SETTINGS, format_interval, intervals
from aunet.evaluation.crop_noise import (
    NOISE_NAMES,
    REFERENCE_SIDE,
    NoiseMode,
    PerturbedFrames,
    RobustnessError,
    store_fallback_anchors,
)
from aunet.evaluation.predictions import CVError, Predictions, require_same_aus, run_data
from aunet.files import atomic_path, format_number, markdown_table, pyplot, save_figure, write_csv
from aunet.runs import last_checkpoint, latest_finished_run

if TYPE_CHECKING:
    from aunet.cli.wandb_runs import WandbMode

ROBUSTNESS_ROOT = Path("runs/robustness")
#: Noise standard deviations, in pixels of a 256 x 256 crop (the BMVC study's range).
NOISE_LEVELS: tuple[float, ...] = tuple(float(level) for level in range(0, 60, 5))
#: The BMVC paper's finding: stable up to about this much noise (px at 256 x 256).
BMVC_STABLE_UP_TO = 13.0


# --------------------------------------------------------------------------------------------
# The perturbation of one crop


# --------------------------------------------------------------------------------------------
# The study


def latest_checkpoint(root: Path) -> Path | None:
    """``last.ckpt`` of the run under ``root`` that finished last (:mod:`aunet.runs`), or None."""
    run = latest_finished_run(root)
    return None if run is None else last_checkpoint(run)


@dataclass(frozen=True)
class HeldOut:
    """The frames a run did not train on: its fold's subjects, or the test partition."""

    store: FrameStore
    image_size: int
    batch_size: int
    num_workers: int
    au_names: tuple[str, ...]
    rows: dict[str, np.ndarray]
    framing: str = "store"


def held_out_frames(checkpoint: Path, every: int = 1) -> HeldOut:
    """The held-out frames of the run that ``checkpoint`` belongs to (its ``config.yaml``).

    Args:
        checkpoint: ``<run>/checkpoints/<name>.ckpt``.
        every: keep every n-th held-out frame (a quicker, coarser study).

    Raises:
        RobustnessError: naming the file, when the run folder has no usable ``config.yaml``.
    """
    try:
        data = run_data(checkpoint.parent.parent)
    except CVError as error:
        raise RobustnessError(
            f"{error}; --ckpt must be <run folder>/checkpoints/<name>.ckpt of an `aunet fit` run"
        ) from None
    columns = data.held_out_rows()
    rows = {name: np.asarray(values)[::every] for name, values in columns.items()}
    return HeldOut(
        data.store, data.image_size, data.batch_size, data.num_workers, data.au_names, rows,
        data.framing,
    )  # fmt: skip


@torch.inference_mode()
def predict_perturbed(
    model: torch.nn.Module,
    frames: HeldOut,
    noise_px: float,
    mode: NoiseMode,
    seed: int,
    device: torch.device,
    fallback_anchors: np.ndarray | None = None,
) -> Predictions:
    """Predict every held-out frame with its crop perturbed at ``noise_px``."""
    dataset = PerturbedFrames(
        frames.store, frames.rows["index"], frames.image_size, noise_px, mode, seed,
        fallback_anchors, frames.framing,
    )  # fmt: skip
    loader = DataLoader(
        dataset,
        batch_size=frames.batch_size,
        num_workers=frames.num_workers,
        collate_fn=collate_frames,
    )
    predicted, true = [], []
    for batch in progress.track(loader, f"noise {noise_px:g} px", len(loader)):
        intensities, _ = model.predict_intensities(batch["image"].to(device))
        predicted.append(intensities.double().cpu().numpy())
        true.append(batch["au"].double().numpy())
    return Predictions.of_held_out(
        frames.au_names, frames.rows, np.concatenate(true), np.concatenate(predicted)
    )


def robustness_curve(
    checkpoint: Path,
    levels: Sequence[float] = NOISE_LEVELS,
    mode: NoiseMode = "landmarks",
    seed: int = 0,
    every: int = 1,
    device: str | torch.device | None = None,
) -> list[dict[str, Any]]:
    """ICC and MSE of a checkpoint on its run's held-out frames at each noise level.

    Returns:
        Per level, :func:`aunet.evaluation.cv.score`'s dict (``icc``, ``mse``, ``icc_mean``,
        ``mse_mean``, ``frames``) with ``noise_px``, ``noise_store_px``, ``held_out`` (the fold, or
        the partition, as :class:`aunet.evaluation.cv.Predictions` names it) and ``intervals``
        (:func:`aunet.evaluation.bootstrap.intervals`) added.
    """
    from aunet.inference.predictor import load_module

    if any(level < 0 for level in levels):
        raise ValueError(f"noise levels must be non-negative, got {list(levels)}")
    frames = held_out_frames(Path(checkpoint), every)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_module(checkpoint)  # weights-only read
    require_same_aus(model.au_names, frames.au_names, checkpoint, frames.store.path)
    model.to(device).eval()
    anchors = (
        store_fallback_anchors(frames.store)
        if mode == "landmarks" and any(level > 0 for level in levels)
        else None
    )
    side = frames.store.image_size
    curve = []
    for level in levels:
        predictions = predict_perturbed(model, frames, level, mode, seed, device, anchors)
        result = cv.score(predictions)
        result.update(
            noise_px=float(level),
            noise_store_px=level * side / REFERENCE_SIDE,
            held_out=",".join(sorted(set(predictions.fold))),
            intervals=intervals(predictions, DEFAULT_SETTINGS),
        )
        print(
            f"noise {level:5.1f} px: ICC {format_number(result['icc_mean'])}  "
            f"MSE {format_number(result['mse_mean'])}",
            flush=True,
        )
        curve.append(result)
    return curve


# --------------------------------------------------------------------------------------------
# Files


def curve_rows(curve: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of ``robustness.csv`` (columns in the module docstring), None unknown."""
    au_names = list(curve[0]["icc"])
    header = ["noise_px", "noise_store_px", "frames", "icc_mean", "mse_mean"]
    header += [f"{mean}_{end}" for mean in ("icc_mean", "mse_mean") for end in ("low", "high")]
    header += [f"{metric}_{au}" for metric in ("icc", "mse") for au in au_names]
    rows = []
    for point in curve:
        values = [point["noise_px"], point["noise_store_px"], point["frames"]]
        values += [point["icc_mean"], point["mse_mean"]]
        for mean in ("icc_mean", "mse_mean"):
            values += point["intervals"][mean] or [None, None]
        values += [point[metric][au] for metric in ("icc", "mse") for au in au_names]
        rows.append(values)
    return header, rows


def write_curve_csv(path: Path, curve: Sequence[dict[str, Any]]) -> Path:
    """``robustness.csv``: :func:`curve_rows`, unknown values as empty cells. Atomic."""
    header, rows = curve_rows(curve)
    return write_csv(path, [dict(zip(header, row, strict=True)) for row in rows])


def held_out_text(held_out: str) -> str:
    """``fold 1``, or ``the test partition``: a curve point's ``held_out`` in words."""
    return f"fold {held_out}" if held_out.isdigit() else f"the {held_out} partition"


def plot_curve(path: Path, curve: Sequence[dict[str, Any]], title: str) -> Path:
    """ICC and MSE against the noise: the mean in bold, each AU thin, in a colour of its own.

    The AUs' legend sits right of the panels (one entry per AU, shared by both), the mean's,
    its interval's and the BMVC mark's in the ICC panel. Atomic.
    """
    plt = pyplot()

    noise = [point["noise_px"] for point in curve]
    au_names = list(curve[0]["icc"])
    # tab20's ten strong colours first, then their pale twins: up to 10 AUs never share a hue.
    palette = plt.get_cmap("tab20")
    colours = [palette(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
    figure, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
    for axis, metric in zip(axes, ("icc", "mse"), strict=True):
        for k, au in enumerate(au_names):
            values = [np.nan if p[metric][au] is None else p[metric][au] for p in curve]
            axis.plot(noise, values, color=colours[k % 20], alpha=0.8, linewidth=1, label=au)
        means = [np.nan if p[f"{metric}_mean"] is None else p[f"{metric}_mean"] for p in curve]
        axis.plot(noise, means, color="black", marker="o", linewidth=2.5, label="mean over AUs")
        bands = [p["intervals"][f"{metric}_mean"] or (np.nan, np.nan) for p in curve]
        axis.fill_between(noise, [b[0] for b in bands], [b[1] for b in bands], color="black",
                          alpha=0.12, label="mean: 95% interval over subjects")  # fmt: skip
        axis.axvline(BMVC_STABLE_UP_TO, color="tab:red", linestyle="--", linewidth=1,
                     label=f"BMVC: stable up to ~{BMVC_STABLE_UP_TO:.0f} px")  # fmt: skip
        axis.set_xlabel("noise standard deviation (px at 256 x 256)")
        axis.set_ylabel(metric.upper())
        axis.set_title(f"{metric.upper()} against the noise", fontsize=10)
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    count = len(au_names)
    axes[0].legend(handles[count:], labels[count:], fontsize=8)
    figure.legend(handles[:count], labels[:count], loc="center left", bbox_to_anchor=(0.91, 0.5),
                  fontsize=8, title="AU", title_fontsize=8, frameon=False)  # fmt: skip
    return save_figure(figure, path, title, rect=(0, 0, 0.91, 1))


#: The columns of ``robustness.md``.
HEADER = ("Noise (px at 256)", "Noise (stored px)", "Frames", "ICC", "95% interval", "MSE",
          "95% interval")  # fmt: skip


def curve_markdown(
    curve: Sequence[dict[str, Any]], checkpoint: Path, title: str, mode: NoiseMode, seed: int
) -> str:
    """``robustness.md``: the settings and one line per level."""
    rows = [
        [
            f"{p['noise_px']:g}",
            f"{p['noise_store_px']:.1f}",
            str(p["frames"]),
            format_number(p["icc_mean"]),
            format_interval(p["intervals"]["icc_mean"]),
            format_number(p["mse_mean"]),
            format_interval(p["intervals"]["mse_mean"]),
        ]
        for p in curve
    ]
    return "\n".join(
        [
            f"# Robustness to misalignment: {title}",
            "",
            f"Checkpoint `{checkpoint}`, its run's held-out frames; noise model `{mode}`, seed "
            f"{seed} (see `aunet/evaluation/robustness.py`). ICC(3,1) and MSE averaged over the "
            "AUs, with "
            "95% intervals from a bootstrap over the held-out subjects (docs/experiments.md).",
            "",
            markdown_table(HEADER, rows, right=0),
            "",
            "![ICC and MSE against the noise](robustness.png)",
            "",
        ]
    )


def run_study(
    checkpoint: Path,
    folder: Path,
    experiment: str,
    dataset: str,
    levels: Sequence[float] = NOISE_LEVELS,
    mode: NoiseMode = "landmarks",
    seed: int = 0,
    every: int = 1,
    wandb_mode: WandbMode = "auto",
    project: str = "aunet",
) -> list[dict[str, Any]]:
    """Evaluate ``checkpoint`` at every level; write the CSV, the plot and the Markdown.

    Then log the study to W&B (:func:`log_study_to_wandb`) unless ``wandb_mode`` is
    ``disabled``.

    Args:
        checkpoint: ``<run>/checkpoints/<name>.ckpt`` of an ``aunet fit`` run.
        folder: where the files go (``runs/robustness/<experiment>-<dataset>``).
        experiment: the run's experiment, for the title and the W&B group.
        dataset: the run's dataset, likewise.
        levels: noise standard deviations, pixels at 256 x 256.
        mode: ``landmarks`` or ``box``.
        seed: the noise seed.
        every: evaluate every n-th held-out frame.
        wandb_mode: ``run.wandb`` of ``aunet fit``: ``auto``, ``online``, ``offline`` or
            ``disabled``.
        project: the W&B project.
    """
    curve = robustness_curve(checkpoint, levels, mode, seed, every)
    write_curve_csv(folder / "robustness.csv", curve)
    title = (
        f"{experiment} on {dataset}, {NOISE_NAMES[mode]}: {curve[0]['frames']} held-out frames of "
        f"{held_out_text(curve[0]['held_out'])} ({checkpoint.name})"
    )
    plot_curve(folder / "robustness.png", curve, title)
    with atomic_path(folder / "robustness.md") as temporary:
        temporary.write_text(curve_markdown(curve, checkpoint, title, mode, seed))
    settings = {"checkpoint": str(checkpoint), "noise": mode, "seed": seed, "every": every,
                "levels": [float(level) for level in levels]}  # fmt: skip
    log_study_to_wandb(folder, curve, experiment, dataset, settings, wandb_mode, project)
    return curve


def log_study_to_wandb(
    folder: Path,
    curve: Sequence[dict[str, Any]],
    experiment: str,
    dataset: str,
    settings: dict[str, Any],
    mode: WandbMode = "auto",
    project: str = "aunet",
) -> str | None:
    """Log a study as the W&B run ``<experiment>-<dataset>-robustness`` in the fold runs' group.

    The run (job type ``robustness``) holds:

    - its config: the evaluated run's resolved config (its ``config.yaml``, nested as the fold
      runs' own), and under ``robustness`` the study's settings (``checkpoint``, ``noise``,
      ``seed``, ``every``, ``levels``), the frames it scored (``held_out``) and the evaluated
      run's W&B id (``source_run``);
    - the curve as the W&B Table ``robustness/curve`` (the rows of ``robustness.csv``), line
      plots of its ICC and MSE means against the noise (``robustness/icc``,
      ``robustness/mse``) and ``robustness.png`` (``robustness/plot``);
    - in its summary, every level's means, ``robustness/icc_mean/<level>px`` and
      ``robustness/mse_mean/<level>px``, and ``robustness/frames``.

    Its id is kept in ``<folder>/wandb_id``: re-making the study updates the same run.

    Returns:
        The W&B run's directory, or None when disabled.
    """
    source = Path(settings["checkpoint"]).parent.parent  # <run>/checkpoints/<name>.ckpt
    config = run_config(source)
    config["robustness"] = {**settings, "held_out": curve[0]["held_out"],
                            "source_run": logged_run_id(source)}  # fmt: skip
    run = start_evaluation_run(
        folder, experiment, dataset, "robustness", "robustness", config, mode, project
    )
    if run is None:
        return None
    import wandb

    header, rows = curve_rows(curve)
    table = wandb.Table(columns=header, data=rows)
    plots = {
        f"robustness/{metric}": wandb.plot.line(
            table, "noise_px", f"{metric}_mean",
            title=f"{experiment} on {dataset}: {metric.upper()} against the noise (px at 256)",
        )
        for metric in ("icc", "mse")
    }  # fmt: skip
    run.log(
        {
            "robustness/curve": table,
            **plots,
            "robustness/plot": wandb.Image(str(folder / "robustness.png")),
        }
    )
    summary: dict[str, Any] = {
        f"robustness/{mean}/{point['noise_px']:g}px": point[mean]
        for point in curve
        for mean in ("icc_mean", "mse_mean")
    }
    summary["robustness/frames"] = curve[0]["frames"]
    run.summary.update(summary)
    directory = run.dir
    run.finish()
    return directory
