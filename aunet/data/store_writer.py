"""Writing frame stores: rows to a partial file, checked, renamed when complete; merging stores."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from aunet.aus import MAX_INTENSITY, NUM_LANDMARKS
from aunet.data.store import (
    _BYTES,
    _STRING,
    DEFAULT_ENCODING,
    DEFAULT_JPEG_QUALITY,
    ENCODINGS,
    OPTIONAL_FIELDS,
    PARTITIONS,
    SCHEMA_VERSION,
    Encoding,
    FrameStore,
    StoreError,
    encode_jpeg,
)
from aunet.files import commit


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
                **({"jpeg_quality": self.jpeg_quality} if encoding == "jpeg" else {}),
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

    @property
    def attrs(self) -> h5py.AttributeManager:
        """The file attributes, writable until the writer closes (e.g. a conversion report)."""
        return self._file.attrs

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
        if self.encoding == "jpeg":
            images = [encode_jpeg(image, self.jpeg_quality) for image in images]
        self._write(images, rows)

    def append_store(self, store: FrameStore, block: int = 1024) -> None:
        """Append every row of another store, copying its stored images without re-encoding.

        Raises:
            StoreError: if the other store's AU names, image size, encoding or optional fields
                differ from this one's.
        """
        mine = (self.au_names, self.image_size, self.encoding)
        theirs = (store.au_names, store.image_size, store.encoding)
        if mine != theirs:
            raise StoreError(
                f"{store.path}: (au_names, image_size, encoding) = {theirs} cannot join "
                f"{self.path}, which has {mine}"
            )
        if len(store) == 0:  # an empty store may lack the optional fields; nothing to copy
            return
        source = store._file
        given = {name for name in OPTIONAL_FIELDS if name in source}
        self._check_optional(given)
        for start in range(0, len(store), block):
            rows = {
                name: source[name].asstr()[start : start + block]
                if name in ("subject", *OPTIONAL_FIELDS)
                else source[name][start : start + block]
                for name in ("landmarks", "au", "subject", "frame", *sorted(given))
            }
            self._write(source["images"][start : start + block], rows)

    def _write(self, images: Sequence[np.ndarray] | np.ndarray, rows: dict[str, Any]) -> None:
        """Append validated rows; ``images`` are in stored form (raw pixels or JPEG buffers)."""
        start, n = len(self), len(images)
        with self._full_disk_as_store_error():
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
                for i, buffer in enumerate(images):
                    images_out[start + i] = buffer

    @contextlib.contextmanager
    def _full_disk_as_store_error(self) -> Iterator[None]:
        """Turn a full disk (an OSError, or h5py's with errno 28 in its text) into a StoreError."""
        try:
            yield
        except OSError as error:
            if error.errno != errno.ENOSPC and "No space left on device" not in str(error):
                raise
            raise StoreError(
                f"{self.partial}: no space left on device; this partial file is removed and "
                f"{self.path} is left as it was. Free some space and write the store again (for "
                "a data_prep conversion, re-run the same command: finished subjects are kept)"
            ) from error

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
        """Finish the file and move it to its final name (on failure, remove the partial file)."""
        try:
            with self._full_disk_as_store_error():
                self._file.close()
                commit(self.partial, self.path)
        except BaseException:
            self.partial.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Discard the partial file; an existing final file is left as it was."""
        self._file.close()
        self.partial.unlink(missing_ok=True)


def merge_stores(
    parts: Sequence[str | os.PathLike],
    path: str | os.PathLike,
    attrs: dict[str, Any] | None = None,
) -> int:
    """Join frame stores row-wise into one new store, atomically and without re-encoding.

    The result takes the first part's dataset name, AU names, image size and encoding (all parts
    must agree on the last three), the first part's other attributes updated by ``attrs``, and
    the parts' rows in the order given.

    Args:
        parts: the stores to join (e.g. one per subject).
        path: the new store; written as ``<path>.partial`` and renamed when complete.
        attrs: attributes to set on the result (provenance, a conversion report).

    Returns:
        The number of rows written.

    Raises:
        StoreError: if there is no part, a part cannot be read, or the parts disagree.
    """
    if not parts:
        raise StoreError(f"{path}: nothing to merge (no part stores given)")
    stores = [FrameStore(part) for part in parts]
    first = stores[0]
    inherited = {
        key: value
        for key, value in first.attrs.items()
        if key not in ("schema_version", "dataset", "au_names", "image_size", "image_encoding")
    }
    jpeg_quality = int(first.attrs.get("jpeg_quality", DEFAULT_JPEG_QUALITY))
    with FrameStoreWriter(
        path,
        first.dataset,
        first.au_names,
        first.image_size,
        encoding=first.encoding,
        jpeg_quality=jpeg_quality,
        attrs={**inherited, **(attrs or {})},
    ) as writer:
        for store in stores:
            writer.append_store(store)
            store.close()
        return len(writer)
