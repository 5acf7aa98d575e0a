"""Pictures of AU heatmaps over faces, as the paper's Fig. 7: maps upsampled, blended, labelled.

Pure numpy/OpenCV so that training callbacks, ``aunet-predict --overlay`` and notebooks share one
drawing code. Images are RGB uint8; heatmaps are on the 0-5 intensity scale.
"""

from __future__ import annotations

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


def _label(panel: np.ndarray, text: str) -> None:
    """Write ``text`` on a dark band at the top of ``panel`` (in place)."""
    scale = max(0.3, panel.shape[1] / 320)
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
        text = f"{name} {predicted[k]:.1f}"
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
