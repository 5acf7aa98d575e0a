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
``image_encoding`` (plus ``jpeg_quality`` for JPEG, and whatever provenance a converter adds).

Writers never leave a half-written file under the final name: :class:`FrameStoreWriter` writes
``<name>.partial`` and renames it only when closed without error; :func:`merge_stores` joins
stores (a converter's per-subject parts) without re-encoding their images. Readers check the
schema when they open a file and say what is wrong and how to rebuild it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import cv2
import h5py
import numpy as np

from aunet.aus import MAX_INTENSITY, NUM_LANDMARKS
from aunet.faces.images import decode_rgb

SCHEMA_VERSION = 1
Encoding = Literal["jpeg", "raw"]
ENCODINGS: tuple[str, ...] = ("jpeg", "raw")
#: JPEG at quality 95, chosen by measurement: see bench/BENCHMARKS.md, "Storage".
DEFAULT_ENCODING: Encoding = "jpeg"
DEFAULT_JPEG_QUALITY = 95
REQUIRED_FIELDS = ("images", "landmarks", "au", "subject", "frame")
OPTIONAL_FIELDS = ("sequence", "partition")
PARTITIONS = ("train", "devel", "test")

_STRING = h5py.string_dtype(encoding="utf-8")
_BYTES = h5py.vlen_dtype(np.uint8)


class StoreError(ValueError):
    """A frame store that cannot be written or read as asked; the message names file and field."""


def _rebuild_hint(path: Path, dataset: str | None = None) -> str:
    name = dataset or "<dataset>"
    return (
        f"rebuild it with `python -m data_prep {name} ... --out {path}` (see docs/data-format.md)"
    )


def encode_jpeg(image: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> np.ndarray:
    """Encode an RGB uint8 image as JPEG bytes (a 1-D uint8 array)."""
    ok, buffer = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise StoreError(f"OpenCV could not JPEG-encode an image of shape {image.shape}")
    return buffer.reshape(-1)


def decode_jpeg(data: np.ndarray) -> np.ndarray:
    """Decode stored JPEG bytes to an RGB uint8 image."""
    image = decode_rgb(data)
    if image is None:
        raise StoreError("stored image bytes are not a decodable JPEG")
    return image


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
        self._datasets: dict[str, h5py.Dataset] = {}
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
            self._check_values(file)

    def _fail(self, problem: str, dataset: str | None = None) -> StoreError:
        return StoreError(f"{self.path}: {problem}; {_rebuild_hint(self.path, dataset)}")

    def _open_checked(self) -> h5py.File:
        if not self.path.is_file():
            raise StoreError(f"{self.path}: no such frame store; {self._missing_hint()}")
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

    def _missing_hint(self) -> str:
        # An interrupted conversion leaves its pieces beside the final name; say so.
        leftovers = [
            p for p in (Path(f"{self.path}.parts"), Path(f"{self.path}.partial")) if p.exists()
        ]
        if leftovers:
            return (
                f"a conversion into it did not finish ({leftovers[0]} exists); re-run the same "
                "`python -m data_prep ...` command to resume it"
            )
        return (
            "build it with `make prep DATA=<dataset> ROOT=<dir>` or "
            "`python -m data_prep <dataset> ... --out FILE.h5` (see docs/data-format.md)"
        )

    def _check_schema(self, file: h5py.File) -> None:
        dataset = str(file.attrs.get("dataset", "")) or None
        version = file.attrs.get("schema_version")
        if version is None:
            raise self._fail("no 'schema_version' attribute: not an aunet frame store", dataset)
        if int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema_version {int(version)} was written by a newer aunet, this "
                f"one reads version {SCHEMA_VERSION}; update aunet, or "
                f"{_rebuild_hint(self.path, dataset)}"
            )
        if int(version) != SCHEMA_VERSION:
            raise self._fail(
                f"schema_version {int(version)} is older than this aunet's {SCHEMA_VERSION}",
                dataset,
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

    def _check_values(self, file: h5py.File, block: int = 65536) -> None:
        """Intensities in 0-5 or NaN, landmarks finite or NaN: what the writer allowed.

        The writer checks every row it writes; this catches a store edited afterwards (a label
        set to 9 or -1 by hand), which would otherwise train without a word. Read in blocks:
        about 0.6 MB of labels and 7 MB of landmarks per 10,000 frames.
        """
        for start in range(0, len(self.frames), block):
            au = file["au"][start : start + block]
            bad = ~np.isnan(au) & ((au < 0) | (au > MAX_INTENSITY))
            if bad.any():
                row, column = (int(i) for i in np.argwhere(bad)[0])
                raise self._fail(
                    f"au[{start + row}, {self.au_names[column]!r}] = {au[row, column]} in the "
                    "file: intensities must lie in 0-5 (NaN = unknown); was the store edited "
                    "after it was written?",
                    self.dataset,
                )
            points = file["landmarks"][start : start + block]
            if np.isinf(points).any():
                row = int(np.argwhere(np.isinf(points).any(axis=(1, 2)))[0][0])
                raise self._fail(
                    f"landmarks of row {start + row} are infinite in the file (finite or NaN "
                    "expected); was the store edited after it was written?",
                    self.dataset,
                )

    @property
    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._open_checked()
            self._pid = os.getpid()
            self._datasets = {}
        return self._handle

    def _dataset(self, name: str) -> h5py.Dataset:
        # Looking a dataset up by name costs tens of microseconds: once per process is enough.
        file = self._file
        if name not in self._datasets:
            self._datasets[name] = file[name]
        return self._datasets[name]

    def __len__(self) -> int:
        return len(self.frames)

    def __getstate__(self) -> dict[str, Any]:
        # A pickled store (e.g. sent to a spawned DataLoader worker) reopens its own handle.
        return {**self.__dict__, "_handle": None, "_pid": None, "_datasets": {}}

    def image(self, index: int) -> np.ndarray:
        """The RGB uint8 face crop of row ``index``."""
        data = self._dataset("images")[index]
        return decode_jpeg(data) if self.encoding == "jpeg" else data

    def landmarks(self, index: int) -> np.ndarray:
        """68 x 2 float32 landmarks of row ``index`` (crop pixels, NaN = unknown)."""
        return self._dataset("landmarks")[index]

    def au(self, index: int) -> np.ndarray:
        """K float32 intensities of row ``index`` (NaN = unknown)."""
        return self._dataset("au")[index]

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
            self._datasets = {}
