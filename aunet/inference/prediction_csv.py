"""The CSV files ``aunet-predict`` writes: OpenFace 2.2's layout (the default), or aunet's own.

**OpenFace** (``--format openface``): the columns of OpenFace 2.2's FeatureExtraction with only
AUs asked for (``-aus``): ``frame, face_id, timestamp, confidence, success``, then the intensity
of its 17 AUs (``AU01_r`` ... ``AU45_r``), then the occurrence of its 18 (``AU01_c`` ...
``AU45_c``, with ``AU28_c``, which OpenFace detects but does not rate), a number in every cell,
``,`` between cells, one CSV per input named after it as OpenFace names its outputs (``rec.avi``
-> ``rec.csv``, a folder ``frames/`` -> ``frames.csv``). Tools that read OpenFace's files (py-feat's
``read_openface`` and ``Fex.aus``, which ask for all of these columns; pandas; the ``csv``
module and ``float``) read aunet's the same way.

- An AU the model estimates: its intensity in ``_r`` and, in ``_c``, 1 where the intensity is
  at least the occurrence threshold (default 2: DISFA's AU-detection convention, an intensity
  of 2 or more counts as the AU occurring; docs/inference.md cites the codebase), else 0.
- An AU the model does not estimate: ``nan`` in both columns, which every reader above parses
  as a missing number and which claims nothing (a 0 would claim the AU absent).
- A frame without a face: ``success`` 0, ``confidence`` 0, and 0 in the AU cells of the
  model's AUs, as OpenFace writes them.
- AUs the model estimates that OpenFace has no column for follow OpenFace's, in AU order;
  ``--locations`` adds ``AU01_x, AU01_y, ...`` (frame pixels; not OpenFace's) after them.

**aunet** (``--format aunet``): ``frame, face_id, timestamp, confidence, success``, the model's
AUs' ``_r`` columns only, empty AU cells where no face was found, and, unless the only input is
one video, one CSV for all inputs with an ``input`` column naming each row's file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aunet.inference.face_finding import Face
from aunet.inference.sources import Frame, InputError, Source

#: OpenFace 2.2's intensity AUs (``AU.._r``), in its column order.
OPENFACE_INTENSITY_AUS = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15",
    "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)  # fmt: skip
#: OpenFace 2.2's occurrence AUs (``AU.._c``): the intensity ones and AU28, in its order.
OPENFACE_OCCURRENCE_AUS = (*OPENFACE_INTENSITY_AUS[:-1], "AU28", "AU45")
#: Intensity from which an AU counts as occurring in ``AU.._c`` (DISFA's detection convention).
OCCURRENCE_THRESHOLD = 2.0
FORMATS = ("openface", "aunet")
_FIRST_COLUMNS = ["frame", "face_id", "timestamp", "confidence", "success"]


def _first_cells(frame: Frame, face: Face | None) -> list[str]:
    face_id = face.face_id if face is not None else 0
    cells = [str(frame.number), str(face_id), f"{frame.timestamp:.3f}"]
    return cells + ([f"{face.confidence:.2f}", "1"] if face is not None else ["0.00", "0"])


def _location_columns(au_names: Sequence[str]) -> list[str]:
    return [f"{name}_{axis}" for name in au_names for axis in "xy"]


def _location_cells(locations: np.ndarray | None, count: int) -> list[str]:
    points = locations.reshape(-1) if locations is not None else np.full(2 * count, np.nan)
    return [f"{v:.1f}" if np.isfinite(v) else "" for v in points]


class AunetLayout:
    """aunet's own CSV: the model's AUs only, empty cells without a face, an ``input`` column.

    Args:
        au_names: the model's AUs.
        locations: add ``AU01_x, AU01_y, ...`` (frame pixels).
        with_input: add an ``input`` column naming each row's file.
    """

    def __init__(self, au_names: Sequence[str], locations: bool, with_input: bool) -> None:
        self.au_names = tuple(au_names)
        self.locations = locations
        self.with_input = with_input

    def header(self) -> list[str]:
        """OpenFace's first five columns, ``AU01_r, ...``, then the optional ones."""
        columns = [*_FIRST_COLUMNS, *(f"{name}_r" for name in self.au_names)]
        if self.locations:
            columns += _location_columns(self.au_names)
        return columns + (["input"] if self.with_input else [])

    def row(
        self,
        frame: Frame,
        face: Face | None,
        intensities: np.ndarray | None,
        locations: np.ndarray | None,
    ) -> list[str]:
        """One face's cells (a frame's, when no face was found: AU cells empty)."""
        k = len(self.au_names)
        cells = _first_cells(frame, face)
        cells += [f"{v:.3f}" for v in intensities] if intensities is not None else [""] * k
        if self.locations:
            cells += _location_cells(locations, k)
        return cells + ([str(frame.file)] if self.with_input else [])


class OpenFaceLayout:
    """OpenFace 2.2's CSV (see the module docstring).

    Args:
        au_names: the model's AUs.
        locations: add ``AU01_x, AU01_y, ...`` (frame pixels) after the AU columns.
        threshold: the intensity from which ``AU.._c`` is 1.
    """

    def __init__(
        self, au_names: Sequence[str], locations: bool, threshold: float = OCCURRENCE_THRESHOLD
    ) -> None:
        self.au_names = tuple(au_names)
        self.locations = locations
        self.threshold = threshold
        by_number = lambda name: int(name[2:])  # noqa: E731 (canonical names: AU01, ...)
        extra = sorted(set(self.au_names) - set(OPENFACE_OCCURRENCE_AUS), key=by_number)
        self.intensity_aus = (*OPENFACE_INTENSITY_AUS, *extra)
        self.occurrence_aus = (*OPENFACE_OCCURRENCE_AUS, *extra)
        index = {name: k for k, name in enumerate(self.au_names)}
        self._intensity_index = [index.get(name) for name in self.intensity_aus]
        self._occurrence_index = [index.get(name) for name in self.occurrence_aus]

    def header(self) -> list[str]:
        """``frame, face_id, timestamp, confidence, success``, ``AU.._r``, ``AU.._c``, ..."""
        columns = [*_FIRST_COLUMNS, *(f"{name}_r" for name in self.intensity_aus)]
        columns += [f"{name}_c" for name in self.occurrence_aus]
        return columns + (_location_columns(self.au_names) if self.locations else [])

    def row(
        self,
        frame: Frame,
        face: Face | None,
        intensities: np.ndarray | None,
        locations: np.ndarray | None,
    ) -> list[str]:
        """One face's cells: numbers everywhere (0 for the model's AUs without a face)."""
        values = intensities if intensities is not None else np.zeros(len(self.au_names))

        def intensity(k: int | None) -> str:
            return "nan" if k is None else f"{values[k]:.3f}"

        def occurrence(k: int | None) -> str:
            return "nan" if k is None else ("1" if values[k] >= self.threshold else "0")

        cells = _first_cells(frame, face)
        cells += [intensity(k) for k in self._intensity_index]
        cells += [occurrence(k) for k in self._occurrence_index]
        if self.locations:
            cells += _location_cells(locations, len(self.au_names))
        return cells


def openface_csv_name(source: Source) -> str:
    """The CSV OpenFace names after an input: ``rec.avi`` -> ``rec.csv``, ``frames/`` -> ..."""
    stem = source.path.name if source.path.is_dir() else source.path.stem
    return f"{stem}.csv"


def csv_targets(sources: Sequence[Source], out: Path, fmt: str) -> list[tuple[Path, list[int]]]:
    """Each CSV to write and the indices of the sources whose rows it holds.

    aunet's format writes one ``out`` for every input. OpenFace's writes one CSV per input:
    ``out`` itself for one input given a file name (a name with a suffix that is not an
    existing folder), else ``out/<name>.csv`` per input (:func:`openface_csv_name`).

    Raises:
        InputError: an unknown format; a file name ``out`` for several inputs in OpenFace's
            format; two inputs whose CSVs would have one name.
    """
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if fmt == "aunet":
        return [(out, list(range(len(sources))))]
    if out.suffix and not out.is_dir():  # a file name (any suffix: an input's name is refused)
        if len(sources) > 1:
            raise InputError(
                f"--out {out}: {len(sources)} inputs give {len(sources)} CSVs in OpenFace's "
                "format (one per input, as OpenFace writes them); give a folder for them, or "
                "--format aunet for one CSV with an input column"
            )
        return [(out, [0])]
    targets: dict[Path, list[int]] = {}
    for index, source in enumerate(sources):
        targets.setdefault(out / openface_csv_name(source), []).append(index)
    clashes = [f"{path.name} ({len(indices)} inputs)" for path, indices in targets.items()
               if len(indices) > 1]  # fmt: skip
    if clashes:
        raise InputError(
            f"--out {out}: inputs whose CSVs would have one name: {', '.join(clashes)}; rename "
            "them, or use --format aunet for one CSV with an input column"
        )
    return list(targets.items())
