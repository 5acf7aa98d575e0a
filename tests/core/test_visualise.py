"""The overlay pictures as a reader sees them: what each panel and row says, and that it fits."""

from typing import NamedTuple

import cv2
import numpy as np
import pytest
import torch
from checkpoint_factories import IMAGE_SIZE, untrained_module

from aunet import visualise
from aunet.aus import DATASET_AUS
from aunet.inference import outputs
from aunet.training.callbacks import HeatmapOverlays

AUS = ("AU01", "AU02", "AU04")
PREDICTED = (3.44, 0.0, 1.25)
TRUTH = (0.0, float("nan"), 2.5)


class Written(NamedTuple):
    """One ``cv2.putText`` call: the text, where it starts, its font scale and thickness."""

    text: str
    x: int
    y: int
    scale: float
    thickness: int

    def right(self) -> int:
        """The x just past the text's last pixel."""
        size = cv2.getTextSize(self.text, cv2.FONT_HERSHEY_SIMPLEX, self.scale, self.thickness)
        return self.x + size[0][0]


@pytest.fixture
def written(monkeypatch) -> list[Written]:
    """Every text the drawing code writes, in order (and still drawn)."""
    calls: list[Written] = []
    put_text = cv2.putText

    def record(image, text, origin, font, scale, colour, thickness=1, *args):
        calls.append(Written(text, *origin, scale, thickness))
        return put_text(image, text, origin, font, scale, colour, thickness, *args)

    monkeypatch.setattr(cv2, "putText", record)
    return calls


def face(size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_panels_say_prediction_and_label_in_words(written):
    grid = visualise.au_panel(face(), np.zeros((3, 8, 8)), AUS, PREDICTED, TRUTH, panel_size=128)
    assert [w.text for w in written] == [
        "AU01 pred 3.4 / true 0",
        "AU02 pred 0.0 / no label",
        "AU04 pred 1.2 / true 2.5",
    ]
    # Each label within its 128-pixel panel, however long: the font shrinks to fit.
    assert all(w.x >= 0 and w.right() <= 128 for w in written)
    assert grid.shape == (128, 6 * 128, 3)


def test_inference_panels_name_the_prediction_and_mark_a_missing_face(written):
    visualise.au_panel(face(), np.zeros((3, 8, 8)), AUS, [2.44, np.nan, 0.0])
    assert [w.text for w in written] == ["AU01 pred 2.4", "AU02 -", "AU04 pred 0.0"]


def test_training_picture_names_its_rows_and_keeps_the_prediction_above(written):
    maps = np.zeros((3, 8, 8))
    maps[2, 4, 4] = 5.0  # only the target grid shows a map: tells the grids apart
    picture = visualise.prediction_and_target(
        face(), np.zeros((3, 8, 8)), maps, AUS, PREDICTED, TRUTH, panel_size=128
    )
    texts = [w.text for w in written]
    assert texts[:3] == [
        "AU01 pred 3.4 / true 0",
        "AU02 pred 0.0 / no label",
        "AU04 pred 1.2 / true 2.5",
    ]
    assert texts[3:6] == ["AU01 true 0", "AU02 no label", "AU04 true 2.5"]
    assert texts[6].startswith("prediction: ") and "pred = predicted intensity" in texts[6]
    assert texts[9].startswith("target: ")
    band = visualise.key_band(6 * 128, "any").shape[0]
    assert picture.shape == (2 * (band + 128), 6 * 128, 3)
    prediction = visualise.au_panel(
        face(), np.zeros((3, 8, 8)), AUS, PREDICTED, TRUTH, panel_size=128
    )
    np.testing.assert_array_equal(picture[band : band + 128], prediction)
    assert not np.array_equal(picture[-128:], prediction)
    assert all(w.right() <= picture.shape[1] for w in written)


def test_the_training_callback_draws_labelled_rows_for_each_face(written):
    module = untrained_module("scratch").eval()
    count = len(DATASET_AUS["synthetic"])
    batch = {
        "image": torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE),
        "au": torch.full((2, count), 1.0),
        "landmarks": torch.rand(2, 68, 2) * IMAGE_SIZE,
    }
    batch["au"][0, 0] = float("nan")
    grid = HeatmapOverlays.panel(module, batch)
    texts = [w.text for w in written]
    assert sum(text.startswith("prediction: ") for text in texts) == 2
    assert sum(text.startswith("target: ") for text in texts) == 2
    first = DATASET_AUS["synthetic"][0]
    assert f"{first} no label" in texts and f"{first} true 1" in texts
    assert any(text.startswith(f"{first} pred ") and text.endswith(" / no label") for text in texts)
    assert grid.dtype == np.uint8 and grid.shape[2] == 3


def test_key_band_shows_the_colour_scale_from_blue_to_red(written):
    band = visualise.key_band(400, "prediction")
    assert [w.text for w in written] == ["prediction", "intensity 0", "5"]
    row = band[band.shape[0] // 2, written[1].right() : written[2].x].astype(int)
    ramp = row[(row != row[:, :1]).any(axis=1)]  # the coloured pixels, between the words
    assert len(ramp) > 50
    assert ramp[0, 2] > 100 and ramp[0, 0] < 50  # blue at 0
    assert ramp[-1, 0] > 100 and ramp[-1, 2] < 50  # red at 5
    assert written[2].right() <= 400
    # Text too long for both: the text keeps the band, the key goes.
    written.clear()
    visualise.key_band(200, "a caption far too long to leave any room for the colour key")
    assert len(written) == 1


def test_the_inference_overlay_keeps_its_size_and_puts_the_key_below_the_frame(written):
    panel = visualise.au_panel(face(), np.zeros((3, 8, 8)), AUS, PREDICTED)
    frame = np.full((90, 120, 3), 255, np.uint8)  # 4:3, white
    picture = visualise.frame_overlay(frame, panel, caption="clip.mp4 #1")
    assert [w.text for w in written][3:] == ["intensity 0", "5", "clip.mp4 #1"]
    width = round(128 * 4 / 3)
    assert picture.shape == (128, width + 6 * 128, 3)
    key = visualise.key_band(width, scale=visualise.MIN_FONT_SCALE)  # 128 px: the smallest
    np.testing.assert_array_equal(picture[-key.shape[0] :, :width], key)
    white = np.flatnonzero((picture[:, :width] == 255).all(axis=2).any(axis=1))
    assert white.max() < 128 - key.shape[0]  # the frame is letterboxed above the key


def test_intensity_plot_says_what_its_curves_and_gaps_are():
    values = np.array([[0.0, 5.0], [np.nan, 2.0], [1.0, 3.0]])
    figure = visualise.intensity_figure(np.arange(3), values, ("AU01", "AU12"), "row")
    assert "0-5" in figure.get_suptitle() and "gaps: no face found" in figure.get_suptitle()
    assert [axis.get_ylabel() for axis in figure.axes] == ["AU01", "AU12"]
    assert figure.axes[-1].get_xlabel() == "row"


def test_plot_of_an_openface_csv_has_gaps_without_a_face_and_no_rows_for_unestimated_aus(
    tmp_path, monkeypatch
):
    """OpenFace's layout writes 0 in the AU cells of a frame without a face, and nan columns
    for the AUs the model does not estimate: neither is an intensity to draw."""
    lines = ["frame,face_id,timestamp,confidence,success,AU01_r,AU07_r,AU12_r,AU01_c"]
    lines += [f"{n},0,{n / 25:.3f},0.9,{int(n != 2)},{0 if n == 2 else 1.5},nan,2.0,0"
              for n in range(1, 5)]  # fmt: skip
    (tmp_path / "openface.csv").write_text("\n".join(lines) + "\n")
    drawn = {}
    monkeypatch.setattr(outputs, "plot_intensities", lambda *args: drawn.update(args=args))
    outputs.plot_csv(tmp_path / "openface.csv", tmp_path / "plot.png")
    x, intensities, names, _, xlabel = drawn["args"]
    assert names == ["AU01", "AU12"] and xlabel == "time (s)"
    np.testing.assert_allclose(x, [0.04, 0.08, 0.12, 0.16])
    np.testing.assert_array_equal(
        intensities, [[1.5, 2.0], [np.nan, np.nan], [1.5, 2.0], [1.5, 2.0]]
    )
