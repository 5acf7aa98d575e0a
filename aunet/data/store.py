"""The HDF5 frame store: one file per dataset, written once by ``data_prep``, read by training.

The schema (documented for users in ``docs/data-format.md``) holds N rows of

- ``images``: the face crops, RGB. Either ``N x S x S x 3`` uint8 (``image_encoding = "raw"``)
  or ``N`` variable-length byte strings, each a JPEG file (``image_encoding = "jpeg"``).
- ``landmarks``: ``N x 68 x 2`` float32, iBUG 68-point (x, y) in crop pixels, NaN when unknown.
- ``au``: ``N x K`` float32 intensities 0-5, NaN when unknown, columns named by ``au_names``.
- ``subject``: strings (``SN001``, ``F001``); ``frame``: int64, the frame number as the
  dataset's own label files give it.
- optional ``sequence`` (e.g. ``F001_T1``) and ``partition`` (``train``, ``devel``, ``test``).

and the file attributes ``schema_version``, ``dataset``, ``au_names``, ``image_size`` and
``image_encoding`` (plus whatever provenance a converter adds).

Writers never leave a half-written file under the final name: :class:`FrameStoreWriter` writes
``<name>.partial`` and renames it only when closed without error. Readers check the schema when
they open a file and say what is wrong and how to rebuild it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import h5py
import numpy as np

from aunet.aus import NUM_LANDMARKS

SCHEMA_VERSION = 1
Encoding = Literal["jpeg", "raw"]
ENCODINGS: tuple[str, ...] = ("jpeg", "raw")
#: JPEG at quality 95; see bench/BENCHMARKS.md ("Storage") for the measurement behind it.
DEFAULT_ENCODING: Encoding = "jpeg"
DEFAULT_JPEG_QUALITY = 95
REQUIRED_FIELDS = ("images", "landmarks", "au", "subject", "frame")
OPTIONAL_FIELDS = ("sequence", "partition")
PARTITIONS = ("train", "devel", "test")
MAX_INTENSITY = 5.0

_STRING = h5py.string_dtype(encoding="utf-8")
_BYTES = h5py.vlen_dtype(np.uint8)


class StoreError(ValueError):
    """A frame store that cannot be written or read as asked; the message names file and field."""


def _rebuild_hint(path: Path, dataset: str | None = None) -> str:
    name = dataset or "<dataset>"
    return f"rebuild it with `python -m data_prep {name} ... --out {path}` (see README, Data)"


def encode_jpeg(image: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> np.ndarray:
    """Encode an RGB uint8 image as JPEG bytes (a 1-D uint8 array)."""
    ok, buffer = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise StoreError(f"OpenCV could not JPEG-encode an image of shape {image.shape}")
    return buffer.reshape(-1)


def decode_jpeg(data: np.ndarray) -> np.ndarray:
    """Decode JPEG bytes to an RGB uint8 image."""
    bgr = cv2.imdecode(np.asarray(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise StoreError("stored image bytes are not a decodable JPEG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class FrameStoreWriter:
    """Write a frame store row block by row block, atomically.

    Rows go to ``<path>.partial``; :meth:`close` (or leaving the ``with`` block without an
    exception) renames it to ``path``. An exception deletes the partial file and leaves any
    existing ``path`` untouched.

    Args:
        path: the final ``.h5`` file.
        dataset: the dataset's name (``disfa``, ``bp4d``, ``synthetic``, ...).
        au_names: the K AU column names (e.g. ``aunet.aus.DATASET_AUS["disfa"]``); empty for a
            landmark-only set.
        image_size: side S of the square face crops.
        encoding: ``"jpeg"`` or ``"raw"``.
        jpeg_quality: JPEG quality (1-100) for ``"jpeg"``.
        attrs: extra file attributes (provenance: source folder, margin, seed, ...).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "tiny.h5"
        >>> with FrameStoreWriter(path, "synthetic", ("AU12",), image_size=8) as writer:
        ...     writer.append(
        ...         images=np.zeros((2, 8, 8, 3), np.uint8),
        ...         landmarks=np.zeros((2, 68, 2)),
        ...         au=[[0.0], [3.0]],
        ...         subject=["SN001", "SN001"],
        ...         frame=[1, 2],
        ...     )
        >>> len(FrameStore(path))
        2
    """

    def __init__(
        self,
        path: str | os.PathLike,
        dataset: str,
        au_names: Sequence[str],
        image_size: int,
        encoding: Encoding = DEFAULT_ENCODING,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        if encoding not in ENCODINGS:
            raise StoreError(f"image encoding {encoding!r} is not one of {ENCODINGS}")
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.au_names = tuple(au_names)
        self.image_size = int(image_size)
        self.encoding = encoding
        self.jpeg_quality = int(jpeg_quality)
        self._optional: set[str] | None = None  # fixed by the first append
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.partial, "w")
        self._file.attrs.update(
            {
                "schema_version": SCHEMA_VERSION,
                "dataset": dataset,
                "au_names": list(self.au_names),
                "image_size": self.image_size,
                "image_encoding": encoding,
                **(attrs or {}),
            }
        )
        side = self.image_size
        if encoding == "raw":
            # One chunk per frame: a random-access read touches exactly one chunk.
            self._create("images", (side, side, 3), np.uint8, chunks=(1, side, side, 3))
        else:
            self._create("images", (), _BYTES)
        self._create("landmarks", (NUM_LANDMARKS, 2), np.float32)
        self._create("au", (len(self.au_names),), np.float32)
        self._create("subject", (), _STRING)
        self._create("frame", (), np.int64)

    def _create(
        self, name: str, row_shape: tuple[int, ...], dtype: Any, chunks: Any = True
    ) -> None:
        self._file.create_dataset(
            name, shape=(0, *row_shape), maxshape=(None, *row_shape), dtype=dtype, chunks=chunks
        )

    def __len__(self) -> int:
        return self._file["images"].shape[0]

    def __enter__(self) -> FrameStoreWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def append(
        self,
        images: np.ndarray,
        landmarks: np.ndarray,
        au: np.ndarray | Sequence[Sequence[float]],
        subject: Sequence[str],
        frame: Sequence[int],
        sequence: Sequence[str] | None = None,
        partition: Sequence[str] | None = None,
    ) -> None:
        """Append N rows; every argument has N entries (see the module docstring for units).

        Raises:
            StoreError: naming the field, the row and what was expected, for a wrong shape, an
                intensity outside 0-5, a non-finite landmark that is not NaN in both
                coordinates, an unknown partition, or an optional field given in some appends
                but not others.
        """
        images = np.asarray(images)
        n = len(images)
        side = self.image_size
        rows = {
            "landmarks": np.asarray(landmarks, dtype=np.float32),
            "au": np.asarray(au, dtype=np.float32).reshape(n, len(self.au_names)),
            "subject": np.asarray(subject, dtype=object),
            "frame": np.asarray(frame, dtype=np.int64),
        }
        optional = {"sequence": sequence, "partition": partition}
        given = {name for name, value in optional.items() if value is not None}
        self._check_optional(given)
        rows.update({name: np.asarray(optional[name], dtype=object) for name in given})
        self._validate(images, rows, n, side)
        start = len(self)
        for name, values in rows.items():
            dataset = self._file[name]
            dataset.resize(start + n, axis=0)
            dataset[start:] = values
        images_out = self._file["images"]
        images_out.resize(start + n, axis=0)
        if self.encoding == "raw":
            images_out[start:] = images
        else:
            # Row by row: h5py would turn equal-length JPEG buffers into one 2-D array.
            for i, image in enumerate(images):
                images_out[start + i] = encode_jpeg(image, self.jpeg_quality)

    def _check_optional(self, given: set[str]) -> None:
        if self._optional is None:
            self._optional = given
            for name in given:
                self._create(name, (), _STRING)
        elif given != self._optional:
            raise StoreError(
                f"{self.partial}: optional fields {sorted(given)} differ from the first "
                f"append's {sorted(self._optional)}; give them in every append or in none"
            )

    def _validate(self, images: np.ndarray, rows: dict[str, np.ndarray], n: int, side: int) -> None:
        where = str(self.partial)
        if images.shape != (n, side, side, 3) or images.dtype != np.uint8:
            raise StoreError(
                f"{where}: images must be uint8 N x {side} x {side} x 3 RGB, got "
                f"{images.dtype} {images.shape}"
            )
        for name, values in rows.items():
            if len(values) != n:
                raise StoreError(f"{where}: field {name!r} has {len(values)} rows, images {n}")
        if rows["landmarks"].shape != (n, NUM_LANDMARKS, 2):
            raise StoreError(
                f"{where}: landmarks must be N x 68 x 2, got {rows['landmarks'].shape}"
            )
        points = rows["landmarks"]
        half_known = np.isnan(points).any(-1) != np.isnan(points).all(-1)
        if half_known.any() or np.isinf(points).any():
            row = int(np.argwhere(half_known | np.isinf(points).any(-1))[0][0])
            raise StoreError(
                f"{where}: landmarks of row {len(self) + row} are not finite (x, y) pairs or "
                "NaN in both coordinates"
            )
        intensities = rows["au"]
        bad = ~np.isnan(intensities) & ((intensities < 0) | (intensities > MAX_INTENSITY))
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            raise StoreError(
                f"{where}: au[{len(self) + row}, {self.au_names[column]!r}] = "
                f"{intensities[row, column]}; intensities must lie in 0-5 (NaN = unknown)"
            )
        if "partition" in rows:
            unknown = sorted(set(rows["partition"]) - set(PARTITIONS))
            if unknown:
                raise StoreError(f"{where}: partition values {unknown} not in {PARTITIONS}")

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        self._file.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Discard the partial file; an existing final file is left as it was."""
        self._file.close()
        self.partial.unlink(missing_ok=True)


class FrameStore:
    """Read access to a frame store, checked on construction and opened lazily per process.

    The small per-row metadata (subjects, frames, sequences, partitions) is read into memory at
    construction, so folds can be split without touching the images. The HDF5 handle is opened on
    first image access in each process (never inherited across a fork: h5py handles are not
    fork-safe), so a ``DataLoader`` with workers needs no per-worker copy of the data.

    Args:
        path: the ``.h5`` file.

    Raises:
        StoreError: if the file is missing, not HDF5 (e.g. truncated by an interrupted copy), of
            another schema version, or missing a field; the message says how to rebuild it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._handle: h5py.File | None = None
        self._pid: int | None = None
        with self._open_checked() as file:
            attrs = file.attrs
            self.dataset = str(attrs["dataset"])
            self.au_names = tuple(str(name) for name in attrs["au_names"])
            self.image_size = int(attrs["image_size"])
            self.encoding = str(attrs["image_encoding"])
            self.attrs = dict(attrs)
            self.subjects = file["subject"].asstr()[:]
            self.frames = file["frame"][:]
            self.sequences = file["sequence"].asstr()[:] if "sequence" in file else None
            self.partitions = file["partition"].asstr()[:] if "partition" in file else None
            self._check_shapes(file)

    def _fail(self, problem: str, dataset: str | None = None) -> StoreError:
        return StoreError(f"{self.path}: {problem}; {_rebuild_hint(self.path, dataset)}")

    def _open_checked(self) -> h5py.File:
        if not self.path.is_file():
            raise StoreError(
                f"{self.path}: no such frame store; build it with `make prep DATA=<dataset> "
                "ROOT=<dir>` or `python -m data_prep <dataset> ... --out FILE.h5`"
            )
        try:
            file = h5py.File(self.path, "r")
        except OSError as error:
            raise self._fail(f"not a readable HDF5 file, truncated or corrupt ({error})") from None
        try:
            self._check_schema(file)
        except StoreError:
            file.close()
            raise
        return file

    def _check_schema(self, file: h5py.File) -> None:
        dataset = str(file.attrs.get("dataset", "")) or None
        version = file.attrs.get("schema_version")
        if version is None:
            raise self._fail("no 'schema_version' attribute: not an aunet frame store", dataset)
        if int(version) != SCHEMA_VERSION:
            raise self._fail(
                f"schema_version {int(version)}, this aunet reads version {SCHEMA_VERSION}", dataset
            )
        for attr in ("dataset", "au_names", "image_size", "image_encoding"):
            if attr not in file.attrs:
                raise self._fail(f"missing file attribute {attr!r}", dataset)
        missing = [name for name in REQUIRED_FIELDS if name not in file]
        if missing:
            raise self._fail(f"missing dataset(s) {missing}", dataset)
        if str(file.attrs["image_encoding"]) not in ENCODINGS:
            raise self._fail(
                f"image_encoding {file.attrs['image_encoding']!r} not in {ENCODINGS}", dataset
            )

    def _check_shapes(self, file: h5py.File) -> None:
        n = len(self.frames)
        k = len(self.au_names)
        side = self.image_size
        expected = {
            "images": (n, side, side, 3) if self.encoding == "raw" else (n,),
            "landmarks": (n, NUM_LANDMARKS, 2),
            "au": (n, k),
            "subject": (n,),
        }
        expected.update({name: (n,) for name in OPTIONAL_FIELDS if name in file})
        for name, shape in expected.items():
            if file[name].shape != shape:
                raise self._fail(f"dataset {name!r} has shape {file[name].shape}, expected {shape}")

    @property
    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._open_checked()
            self._pid = os.getpid()
        return self._handle

    def __len__(self) -> int:
        return len(self.frames)

    def __getstate__(self) -> dict[str, Any]:
        # A pickled store (e.g. sent to a spawned DataLoader worker) reopens its own handle.
        return {**self.__dict__, "_handle": None, "_pid": None}

    def image(self, index: int) -> np.ndarray:
        """The RGB uint8 face crop of row ``index``."""
        data = self._file["images"][index]
        return decode_jpeg(data) if self.encoding == "jpeg" else data

    def landmarks(self, index: int) -> np.ndarray:
        """68 x 2 float32 landmarks of row ``index`` (crop pixels, NaN = unknown)."""
        return self._file["landmarks"][index]

    def au(self, index: int) -> np.ndarray:
        """K float32 intensities of row ``index`` (NaN = unknown)."""
        return self._file["au"][index]

    def read_all(self, field: str) -> np.ndarray:
        """A whole numeric field (``landmarks`` or ``au``) as one array."""
        if field not in ("landmarks", "au"):
            raise StoreError(f"read_all reads 'landmarks' or 'au', not {field!r}")
        return self._file[field][:]

    def close(self) -> None:
        """Close this process's handle (it reopens on the next access)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
