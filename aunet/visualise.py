"""Pictures of AU heatmaps over faces, as the paper's Fig. 7: maps upsampled, blended, labelled.

Pure numpy/OpenCV so that training callbacks, ``aunet-predict --overlay`` and notebooks share one
drawing code. Images are RGB uint8; heatmaps are on the 0-5 intensity scale. The one exception,
:func:`plot_intensities` (``aunet-predict --plot``), draws with matplotlib's Agg canvas.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from aunet.heatmaps import MAX_INTENSITY


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend one heatmap (any size, 0-5 scale) over an RGB uint8 image of the face.

    The colour scale is absolute (0 -> blue, 5 -> red) so overlays of different frames and AUs
    compare; where the map is near zero the face shows through.
    """
    height, width = image.shape[:2]
    level = np.clip(np.asarray(heatmap, dtype=np.float32) / MAX_INTENSITY, 0.0, 1.0)
    level = cv2.resize(level, (width, height), interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    weight = (alpha * np.sqrt(level))[..., None]  # faint activations stay visible
    return (image * (1.0 - weight) + colours * weight).astype(np.uint8)


def _label(panel: np.ndarray, text: str, scale: float | None = None) -> None:
    """Write ``text`` on a dark band at the top of ``panel`` (in place).

    The font scale grows with the panel's width unless ``scale`` is given.
    """
    scale = scale or max(0.3, panel.shape[1] / 320)
    thickness = max(1, round(scale * 1.5))
    (_, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    band = text_height + baseline + 4
    panel[:band] = (panel[:band] * 0.35).astype(np.uint8)
    cv2.putText(
        panel, text, (3, band - baseline - 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
        (255, 255, 255), thickness, cv2.LINE_AA,
    )  # fmt: skip


def au_panel(
    image: np.ndarray,
    heatmaps: np.ndarray,
    au_names: Sequence[str],
    predicted: Sequence[float],
    truth: Sequence[float] | None = None,
    panel_size: int = 128,
    columns: int = 6,
) -> np.ndarray:
    """A grid with one overlay per AU, each labelled ``AU12 2.4`` (``/3.0`` = ground truth).

    A NaN prediction (no face found) is labelled ``AU12 -``.

    Args:
        image: the face, RGB uint8, any size.
        heatmaps: K x h x w maps (predicted, or targets), 0-5 scale.
        au_names: the K AU names.
        predicted: K predicted intensities.
        truth: K true intensities (NaN = unknown) or None.
        panel_size: side of each AU's panel in pixels.
        columns: panels per row.

    Returns:
        The grid, RGB uint8.
    """
    face = cv2.resize(image, (panel_size, panel_size), interpolation=cv2.INTER_AREA)
    panels = []
    for k, name in enumerate(au_names):
        panel = heatmap_overlay(face, heatmaps[k])
        text = f"{name} {predicted[k]:.1f}" if np.isfinite(predicted[k]) else f"{name} -"
        if truth is not None and np.isfinite(truth[k]):
            text += f"/{truth[k]:.0f}" if float(truth[k]).is_integer() else f"/{truth[k]:.1f}"
        _label(panel, text)
        panels.append(panel)
    rows = -(-len(panels) // columns)
    blank = np.zeros_like(face)
    panels += [blank] * (rows * columns - len(panels))
    return np.concatenate(
        [np.concatenate(panels[r * columns : (r + 1) * columns], axis=1) for r in range(rows)],
        axis=0,
    )


def frame_overlay(
    frame: np.ndarray,
    panel: np.ndarray,
    outline: np.ndarray | None = None,
    caption: str = "",
) -> np.ndarray:
    """The whole frame, shrunk beside an :func:`au_panel` of its face (``aunet-predict --overlay``).

    The frame is letterboxed into a 4:3 box as tall as the panel, so every frame of a video gives
    an image of the same size whatever the source's shape.

    Args:
        frame: the source frame, RGB uint8.
        panel: the AU panel grid, RGB uint8.
        outline: P x 2 (x, y) frame pixels of the face crop's outline, drawn in green; None when
            no face was found.
        caption: written at the top of the frame (e.g. the frame number and time).

    Returns:
        RGB uint8, the panel's height, the frame box's width plus the panel's.
    """
    height = panel.shape[0]
    width = round(height * 4 / 3)
    scale = min(width / frame.shape[1], height / frame.shape[0])
    shrunk = cv2.resize(
        frame,
        (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale))),
        interpolation=cv2.INTER_AREA,
    )
    box = np.zeros((height, width, 3), np.uint8)
    top, left = (height - shrunk.shape[0]) // 2, (width - shrunk.shape[1]) // 2
    box[top : top + shrunk.shape[0], left : left + shrunk.shape[1]] = shrunk
    if outline is not None:
        # Pixel centres at integers: the source's (x, y) lands at (x + 0.5) * scale - 0.5.
        points = (np.asarray(outline, np.float64) + 0.5) * scale - 0.5 + (left, top)
        cv2.polylines(box, [np.round(points).astype(np.int32)], True, (0, 255, 0), 1, cv2.LINE_AA)
    if caption:
        _label(box, caption, scale=max(0.3, height / 512))
    return np.concatenate([box, panel], axis=1)


def plot_intensities(
    x: np.ndarray,
    intensities: np.ndarray,
    au_names: Sequence[str],
    path: str | os.PathLike,
    xlabel: str = "time (s)",
) -> None:
    """A PNG of each AU's intensity over time, one row per AU on the 0-5 scale.

    Args:
        x: N times (or frame numbers).
        intensities: N x K, NaN where no face was found (drawn as gaps).
        au_names: the K AU names.
        path: the PNG to write.
        xlabel: the x axis' label.
    """
    # The Agg canvas directly: no pyplot, so no global backend or figure registry is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(au_names)
    figure = Figure(figsize=(10, 0.45 + 0.7 * k), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(k, 1, sharex=True, squeeze=False)[:, 0]
    for axis, name, values in zip(axes, au_names, np.asarray(intensities).T, strict=True):
        axis.plot(x, values, linewidth=1.0, color="tab:blue")
        axis.set_ylim(-0.2, MAX_INTENSITY + 0.2)
        axis.set_yticks([0, MAX_INTENSITY])
        axis.set_ylabel(name, rotation=0, ha="right", va="center")
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel(xlabel)
    figure.savefig(path, dpi=100, format="png")
