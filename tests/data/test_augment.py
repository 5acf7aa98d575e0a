import numpy as np
import pytest
import torch
from factories import draw_face, face_landmarks

from aunet.aus import FLIP_PERMUTATION, au_centres
from aunet.data.augment import (
    AugmentConfig,
    Resize,
    TrainAugmentation,
    face_affine,
    resize_points,
)

FLIP = list(FLIP_PERMUTATION)
GEOMETRY_ONLY = {"color_jitter": 0.0, "occlusion": 0.0}
FLIP_ONLY = AugmentConfig(flip=1.0, rotation=0.0, scale=(1.0, 1.0), **GEOMETRY_ONLY)


def mirrored(points: np.ndarray, size: int) -> np.ndarray:
    out = points.copy()
    out[..., 0] = size - 1 - out[..., 0]
    return out


def blob(size: int, centre: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """A white Gaussian dot at a sub-pixel (x, y) on black, RGB uint8."""
    ys, xs = np.mgrid[:size, :size]
    dot = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
    return np.repeat(np.round(255 * dot).astype(np.uint8)[..., None], 3, axis=2)


def centroid(image: np.ndarray) -> np.ndarray:
    weight = image[..., 0].astype(float)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


def test_face_affine_matches_hand_computed_maps():
    def apply(matrix, point):
        return matrix[:, :2] @ np.asarray(point, float) + matrix[:, 2]

    # Resize 8 -> 4 aligns pixel centres: x -> (x + 0.5) / 2 - 0.5.
    np.testing.assert_allclose(apply(face_affine(8, 4), (0, 7)), (-0.25, 3.25))
    # 90 degrees counter-clockwise on screen (y down) about the centre (2, 2) of a 5-px crop.
    np.testing.assert_allclose(apply(face_affine(5, 5, angle=90), (4, 2)), (2, 0), atol=1e-12)
    # Mirror: x -> 4 - x; zoom 2 about the centre; a shift adds output pixels.
    np.testing.assert_allclose(apply(face_affine(5, 5, flip=True), (0, 1)), (4, 1))
    np.testing.assert_allclose(apply(face_affine(5, 5, scale=2.0), (3, 2)), (4, 2))
    np.testing.assert_allclose(apply(face_affine(5, 5, shift=(1.0, -2.0)), (2, 2)), (3, 0))


def test_flip_mirrors_pixels_exactly_and_swaps_left_and_right_landmarks():
    size = 32
    landmarks = face_landmarks(size, np.random.default_rng(1), shift=0.1)
    landmarks[36] = (9.0, 12.0)  # the left eye's outer corner, on a pixel centre
    image = np.zeros((size, size, 3), np.uint8)
    image[12, 9] = 255

    out_image, out_points = TrainAugmentation(size, FLIP_ONLY)(image, landmarks)

    np.testing.assert_array_equal(out_image, image[:, ::-1])
    # The dot is now the face's right eye's outer corner (45), on the mirrored pixel.
    np.testing.assert_array_equal(out_points[45], (size - 1 - 9, 12))
    assert out_image[12, size - 1 - 9, 0] == 255
    # Left eye (36-41) and right eye (42-47) trade places, point by point.
    np.testing.assert_allclose(
        out_points[42:48], mirrored(landmarks, size)[[39, 38, 37, 36, 41, 40]]
    )
    np.testing.assert_allclose(out_points, mirrored(landmarks, size)[FLIP])


def test_flip_moves_au12_left_gaussian_to_the_mirror_of_the_right_one():
    size = 32
    landmarks = face_landmarks(size, np.random.default_rng(2), shift=0.1)
    _, flipped = TrainAugmentation(size, FLIP_ONLY)(draw_face(landmarks, size), landmarks)
    names = ("AU12", "AU01")
    before, valid = au_centres(torch.from_numpy(landmarks)[None], names)
    after, _ = au_centres(torch.from_numpy(flipped)[None], names)
    left, right = 0, 1
    assert valid[0, :, :2].all()
    # A face's left mouth corner after a flip is where its right one was, mirrored ...
    expected = mirrored(before[0, :, right].numpy(), size)
    np.testing.assert_allclose(after[0, :, left].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        after[0, :, right].numpy(), mirrored(before[0, :, left].numpy(), size), atol=1e-5
    )
    # ... and not merely the original left corner (the face is off-centre and jittered).
    assert np.abs(after[0, 0, left].numpy() - before[0, 0, left].numpy()).max() > 1.0


@pytest.mark.parametrize("flip", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_rotation_scale_and_shift_carry_a_dot_with_its_landmark(flip, seed):
    size, index = 64, 39  # inner corner of the left eye
    landmarks = face_landmarks(size, np.random.default_rng(seed))
    config = AugmentConfig(flip=flip, translation=0.05, **GEOMETRY_ONLY)
    augment = TrainAugmentation(size, config)
    augment.seed(seed)
    out_image, out_points = augment(blob(size, landmarks[index]), landmarks)
    moved = out_points[FLIP[index] if flip else index]
    np.testing.assert_allclose(centroid(out_image), moved, atol=0.2)


@pytest.mark.parametrize(("source", "target"), [(64, 32), (32, 48)])
def test_resize_keeps_a_dot_on_its_landmark(source, target):
    point = np.array([[20.3, 11.7]], np.float32)
    image, points = Resize(target)(blob(source, point[0], sigma=2.0), point)
    assert image.shape == (target, target, 3)
    np.testing.assert_allclose(centroid(image), points[0], atol=0.15)


def test_augmentation_of_a_larger_crop_keeps_the_dot_on_its_landmark():
    landmarks = face_landmarks(96, np.random.default_rng(5))
    augment = TrainAugmentation(32, AugmentConfig(**GEOMETRY_ONLY))
    augment.seed(3)
    out_image, out_points = augment(blob(96, landmarks[30], sigma=4.5), landmarks)
    assert out_image.shape == (32, 32, 3)
    moved = out_points[30]  # the nose tip is on the midline: its index survives flips
    np.testing.assert_allclose(centroid(out_image), moved, atol=0.2)


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_unknown_landmarks_stay_unknown_through_the_full_pipeline(flip):
    landmarks = face_landmarks(32, np.random.default_rng(0))
    unknown = [0, 36, 37, 38, 48]
    landmarks[unknown] = np.nan
    config = AugmentConfig(flip=flip, translation=0.1, hue=0.05, occlusion=1.0)
    for seed in range(3):
        augment = TrainAugmentation(32, config)
        augment.seed(seed)
        _, points = augment(draw_face(landmarks, 32), landmarks)
        expected = sorted(FLIP[i] for i in unknown) if flip else unknown
        assert np.flatnonzero(np.isnan(points).any(axis=1)).tolist() == expected
        assert np.isnan(points).any(axis=1).sum() == np.isnan(points).all(axis=1).sum()


def test_all_68_points_are_kept_when_some_leave_the_image():
    size = 32
    landmarks = face_landmarks(size, np.random.default_rng(0))
    landmarks[:5] += (-20.0, 0.0)  # jaw points far left of the crop, as in tight crops
    config = AugmentConfig(rotation=0.0, scale=(1.2, 1.2), flip=0.0, **GEOMETRY_ONLY)
    _, points = TrainAugmentation(size, config)(draw_face(landmarks, size), landmarks)
    assert points.shape == (68, 2)
    assert np.isfinite(points).all()
    outside = (points < -0.5) | (points > size - 0.5)
    assert outside.any(axis=1).sum() >= 5
    expected = resize_points(landmarks, size, size)
    centre = (size - 1) / 2
    np.testing.assert_allclose(points, centre + 1.2 * (expected - centre), rtol=1e-5, atol=1e-4)


def test_output_types_and_the_same_seed_gives_the_same_augmentation():
    landmarks = face_landmarks(40, np.random.default_rng(0))
    image = draw_face(landmarks, 40)
    augment = TrainAugmentation(32, AugmentConfig(hue=0.05, occlusion=1.0, translation=0.1))
    runs = []
    for seed in (7, 7, 8):
        augment.seed(seed)
        runs.append(augment(image, landmarks))
    out_image, out_points = runs[0]
    assert out_image.dtype == np.uint8
    assert out_image.shape == (32, 32, 3)
    assert out_points.dtype == np.float32
    assert out_points.shape == (68, 2)
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_an_unseeded_pipeline_takes_its_seed_from_torch():
    landmarks = face_landmarks(32, np.random.default_rng(0))
    image = draw_face(landmarks, 32)
    outputs = []
    for torch_seed in (1, 1, 2):
        augment = TrainAugmentation(32)
        torch.manual_seed(torch_seed)
        outputs.append(augment(image, landmarks)[1])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[2])


@pytest.mark.parametrize(
    "settings",
    [{"flip": 1.5}, {"scale": (1.2, 0.8)}, {"translation": 0.5}, {"occlusion_size": (0.0, 0.2)}],
)
def test_out_of_range_settings_are_refused_by_name(settings):
    name = next(iter(settings))
    with pytest.raises(ValueError, match=name):
        AugmentConfig(**settings)


def test_flip_and_occlusion_are_drawn_independently():
    # albumentations' own seeding gives every transform an identical random stream, which would
    # occlude exactly the flipped crops; the pipeline must draw from one shared stream.
    size = 16
    landmarks = face_landmarks(size, np.random.default_rng(0), shift=0.1)
    image = np.full((size, size, 3), 128, np.uint8)
    config = AugmentConfig(
        flip=0.5, rotation=0.0, scale=(1.0, 1.0), color_jitter=0.0, occlusion=0.5
    )
    augment = TrainAugmentation(size, config)
    flipped, occluded = [], []
    for seed in range(40):
        augment.seed(seed)
        out_image, out_points = augment(image, landmarks)
        flipped.append(bool(np.allclose(out_points, mirrored(landmarks, size)[FLIP])))
        occluded.append(bool((out_image != 128).any()))
    assert 5 < sum(flipped) < 35
    assert 5 < sum(occluded) < 35
    assert flipped != occluded
