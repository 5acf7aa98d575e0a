import numpy as np
import pytest

from aunet.faces.crop import (
    DEFAULT_MARGIN,
    CropBox,
    crop_affine,
    crop_face,
    face_box,
    invert_affine,
    transform_points,
)


def test_face_box_is_centred_square_with_margin_and_ignores_nan():
    points = np.array([[10.0, 20.0], [50.0, 40.0], [np.nan, np.nan], [30.0, 25.0]])
    box = face_box(points, margin=0.25)
    assert box == pytest.approx(CropBox(30.0, 30.0, 50.0))  # longer side 40 x 1.25
    assert face_box(points).side == pytest.approx(40 * (1 + DEFAULT_MARGIN))


def test_face_box_rejects_no_landmarks():
    with pytest.raises(ValueError, match="no finite landmark"):
        face_box(np.full((68, 2), np.nan))


def test_affine_maps_box_edges_to_crop_pixel_edges():
    affine = crop_affine(CropBox(100.0, 50.0, 40.0), size=8)  # 5 source pixels per crop pixel
    corners = transform_points(np.array([[80.0, 30.0], [120.0, 70.0], [100.0, 50.0]]), affine)
    np.testing.assert_allclose(corners, [[-0.5, -0.5], [7.5, 7.5], [3.5, 3.5]])


def test_unit_scale_crop_is_a_plain_slice():
    image = np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    # side 32 at scale 1: crop pixel j is source pixel j + 55.5 - 15.5 = j + 40
    crop = crop_face(image, np.zeros((68, 2)), size=32, box=CropBox(55.5, 45.5, 32.0))
    np.testing.assert_array_equal(crop.image, image[30:62, 40:72])


@pytest.mark.parametrize("side", [50.0, 400.0])  # up- and down-sampling (with the low-pass)
def test_landmarks_follow_the_pixels(side):
    image = np.zeros((200, 200), np.float32)
    image[100:104, 60:64] = 255.0  # a square centred on (61.5, 101.5)
    crop = crop_face(image, np.array([[61.5, 101.5]]), size=64, box=CropBox(70.0, 90.0, side))
    ys, xs = np.mgrid[:64, :64]
    weights = crop.image / crop.image.sum()
    centroid = [(xs * weights).sum(), (ys * weights).sum()]
    np.testing.assert_allclose(centroid, crop.landmarks[0], atol=0.1)


def test_outside_the_image_is_black():
    image = np.full((20, 20, 3), 200, np.uint8)
    # scale 1: crop pixel (x, y) is source pixel (x, y - 10)
    crop = crop_face(image, np.zeros((68, 2)), size=40, box=CropBox(19.5, 9.5, 40.0))
    assert (crop.image[10:30, :20] == 200).all()
    assert (crop.image[:10] == 0).all()
    assert (crop.image[30:] == 0).all()
    assert (crop.image[:, 20:] == 0).all()


def test_downscaling_does_not_alias():
    stripes = np.zeros((400, 400, 3), np.uint8)
    stripes[:, ::2] = 255  # the finest pattern there is
    crop = crop_face(stripes, np.zeros((68, 2)), size=100, box=CropBox(199.5, 199.5, 400.0))
    # Plain bilinear sampling at 1/4 would hit black or white columns; the low-pass gives grey.
    assert crop.image.std() < 5
    assert abs(crop.image.mean() - 127.5) < 5


def test_points_map_back_and_nan_stays_nan():
    landmarks = np.array([[10.0, 20.0], [50.0, 60.0], [np.nan, np.nan]])
    crop = crop_face(np.zeros((80, 80, 3), np.uint8), landmarks, size=16)
    assert crop.image.shape == (16, 16, 3)
    assert crop.landmarks.dtype == np.float32
    assert np.isnan(crop.landmarks[2]).all()
    back = transform_points(crop.landmarks[:2], invert_affine(crop.affine))
    np.testing.assert_allclose(back, landmarks[:2], atol=1e-4)
    # the landmarks' box spans 1 / (1 + margin) of the crop, centred
    extent = crop.landmarks[1] - crop.landmarks[0]
    np.testing.assert_allclose(extent, 16 / (1 + DEFAULT_MARGIN), rtol=1e-5)
