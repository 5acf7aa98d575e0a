"""The framing step: face-alignment's 2DFAN-4 crop made from a stored crop, and who gets it."""

import dataclasses

import numpy as np
import pytest
import torch
import yaml
from checkpoint_factories import TINY_FAN, fit_checkpoint
from factories import write_store

from aunet.data.datamodule import AUDataModule
from aunet.data.folds import DISFA_SUBJECTS
from aunet.data.framing import Reframe, face_alignment_box, framing_for
from aunet.evaluation.predictions import run_data
from aunet.faces.crop import crop_face
from aunet.models import FAN, save_fan

#: A tiny network in the official layout (avg pooling, nearest upsampling), saved bare.
TINY_OFFICIAL = dataclasses.replace(TINY_FAN, pooling="avg", upsampling="nearest")


def face_alignment_affine(centre: tuple[float, float], scale: float, resolution: int) -> np.ndarray:
    """face-alignment's ``utils.transform`` as its docs define it: p -> res/h (p - c) + res/2."""
    h = 200.0 * scale
    return np.array(
        [[resolution / h, 0, resolution * (0.5 - centre[0] / h)],
         [0, resolution / h, resolution * (0.5 - centre[1] / h)]]
    )  # fmt: skip


def face_points(size: int = 128) -> np.ndarray:
    """68 points spanning a 40 x 50 box inside a ``size`` crop (only the box matters here)."""
    rng = np.random.default_rng(0)
    points = rng.uniform([44, 39], [84, 89], size=(68, 2))
    points[0], points[1] = (44, 39), (84, 89)
    return points.astype(np.float32)


def test_the_box_is_face_alignments_from_the_landmarks_bounding_box():
    box = face_alignment_box(np.array([[10.0, 20.0], [50.0, 80.0], [np.nan, np.nan]]))
    # w = 40, h = 60: s = 100 / 195; centre (30, 50 - 0.12 * 60); side 200 s.
    assert box.x == pytest.approx(30.0)
    assert box.y == pytest.approx(42.8)
    assert box.side == pytest.approx(200 * 100 / 195)
    with pytest.raises(ValueError, match="no finite landmark"):
        face_alignment_box(np.full((68, 2), np.nan))


def test_reframed_points_land_where_face_alignments_transform_puts_them():
    points = face_points()
    image = np.zeros((128, 128, 3), np.uint8)
    _, moved = Reframe("face_alignment")(image, points)
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    centre = ((x0 + x1) / 2, (y0 + y1) / 2 - 0.12 * (y1 - y0))
    theirs = face_alignment_affine(centre, ((x1 - x0) + (y1 - y0)) / 195, 128)
    expected = points @ theirs[:, :2].T + theirs[:, 2]
    # aunet puts pixel centres on integers, face-alignment on half-integers: half a pixel apart.
    np.testing.assert_allclose(moved, expected - 0.5, atol=1e-3)


def test_the_image_moves_with_its_landmarks():
    points = face_points()
    image = np.zeros((128, 128, 3), np.uint8)
    x, y = np.round(points[5]).astype(int)
    image[y - 1 : y + 2, x - 1 : x + 2] = 255
    points[5] = (x, y)
    framed, moved = Reframe("face_alignment")(image, points)
    weights = framed[..., 0].astype(np.float64)
    rows, columns = np.indices(weights.shape)
    centroid = np.array([(columns * weights).sum(), (rows * weights).sum()]) / weights.sum()
    assert framed.shape == image.shape
    np.testing.assert_allclose(centroid, moved[5], atol=0.25)


def test_store_framing_and_faces_without_landmarks_are_left_alone():
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    points = face_points(16) / 8
    assert Reframe("store")(image, points)[0] is image
    unknown = np.full((68, 2), np.nan, np.float32)
    assert Reframe("face_alignment")(image, unknown)[0] is image
    with pytest.raises(ValueError, match="framing must be one of"):
        Reframe("tight")


def test_a_reframed_source_crop_keeps_an_affine_from_the_source():
    source = np.zeros((240, 320, 3), np.uint8)
    points = face_points() + np.array([90.0, 50.0], np.float32)
    face = Reframe("face_alignment").face_crop(crop_face(source, points, size=64))
    mapped = points @ face.affine[:, :2].T + face.affine[:, 2]
    np.testing.assert_allclose(mapped, face.landmarks, atol=1e-3)
    # The framing's invariant: the landmarks' box has w + h = 195 / 200 of the crop's side.
    (x0, y0), (x1, y1) = face.landmarks.min(0), face.landmarks.max(0)
    assert (x1 - x0) + (y1 - y0) == pytest.approx(64 * 195 / 200, rel=1e-3)


def test_face_alignments_own_files_get_its_framing_and_aunets_do_not(tmp_path):
    fan = FAN(TINY_OFFICIAL)
    torch.save(fan.state_dict(), tmp_path / "official.pth.tar")
    save_fan(fan, tmp_path / "aunet.pt")
    assert framing_for(tmp_path / "official.pth.tar", uses_fan=True) == "face_alignment"
    assert framing_for(tmp_path / "official.pth.tar", uses_fan=False) == "store"
    assert framing_for(tmp_path / "aunet.pt", uses_fan=True) == "store"
    assert framing_for(None, uses_fan=True) == "store"


def test_the_data_module_reframes_every_stage(tmp_path):
    store = write_store(tmp_path / "s.h5", DISFA_SUBJECTS, 1, dataset="disfa", image_size=64)
    data = AUDataModule(store, batch_size=4, num_workers=0, image_size=64, augment=False,
                        framing="face_alignment")  # fmt: skip
    batch = next(iter(data.val_dataloader()))
    points = batch["landmarks"].numpy()
    spans = (points.max(1) - points.min(1)).sum(-1)
    np.testing.assert_allclose(spans, 64 * 195 / 200, rtol=1e-3)
    with pytest.raises(ValueError, match="framing must be auto or one of"):
        AUDataModule(store, framing="tight")


@pytest.mark.slow
def test_a_fit_over_an_official_fan_records_its_framing_for_every_later_use(tmp_path):
    official = tmp_path / "2DFAN4.pth.tar"
    torch.save(FAN(TINY_OFFICIAL).state_dict(), official)
    run = fit_checkpoint(tmp_path, "adapt", official).parents[1]
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["framing"] == "face_alignment"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["framing"] == "face_alignment"
    assert run_data(run).framing == "face_alignment"  # cross-validation and robustness
