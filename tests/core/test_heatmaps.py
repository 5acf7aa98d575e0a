"""Heatmap targets (Sec. 3.2) and decoding (Sec. 3.4) against hand-computed values."""

import math

import pytest
import torch

from aunet.aus import DATASET_AUS, au_centres
from aunet.heatmaps import (
    attention_maps,
    au_heatmaps,
    au_targets,
    decode_au_heatmaps,
    decode_landmarks,
    intensity_sigma,
    landmark_heatmaps,
)

SIZE = (32, 32)


def one_gaussian(x: float, y: float, batch: int = 1, k: int = 1):
    """Centres/valid for AUs with a single (left) Gaussian at (x, y)."""
    centres = torch.zeros(batch, k, 3, 2)
    centres[..., 0, :] = torch.tensor([x, y])
    valid = torch.zeros(batch, k, 3, dtype=torch.bool)
    valid[..., 0] = True
    return centres, valid


def test_default_gaussian_is_equation_1_with_its_minus_sign_and_square():
    # g(x) = a exp(-||x - p||^2 / a^2): sigma(a) = a / sqrt(2).
    centres, valid = one_gaussian(10, 12)
    for a in (1.0, 2.0, 5.0):
        maps, _ = au_heatmaps(centres, valid, torch.tensor([[a]]), SIZE)
        for x, y in ((10, 12), (11, 12), (12, 15), (7, 9)):
            expected = a * math.exp(-((x - 10) ** 2 + (y - 12) ** 2) / a**2)
            assert maps[0, 0, y, x].item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_subpixel_centres_are_drawn_on_the_nearest_pixel_so_the_peak_is_the_intensity():
    centres, valid = one_gaussian(10.4, 12.6)
    maps, _ = au_heatmaps(centres, valid, torch.tensor([[1.0]]), SIZE)
    assert maps[0, 0, 13, 10].item() == pytest.approx(1.0)
    assert maps.max().item() == pytest.approx(1.0)


def test_peak_equals_intensity_and_spread_grows_with_it():
    intensities = torch.tensor([[1.0, 3.0, 5.0]])
    centres, valid = one_gaussian(16, 16, k=3)
    maps, mask = au_heatmaps(centres, valid, intensities, SIZE, sigma_at_1=1.0, sigma_at_5=3.0)
    assert mask.all()
    torch.testing.assert_close(maps[0, :, 16, 16], intensities[0])
    relative_width = (maps[0] > 0.5 * intensities[0, :, None, None]).sum(dim=(1, 2))
    assert relative_width[0] < relative_width[1] < relative_width[2]
    sigma = intensity_sigma(torch.tensor([1.0, 3.0, 5.0]), 1.0, 3.0)
    torch.testing.assert_close(sigma, torch.tensor([1.0, 2.0, 3.0]))


def test_fixed_size_ablation_keeps_amplitude_but_not_size():
    intensities = torch.tensor([[1.0, 5.0]])
    centres, valid = one_gaussian(16, 16, k=2)
    maps, _ = au_heatmaps(centres, valid, intensities, SIZE, fixed_sigma=2.0)
    torch.testing.assert_close(maps[0, 1], 5.0 * maps[0, 0])


def test_map_is_the_pixelwise_max_over_the_aus_gaussians_not_their_sum():
    centres = torch.tensor([[[[8.0, 16.0], [12.0, 16.0], [0.0, 0.0]]]])
    valid = torch.tensor([[[True, True, False]]])
    maps, _ = au_heatmaps(centres, valid, torch.tensor([[2.0]]), SIZE)
    single_left, _ = au_heatmaps(
        centres, valid & torch.tensor([True, False, False]), torch.tensor([[2.0]]), SIZE
    )
    single_right, _ = au_heatmaps(
        centres, valid & torch.tensor([False, True, False]), torch.tensor([[2.0]]), SIZE
    )
    torch.testing.assert_close(maps, torch.maximum(single_left, single_right))
    assert maps[0, 0, 16, 10].item() < 2.0  # halfway, where a sum of the two would exceed a max


def test_zero_intensity_gives_an_all_zero_valid_map():
    centres, valid = one_gaussian(5, 5)
    maps, mask = au_heatmaps(centres, valid, torch.tensor([[0.0]]), SIZE)
    assert (maps == 0).all() and mask.all()


def test_unknown_labels_are_masked_and_never_nan():
    landmarks = 64 + 20 * torch.rand(2, 68, 2)
    intensities = torch.tensor([[float("nan"), 3.0], [2.0, 0.0]])
    landmarks[1, 48] = float("nan")  # AU12's left corner unknown; its right Gaussian remains
    landmarks[1, 21:23] = float("nan")  # AU01 loses all its Gaussians
    targets, mask = au_targets(landmarks, intensities, ["AU01", "AU12"], 128, 32)
    assert torch.isfinite(targets).all()
    assert mask.tolist() == [[False, True], [False, True]]
    assert (targets[0, 0] == 0).all()
    assert targets[1, 1].max() == 0  # intensity 0: an all-zero map, still a valid target


def test_attention_maps_peak_at_one_on_every_au():
    landmarks = 8 + 16 * torch.rand(3, 68, 2)
    landmarks = landmarks.round()  # integer centres: a peak lands exactly on a pixel
    names = ["AU02", "AU12", "AU17"]  # single-landmark Gaussians only
    maps = attention_maps(landmarks, names, SIZE)
    assert maps.shape == (3, 3, 32, 32)
    torch.testing.assert_close(maps.amax(dim=(2, 3)), torch.ones(3, 3))


def test_encode_then_decode_round_trips_intensities_and_locations():
    names = DATASET_AUS["disfa"]
    batch = 16
    # Landmarks on the pixel grid of the 64 x 64 maps (image = 4 x heatmap, as in the paper).
    landmarks = 4.0 * torch.randint(8, 56, (batch, 68, 2)).float()
    intensities = torch.randint(0, 6, (batch, len(names))).float()
    targets, mask = au_targets(landmarks, intensities, names, 256, 64)
    decoded, locations = decode_au_heatmaps(targets)
    torch.testing.assert_close(decoded, intensities)
    centres, valid = au_centres(landmarks / 4.0, names)
    distance = (locations[:, :, None] - centres).norm(dim=-1).masked_fill(~valid, float("inf"))
    active = intensities > 0
    # The argmax is one of the AU's Gaussian centres, rounded to the pixel grid.
    assert (distance.amin(dim=-1)[active] <= math.sqrt(0.5)).all()
    assert mask.all()


def test_decoded_intensities_are_clamped_to_the_facs_scale():
    heatmaps = torch.zeros(1, 2, 4, 4)
    heatmaps[0, 0, 1, 2] = 7.5
    heatmaps[0, 1] = -1.0
    intensities, locations = decode_au_heatmaps(heatmaps)
    assert intensities.tolist() == [[5.0, 0.0]]
    assert locations[0, 0].tolist() == [2.0, 1.0]  # (x, y)


def test_landmark_heatmaps_have_unit_peaks_and_zero_maps_for_unknown_points():
    points = torch.tensor([[[3.0, 4.0], [20.0, 7.0], [float("nan"), float("nan")]]])
    maps, known = landmark_heatmaps(points, SIZE, sigma=2.0)
    assert known.tolist() == [[True, True, False]]
    assert maps[0, 0, 4, 3].item() == pytest.approx(1.0)
    assert maps[0, 1, 7, 21].item() == pytest.approx(math.exp(-1 / 8))  # sigma 2 at 1 px
    assert (maps[0, 2] == 0).all()


def test_subpixel_landmark_decoding_moves_a_quarter_pixel_toward_the_larger_neighbour():
    points = torch.tensor([[[10.3, 20.0], [15.0, 7.8], [12.0, 12.0]]])
    maps, _ = landmark_heatmaps(points, SIZE)
    decoded = decode_landmarks(maps)
    torch.testing.assert_close(decoded, torch.tensor([[[10.25, 20.0], [15.0, 7.75], [12.0, 12.0]]]))


def test_subpixel_decoding_beats_plain_argmax_on_random_points():
    points = 2 + 28 * torch.rand(1, 200, 2)
    maps, _ = landmark_heatmaps(points, SIZE)
    refined = (decode_landmarks(maps) - points).norm(dim=-1).mean()
    plain = (decode_au_heatmaps(maps)[1] - points).norm(dim=-1).mean()
    assert refined < plain


def test_decoding_at_the_border_keeps_the_integer_argmax():
    maps = torch.zeros(1, 1, 8, 8)
    maps[0, 0, 0, 3] = 1.0  # peak on the top row: y has no upper neighbour
    maps[0, 0, 1, 3] = 0.5
    maps[0, 0, 0, 4] = 0.5  # x is interior, its right neighbour is the larger one
    assert decode_landmarks(maps)[0, 0].tolist() == [3.25, 0.0]


def test_drawing_stays_on_the_inputs_device_and_dtype():
    landmarks = 100 + 20 * torch.rand(2, 68, 2, dtype=torch.float64)
    targets, mask = au_targets(landmarks, torch.ones(2, 2), ["AU01", "AU25"], 256, 64)
    assert targets.dtype == torch.float64 and targets.device == landmarks.device
    assert targets.shape == (2, 2, 64, 64) and mask.shape == (2, 2)
