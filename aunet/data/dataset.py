"""The frame ``Dataset`` over an HDF5 frame store, and the collate that makes batches.

A sample is a dict of numpy arrays as the transform leaves them; :func:`collate_frames` turns a
list of samples into the batch every aunet LightningModule takes:

- ``image``: B x 3 x S x S **uint8** RGB. Its memory is channels-last (it is a permuted view of
  the stacked S x S x 3 crops, so collating copies each crop once and never transposes it on
  the host). It is an ordinary NCHW tensor to every operation; the LightningModule turns it
  into float in [0, 1] on the device (4x less host-to-device traffic than float32), where
  ``.float()`` keeps the channels-last layout that cuDNN convolutions take natively.
- ``landmarks``: B x 68 x 2 float32, (x, y) in the pixels of ``image`` (pixel centres on
  integers), NaN where unknown.
- ``au``: B x K float32 intensities 0-5 in the store's ``au_names`` order, NaN where unknown
  (B x 0 for landmark-only batches).
- ``index``: B int64, the store row of each sample, so that predictions map back to subject and
  frame (``FrameStore.subjects[index]``, ``FrameStore.frames[index]``).

Target heatmaps are not drawn here: the LightningModule draws them on the batch's device.

The store's HDF5 file is opened lazily in each process that reads (see
:class:`aunet.data.store.FrameStore`), so ``DataLoader`` workers share nothing but the file
name and the in-memory row indices (a numpy array, whose pages forked workers never copy).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from aunet.data.augment import Transform
from aunet.data.store import FrameStore

# OpenCV's thread pool does not survive a fork: a DataLoader worker forked after its parent ran
# OpenCV with threads can deadlock on its first cv2 call. The loading process leaves the heavy
# OpenCV work to its workers anyway, so it runs OpenCV without a pool.
cv2.setNumThreads(0)

_NO_AU = np.empty(0, dtype=np.float32)


class FrameDataset(Dataset):
    """Rows of a frame store as samples ``{"image", "landmarks", "au", "index"}``.

    Args:
        store: a :class:`FrameStore` or the path of one.
        indices: the store rows this dataset covers, in order (default: all rows).
        transform: maps ``(image, landmarks)`` to the network's input size, e.g.
            :class:`aunet.data.augment.TrainAugmentation` or :class:`aunet.data.augment.Resize`;
            ``None`` keeps the stored crops.
        with_au: read the AU intensities; ``False`` gives an empty ``au`` (landmark training).

    Raises:
        IndexError: naming the store, for an index outside its rows.
    """

    def __init__(
        self,
        store: FrameStore | str | os.PathLike,
        indices: Sequence[int] | np.ndarray | None = None,
        transform: Transform | None = None,
        with_au: bool = True,
    ) -> None:
        self.store = store if isinstance(store, FrameStore) else FrameStore(store)
        rows = np.arange(len(self.store)) if indices is None else np.asarray(indices)
        self.indices = rows.astype(np.int64).reshape(-1)
        outside = (self.indices < 0) | (self.indices >= len(self.store))
        if outside.any():
            raise IndexError(
                f"{self.store.path}: rows {self.indices[outside][:5].tolist()} are outside its "
                f"{len(self.store)} rows"
            )
        self.transform = transform
        self.with_au = with_au
        self._process: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, Any]:
        if self._process != os.getpid():
            self._enter_process()
        row = int(self.indices[item])
        image = self.store.image(row)
        landmarks = self.store.landmarks(row)
        if self.transform is not None:
            image, landmarks = self.transform(image, landmarks)
        au = self.store.au(row) if self.with_au else _NO_AU
        return {"image": image, "landmarks": landmarks, "au": au, "index": row}

    def _enter_process(self) -> None:
        # OpenCV's own thread pool in every worker would oversubscribe the cores the workers
        # already share out; one thread per worker is also what "images/s per core" measures.
        if get_worker_info() is not None:
            cv2.setNumThreads(1)
        self._process = os.getpid()


def collate_frames(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch (format in the module docstring).

    ``default_collate`` stacks each field with one copy, straight into shared memory when it
    runs in a worker; the images are then only re-viewed as B x 3 x S x S.
    """
    batch = default_collate(samples)
    batch["image"] = batch["image"].permute(0, 3, 1, 2)
    return batch
