"""table.png as a reader sees it: the legend beside the bars, never over them."""

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from aunet.evaluation import tables
from aunet.evaluation.paper_results import AVERAGE
from aunet.evaluation.table_rows import EXPERIMENT_ORDER, METHOD_NAMES, MethodResults

AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU09", "AU12")


def results(count: int) -> list[MethodResults]:
    """``count`` methods whose tallest bars stand at the left, where a legend used to sit."""
    rows = []
    for i, name in enumerate(EXPERIMENT_ORDER[:count]):
        icc = {au: 0.2 + 0.01 * k for k, au in enumerate(AUS)} | {"AU01": 0.6 + 0.02 * i}
        mse = {au: 0.5 for au in AUS} | {"AU01": 1.9, "AU04": None}
        icc[AVERAGE], mse[AVERAGE] = 0.3, 0.7
        rows.append(MethodResults(name, METHOD_NAMES[name], icc, mse))
    return rows


def drawn_figure(tmp_path: Path, monkeypatch, count: int):
    """The figure :func:`tables.plot_grouped_bars` wrote, laid out as saved."""
    saved = []
    save = tables.save_figure

    def keep(figure, path, title):
        saved.append(figure)
        return save(figure, path, title)

    monkeypatch.setattr(tables, "save_figure", keep)
    path = tables.plot_grouped_bars(tmp_path / "table.png", results(count), AUS, "a title")
    assert path.stat().st_size > 0
    (figure,) = saved
    canvas = FigureCanvasAgg(figure)  # closing the figure took its own canvas away
    canvas.draw()
    return figure, canvas.get_renderer()


def extents(artists, renderer) -> list[Bbox]:
    """Window extents of the drawn ``artists`` (bars of a missing value have none)."""
    boxes = [artist.get_window_extent(renderer) for artist in artists if artist.get_visible()]
    return [box for box in boxes if np.isfinite(box.bounds).all() and box.width > 0 < box.height]


@pytest.mark.parametrize("count", [1, 3, 8, len(EXPERIMENT_ORDER)])
def test_the_legend_covers_no_bar_and_no_label(tmp_path, monkeypatch, count):
    figure, renderer = drawn_figure(tmp_path, monkeypatch, count)
    (legend,) = [axis.get_legend() for axis in figure.axes if axis.get_legend()]
    assert [text.get_text() for text in legend.get_texts()] == [r.method for r in results(count)]
    box = legend.get_window_extent(renderer)
    bars = extents([bar for axis in figure.axes for bar in axis.patches], renderer)
    assert len(bars) == 2 * count * (len(AUS) + 1) - count  # AU04's MSE is missing
    assert not [bar for bar in bars if box.overlaps(bar)]
    labels = figure.findobj(
        lambda artist: isinstance(artist, Text) and artist.get_text() == "a title"
    )
    for axis in figure.axes:
        labels += [axis.yaxis.label, *axis.get_xticklabels(), *axis.get_yticklabels()]
    assert not [label for label in extents(labels, renderer) if box.overlaps(label)]
    assert figure.bbox.containsx(box.x0) and figure.bbox.containsx(box.x1)
    assert figure.bbox.containsy(box.y0) and figure.bbox.containsy(box.y1)


def test_axes_say_which_way_is_better(tmp_path, monkeypatch):
    figure, _ = drawn_figure(tmp_path, monkeypatch, 2)
    assert [axis.get_ylabel() for axis in figure.axes] == [
        "ICC (higher is better)",
        "MSE (lower is better)",
    ]
    assert figure.get_suptitle() == "a title"
    for axis in figure.axes:
        assert [label.get_text() for label in axis.get_xticklabels()] == [*AUS, "Avg."]
        assert min(label.get_fontsize() for label in axis.get_xticklabels()) >= 9


def test_every_method_has_its_own_colour(tmp_path, monkeypatch):
    """All of ``make table``'s rows: more than a ten-colour cycle holds."""
    figure, _ = drawn_figure(tmp_path, monkeypatch, len(EXPERIMENT_ORDER))
    legend = figure.axes[0].get_legend()
    colours = {tuple(handle.get_facecolor()) for handle in legend.legend_handles}
    assert len(colours) == len(EXPERIMENT_ORDER)
