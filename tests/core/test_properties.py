"""Property-based tests of the parsers that read researchers' files and options.

The label files (DISFA, BP4D), the landmark .mat files (DISFA, 300W-LP), the CSV manifest, the AU
column names and the converters' numeric options are each checked over many generated inputs:

- a well-formed input written from arbitrary valid values reads back as exactly those values;
- every broken input is refused with the parser's own error (ConversionError for files, whose
  message names the file, and the line where there is one; argparse's exit-2 error for options),
  never with a stray IndexError, OverflowError or ValueError traceback, and never accepted.

Examples are few and the example database is off: the file runs in seconds on a shared CPU and
writes nothing into the repository. Each example writes into a folder of its own, as pytest's
function-scoped ``tmp_path`` would be shared by all the examples of a test.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.io import savemat

from aunet.aus import AU_LOCATIONS, DATASET_AUS, INNER_LIP_66_TO_68, au_name, check_au_names
from data_prep import bp4d, disfa, manifest
from data_prep.__main__ import build_parser
from data_prep.common import (
    ConversionError,
    finite_number,
    read_label_file,
    read_mat_points,
    whole_number,
)

# Hypothesis caches what it learns about the code under test (the constants in its source) in a
# .hypothesis/ folder of the working directory; keep it out of the repository.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "aunet-hypothesis")
)
# Few examples per property keep the whole file to seconds on a shared CPU; no example database
# (a failure prints its example, which an @example can pin), and no deadline, as a busy machine
# would make one flaky.
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CHEAP = settings(PROPERTY, max_examples=150)  # pure functions, no files

INT64 = np.iinfo(np.int64)
#: The AU numbers Table 1 places (the ones a manifest may store).
TABLE_1_NUMBERS = sorted(int(name[2:]) for name in AU_LOCATIONS)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """Yield a fresh empty folder for one example, removed afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


# ----------------------------------------------------------------------------- label files
intensities = st.floats(0, 5, allow_nan=False)
#: How label files separate the two fields: commas, blanks, or both.
separators = st.sampled_from([",", ", ", " ", "\t", " , ", ",\t"])


def intensity_text(value: float) -> str:
    """An intensity as a file would spell it: integers without a point, others exactly."""
    return str(int(value)) if value.is_integer() else repr(value)


@st.composite
def label_lines(draw: st.DrawFn, unknown: float | None = None) -> tuple[list, list[str]]:
    """Draw ``(rows, lines)``: (frame, value or None for unknown) rows and their file lines."""
    frames = draw(st.lists(st.integers(INT64.min, INT64.max), unique=True, max_size=12))
    values = st.one_of(intensities, st.none()) if unknown is not None else intensities
    rows = [(frame, draw(values)) for frame in frames]
    unknown_text = st.sampled_from([f"{unknown:g}", f"{unknown:.1f}"]) if unknown else st.nothing()
    lines = []
    for frame, value in rows:
        text = draw(unknown_text) if value is None else intensity_text(value)
        lines.append(f"{frame}{draw(separators)}{text}")
        if draw(st.integers(0, 4)) == 0:  # blank lines are skipped
            lines.append(draw(st.sampled_from(["", " ", "\t"])))
    return rows, lines


def write_lines(path: Path, lines: list[str], newline: str = "\n") -> Path:
    """Write ``lines`` as a text file, each ending in ``newline``."""
    path.write_bytes("".join(line + newline for line in lines).encode())
    return path


@PROPERTY
@given(drawn=label_lines(), newline=st.sampled_from(["\n", "\r\n"]))
def test_a_label_file_reads_back_exactly(drawn, newline):
    rows, lines = drawn
    with scratch() as folder:
        frames, values = read_label_file(write_lines(folder / "au.txt", lines, newline))
    assert frames.dtype == np.int64 and values.dtype == np.float32
    assert frames.tolist() == [frame for frame, _ in rows]
    np.testing.assert_array_equal(values, np.float32([value for _, value in rows]))


@PROPERTY
@given(drawn=label_lines(unknown=bp4d.UNKNOWN))
def test_fera_unknown_code_reads_as_nan_and_nothing_else_does(drawn):
    rows, lines = drawn
    with scratch() as folder:
        _, values = read_label_file(write_lines(folder / "au.csv", lines), unknown=bp4d.UNKNOWN)
    expected = [math.nan if value is None else value for _, value in rows]
    np.testing.assert_array_equal(values, np.float32(expected))


def not_a_number(text: str) -> bool:
    """Whether ``float`` refuses ``text`` or reads it as NaN."""
    try:
        return math.isnan(float(text))
    except ValueError:
        return True


def not_an_int64(text: str) -> bool:
    """Whether ``text`` is no whole number that an int64 frame column can hold."""
    try:
        return not INT64.min <= int(text) <= INT64.max
    except ValueError:
        return True


#: One field of a label line: no comma and no blank inside (those would split it).
field_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters=","), min_size=1, max_size=8
).filter(lambda text: text.split() == [text])
bad_frames = st.one_of(
    st.integers(INT64.max + 1).map(str),  # a whole number, but beyond what a frame column holds
    st.integers(max_value=INT64.min - 1).map(str),
    st.sampled_from(["1.5", "1e3", "x", "0x10", "²"]),
    field_text.filter(not_an_int64),
)
#: Just past 0 or 5, where an off-by-one would show, drawn as often as any other out-of-range value.
just_outside = st.floats(5, 5.5, exclude_min=True) | st.floats(-0.5, 0, exclude_max=True)
out_of_range = st.floats(allow_nan=False).filter(lambda value: not 0 <= value <= 5)
bad_intensities = st.one_of(
    just_outside.map(repr),
    out_of_range.map(repr),
    st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "five", "2..5"]),
    field_text.filter(not_a_number),
)


@st.composite
def broken_label_file(draw: st.DrawFn) -> tuple[list[str], int | None, float | None]:
    """Draw ``(lines, number, unknown)``: a label file with one broken line.

    ``number`` is the broken line's (from 1), or None for a repeated frame (whose message names
    the frame); ``unknown`` is the unknown-intensity code to read it with (None or FERA's 9).
    """
    unknown = draw(st.sampled_from([None, bp4d.UNKNOWN]))
    rows, lines = draw(label_lines(unknown=unknown))
    used = {frame for frame, _ in rows}
    frame = draw(st.integers(1, 10**6).filter(lambda f: f not in used))
    kind = draw(st.sampled_from(["fields", "frame", "intensity", "repeat"]))
    if kind == "fields":
        fields = draw(st.lists(st.integers(0, 5).map(str), min_size=1, max_size=4))
        fields = fields if len(fields) != 2 else [*fields, "0"]
        bad = draw(separators).join(fields)
    elif kind == "frame":
        bad = f"{draw(bad_frames)},1"
    elif kind == "intensity":
        text = draw(
            bad_intensities.filter(lambda t: unknown is None or not_a_number(t) or float(t) != 9)
        )
        bad = f"{frame},{text}"
    else:
        bad = f"{frame},1"
        lines = [*lines, f"{frame},2"]
    position = draw(st.integers(0, len(lines)))
    lines.insert(position, bad)
    return lines, None if kind == "repeat" else position + 1, unknown


@settings(PROPERTY, max_examples=100)  # four kinds of damage, a few values each
@given(drawn=broken_label_file())
@example(drawn=([f"{INT64.max + 1},1"], 1, None))  # once an OverflowError traceback
def test_a_broken_label_line_is_refused_naming_file_and_line(drawn):
    lines, number, unknown = drawn
    with scratch() as folder:
        path = write_lines(folder / "SN001_au1.txt", lines)
        with pytest.raises(ConversionError) as refused:
            read_label_file(path, unknown=unknown)
    message = str(refused.value)
    assert message.startswith(f"{path}: " if number is None else f"{path}, line {number}: ")


@PROPERTY
@given(content=st.binary(max_size=200))
def test_any_bytes_as_a_label_file_read_or_are_refused(content):
    with scratch() as folder:
        path = folder / "au.txt"
        path.write_bytes(content)
        try:
            frames, values = read_label_file(path)
        except ConversionError as error:  # the one way to refuse; anything else fails the test
            refusal = str(error)
        else:
            refusal = None
            assert len(frames) == len(values)
            assert ((values >= 0) & (values <= 5)).all()
    assert refusal is None or refusal.startswith(f"{path}")


# ----------------------------------------------------------------------------- DISFA labels
DISFA_AUS = DATASET_AUS["disfa"]


def write_disfa_labels(folder: Path, labels: np.ndarray, subject: str = "SN001") -> list[Path]:
    """Write an N x 12 label matrix as DISFA's one file per AU, frames 1..N."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, au in enumerate(DISFA_AUS):
        path = folder / f"{subject}_au{int(au[2:])}.txt"
        lines = [f"{i},{intensity_text(float(v))}" for i, v in enumerate(labels[:, k], 1)]
        paths.append(write_lines(path, lines))
    return paths


disfa_matrices = st.integers(1, 12).flatmap(
    lambda n: hnp.arrays(np.float64, (n, len(DISFA_AUS)), elements=st.integers(0, 5).map(float))
)


@PROPERTY
@given(labels=disfa_matrices)
def test_disfa_label_files_read_back_as_the_frame_by_au_matrix(labels):
    with scratch() as folder:
        write_disfa_labels(folder / "SN001", labels)
        read = disfa._read_labels(folder / "SN001", "SN001")
    np.testing.assert_array_equal(read, labels.astype(np.float32))


@PROPERTY
@given(
    labels=disfa_matrices,
    au=st.integers(0, len(DISFA_AUS) - 1),
    damage=st.sampled_from(["shorter", "longer", "from 0", "swapped", "gap"]),
)
def test_disfa_label_files_that_disagree_are_refused_naming_the_file(labels, au, damage):
    with scratch() as folder:
        paths = write_disfa_labels(folder / "SN001", labels)
        n = len(labels)
        frames = list(range(1, n + 1))
        if damage == "shorter":
            frames = frames[:-1]
        elif damage == "longer":
            frames.append(n + 1)
        elif damage == "from 0":
            frames = [f - 1 for f in frames]
        elif damage == "swapped":
            frames = [2, 1, *frames[2:]] if n > 1 else [2]
        else:
            frames = [*frames[:-1], n + 1]
        write_lines(paths[au], [f"{frame},0" for frame in frames])
        with pytest.raises(ConversionError) as refused:
            disfa._read_labels(folder / "SN001", "SN001")
    # A first file that is too short or too long makes the second one the odd one out.
    odd = paths[1] if au == 0 and damage in ("shorter", "longer") else paths[au]
    assert str(refused.value).startswith(f"{odd}: ")


# ----------------------------------------------------------------------------- landmark .mat files
#: (key, point counts) of the two readers: DISFA's 66-point files (68 also taken), 300W-LP's.
MAT_READERS = [("pts", (66, 68)), ("pts_2d", (68,))]
coordinates = st.floats(-1e4, 1e4, width=32)


@st.composite
def point_arrays(draw: st.DrawFn, counts: tuple[int, ...]) -> np.ndarray:
    """A P x 2 or 2 x P array of coordinates, P one of ``counts``."""
    count = draw(st.sampled_from(counts))
    shape = draw(st.sampled_from([(count, 2), (2, count)]))
    return draw(
        hnp.arrays(draw(st.sampled_from([np.float64, np.float32])), shape, elements=coordinates)
    )


@PROPERTY
@pytest.mark.parametrize(("key", "counts"), MAT_READERS)
@given(data=st.data())
def test_a_landmark_file_reads_back_as_p_x_2(key, counts, data):
    points = data.draw(point_arrays(counts))
    with scratch() as folder:
        savemat(folder / "frame.mat", {key: points})
        read = read_mat_points(folder / "frame.mat", key, counts)
    expected = points if points.shape[1] == 2 else points.T
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, expected.astype(np.float32))
    if key == "pts":  # DISFA's 66 points keep their place among the 68
        full = disfa.landmarks_66_to_68(read)
        assert full.shape == (68, 2)
        if len(read) == 66:
            np.testing.assert_array_equal(full[:60], read[:60])
            np.testing.assert_array_equal(full[list(INNER_LIP_66_TO_68)], read[60:])


def is_points_shape(shape: tuple[int, ...], counts: tuple[int, ...]) -> bool:
    """Whether ``shape`` is P x 2 or 2 x P with P one of ``counts``."""
    return len(shape) == 2 and (
        (shape[0] in counts and shape[1] == 2) or (shape[0] == 2 and shape[1] in counts)
    )


@st.composite
def bad_mat_contents(draw: st.DrawFn, key: str, counts: tuple[int, ...]) -> dict:
    """What a .mat file may hold instead of ``key``'s P x 2 points."""
    kind = draw(st.sampled_from(["shape", "text", "cell", "struct", "complex", "missing"]))
    if kind == "shape":
        shape = draw(
            hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=70).filter(
                lambda s: (
                    not is_points_shape(s, counts)
                    and not (len(s) == 1 and is_points_shape((1, *s), counts))
                )
            )
        )
        return {key: np.zeros(shape)}
    if kind == "text":
        return {key: draw(st.text(st.characters(codec="ascii"), min_size=1, max_size=10))}
    if kind == "cell":
        cell = np.empty(2, dtype=object)
        cell[0], cell[1] = np.zeros((counts[0], 2)), "x"
        return {key: cell}
    if kind == "struct":
        return {key: {"x": np.zeros(counts[0]), "y": np.zeros(counts[0])}}
    if kind == "complex":
        return {key: np.zeros((counts[0], 2)) + 1j}
    return {"other": np.zeros((counts[0], 2))}


@PROPERTY
@pytest.mark.parametrize(("key", "counts"), MAT_READERS)
@given(data=st.data())
def test_a_landmark_file_without_p_x_2_numbers_is_refused_naming_it(key, counts, data):
    with scratch() as folder:
        path = folder / "frame.mat"
        savemat(path, data.draw(bad_mat_contents(key, counts)))
        with pytest.raises(ConversionError) as refused:
            read_mat_points(path, key, counts)
    assert str(refused.value).startswith(f"{path}: ")


@PROPERTY
@given(content=st.binary(max_size=300))
def test_a_damaged_landmark_file_is_refused_naming_it(content):
    with scratch() as folder:
        path = folder / "l0001_lm.mat"
        path.write_bytes(content)
        with pytest.raises(ConversionError) as refused:
            read_mat_points(path, "pts", (66, 68))
    assert str(refused.value).startswith(f"{path}: ")


# ----------------------------------------------------------------------------- DISFA landmark names
@st.composite
def landmark_names(draw: st.DrawFn) -> dict[int, str]:
    """Frame (from 1) -> a DISFA landmark file name, in either naming, any zero padding."""
    frames = draw(st.sets(st.integers(1, 40), max_size=12))
    names = {}
    for frame in frames:
        padding = draw(st.integers(1, 6))
        if draw(st.booleans()):
            names[frame] = f"l{frame:0{padding}d}_lm.mat"  # frames counted from 1
        else:
            names[frame] = f"SN001_{frame - 1:0{padding}d}_lm.mat"  # from 0
    return names


@PROPERTY
@given(names=landmark_names(), count=st.integers(1, 40))
def test_disfa_landmark_files_are_found_by_frame(names, count):
    with scratch() as folder:
        for name in names.values():
            (folder / name).touch()
        found = disfa._landmark_files(folder, count)
        expected = {frame: folder / name for frame, name in names.items() if frame <= count}
    assert found == expected


@PROPERTY
@given(names=landmark_names().filter(bool), data=st.data())
def test_two_landmark_files_for_one_frame_are_refused(names, data):
    frame = data.draw(st.sampled_from(sorted(names)))
    again = f"l{frame:0{len(str(frame)) + 7}d}_lm.mat"  # the same frame, padded otherwise
    with scratch() as folder:
        for name in [*names.values(), again]:
            (folder / name).touch()
        with pytest.raises(ConversionError, match=rf"frame {frame} again"):
            disfa._landmark_files(folder, 40)


# ----------------------------------------------------------------------------- BP4D labels
BP4D_AUS = bp4d.AUS


@st.composite
def bp4d_sequence(draw: st.DrawFn) -> tuple[list[int], list[dict[int, float | None]]]:
    """Draw ``(image_frames, labels)``: a sequence's frames with images, and per AU a
    frame -> intensity (None: FERA's 9) map over frames with and without images."""
    images = draw(st.lists(st.integers(0, 60), unique=True, min_size=1, max_size=15))
    labelled = st.integers(0, 80)
    value = st.one_of(st.integers(0, 5).map(float), intensities, st.none())
    labels = [draw(st.dictionaries(labelled, value, max_size=15)) for _ in BP4D_AUS]
    return images, labels


@PROPERTY
@given(drawn=bp4d_sequence(), lowercase=st.booleans())
def test_bp4d_label_files_give_each_frame_its_labels(drawn, lowercase):
    images, labels = drawn
    with scratch() as folder:
        for au, by_frame in zip(BP4D_AUS, labels, strict=True):
            name = f"F001_T1_{au.lower() if lowercase else au}.csv"
            (folder / au).mkdir()
            lines = [
                f"{frame},{'9' if value is None else intensity_text(value)}"
                for frame, value in by_frame.items()
            ]
            write_lines(folder / au / name, lines)
        files = bp4d._label_files(folder)
        assert list(files) == [("F001", "T1")]
        available = {"T1": {frame: f"F001/T1/{frame:04d}.jpg" for frame in images}}
        sequence = bp4d._plan_sequence("F001", "T1", files["F001", "T1"], available, folder)
    frames = sorted(images)
    assert sequence.frames.tolist() == frames
    assert sequence.names == [f"F001/T1/{frame:04d}.jpg" for frame in frames]
    expected = [
        [math.nan if by_frame.get(f) is None else by_frame[f] for by_frame in labels]
        for f in frames
    ]
    np.testing.assert_array_equal(sequence.labels, np.float32(expected).reshape(len(frames), -1))
    without_image = set().union(*(set(by_frame) for by_frame in labels)) - set(images)
    assert sequence.unseen == len(without_image)


# ----------------------------------------------------------------------------- AU names
@st.composite
def au_spellings(draw: st.DrawFn, number: int) -> str:
    """A spelling of AU ``number`` that the manifest documents: AU1, au01, AU_1, AU 01, AU01_r."""
    prefix = draw(st.sampled_from(["AU", "au", "Au", "aU"]))
    separator = draw(st.sampled_from(["", " ", "_"]))
    zeros = "0" * draw(st.integers(0, 2))
    return f"{prefix}{separator}{zeros}{number}{draw(st.sampled_from(['', '_r', '_R']))}"


@CHEAP
@given(number=st.integers(0, 999), data=st.data())
def test_every_spelling_of_an_au_names_the_canonical_au(number, data):
    spelling = data.draw(au_spellings(number))
    assert manifest._canonical(spelling) == au_name(number)
    assert au_name(number) == f"AU{number:02d}"
    assert manifest._canonical(au_name(number)) == au_name(number)  # canonical names are fixed


@CHEAP
@given(name=st.text(max_size=10).filter(lambda name: not AU_LIKE.match(name)))
def test_a_name_that_does_not_start_like_an_au_is_no_au_column(name):
    assert manifest._AU_COLUMN.fullmatch(name) is None
    assert manifest._AU_LIKE.fullmatch(name) is None  # ignored, as the manifest documents
    assert manifest._canonical(name) == name


@CHEAP
@given(names=st.lists(st.sampled_from(sorted(AU_LOCATIONS)), min_size=1, unique=True))
def test_table_1_names_pass_the_check_in_any_order(names):
    assert check_au_names(names) == tuple(names)


@CHEAP
@given(
    names=st.lists(st.sampled_from(sorted(AU_LOCATIONS)), min_size=1, unique=True), data=st.data()
)
def test_a_name_given_twice_fails_the_check(names, data):
    again = data.draw(st.sampled_from(names))
    position = data.draw(st.integers(0, len(names)))
    with pytest.raises(ValueError, match="AU names repeat"):
        check_au_names([*names[:position], again, *names[position:]])


@CHEAP
@given(
    names=st.lists(st.sampled_from(sorted(AU_LOCATIONS)), min_size=1, unique=True),
    stranger=st.one_of(
        st.integers(0, 99).filter(lambda n: n not in TABLE_1_NUMBERS).map(au_name),
        st.sampled_from(sorted(AU_LOCATIONS)).map(lambda name: name.lower()),  # not canonical
        st.text(max_size=6).filter(lambda text: text not in AU_LOCATIONS),
    ),
)
def test_a_name_table_1_does_not_place_fails_the_check(names, stranger):
    with pytest.raises(
        ValueError, match=rf"AU\(s\) \[{re.escape(repr(stranger))}\] have no location"
    ):
        check_au_names([*names, stranger])


# ----------------------------------------------------------------------------- the CSV manifest
LANDMARK_COLUMNS = [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
RESERVED = {"image", "video", "subject", "frame", "sequence", "partition", *LANDMARK_COLUMNS}
#: A column that starts like an AU: AU, any blanks or punctuation, a digit (any case, any blanks
#: around it); the manifest must store it or refuse it, never drop it.
AU_LIKE = re.compile(r"\s*au[\W_]*\d", re.I)


def write_csv(
    path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8"
) -> Path:
    """Write a manifest with ``csv``'s quoting (rows may have any number of fields)."""
    text = io.StringIO()
    writer = csv.writer(text)  # "\r\n" ends rows, so a "\r" in a cell is quoted
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(text.getvalue().encode(encoding))
    return path


#: Cells of columns the manifest ignores: ASCII on one line (so that every row is one line).
other_cells = st.text(st.characters(codec="ascii", exclude_characters="\r\n"), max_size=5)


def unknown_cells() -> st.SearchStrategy[str]:
    """The cells a manifest reads as an unknown intensity."""
    return st.sampled_from(["", " ", "NaN", "nan", "NAN", "9", "9.0"])


@st.composite
def manifests(draw: st.DrawFn, require: frozenset[str] = frozenset()) -> dict:
    """A well-formed image manifest and what it should read as.

    Args:
        draw: hypothesis's draw.
        require: optional columns it must have (``frame``, ``partition``, ``landmarks``); the
            others it has or not at random.

    Returns:
        ``header`` and ``rows`` (the CSV), ``aus`` (the stored AU names, by number) and
        ``expected`` (subject -> its rows as (frame, intensities, sequence, partition, landmarks)).
    """
    numbers = draw(st.lists(st.sampled_from(TABLE_1_NUMBERS), min_size=1, max_size=4, unique=True))
    spellings = [draw(au_spellings(n)) for n in numbers]
    with_frame, with_sequence, with_partition, with_landmarks = (
        name in require or draw(st.booleans())
        for name in ("frame", "sequence", "partition", "landmarks")
    )
    # Image rows without a frame column are numbered by their position within their subject.
    row = st.tuples(
        st.sampled_from(["S1", "S2", "subject 3"]),
        st.sampled_from(["T1", "T2"]) if with_sequence else st.none(),
        st.integers(0, INT64.max) if with_frame else st.none(),
    )
    keys = draw(st.lists(row, min_size=1, max_size=8, unique_by=lambda key: key))
    extra = draw(
        st.lists(
            st.text(
                st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=1, max_size=8
            ).filter(lambda name: name not in RESERVED and not AU_LIKE.match(name)),
            max_size=2,
            unique=True,
        )
    )
    header = ["image", "subject"]
    header += ["frame"] * with_frame + ["sequence"] * with_sequence
    header += ["partition"] * with_partition + spellings + extra
    header += LANDMARK_COLUMNS * with_landmarks
    rows, expected, counts = [], {}, {}
    known = [False] * len(numbers)
    for subject, sequence, frame in keys:
        counts[subject] = counts.get(subject, 0) + 1
        values = [draw(st.one_of(intensities, st.none())) for _ in numbers]
        known = [k or v is not None for k, v in zip(known, values, strict=True)]
        partition = draw(st.sampled_from(["train", "devel", "test"]))
        points = (
            draw(st.one_of(st.none(), hnp.arrays(np.float32, (68, 2), elements=coordinates)))
            if with_landmarks
            else None
        )
        cells = ["face.jpg", subject]
        cells += [str(frame)] * with_frame + [sequence] * with_sequence
        cells += [partition] * with_partition
        cells += [draw(unknown_cells()) if v is None else intensity_text(v) for v in values]
        cells += [draw(other_cells) for _ in extra]
        if with_landmarks:
            cells += (
                ["" for _ in range(136)]
                if points is None
                else [repr(float(c)) for c in points.T.ravel()]
            )
        rows.append(cells)
        expected.setdefault(subject, []).append(
            (
                counts[subject] if frame is None else frame,
                [math.nan if v is None else v for v in values],
                sequence,
                partition if with_partition else None,
                points,
            )
        )
    for i, is_known in enumerate(known):  # every AU column is known somewhere (else refused)
        if not is_known:
            rows[0][header.index(spellings[i])] = "1"
            expected[keys[0][0]][0][1][i] = 1.0
    aus = tuple(au_name(n) for n in sorted(numbers))
    order = [numbers.index(int(name[2:])) for name in aus]
    for subject_rows in expected.values():
        for entry in subject_rows:
            entry[1][:] = [entry[1][i] for i in order]
    return {"header": header, "rows": rows, "aus": aus, "expected": expected}


def plan_manifest(folder: Path, header: list[str], rows: list[list[str]], **write) -> tuple:
    """Write a manifest (and its one image, never decoded by the plan) and plan it."""
    (folder / "face.jpg").touch()
    path = write_csv(folder / "frames.csv", header, rows, **write)
    return manifest.plan(path, folder)


@PROPERTY
@given(drawn=manifests())
def test_a_manifest_reads_back_exactly(drawn):
    with scratch() as folder:
        jobs, aus = plan_manifest(folder, drawn["header"], drawn["rows"])
    assert aus == drawn["aus"]
    assert [job.subject for job in jobs] == sorted(drawn["expected"])
    for job in jobs:
        rows = drawn["expected"][job.subject]
        assert job.frame_numbers.tolist() == [frame for frame, *_ in rows]
        np.testing.assert_array_equal(job.au, np.float32([values for _, values, *_ in rows]))
        assert job.sequences == (
            None if "sequence" not in drawn["header"] else [s for _, _, s, *_ in rows]
        )
        assert job.partitions == (
            None if "partition" not in drawn["header"] else [p for *_, p, _ in rows]
        )
        for points, (*_, truth) in zip(job.landmarks, rows, strict=True):
            if truth is None:
                assert np.isnan(points).all()
            else:
                np.testing.assert_array_equal(points, truth)


@st.composite
def au_like_columns(draw: st.DrawFn) -> str:
    """A column that starts like an AU but is none of the documented intensity spellings."""
    lead = draw(st.sampled_from(["", "", " ", "\t"]))
    prefix = draw(st.sampled_from(["AU", "au", "Au"]))
    separator = draw(st.sampled_from(["", " ", "_", "-", "__", "  ", ".", "_-", " - ", ": "]))
    number = f"{draw(st.sampled_from(TABLE_1_NUMBERS)):0{draw(st.integers(1, 3))}d}"
    suffix = draw(st.sampled_from(["", "_r", "_c", "-int", "_r2", ".0", "x", " ", "_int", "\n"]))
    trail = draw(st.sampled_from(["", "", " "]))
    documented = lead == trail == "" and separator in ("", " ", "_") and suffix in ("", "_r")
    if documented:
        suffix = draw(st.sampled_from(["_c", "-int", " ", "_presence"]))
    return f"{lead}{prefix}{separator}{number}{suffix}{trail}"


@PROPERTY
@given(column=au_like_columns(), position=st.integers(0, 3))
def test_a_column_that_looks_like_an_au_is_refused_naming_it(column, position):
    header = ["image", "subject", "AU01"]
    header.insert(position, column)
    rows = [["1" if name != "image" else "face.jpg" for name in header]]
    with scratch() as folder, pytest.raises(ConversionError) as refused:
        plan_manifest(folder, header, rows)
    assert str(refused.value).startswith(f"{folder / 'frames.csv'}: ")
    assert repr(column) in str(refused.value)


def well_formed(drawn: dict) -> tuple[list[str], list[list[str]]]:
    """A copy of a drawn manifest's header and rows, safe to damage."""
    return list(drawn["header"]), [list(row) for row in drawn["rows"]]


@st.composite
def broken_rows(draw: st.DrawFn) -> tuple[list[str], list[list[str]], int]:
    """A manifest with one row broken; returns ``(header, rows, line of the broken row)``."""
    # The damage first, so that each kind is drawn as often, with the column it needs.
    kinds = ["intensity", "fewer fields", "more fields", "subject", "image", "frame", "partition"]
    kind = draw(st.sampled_from([*kinds, "landmark", "half landmark"]))
    require = {"landmark": "landmarks", "half landmark": "landmarks"}.get(kind, kind)
    header, rows = well_formed(draw(manifests(frozenset({require}))))
    index = draw(st.integers(0, len(rows) - 1))
    row = rows[index]
    au_columns = [i for i, name in enumerate(header) if manifest._AU_COLUMN.fullmatch(name)]
    if kind == "intensity":
        bad = bad_intensities.filter(lambda t: t.strip().lower() not in ("", "nan", "9"))
        row[draw(st.sampled_from(au_columns))] = draw(
            bad.filter(lambda t: not_a_number(t) or float(t) != 9)
        )
    elif kind == "fewer fields":
        del row[-draw(st.integers(1, len(row) - 1)) :]
    elif kind == "more fields":
        row += draw(st.lists(st.text(max_size=3), min_size=1, max_size=3))
    elif kind == "subject":
        row[1] = draw(st.sampled_from(["", " ", "\t"]))
    elif kind == "image":
        row[0] = "missing.jpg"
    elif kind == "frame":
        row[header.index("frame")] = draw(
            st.one_of(
                st.sampled_from(["1.5", "-1", "x", "²", "+3", "1_0", "1 2", "0x1"]),
                st.integers(INT64.max + 1).map(str),
                st.text(
                    st.characters(exclude_categories=("Nd", "Cs")), min_size=1, max_size=4
                ).filter(str.strip),
            )
        )
    elif kind == "partition":
        row[header.index("partition")] = draw(
            st.text(max_size=6).filter(lambda t: t.strip() not in ("train", "devel", "test"))
        )
    else:
        i = draw(st.integers(0, 67))
        x, y = header.index(f"x_{i}"), header.index(f"y_{i}")
        if kind == "landmark":
            row[x] = draw(st.sampled_from(["a", "1,5", "inf", "-inf", "1e39", "--2", "x1"]))
            row[y] = row[y] or "1"
        else:  # one coordinate of the pair only
            row[x], row[y] = ("1", "") if draw(st.booleans()) else ("", "1")
    return header, rows, index + 2


# A landmark like 1e39 overflows float32 (numpy warns) and is then refused as not finite.
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@settings(PROPERTY, max_examples=100)  # nine kinds of damage, each tried about ten times
@given(drawn=broken_rows())
@example(drawn=(["image", "subject", "frame", "AU1"], [["face.jpg", "A", "²", "1"]], 2))
# An extra field holding a line break: the row spans lines 2-3 and is named by line 2.
@example(drawn=(["image", "subject", "AU1"], [["face.jpg", "S1", "0", "\n"]], 2))
def test_a_broken_manifest_row_is_refused_naming_its_line(drawn):
    header, rows, line = drawn
    with scratch() as folder, pytest.raises(ConversionError) as refused:
        plan_manifest(folder, header, rows)
    where = f"{folder / 'frames.csv'}, line {line}"
    assert f"{where}: " in str(refused.value) or f"{where}, column " in str(refused.value)


@PROPERTY
@given(drawn=manifests(), data=st.data())
def test_a_frame_listed_twice_is_refused_naming_both_lines(drawn, data):
    header, rows = well_formed(drawn)
    if "frame" not in header:
        header.insert(2, "frame")
        rows = [[*row[:2], str(number), *row[2:]] for number, row in enumerate(rows, 1)]
    first = data.draw(st.integers(0, len(rows) - 1))
    row = list(rows[first])
    row[header.index("image")] = "face.jpg"  # the same frame, whatever its other cells
    position = data.draw(st.integers(first + 1, len(rows)))
    rows.insert(position, row)
    with scratch() as folder, pytest.raises(ConversionError) as refused:
        plan_manifest(folder, header, rows)
    assert f"lines {first + 2} and {position + 2}: " in str(refused.value)


@PROPERTY
@given(drawn=manifests(), data=st.data())
def test_a_column_given_twice_is_refused_naming_it(drawn, data):
    header, rows = well_formed(drawn)
    index = data.draw(st.integers(0, len(header) - 1))
    column = header[index]
    header.append(column)
    rows = [[*row, row[index]] for row in rows]
    with scratch() as folder, pytest.raises(ConversionError) as refused:
        plan_manifest(folder, header, rows)
    assert repr(column) in str(refused.value)


@PROPERTY
@given(
    drawn=manifests(),
    accented=st.text(st.characters(min_codepoint=0xC0, max_codepoint=0xFF), min_size=1, max_size=4),
)
def test_a_manifest_in_another_encoding_is_refused_naming_it(drawn, accented):
    header, rows = well_formed(drawn)
    # A Latin-1 letter from 0xC0 up, followed by ASCII, is never valid UTF-8.
    rows[0][1] = f"S{accented}x"
    with scratch() as folder, pytest.raises(ConversionError) as refused:
        plan_manifest(folder, header, rows, encoding="latin-1")
    assert str(refused.value).startswith(f"{folder / 'frames.csv'}: ")


@PROPERTY
@given(content=st.binary(max_size=300), long_field=st.booleans())
def test_any_bytes_after_a_manifest_header_plan_or_are_refused(content, long_field):
    with scratch() as folder:
        (folder / "face.jpg").touch()
        path = folder / "frames.csv"
        # A field past csv's size limit (131,072 characters) once escaped as a csv.Error.
        long = b'face.jpg,"' + b"S" * 200_000 + b'",1\n' if long_field else b""
        path.write_bytes(b"image,subject,AU1\nface.jpg,A,1\n" + long + content)
        try:
            manifest.plan(path, folder)
        except ConversionError as error:  # the one way to refuse; anything else fails the test
            refusal = str(error)
        else:
            refusal = None
    assert refusal is None or refusal.startswith(f"{path}") or "bad rows" in refusal


# ----------------------------------------------------------------------------- options
def parse(option_type, text: str):
    """``text`` through a one-option argparse parser: the value, or ``SystemExit`` and stderr."""
    parser = argparse.ArgumentParser(prog="prog")
    parser.add_argument("--x", type=option_type)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            return parser.parse_args([f"--x={text}"]).x
        except SystemExit as stop:
            return stop, stderr.getvalue()


def refused_by_argparse(result, text: str) -> bool:
    """Whether ``parse`` ended in argparse's exit-2 error naming the option and the text."""
    return (
        isinstance(result, tuple)
        and result[0].code == 2
        and "prog: error: argument --x: expected" in result[1]
    )


@CHEAP
@given(
    minimum=st.integers(-5, 20),
    span=st.one_of(st.none(), st.integers(0, 100)),
    value=st.integers(-(10**12), 10**12) | st.integers(-30, 130),
    blanks=st.sampled_from(["", " ", "\t"]),
)
def test_whole_number_takes_exactly_its_range(minimum, span, value, blanks):
    maximum = None if span is None else minimum + span
    text = f"{blanks}{value}{blanks}"
    inside = value >= minimum and (maximum is None or value <= maximum)
    if inside:
        assert whole_number(minimum, maximum)(text) == value
        assert parse(whole_number(minimum, maximum), text) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=f"got {value}$"):
            whole_number(minimum, maximum)(text)
        assert refused_by_argparse(parse(whole_number(minimum, maximum), text), text)


not_whole = st.one_of(
    st.floats(allow_nan=True).map(repr).filter(lambda t: not t.lstrip("-").isdigit()),
    st.sampled_from(["", "1.0", "1e3", "0x10", "ten", "nan", "inf", "1/2", "--1"]),
    st.text(max_size=6).filter(lambda t: not re.fullmatch(r"\s*[+-]?[\d_]+\s*", t)),
)


@CHEAP
@given(text=not_whole, minimum=st.integers(-5, 5))
def test_whole_number_refuses_anything_else(text, minimum):
    with pytest.raises(argparse.ArgumentTypeError, match="expected a whole number"):
        whole_number(minimum)(text)
    assert refused_by_argparse(parse(whole_number(minimum), text), text)


@CHEAP
@given(
    value=st.floats(allow_nan=True, allow_infinity=True),
    minimum=st.floats(-10, 10),
    spelling=st.sampled_from([repr, str, lambda v: f"{v:e}", lambda v: f" {v!r} "]),
)
def test_finite_number_takes_exactly_the_finite_numbers_from_its_minimum(value, minimum, spelling):
    text = spelling(value)
    read = float(text)
    if math.isfinite(read) and read >= minimum:
        assert finite_number(minimum)(text) == read
        assert parse(finite_number(minimum), text) == read
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="expected a finite number"):
            finite_number(minimum)(text)
        assert refused_by_argparse(parse(finite_number(minimum), text), text)


@CHEAP
@given(text=st.text(max_size=8).filter(not_a_number), minimum=st.floats(-10, 10))
def test_finite_number_refuses_text_that_is_no_number(text, minimum):
    with pytest.raises(argparse.ArgumentTypeError, match="expected a "):
        finite_number(minimum)(text)


#: The converters' numeric options and the values each documents (``None``: no upper bound).
CONVERTER_OPTIONS = {
    "--workers": (1, None),
    "--size": (16, None),
    "--jpeg-quality": (1, 100),
    "--detect-side": (0, None),
    "--upsample": (0, None),
}
converters = st.sampled_from(["disfa", "bp4d", "300w-lp", "manifest"])


def parse_converter(converter: str, option: str) -> tuple[argparse.Namespace | None, int, str]:
    """Parse a converter's command line with one ``--option=value``, as ``python -m data_prep``.

    Returns:
        ``(args, 0, "")``, or ``(None, exit status, stderr)`` where argparse refused it.
    """
    argv = [converter, "--root", "r", "--out", "o.h5", option]
    argv += ["--csv", "m.csv"] * (converter == "manifest")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            return build_parser(argv).parse_args(argv), 0, ""
        except SystemExit as stop:
            return None, stop.code, stderr.getvalue()


@PROPERTY
@given(converter=converters, option=st.sampled_from(sorted(CONVERTER_OPTIONS)), data=st.data())
def test_converter_options_take_exactly_their_documented_range(converter, option, data):
    low, high = CONVERTER_OPTIONS[option]
    # Values on and beside each bound, where an off-by-one would show, as often as any others.
    bounds = [low] if high is None else [low, high]
    near = st.sampled_from(bounds).flatmap(lambda b: st.integers(b - 2, b + 2))
    value = data.draw(st.one_of(near, st.integers(-1000, 1000)))
    args, status, stderr = parse_converter(converter, f"{option}={value}")
    if low <= value and (high is None or value <= high):
        assert getattr(args, option[2:].replace("-", "_")) == value
    else:
        assert args is None and status == 2
        assert f"argument {option}: expected a whole number" in stderr


@PROPERTY
@given(converter=converters, margin=st.floats(allow_nan=True, allow_infinity=True))
def test_the_crop_margin_takes_exactly_the_finite_numbers_from_0(converter, margin):
    args, status, stderr = parse_converter(converter, f"--margin={margin!r}")
    if math.isfinite(margin) and margin >= 0:
        assert args.margin == margin
    else:
        assert args is None and status == 2
        assert "argument --margin: expected a finite number >= 0.0" in stderr
