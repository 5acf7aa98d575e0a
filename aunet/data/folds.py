"""Subject-exclusive evaluation protocols: the three DISFA folds and the FERA partitions.

DISFA has no official split; the paper (Sec. 5.1) follows existing work with a three-fold,
subject-exclusive cross-validation and reports ICC on the aggregated out-of-fold predictions.
These are the standard three parts of the 27 subjects used by that line of work.

FERA2015 (BP4D) and FERA2017 use the official partitions (Sec. 5.1), which the frame store
carries row by row in its ``partition`` field: train on ``train``, validate on ``devel``, and
test on ``test`` where the store has it (FERA2015's test set is not public) or else on ``devel``.
The synthetic set, which mimics DISFA, is cross-validated like DISFA.

Example:
    >>> train, held_out = fold_split(subject_parts("synthetic", ["a", "b", "c", "d"]), 1)
    >>> train, held_out
    (('b', 'c'), ('a', 'd'))
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

DISFA_FOLDS: tuple[tuple[str, ...], ...] = (
    ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
)
#: All 27 DISFA subjects, sorted.
DISFA_SUBJECTS: tuple[str, ...] = tuple(sorted(s for part in DISFA_FOLDS for s in part))
NUM_FOLDS = len(DISFA_FOLDS)
#: Datasets evaluated by subject-exclusive cross-validation; every other one by its partitions.
FOLD_DATASETS: tuple[str, ...] = ("disfa", "synthetic")

Protocol = Literal["folds", "partition"]


def fold_split(
    parts: Sequence[Sequence[str]], fold: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Training and held-out subjects of fold ``fold`` (1-based) of a three-part split.

    Fold k holds out part k (it validates and tests on it) and trains on the other parts.

    Raises:
        ValueError: for a fold outside 1..len(parts).
    """
    if not 1 <= fold <= len(parts):
        raise ValueError(f"fold must be one of 1..{len(parts)}, got {fold}")
    held_out = tuple(parts[fold - 1])
    train = tuple(s for k, part in enumerate(parts, 1) if k != fold for s in part)
    return train, held_out


def disfa_fold(fold: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Training and held-out subjects of DISFA fold ``fold`` (1-based).

    Fold k holds out part k (it validates and tests on it) and trains on the other two parts.

    Raises:
        ValueError: for a fold outside 1..3.
    """
    if not 1 <= fold <= NUM_FOLDS:
        raise ValueError(f"DISFA fold must be 1, 2 or 3, got {fold}")
    return fold_split(DISFA_FOLDS, fold)


def evaluation_protocol(dataset: str, has_partitions: bool) -> Protocol:
    """How a store is split: ``"folds"`` for DISFA and synthetic, else ``"partition"``.

    Raises:
        ValueError: for a dataset of neither kind (no fold protocol and no ``partition`` field).
    """
    if dataset in FOLD_DATASETS:
        return "folds"
    if has_partitions:
        return "partition"
    raise ValueError(
        f"dataset {dataset!r} has no 'partition' field and is not cross-validated by subject "
        f"folds (only {', '.join(FOLD_DATASETS)} are); rebuild the store with partitions"
    )


def subject_parts(dataset: str, subjects: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """The three subject parts that the folds of a fold-protocol store hold out.

    DISFA's subjects (and any store whose subjects are all DISFA's, such as a synthetic set
    named after them) get the standard :data:`DISFA_FOLDS`. Other subject names, e.g. a
    synthetic set's own, are dealt round-robin into three parts in sorted order: deterministic,
    subject-exclusive, and balanced to within one subject.

    Raises:
        ValueError: for a ``disfa`` store holding subjects that are not DISFA's.
    """
    present = sorted(set(subjects))
    unknown = sorted(set(present) - set(DISFA_SUBJECTS))
    if not unknown:
        return DISFA_FOLDS
    if dataset == "disfa":
        raise ValueError(
            f"subjects {unknown} are not among DISFA's 27 ({', '.join(DISFA_SUBJECTS)})"
        )
    return tuple(tuple(present[k::NUM_FOLDS]) for k in range(NUM_FOLDS))


def nested_subjects(subjects: Iterable[str], count: int, seed: int = 0) -> tuple[str, ...]:
    """The first ``count`` of the subjects in an order fixed by ``seed``: a nested subset.

    The data-efficiency study (``make curve``) trains on 1, 2, 4, ... of a fold's training
    subjects. The order is one random permutation of the sorted names per seed, so for one
    seed every smaller set is a subset of every larger one (the curve adds subjects, it does
    not swap them), and the same seed gives the same order on every machine.

    Raises:
        ValueError: for a count below 1 or above the number of subjects.
    """
    names = sorted(set(subjects))
    if not 1 <= count <= len(names):
        raise ValueError(f"train_subjects must be 1..{len(names)} (the fold's), got {count}")
    order = np.random.default_rng(seed).permutation(len(names))
    return tuple(names[k] for k in order[:count])


def rows_of(subjects: np.ndarray, chosen: Iterable[str]) -> np.ndarray:
    """Indices (int64, ascending) of the rows whose subject is in ``chosen``."""
    return np.flatnonzero(np.isin(subjects, list(chosen))).astype(np.int64)


def partition_rows(partitions: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of the official partitions by stage: ``train``, ``val`` (devel) and ``test``.

    ``test`` is the ``test`` partition where the store has one, else ``devel`` again (the
    paper reports FERA2015 on its development partition, Table 2). The arrays may be empty;
    the caller reports that with the file's name.
    """
    rows = {
        name: np.flatnonzero(partitions == name).astype(np.int64) for name in ("train", "devel")
    }
    test = np.flatnonzero(partitions == "test").astype(np.int64)
    return {
        "train": rows["train"],
        "val": rows["devel"],
        "test": test if len(test) else rows["devel"],
    }


def hashed_subject_split(
    subjects: Iterable[str], fraction: float
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A deterministic subject-exclusive (train, validation) split for landmark pre-training.

    Subjects are ordered by the CRC-32 of their name (stable across runs, machines and Python
    versions, unlike ``hash``) and the first ``ceil(fraction * n)`` of them, at least one and at
    most ``n - 1``, validate.

    Raises:
        ValueError: for fewer than two subjects or a fraction outside (0, 1).
    """
    present = sorted(set(subjects), key=lambda s: (zlib.crc32(s.encode()), s))
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    if len(present) < 2:
        raise ValueError(f"a subject-exclusive split needs two or more subjects, got {present}")
    count = min(max(int(np.ceil(fraction * len(present))), 1), len(present) - 1)
    return tuple(sorted(present[count:])), tuple(sorted(present[:count]))
