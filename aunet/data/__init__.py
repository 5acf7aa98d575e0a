"""Data: the HDF5 frame store, datasets, augmentation, folds, DataModules, synthetic faces.

The names below are imported on first use, so that ``python -m data_prep`` (which imports
:mod:`aunet.data.store`) does not pay for importing Lightning and albumentations (seconds).

Example:
    >>> from aunet.data import AUDataModule, FrameStore  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "FrameStore": "store",
    "FrameStoreWriter": "store_writer",
    "StoreError": "store",
    "DISFA_FOLDS": "folds",
    "DISFA_SUBJECTS": "folds",
    "disfa_fold": "folds",
    "fold_split": "folds",
    "subject_parts": "folds",
    "evaluation_protocol": "folds",
    "FrameDataset": "dataset",
    "collate_frames": "dataset",
    "AugmentConfig": "augment",
    "FaceAffine": "augment",
    "TrainAugmentation": "augment",
    "Resize": "augment",
    "AUDataModule": "datamodule",
    "LandmarkDataModule": "datamodule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aunet.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"aunet.data.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
