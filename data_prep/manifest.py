"""``python -m data_prep manifest --csv FILE``: any dataset described by a CSV manifest.

One row per frame, with a header row; columns (order free, names case-sensitive except AUs):

- ``image``: an image file; or ``video`` and ``frame``: a video file and the 1-based position of
  the frame in decoding order. Relative paths are relative to ``--root`` (default: the CSV's
  folder).
- ``subject``: the subject (required).
- ``frame``: the frame number stored with the row; for an image row it is optional and defaults
  to the row's 1-based position among its subject's rows.
- ``sequence``, ``partition`` (``train``/``devel``/``test``): optional; when a column is there,
  every row must fill it.
- AU columns ``AU1``/``AU01``/``AU_1``/``AU 1``/``AU01_r`` (OpenFace's), any case: intensities
  0-5; an empty cell, ``NaN`` or ``9`` (FERA's code) means unknown. Rows with every AU unknown
  are left out. Any other column that starts like an AU (``AU12_c``, ``AU12-int``) is refused,
  so that no AU is dropped unnoticed.
- optional landmarks, OpenFace's names ``x_0 ... x_67, y_0 ... y_67``: the 68 iBUG points in
  source pixels; rows with them empty get the detector's.

``--name`` names the store's dataset (e.g. ``fera2017``, as the ``fera2017`` sub-command sets
it); for a dataset aunet knows, its AU columns are required and stored in its order. ``--aus``
picks and orders the AU columns otherwise (default: every AU column, by number).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from aunet.aus import DATASET_AUS, NUM_LANDMARKS, au_name, check_au_names
from aunet.data.store import PARTITIONS
from aunet.faces.images import read_image
from aunet.faces.video import frame_count, read_frames
from data_prep.common import (
    INPUT_ERRORS,
    ConversionError,
    SourceFrame,
    SubjectJob,
    SubjectReport,
    add_common_arguments,
    collect,
    convert_from_args,
    parse_intensity,
    select_subjects,
)

#: FERA's code for an unknown intensity, read as NaN.
UNKNOWN = 9.0
LANDMARK_COLUMNS = tuple(f"x_{i}" for i in range(NUM_LANDMARKS)) + tuple(
    f"y_{i}" for i in range(NUM_LANDMARKS)
)
#: An AU intensity column as researchers' files spell it: ``AU1``, ``AU01``, ``au12``, ``AU_12``,
#: ``AU 12`` and OpenFace's ``AU12_r``.
_AU_COLUMN = re.compile(r"AU[ _]?(\d+)(?:_r)?", re.I)
#: A column that looks like an AU's (blanks around it, any separators before the number, any
#: case); one that is not an intensity column above is refused.
_AU_LIKE = re.compile(r"\s*AU[\W_]*\d.*", re.I | re.S)
#: The largest frame number the store's int64 ``frame`` column holds.
_MAX_FRAME = int(np.iinfo(np.int64).max)
#: A broken manifest is reported by its first few problems, not all of its rows.
_MAX_PROBLEMS = 10


@dataclass
class ManifestJob(SubjectJob):
    """One subject's rows, column by column, with the rows of each video together by frame."""

    csv: Path
    lines: np.ndarray
    paths: list[Path]
    is_video: np.ndarray
    frame_numbers: np.ndarray
    au: np.ndarray
    landmarks: np.ndarray
    sequences: list[str] | None
    partitions: list[str] | None

    def frames(self, report: SubjectReport) -> Iterator[SourceFrame]:
        """Image rows as they come; each video decoded once, for all of its rows."""
        start = 0
        while start < len(self.paths):
            stop = start + 1
            if self.is_video[start]:
                while stop < len(self.paths) and self.paths[stop] == self.paths[start]:
                    stop += 1
                yield from self._video_rows(start, stop)
            else:
                yield self._row(start, partial(read_image, self.paths[start], ConversionError))
            start = stop

    def _video_rows(self, start: int, stop: int) -> Iterator[SourceFrame]:
        video = self.paths[start]
        row = start
        for position, image in enumerate(read_frames(video), 1):
            if position == self.frame_numbers[row]:
                yield self._row(row, image, clip=str(video))
                row += 1
                if row == stop:
                    return
        raise ConversionError(
            f"{self.csv}, line {self.lines[row]}: frame {self.frame_numbers[row]} asked of "
            f"{video}, which decodes only {position} frames"
        )

    def _row(
        self, row: int, image: np.ndarray | Callable[[], np.ndarray], clip: str | None = None
    ) -> SourceFrame:
        points = self.landmarks[row]
        sequence = self.sequences[row] if self.sequences else None
        return SourceFrame(
            image,
            int(self.frame_numbers[row]),
            self.au[row],
            None if np.isnan(points).all() else points,
            clip=clip or sequence,
            sequence=sequence,
            partition=self.partitions[row] if self.partitions else None,
            landmarks_from=f"{self.csv}, line {self.lines[row]}",
        )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the manifest converter's arguments."""
    add_common_arguments(
        parser,
        root_help="base folder of the CSV's relative paths (default: the CSV's folder)",
        root_required=False,
    )
    parser.add_argument(
        "--csv", type=Path, required=True, help="the manifest (docs/data-format.md)"
    )
    parser.add_argument(
        "--name",
        default="manifest",
        help="the store's dataset name; for a dataset aunet knows (e.g. fera2017) its AUs are "
        "required (default: %(default)s)",
    )
    parser.add_argument("--aus", nargs="+", metavar="AU", help="AU columns to store, in this order")


def main(args: argparse.Namespace) -> None:
    """Convert the frames a manifest lists, as the parsed arguments say."""
    root = args.root if args.root is not None else args.csv.parent
    jobs, au_names = plan(args.csv, root, args.name, args.aus, args.subjects)
    convert_from_args(
        args, jobs, args.name, au_names, f"csv={args.csv.resolve()} root={root.resolve()}"
    )


def plan(
    manifest: Path,
    root: Path,
    dataset: str = "manifest",
    aus: list[str] | None = None,
    subjects: list[str] | None = None,
) -> tuple[list[ManifestJob], tuple[str, ...]]:
    """Read and check a manifest; return one job per subject and the stored AU names.

    Raises:
        ConversionError: for a missing file, one that is not UTF-8 CSV, missing or repeated
            columns, AU-like columns that are no intensity column, AU columns the dataset needs
            or Table 1 does not place, and (up to ten at once) bad rows: more or fewer fields
            than the header, no or two sources, a missing image or video, a bad frame, subject,
            partition, intensity or landmark, a frame beyond a video's end, a frame listed
            twice.
    """
    if not manifest.is_file():
        raise ConversionError(f"{manifest}: manifest missing")
    with manifest.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        try:
            header = reader.fieldnames or []
            au_columns = _au_columns(manifest, header, dataset, aus)
            rows = list(_parse_rows(manifest, reader, root, au_columns))
        except UnicodeDecodeError as error:
            byte = error.object[error.start : error.start + 1].hex()
            raise ConversionError(
                f"{manifest}: not UTF-8 text (a byte 0x{byte} in it); save the manifest as UTF-8"
            ) from None
        except csv.Error as error:
            raise ConversionError(
                f"{manifest}, line {reader.line_num}: not readable as CSV ({error})"
            ) from None
    _check_au_known(manifest, rows, au_columns)
    by_subject: dict[str, list[dict]] = {}
    for row in rows:
        by_subject.setdefault(row["subject"], []).append(row)
    chosen = select_subjects(list(by_subject), subjects, manifest)
    videos: dict[Path, int | None] = {}
    jobs = collect(chosen, lambda s: _job(manifest, s, by_subject[s], header, videos))
    return jobs, tuple(au_columns.values())


def _au_columns(
    manifest: Path, header: list[str], dataset: str, aus: list[str] | None
) -> dict[str, str]:
    """CSV column -> stored AU name, in store order."""
    if "subject" not in header or not ({"image", "video"} & set(header)):
        raise ConversionError(
            f"{manifest}: the header needs a 'subject' column and an 'image' or 'video' "
            f"column (found: {', '.join(header) or 'no header'})"
        )
    if "video" in header and "frame" not in header:
        raise ConversionError(f"{manifest}: a 'video' column needs a 'frame' column")
    present = [name for name in LANDMARK_COLUMNS if name in header]
    if present and len(present) != len(LANDMARK_COLUMNS):
        missing = [name for name in LANDMARK_COLUMNS if name not in header]
        raise ConversionError(
            f"{manifest}: landmark columns incomplete, missing {', '.join(missing[:5])}...; "
            "give all of x_0..x_67, y_0..y_67 or none"
        )
    # csv.DictReader keeps only the last of two same-named columns: the other would be lost.
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise ConversionError(
            f"{manifest}: column(s) {', '.join(map(repr, repeated))} appear more than once in "
            "the header; give each column once"
        )
    columns: dict[str, str] = {}
    for name in header:
        match = _AU_COLUMN.fullmatch(name)
        if match:
            canonical = au_name(int(match[1]))
            if canonical in columns.values():
                first = next(column for column, au in columns.items() if au == canonical)
                raise ConversionError(
                    f"{manifest}: columns {first!r} and {name!r} both name {canonical}"
                )
            columns[name] = canonical
    unrecognised = [n for n in header if _AU_LIKE.fullmatch(n) and not _AU_COLUMN.fullmatch(n)]
    if unrecognised:
        raise ConversionError(
            f"{manifest}: column(s) {', '.join(map(repr, unrecognised))} look like AUs but are "
            "not intensity columns (AU12, AU01, AU_12, AU 12, AU12_r); rename or drop them "
            "(OpenFace's AU12_c is presence, not intensity)"
        )
    by_au = {au: column for column, au in columns.items()}
    if aus:
        wanted = tuple(_canonical(name) for name in aus)
    elif dataset in DATASET_AUS:
        wanted = DATASET_AUS[dataset]
    else:
        wanted = tuple(sorted(by_au, key=lambda au: int(au[2:])))
    missing = [au for au in wanted if au not in by_au]
    if missing:
        raise ConversionError(
            f"{manifest}: AU column(s) {', '.join(missing)} missing (needed: {', '.join(wanted)};"
            f" found: {', '.join(by_au) or 'none'})"
        )
    try:
        check_au_names(wanted)
    except ValueError as error:
        raise ConversionError(f"{manifest}: {error}") from None
    return {by_au[au]: au for au in wanted}


def _check_au_known(manifest: Path, rows: list[dict], au_columns: dict[str, str]) -> None:
    """Every stored AU column must have a known intensity somewhere (else it is a wrong column)."""
    for index, (column, au) in enumerate(au_columns.items()):
        if rows and all(math.isnan(row["au"][index]) for row in rows):
            raise ConversionError(
                f"{manifest}: AU column {column!r} ({au}) is unknown in all {len(rows)} rows "
                "(empty, NaN or 9); fill it in, or leave the AU out with --aus"
            )


def _canonical(name: str) -> str:
    """``AU1``/``au01`` -> ``AU01``; other names pass unchanged (and fail the Table 1 check)."""
    match = _AU_COLUMN.fullmatch(name)
    return au_name(int(match[1])) if match else name


def _cells(row: dict) -> list[str]:
    """A DictReader row's text: its fields, and the extra ones it files under None."""
    cells = [value for key, value in row.items() if key is not None and value is not None]
    return [*cells, *(row.get(None) or [])]


def _parse_rows(
    manifest: Path, reader: csv.DictReader, root: Path, au_columns: dict[str, str]
) -> Iterator[dict]:
    """Each row as a dict of checked values; raises with the first problems found."""
    problems: list[str] = []
    for row in reader:
        # The line the row starts on: the reader has counted the line breaks inside its quoted
        # fields too, and a person looks for the row where it begins.
        line = reader.line_num - sum(text.count("\n") for text in _cells(row))
        try:
            # DictReader files extra fields under None and fills missing ones with None; either
            # way the row's cells would land in the wrong columns, or be dropped.
            if None in row or None in row.values():
                what = "more" if None in row else "fewer"
                raise ConversionError(
                    f"{manifest}, line {line}: {what} fields than the header's "
                    f"{len(reader.fieldnames or ())} columns; give every row one field per column"
                )
            yield _parse_row(row, manifest, line, root, au_columns)
        except ConversionError as error:
            problems.append(str(error))
            if len(problems) == _MAX_PROBLEMS:
                break
    if problems:
        more = " (stopped at the first ten)" if len(problems) == _MAX_PROBLEMS else ""
        raise ConversionError(f"{len(problems)} bad rows{more}:\n  " + "\n  ".join(problems))


def _parse_row(
    row: dict, manifest: Path, line: int, root: Path, au_columns: dict[str, str]
) -> dict:
    where = f"{manifest}, line {line}"

    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    image, video = cell("image"), cell("video")
    if bool(image) == bool(video):
        raise ConversionError(f"{where}: give exactly one of 'image' and 'video'")
    path = Path(image or video)
    path = path if path.is_absolute() else root / path
    if image and not path.is_file():
        raise ConversionError(f"{where}: {path}: no such image file")
    subject = cell("subject")
    if not subject:
        raise ConversionError(f"{where}: 'subject' is empty")
    frame = cell("frame")
    if frame and not frame.isdecimal():  # isdigit() takes "²", which int() refuses
        raise ConversionError(f"{where}: frame {frame!r} is not a whole number")
    if frame and (len(frame.lstrip("0")) > len(str(_MAX_FRAME)) or int(frame) > _MAX_FRAME):
        raise ConversionError(f"{where}: frame {frame} is too large (at most {_MAX_FRAME})")
    if video and (not frame or int(frame) < 1):
        raise ConversionError(f"{where}: a video row needs its frame number, from 1")
    partition = cell("partition")
    if "partition" in row and partition not in PARTITIONS:
        raise ConversionError(f"{where}: partition {partition!r} not one of {PARTITIONS}")
    if "sequence" in row and not cell("sequence"):
        raise ConversionError(f"{where}: 'sequence' is empty; fill it in every row or drop it")
    au = [
        math.nan
        if cell(column).lower() in ("", "nan")
        else parse_intensity(cell(column), f"{where}, column {column}", UNKNOWN)
        for column in au_columns
    ]
    points = np.full(2 * NUM_LANDMARKS, np.nan, dtype=np.float32)
    for i, column in enumerate(LANDMARK_COLUMNS if "x_0" in row else ()):
        if cell(column):
            try:
                points[i] = float(cell(column))
            except ValueError:
                raise ConversionError(
                    f"{where}: {column} = {cell(column)!r} is not a number"
                ) from None
            if np.isinf(points[i]):
                raise ConversionError(f"{where}: {column} = {cell(column)!r} is not finite")
    pairs = points.reshape(2, NUM_LANDMARKS).T
    half = np.flatnonzero(np.isnan(pairs).any(axis=1) & ~np.isnan(pairs).all(axis=1))
    if len(half):
        i = int(half[0])
        raise ConversionError(
            f"{where}: landmark {i} has one coordinate (x_{i} = {cell(f'x_{i}')!r}, y_{i} = "
            f"{cell(f'y_{i}')!r}); give both x_{i} and y_{i}, or leave both empty when unknown"
        )
    return {
        "line": line,
        "path": path,
        "is_video": bool(video),
        "frame": int(frame) if frame else None,  # None: numbered by position (0 is a frame)
        "subject": subject,
        "sequence": cell("sequence") if "sequence" in row else None,
        "partition": partition if "partition" in row else None,
        "au": au,
        "landmarks": pairs,
    }


def _job(
    manifest: Path, subject: str, rows: list[dict], header: list[str], videos: dict
) -> ManifestJob:
    """A subject's job: image rows in CSV order, each video's rows together, by frame."""
    for number, row in enumerate(rows, 1):
        if not row["is_video"] and row["frame"] is None:
            row["frame"] = number
    groups: dict[object, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["path"] if row["is_video"] else id(row), []).append(row)
    ordered: list[dict] = []
    for key, group in groups.items():
        if isinstance(key, Path):
            _check_video(manifest, key, group, videos)
            group = sorted(group, key=lambda r: r["frame"])
        ordered += group
    seen: dict[tuple[object, int], int] = {}
    for row in ordered:
        key = (row["sequence"], row["frame"])
        if key in seen:
            where = f" of sequence {key[0]!r}" if key[0] is not None else ""
            raise ConversionError(
                f"{manifest}, lines {seen[key]} and {row['line']}: subject {subject!r} frame "
                f"{key[1]}{where} is listed twice; give each frame one row"
            )
        seen[key] = row["line"]
    return ManifestJob(
        subject=subject,
        num_frames=len(ordered),
        needs_detector=any(
            np.isnan(r["landmarks"]).all() and not (r["au"] and np.isnan(r["au"]).all())
            for r in ordered
        ),
        csv=manifest,
        lines=np.array([r["line"] for r in ordered]),
        paths=[r["path"] for r in ordered],
        is_video=np.array([r["is_video"] for r in ordered]),
        frame_numbers=np.array([r["frame"] for r in ordered], dtype=np.int64),
        au=np.array([r["au"] for r in ordered], dtype=np.float32).reshape(len(ordered), -1),
        landmarks=np.stack([r["landmarks"] for r in ordered]),
        sequences=[r["sequence"] for r in ordered] if "sequence" in header else None,
        partitions=[r["partition"] for r in ordered] if "partition" in header else None,
    )


def _check_video(manifest: Path, video: Path, rows: list[dict], counts: dict) -> None:
    """A video's rows: the file opens, no frame is listed twice or past the declared end."""
    if video not in counts:
        try:
            counts[video] = frame_count(video)
        except INPUT_ERRORS as error:
            raise ConversionError(f"{manifest}, line {rows[0]['line']}: {error}") from None
    frames = [row["frame"] for row in rows]
    if len(set(frames)) != len(frames):
        twice = next(f for f in frames if frames.count(f) > 1)
        raise ConversionError(f"{manifest}: frame {twice} of {video} is listed more than once")
    declared = counts[video]
    if declared is not None and max(frames) > declared:
        last = max(rows, key=lambda row: row["frame"])
        raise ConversionError(
            f"{manifest}, line {last['line']}: frame {last['frame']} asked of {video}, which "
            f"has {declared} frames"
        )
