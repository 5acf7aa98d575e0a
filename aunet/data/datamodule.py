"""LightningDataModules: AU intensity training and FAN (landmark) pre-training.

:class:`AUDataModule` serves DISFA, FERA2015 (BP4D), FERA2017 and the synthetic set, choosing the
evaluation protocol from the store (:mod:`aunet.data.folds`):

- ``"folds"`` (datasets ``disfa`` and ``synthetic``): fold k trains on the subjects of the two
  other parts and validates, tests and predicts on part k (Sec. 5.1), so that cross-validation
  predicts every frame with the model that never saw its subject;
- ``"partition"`` (stores with a ``partition`` field: ``fera2015``/``bp4d``, ``fera2017``):
  train on ``train``, validate on ``devel``, test and predict on ``test`` if present, else
  ``devel``.

Training leaves out the frames it cannot learn from (no known landmark, hence no target
heatmap; or no known intensity); validation, test and predict keep every frame of their
subjects. Batches are those of :func:`aunet.data.dataset.collate_frames`. Training batches are
augmented (Sec. 5.3, :mod:`aunet.data.augment`); the others are only resized to ``image_size``.

Exact evaluation under DDP: Lightning's default ``DistributedSampler`` pads each rank's share
with repeated frames, which would bias ICC and MSE. When the trainer runs more than one process,
the validation, test and predict loaders come with Lightning's ``UnrepeatedDistributedSampler``
instead (a ``DistributedSampler`` subclass, so Lightning keeps it rather than injecting its
own): rank r gets rows r, r + W, r + 2W, ... with no repeats, the ranks' shares differing by at
most one frame. Metrics must then be reduced as sums over ranks (aunet's torchmetrics ICC/MSE
states are), and per-step logging must not ``sync_dist`` (ranks may run one batch apart).
Training keeps Lightning's shuffling ``DistributedSampler``: repeats do not matter there.

Example:
    >>> data = AUDataModule("data/disfa.h5", fold=2, num_workers=8)  # doctest: +SKIP
    >>> data.au_names, data.protocol  # doctest: +SKIP
    (('AU01', 'AU02', ...), 'folds')
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import signal
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from aunet.data.augment import AugmentConfig, Resize, TrainAugmentation
from aunet.data.dataset import FrameDataset, collate_frames
from aunet.data.folds import (
    evaluation_protocol,
    fold_split,
    hashed_subject_split,
    nested_subjects,
    partition_rows,
    rows_of,
    subject_parts,
)
from aunet.data.framing import FRAMINGS, Framed
from aunet.data.store import FrameStore


def ignore_sigterm(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM to the training process.

    SLURM (preemption, ``scancel``, a time limit) sends SIGTERM to every process of the job.
    A worker killed by it makes the training process fail at its next batch, before it can
    save a checkpoint; ignoring it lets the training process stop at the step end and save
    (``aunet.training.callbacks.CheckpointOnSigterm``). The workers then end with it: PyTorch
    stops them when their loader is shut down, they exit when their parent dies, and
    :func:`_kill_workers_at_exit` stops those left at the training process's exit.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _kill_workers_at_exit() -> None:
    """SIGKILL the daemonic worker processes still alive when this process exits.

    multiprocessing ends them at exit with SIGTERM, which DataLoader workers ignore
    (:func:`ignore_sigterm`), and then waits for them: forever, when a fit stopped on an
    exception (such as Lightning's on SIGTERM) before its loaders shut their workers down.
    """
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


@functools.cache
def _stop_workers_at_exit() -> None:
    # Registered after multiprocessing's own exit handler, so it runs before it (LIFO).
    atexit.register(_kill_workers_at_exit)


class _FrameDataModule(pl.LightningDataModule):
    """What both DataModules share: the store, the transforms, the loaders, the subsampling.

    A subclass decides each stage's rows in :meth:`_select_rows`, which :meth:`setup` calls
    once, and defines the stages' ``*_dataloader`` methods with :meth:`_loader`.

    Args:
        path: the frame store (``.h5``).
        batch_size: samples per batch (the paper: 48).
        num_workers: ``DataLoader`` worker processes (0 loads in the main process).
        image_size: network input side S (the paper: 256); the store's crops are resized to it.
        augment: augment training crops (Sec. 5.3); ``False`` only resizes them.
        augmentation: augmentation settings; ``None`` for the defaults of
            :class:`aunet.data.augment.AugmentConfig` (the paper's ranges).
        train_every: train on every n-th usable training frame (video frames are highly
            redundant; DISFA is filmed at 20 fps).
        max_train_frames: at most this many training frames, evenly spaced over the others.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        batch_size: int = 48,
        num_workers: int = 4,
        image_size: int = 256,
        augment: bool = True,
        augmentation: AugmentConfig | None = None,
        train_every: int = 1,
        max_train_frames: int | None = None,
    ) -> None:
        super().__init__()
        counts = {"batch_size": batch_size, "image_size": image_size, "train_every": train_every}
        if max_train_frames is not None:
            counts["max_train_frames"] = max_train_frames
        bad = [f"{name}={value!r}" for name, value in counts.items() if value < 1]
        if num_workers < 0:
            bad.append(f"num_workers={num_workers!r}")
        if bad:
            raise ValueError(f"{', '.join(bad)}: counts and sizes must be positive")
        self.store = FrameStore(path)  # reads the metadata; the file is not held open
        self.path = self.store.path
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.augment = augment
        self.augmentation = augmentation or AugmentConfig()
        self.train_every = train_every
        self.max_train_frames = max_train_frames
        #: How crops are framed for the network (:mod:`aunet.data.framing`); landmark (FAN
        #: pre-training) data keep the store's.
        self.framing = "store"
        self._rows: dict[str, np.ndarray] | None = None

    @property
    def dataset_name(self) -> str:
        """The store's dataset (``disfa``, ``bp4d``, ``fera2015``, ``fera2017``, ``synthetic``)."""
        return self.store.dataset

    def setup(self, stage: str | None = None) -> None:
        """Choose every stage's rows, once (this reads the store's landmarks and labels)."""
        if self._rows is None:
            self._rows = self._select_rows()
            self.store.close()  # forked workers open their own handle

    def rows(self, stage: str) -> np.ndarray:
        """Store rows (int64, ascending) of a stage, e.g. ``train`` or ``val``."""
        self.setup()
        if stage not in self._rows:
            raise ValueError(f"stage must be one of {tuple(self._rows)}, got {stage!r}")
        return self._rows[stage]

    def _select_rows(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _known_landmarks(self) -> np.ndarray:
        """Boolean per store row: at least one landmark is known (a target can be drawn)."""
        return ~np.isnan(self.store.read_all("landmarks")).all(axis=(1, 2))

    def _subsample(self, rows: np.ndarray) -> np.ndarray:
        """Every ``train_every``-th row, then at most ``max_train_frames`` evenly spaced."""
        rows = rows[:: self.train_every]
        if self.max_train_frames is not None and len(rows) > self.max_train_frames:
            rows = rows[np.round(np.linspace(0, len(rows) - 1, self.max_train_frames)).astype(int)]
        return rows

    def _require(self, rows: np.ndarray, what: str) -> np.ndarray:
        """``rows``, or a ValueError naming the file and ``what`` has no frames."""
        if not len(rows):
            raise ValueError(f"{self.path}: no frames for {what}")
        return rows

    def _loader(self, stage: str, with_au: bool = True) -> DataLoader:
        train = stage == "train"
        augment = train and self.augment
        transform = (
            TrainAugmentation(self.image_size, self.augmentation)
            if augment
            else Resize(self.image_size)
        )
        # Reframed before the augmentation, so rotations and scales act on the FAN's framing.
        framed = Framed(self.framing, transform)
        dataset = FrameDataset(self.store, self.rows(stage), framed, with_au=with_au)
        if self.num_workers > 0:
            _stop_workers_at_exit()
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            sampler=None if train else self._unpadded_sampler(dataset),
            num_workers=self.num_workers,
            collate_fn=collate_frames,
            pin_memory=torch.cuda.is_available(),
            # A last training batch of one would break BatchNorm; evaluation drops nothing.
            drop_last=train and len(dataset) > self.batch_size,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=ignore_sigterm,
        )

    def _unpadded_sampler(self, dataset: FrameDataset) -> UnrepeatedDistributedSampler | None:
        """Under multi-process training, a sampler sharding ``dataset`` without repeats."""
        trainer = self.trainer
        kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
        if not kwargs or kwargs.get("num_replicas", 1) <= 1:
            return None
        return UnrepeatedDistributedSampler(
            dataset, num_replicas=kwargs["num_replicas"], rank=kwargs["rank"], shuffle=False
        )


class AUDataModule(_FrameDataModule):
    """AU intensity data of one store: DISFA-style subject folds or the official partitions.

    Which subjects or partitions each stage uses is decided at construction from the store's
    metadata, so a wrong fold or an empty partition fails at once, naming the file; ``au_names``
    and ``dataset_name`` are known then too (LightningCLI links ``data.au_names`` to the model).
    :meth:`setup` then leaves out of training the frames with no known landmark or no known
    intensity; validation, test and predict keep all their frames.

    Args:
        path: the frame store (``.h5``).
        fold: 1-3, the fold held out under the ``"folds"`` protocol; must stay 1 for
            partition-protocol stores.
        val_every: validate on every n-th held-out frame (quicker periodic validation; test
            and predict always use every frame).
        framing: how crops are framed for the network (:mod:`aunet.data.framing`): ``store``
            (the stored crops), ``face_alignment`` (face-alignment's 2DFAN-4 framing), or
            ``auto``, which ``aunet fit`` resolves from the model's FAN before the run starts
            (and which means ``store`` anywhere else).
        train_subjects: train on this many of the training subjects only (the
            data-efficiency study, ``make curve``): the first ``train_subjects`` in the nested
            order of :func:`aunet.data.folds.nested_subjects` for ``subject_order_seed``. Their
            frames are repeated to the length of an epoch of every training subject, so every
            subject count trains the same number of steps on the same schedule and only the
            number of labelled faces differs. None: every training subject.
        subject_order_seed: the seed of that order (``make curve`` passes the run's seed).
        **kwargs: loader, augmentation and subsampling settings: ``batch_size`` (48),
            ``num_workers`` (4), ``image_size`` (256), ``augment`` (True), ``augmentation``,
            ``train_every`` (1), ``max_train_frames`` (None); see ``_FrameDataModule``.

    Raises:
        ValueError: naming the file, for a store without AU labels, a fold out of range, a
            fold or partition without frames, or a store of neither protocol.
        aunet.data.store.StoreError: for a missing or malformed store.
    """

    def __init__(
        self,
        path: str | os.PathLike = "data/synthetic.h5",
        fold: int = 1,
        val_every: int = 1,
        framing: Literal["auto", "store", "face_alignment"] = "auto",
        train_subjects: int | None = None,
        subject_order_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, **kwargs)
        if val_every < 1:
            raise ValueError(f"val_every must be positive, got {val_every}")
        if framing != "auto" and framing not in FRAMINGS:
            raise ValueError(f"framing must be auto or one of {FRAMINGS}, got {framing!r}")
        self.framing = "store" if framing == "auto" else framing
        self.fold = fold
        self.val_every = val_every
        self.au_names: tuple[str, ...] = self.store.au_names
        margin = self.store.attrs.get("crop_margin")
        #: The stored crops' margin (``aunet.faces.crop``), None if the store does not record it.
        self.crop_margin: float | None = None if margin is None else float(margin)
        if not self.au_names:
            raise ValueError(f"{self.path}: the store has no AU labels (au_names is empty)")
        try:
            self.protocol = evaluation_protocol(
                self.dataset_name, self.store.partitions is not None
            )
        except ValueError as error:
            raise ValueError(f"{self.path}: {error}") from None
        split = self._fold_split() if self.protocol == "folds" else self._partition_split()
        self._train_subjects_rows, self._held_out = split
        #: Every training subject (sorted), and those this run trains on, in nested order.
        self.training_subjects = tuple(sorted(set(self.store.subjects[split[0]])))
        self.train_subjects = train_subjects
        self.chosen_subjects = self.training_subjects
        if train_subjects is not None:
            try:
                self.chosen_subjects = nested_subjects(
                    self.training_subjects, train_subjects, subject_order_seed
                )
            except ValueError as error:
                raise ValueError(f"{self.path}, fold {self.fold}: {error}") from None

    def _fold_split(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        subjects = self.store.subjects
        try:
            parts = subject_parts(self.dataset_name, subjects)
            train_subjects, held_subjects = fold_split(parts, self.fold)
        except ValueError as error:
            raise ValueError(f"{self.path}: {error}") from None
        present = ", ".join(sorted(set(subjects)))
        train, held_out = (
            self._require(
                rows_of(subjects, chosen),
                f"the {role} subjects of fold {self.fold} ({', '.join(chosen)}); "
                f"it holds {present}",
            )
            for role, chosen in (("training", train_subjects), ("held-out", held_subjects))
        )
        return train, {"val": held_out, "test": held_out}

    def _partition_split(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self.fold != 1:
            raise ValueError(
                f"{self.path}: {self.dataset_name} uses its official partitions, not folds; "
                f"leave fold at 1 (got {self.fold})"
            )
        rows = partition_rows(self.store.partitions)
        found = sorted(set(self.store.partitions))
        for stage, partition in (("train", "train"), ("val", "devel")):
            self._require(rows[stage], f"partition {partition!r}; it holds {found}")
        return rows["train"], {"val": rows["val"], "test": rows["test"]}

    def _select_rows(self) -> dict[str, np.ndarray]:
        usable = self._known_landmarks() & ~np.isnan(self.store.read_all("au")).all(axis=1)
        candidates = self._train_subjects_rows
        candidates = candidates[usable[candidates]]
        train = self._require(
            self._subsample(candidates),
            "training: none of the training frames has both landmarks and an AU label",
        )
        if self.train_subjects is not None:
            chosen = candidates[np.isin(self.store.subjects[candidates], self.chosen_subjects)]
            chosen = self._require(
                self._subsample(chosen),
                f"training on subjects {', '.join(self.chosen_subjects)}: none of their frames "
                "has both landmarks and an AU label",
            )
            # Tiled to the full epoch's length: same steps per epoch for every subject count.
            train = np.sort(np.resize(chosen, len(train)))
        test = self._held_out["test"]
        return {
            "train": train,
            "val": self._held_out["val"][:: self.val_every],
            "test": test,
            "predict": test,
        }

    def held_out_rows(self) -> dict[str, np.ndarray]:
        """The rows the predict loader covers, with what cross-validation reports for them.

        Returns:
            Equal-length columns ``index`` (store row, as in each batch's ``index``),
            ``subject``, ``frame``, and ``fold`` (``"folds"`` protocol) or ``partition``.
        """
        rows = self._held_out["test"]
        store = self.store
        columns = {"index": rows, "subject": store.subjects[rows], "frame": store.frames[rows]}
        if self.protocol == "folds":
            columns["fold"] = np.full(len(rows), self.fold, dtype=np.int64)
        else:
            columns["partition"] = store.partitions[rows]
        return columns

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training batches (the last incomplete batch dropped)."""
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        """Held-out (fold) or ``devel`` frames in store order, none dropped or repeated."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """Every held-out or test frame, in store order."""
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """As :meth:`test_dataloader`; batch ``index`` maps through :meth:`held_out_rows`."""
        return self._loader("predict")


class LandmarkDataModule(_FrameDataModule):
    """Faces and their 68 landmarks for FAN pre-training (Sec. 4.1), from any frame store.

    Validation holds out a deterministic, subject-exclusive share of the subjects
    (:func:`aunet.data.folds.hashed_subject_split`). Frames with no known landmark are left out
    of both stages. Training crops get the same augmentation as AU training, flip re-indexing
    included. Batches carry an empty B x 0 ``au``; ``au_names`` is empty.

    Args:
        path: the frame store (``.h5``), e.g. a 300W-LP conversion or the synthetic set.
        val_fraction: share of the subjects that validate.
        **kwargs: loader, augmentation and subsampling settings, as :class:`AUDataModule`.

    Raises:
        ValueError: naming the file, for fewer than two subjects or a fraction outside (0, 1).
    """

    def __init__(
        self,
        path: str | os.PathLike = "data/synthetic.h5",
        val_fraction: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, **kwargs)
        self.val_fraction = val_fraction
        self.au_names: tuple[str, ...] = ()
        try:
            train, val = hashed_subject_split(self.store.subjects, val_fraction)
        except ValueError as error:
            raise ValueError(f"{self.path}: {error}") from None
        self.train_subjects, self.val_subjects = train, val

    def _select_rows(self) -> dict[str, np.ndarray]:
        known = self._known_landmarks()
        subjects = self.store.subjects
        train, val = (
            self._require(rows[known[rows]], f"{stage}: none of its subjects' frames has landmarks")
            for stage, rows in (
                ("training", rows_of(subjects, self.train_subjects)),
                ("validation", rows_of(subjects, self.val_subjects)),
            )
        )
        return {"train": self._subsample(train), "val": val}

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training batches (the last incomplete batch dropped)."""
        return self._loader("train", with_au=False)

    def val_dataloader(self) -> DataLoader:
        """The validation subjects' frames in store order, none dropped or repeated."""
        return self._loader("val", with_au=False)
