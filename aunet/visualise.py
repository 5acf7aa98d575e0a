"""Pictures of AU heatmaps over faces, as the paper's Fig. 7: maps upsampled, blended, labelled.

Pure numpy/OpenCV so that training callbacks, ``aunet-predict --overlay`` and notebooks share one
drawing code. Images are RGB uint8; heatmaps are on the 0-5 intensity scale. The one exception,
:func:`intensity_figure` (``aunet-predict --plot``), draws with matplotlib's Agg canvas. Every
picture says what it shows: which maps are predicted and which are targets, what each number
is (``pred``, ``true``), and what the colours mean (:func:`key_band`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from aunet.aus import MAX_INTENSITY

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FONT = cv2.FONT_HERSHEY_SIMPLEX
#: The smallest font scale a label shrinks to so as to fit: Hershey glyphs about 7 px tall.
MIN_FONT_SCALE = 0.3


def _colours(level: np.ndarray) -> np.ndarray:
    """RGB uint8 colours of levels in [0, 1]: the overlays' scale, 0 -> blue, 1 -> red."""
    return cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend one heatmap (any size, 0-5 scale) over an RGB uint8 image of the face.

    The colour scale is absolute (0 -> blue, 5 -> red) so overlays of different frames and AUs
    compare; where the map is near zero the face shows through.
    """
    height, width = image.shape[:2]
    level = np.clip(np.asarray(heatmap, dtype=np.float32) / MAX_INTENSITY, 0.0, 1.0)
    level = cv2.resize(level, (width, height), interpolation=cv2.INTER_LINEAR)
    weight = (alpha * np.sqrt(level))[..., None]  # faint activations stay visible
    return (image * (1.0 - weight) + _colours(level) * weight).astype(np.uint8)


def _thickness(scale: float) -> int:
    return max(1, round(scale * 1.5))


def _text_width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, FONT, scale, _thickness(scale))[0][0]


def _fitting_scale(text: str, width: int, scale: float) -> float:
    """``scale``, or less (down to :data:`MIN_FONT_SCALE`) so that ``text`` fits ``width`` px."""
    text_width = _text_width(text, scale)
    return scale if text_width <= width else max(MIN_FONT_SCALE, scale * width / text_width)


def _put_text(image: np.ndarray, text: str, x: int, band: int, scale: float) -> None:
    """Write white ``text`` at ``x`` on a band ``band`` pixels high at the top of ``image``."""
    baseline = cv2.getTextSize(text, FONT, scale, _thickness(scale))[1]
    cv2.putText(
        image, text, (x, band - baseline - 2), FONT, scale, (255, 255, 255), _thickness(scale),
        cv2.LINE_AA,
    )  # fmt: skip


def _band_height(scale: float) -> int:
    """The height of a text band at font ``scale``: its tallest glyphs and descenders."""
    (_, text_height), baseline = cv2.getTextSize("Ag", FONT, scale, _thickness(scale))
    return text_height + baseline + 4


def _label(panel: np.ndarray, text: str, scale: float | None = None) -> None:
    """Write ``text`` on a dark band at the top of ``panel`` (in place).

    The font scale grows with the panel's width unless ``scale`` is given, and shrinks (to
    :data:`MIN_FONT_SCALE`) where the text would not fit the panel's width.
    """
    # A margin each side, so that the labels of panels side by side do not run into each other.
    width = panel.shape[1]
    scale = _fitting_scale(text, width - 12, scale or max(MIN_FONT_SCALE, width / 320))
    band = _band_height(scale)
    panel[:band] = (panel[:band] * 0.35).astype(np.uint8)
    _put_text(panel, text, 3, band, scale)


def key_band(width: int, text: str = "", scale: float = 0.5) -> np.ndarray:
    """A dark band ``width`` pixels wide: ``text`` at the left, the colour key at the right.

    The key, ``intensity 0`` to ``5`` with the overlays' colours between, is what the colours
    of every heatmap mean; it is left out where it would not fit beside the text.

    Returns:
        RGB uint8, as high as :func:`_label`'s band at ``scale``.
    """
    height = _band_height(scale)
    band = np.full((height, width, 3), 40, np.uint8)
    ramp_width = round(160 * scale)
    words = ("intensity 0", "5")
    key_width = sum(_text_width(word, scale) for word in words) + ramp_width + 18  # 3 gaps
    if text:
        beside = width - key_width - 12
        fits = _text_width(text, _fitting_scale(text, beside, scale)) <= beside
        _put_text(band, text, 3, height, _fitting_scale(text, beside if fits else width - 6, scale))
        if not fits:
            return band
    x = width - key_width
    _put_text(band, words[0], x, height, scale)
    x += _text_width(words[0], scale) + 6
    ramp = _colours(np.linspace(0.0, 1.0, ramp_width, dtype=np.float32)[None, :])
    band[3 : height - 3, x : x + ramp_width] = ramp
    _put_text(band, words[1], x + ramp_width + 6, height, scale)
    return band


def _truth_text(value: float) -> str:
    """``true 3`` (``true 2.5`` for a fractional label), ``no label`` for NaN."""
    if not np.isfinite(value):
        return "no label"
    return f"true {value:.0f}" if float(value).is_integer() else f"true {value:.1f}"


def _grid(
    image: np.ndarray, heatmaps: np.ndarray, labels: Sequence[str], panel_size: int, columns: int
) -> np.ndarray:
    """One overlay of the face per map, labelled, ``columns`` to a row (blank panels pad)."""
    face = cv2.resize(image, (panel_size, panel_size), interpolation=cv2.INTER_AREA)
    panels = []
    for heatmap, text in zip(heatmaps, labels, strict=True):
        panel = heatmap_overlay(face, heatmap)
        _label(panel, text)
        panels.append(panel)
    rows = -(-len(panels) // columns)
    blank = np.zeros_like(face)
    panels += [blank] * (rows * columns - len(panels))
    return np.concatenate(
        [np.concatenate(panels[r * columns : (r + 1) * columns], axis=1) for r in range(rows)],
        axis=0,
    )


def au_panel(
    image: np.ndarray,
    heatmaps: np.ndarray,
    au_names: Sequence[str],
    predicted: Sequence[float],
    truth: Sequence[float] | None = None,
    panel_size: int = 128,
    columns: int = 6,
) -> np.ndarray:
    """A grid with one overlay per AU, each labelled ``AU12 pred 2.4``.

    With ground truth, ``AU12 pred 2.4 / true 3`` (``/ no label`` where it is unknown). A NaN
    prediction (no face found) is labelled ``AU12 -``. Long labels shrink to fit the panel.

    Args:
        image: the face, RGB uint8, any size.
        heatmaps: K x h x w maps, 0-5 scale.
        au_names: the K AU names.
        predicted: K predicted intensities.
        truth: K true intensities (NaN = unknown) or None.
        panel_size: side of each AU's panel in pixels.
        columns: panels per row.

    Returns:
        The grid, RGB uint8.
    """
    labels = []
    for k, name in enumerate(au_names):
        text = f"{name} pred {predicted[k]:.1f}" if np.isfinite(predicted[k]) else f"{name} -"
        labels.append(text if truth is None else f"{text} / {_truth_text(truth[k])}")
    return _grid(image, heatmaps, labels, panel_size, columns)


def prediction_and_target(
    image: np.ndarray,
    predicted_maps: np.ndarray,
    target_maps: np.ndarray,
    au_names: Sequence[str],
    predicted: Sequence[float],
    truth: Sequence[float],
    panel_size: int = 160,
    columns: int = 6,
) -> np.ndarray:
    """One face's predicted maps above its target maps, each grid under a band naming it.

    The training callback's picture: the band above the first grid reads ``prediction``, its
    panels ``AU12 pred 3.4 / true 0`` (the predicted intensity, then the label); the band
    above the second reads ``target``, its panels ``AU12 true 0`` (``no label`` where the
    label is unknown). The first band carries the colour key.

    Args:
        image: the face, RGB uint8, any size.
        predicted_maps: K x h x w predicted maps, 0-5 scale.
        target_maps: K x h x w target maps (drawn from the labels), 0-5 scale.
        au_names: the K AU names.
        predicted: K predicted intensities.
        truth: K true intensities (NaN = unknown).
        panel_size: side of each AU's panel in pixels.
        columns: panels per row.

    Returns:
        RGB uint8: band, prediction grid, band, target grid.
    """
    prediction = au_panel(image, predicted_maps, au_names, predicted, truth, panel_size, columns)
    labels = [f"{name} {_truth_text(value)}" for name, value in zip(au_names, truth, strict=True)]
    target = _grid(image, target_maps, labels, panel_size, columns)
    width = prediction.shape[1]
    return np.concatenate(
        [
            key_band(
                width, "prediction: predicted maps (pred = predicted intensity, true = label)"
            ),
            prediction,
            key_band(width, "target: maps drawn from the labels (true = label)"),
            target,
        ],
        axis=0,
    )


def frame_overlay(
    frame: np.ndarray,
    panel: np.ndarray,
    outline: np.ndarray | None = None,
    caption: str = "",
) -> np.ndarray:
    """The whole frame, shrunk beside an :func:`au_panel` of its face (``aunet-predict --overlay``).

    The frame is letterboxed into a 4:3 box as tall as the panel, above the colour key
    (:func:`key_band`), so every frame of a video gives an image of the same size whatever the
    source's shape.

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
    text_scale = max(MIN_FONT_SCALE, height / 512)
    key = key_band(width, scale=text_scale)
    room = height - key.shape[0]  # the frame's, above the key
    scale = min(width / frame.shape[1], room / frame.shape[0])
    shrunk = cv2.resize(
        frame,
        (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale))),
        interpolation=cv2.INTER_AREA,
    )
    box = np.zeros((height, width, 3), np.uint8)
    top, left = (room - shrunk.shape[0]) // 2, (width - shrunk.shape[1]) // 2
    box[top : top + shrunk.shape[0], left : left + shrunk.shape[1]] = shrunk
    box[room:] = key
    if outline is not None:
        # Pixel centres at integers: the source's (x, y) lands at (x + 0.5) * scale - 0.5.
        points = (np.asarray(outline, np.float64) + 0.5) * scale - 0.5 + (left, top)
        cv2.polylines(box, [np.round(points).astype(np.int32)], True, (0, 255, 0), 1, cv2.LINE_AA)
    if caption:
        _label(box, caption, scale=text_scale)
    return np.concatenate([box, panel], axis=1)


def intensity_figure(
    x: np.ndarray,
    intensities: np.ndarray,
    au_names: Sequence[str],
    xlabel: str = "time (s)",
) -> Figure:
    """Each AU's intensity over time, one row per AU on the 0-5 scale, titled with what it shows.

    Args:
        x: N times (or frame numbers).
        intensities: N x K, NaN where no face was found (drawn as gaps).
        au_names: the K AU names.
        xlabel: the x axis' label.

    Returns:
        The figure, on its own Agg canvas: no pyplot, so no global backend or figure registry
        is touched.
    """
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
    # The rows' labels name the AUs only: the title says what the curves and their gaps are.
    figure.suptitle("AU intensity (0-5) per frame; gaps: no face found", fontsize=10)
    return figure


def plot_intensities(
    x: np.ndarray,
    intensities: np.ndarray,
    au_names: Sequence[str],
    path: str | os.PathLike,
    xlabel: str = "time (s)",
) -> None:
    """Write :func:`intensity_figure` as a PNG at ``path``."""
    intensity_figure(x, intensities, au_names, xlabel).savefig(path, dpi=100, format="png")
