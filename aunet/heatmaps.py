"""Drawing and decoding heatmaps, batched in torch on whatever device the batch is on.

Targets (Sec. 3.2 of the paper). AU ``j`` of image ``i`` with intensity ``a`` is drawn as up to
three Gaussians (Table 1, :mod:`aunet.aus`) on a map a quarter of the input's size, and the map is
their pixel-wise maximum. Eq. 1 as printed, ``a exp(||x - p|| / a^2)``, lost its minus sign and
square; we read it as

    g(x) = a * exp(-||x - p||^2 / (2 sigma(a)^2)),

a Gaussian whose amplitude *and* size grow with the intensity. Its centre ``p`` is rounded to the
nearest heatmap pixel, so the map's maximum on the pixel grid is exactly the intensity that
Sec. 3.4 reads back (a centre half a pixel off the grid would otherwise lower the peak of an
intensity-1 Gaussian by 40%, since ``sigma(1)`` is under a pixel). Taking the printed denominator
literally (``2 sigma^2 = a^2``) gives ``sigma(a) = a / sqrt(2)``; we keep that as the default and
write it as the straight line through two configurable points, ``sigma(1) = sigma_at_1`` and
``sigma(5) = sigma_at_5`` (heatmap pixels), so a user can widen small activations without
changing code. ``fixed_sigma`` draws every Gaussian with the same size (amplitude still the
intensity): the fixed-size ablation. Intensity 0 gives an all-zero map; an unknown (NaN) label
gives an all-zero map that the returned mask excludes from the loss.

Decoding (Sec. 3.4): an AU's intensity is the maximum of its map, clamped to [0, 5], and its
location the argmax. Landmarks decode FAN-style: the argmax moved a quarter pixel toward the
larger neighbour on each axis.

Coordinates are (x, y) with pixel ``(i, j)`` of a map at ``x = j, y = i``; an image point maps to
the heatmap by multiplying by ``heatmap_size / image_size`` (the paper's ``p <- 0.25 p``).
"""

from __future__ import annotations

import math

import torch

from aunet.aus import MAX_INTENSITY, au_centres

#: Default Gaussian spread at intensity 1 and 5, in heatmap pixels: Eq. 1's ``sigma = a/sqrt 2``.
SIGMA_AT_1 = 1.0 / math.sqrt(2.0)
SIGMA_AT_5 = 5.0 / math.sqrt(2.0)
#: Landmark heatmaps for FAN pre-training: unit Gaussians of this spread at 64 x 64.
LANDMARK_SIGMA = 2.0
_MIN_SIGMA = 1e-3  # keeps a Gaussian finite where the linear rule reaches zero


def intensity_sigma(
    intensities: torch.Tensor, sigma_at_1: float = SIGMA_AT_1, sigma_at_5: float = SIGMA_AT_5
) -> torch.Tensor:
    """Spread of an AU Gaussian: the line through ``(1, sigma_at_1)`` and ``(5, sigma_at_5)``.

    Args:
        intensities: any shape, 0-5.
        sigma_at_1: spread at intensity 1, heatmap pixels.
        sigma_at_5: spread at intensity 5, heatmap pixels.

    Returns:
        The spreads, same shape, never below 1e-3.
    """
    slope = (sigma_at_5 - sigma_at_1) / 4.0
    return (sigma_at_1 + (intensities - 1.0) * slope).clamp_min(_MIN_SIGMA)


def _gaussians(centres: torch.Tensor, sigma: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Unit-amplitude Gaussians: ``... x 2`` centres and ``...`` spreads -> ``... x H x W``.

    The Gaussian is separable, so the exponentials are taken on the two axes (``H + W`` values
    per Gaussian) and multiplied out once, instead of ``H x W`` exponentials.
    """
    height, width = size
    xs = torch.arange(width, device=centres.device, dtype=centres.dtype)
    ys = torch.arange(height, device=centres.device, dtype=centres.dtype)
    inv_two_var = (0.5 / sigma.square()).unsqueeze(-1)
    gx = torch.exp(-(xs - centres[..., 0:1]).square() * inv_two_var)  # ... x W
    gy = torch.exp(-(ys - centres[..., 1:2]).square() * inv_two_var)  # ... x H
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def au_heatmaps(
    centres: torch.Tensor,
    valid: torch.Tensor,
    intensities: torch.Tensor,
    size: tuple[int, int],
    sigma_at_1: float = SIGMA_AT_1,
    sigma_at_5: float = SIGMA_AT_5,
    fixed_sigma: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw AU target heatmaps from AU centres and intensities.

    Args:
        centres: B x K x 3 x 2 Gaussian centres in heatmap pixels (from :func:`aus.au_centres`);
            drawn at the nearest pixel.
        valid: B x K x 3 boolean, which of the three Gaussians exist.
        intensities: B x K, 0-5; NaN = unknown label.
        size: (H, W) of the maps.
        sigma_at_1: spread at intensity 1 (see :func:`intensity_sigma`).
        sigma_at_5: spread at intensity 5.
        fixed_sigma: if given, every Gaussian has this spread whatever its intensity.

    Returns:
        ``(targets, mask)``: B x K x H x W maps, finite everywhere, and a B x K boolean mask that
        is False where the label is unknown, or where an active AU has no Gaussian to draw
        because its landmarks are unknown.
    """
    known = ~intensities.isnan()
    amplitude = intensities.nan_to_num(0.0)
    if fixed_sigma is None:
        sigma = intensity_sigma(amplitude, sigma_at_1, sigma_at_5)
    else:
        sigma = torch.full_like(amplitude, fixed_sigma)
    slot_sigma = sigma.unsqueeze(-1).expand(valid.shape)
    gaussians = _gaussians(centres.round(), slot_sigma, size) * valid[..., None, None]
    targets = amplitude[..., None, None] * gaussians.amax(dim=2)
    drawable = valid.any(dim=-1) | (amplitude == 0)
    return targets, known & drawable


def au_targets(
    landmarks: torch.Tensor,
    intensities: torch.Tensor,
    au_names: tuple[str, ...] | list[str],
    image_size: int,
    heatmap_size: int,
    sigma_at_1: float = SIGMA_AT_1,
    sigma_at_5: float = SIGMA_AT_5,
    fixed_sigma: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw AU targets straight from image landmarks: Table 1 placement, then :func:`au_heatmaps`.

    Args:
        landmarks: B x 68 x 2 in image pixels; NaN = unknown.
        intensities: B x K, 0-5; NaN = unknown.
        au_names: the K AUs.
        image_size: side of the (square) input image.
        heatmap_size: side of the (square) maps, a quarter of ``image_size`` in the paper.
        sigma_at_1: spread at intensity 1, heatmap pixels.
        sigma_at_5: spread at intensity 5, heatmap pixels.
        fixed_sigma: fixed spread for the ablation, or None.

    Returns:
        ``(targets, mask)`` as :func:`au_heatmaps`.
    """
    centres, valid = au_centres(landmarks * (heatmap_size / image_size), au_names)
    return au_heatmaps(
        centres,
        valid,
        intensities.to(landmarks.dtype),
        (heatmap_size, heatmap_size),
        sigma_at_1,
        sigma_at_5,
        fixed_sigma,
    )


def attention_maps(
    landmarks: torch.Tensor,
    au_names: tuple[str, ...] | list[str],
    size: tuple[int, int],
    sigma_at_1: float = SIGMA_AT_1,
    sigma_at_5: float = SIGMA_AT_5,
) -> torch.Tensor:
    """AU attention maps (Sec. 4.4): every AU drawn at intensity 1, wherever it would show.

    Args:
        landmarks: B x 68 x 2 in heatmap pixels (e.g. the FAN's argmax landmarks).
        au_names: the K AUs.
        size: (H, W) of the maps.
        sigma_at_1: spread at intensity 1.
        sigma_at_5: spread at intensity 5 (only defines the rule).

    Returns:
        B x K x H x W maps with peaks of 1.
    """
    centres, valid = au_centres(landmarks, au_names)
    ones = landmarks.new_ones(valid.shape[:2])
    return au_heatmaps(centres, valid, ones, size, sigma_at_1, sigma_at_5)[0]


def landmark_heatmaps(
    points: torch.Tensor, size: tuple[int, int], sigma: float = LANDMARK_SIGMA
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-amplitude landmark heatmaps for FAN pre-training.

    Args:
        points: B x L x 2 landmarks in heatmap pixels; NaN = unknown.
        size: (H, W) of the maps.
        sigma: spread in heatmap pixels (2 at 64 x 64 by default).

    Returns:
        ``(maps, known)``: B x L x H x W maps (all-zero for unknown points) and a B x L mask.
    """
    known = ~points.isnan().any(dim=-1)
    spread = points.new_full(known.shape, sigma)
    maps = _gaussians(points.nan_to_num(0.0), spread, size) * known[..., None, None]
    return maps, known


def _argmax_xy(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map maximum value and its integer (x, y) location: ``B x C`` and ``B x C x 2``."""
    width = heatmaps.shape[-1]
    peak, index = heatmaps.flatten(-2).max(dim=-1)
    xy = torch.stack((index % width, torch.div(index, width, rounding_mode="floor")), dim=-1)
    return peak, xy


def decode_au_heatmaps(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intensities and locations from AU heatmaps (Sec. 3.4).

    Args:
        heatmaps: B x K x H x W.

    Returns:
        ``(intensities, locations)``: B x K maxima clamped to [0, 5], and B x K x 2 argmax
        (x, y) in heatmap pixels (float).
    """
    peak, xy = _argmax_xy(heatmaps)
    return peak.clamp(0.0, MAX_INTENSITY), xy.to(heatmaps.dtype)


def decode_landmarks(heatmaps: torch.Tensor) -> torch.Tensor:
    """FAN-style sub-pixel landmarks: argmax, then a quarter pixel toward the larger neighbour.

    Args:
        heatmaps: B x L x H x W.

    Returns:
        B x L x 2 (x, y) in heatmap pixels. At the border, where one neighbour is missing, the
        axis keeps its integer argmax.
    """
    height, width = heatmaps.shape[-2:]
    _, xy = _argmax_xy(heatmaps)
    x, y = xy.unbind(-1)
    flat = heatmaps.flatten(-2)

    def value_at(dx: int, dy: int) -> torch.Tensor:
        index = (y + dy).clamp(0, height - 1) * width + (x + dx).clamp(0, width - 1)
        return flat.gather(-1, index.unsqueeze(-1)).squeeze(-1)

    interior_x = (x > 0) & (x < width - 1)
    interior_y = (y > 0) & (y < height - 1)
    step_x = torch.sign(value_at(1, 0) - value_at(-1, 0)) * interior_x
    step_y = torch.sign(value_at(0, 1) - value_at(0, -1)) * interior_y
    return xy.to(heatmaps.dtype) + 0.25 * torch.stack((step_x, step_y), dim=-1)
