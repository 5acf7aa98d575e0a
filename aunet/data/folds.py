"""Subject-exclusive evaluation protocols: the three DISFA folds and the FERA partitions.

DISFA has no official split; the paper (Sec. 5.1) follows existing work with a three-fold,
subject-exclusive cross-validation and reports ICC on the aggregated out-of-fold predictions.
These are the standard three parts of the 27 subjects used by that line of work.
"""

from __future__ import annotations

DISFA_FOLDS: tuple[tuple[str, ...], ...] = (
    ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
)
#: All 27 DISFA subjects, sorted.
DISFA_SUBJECTS: tuple[str, ...] = tuple(sorted(s for part in DISFA_FOLDS for s in part))
NUM_FOLDS = len(DISFA_FOLDS)


def disfa_fold(fold: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Training and held-out subjects of DISFA fold ``fold`` (1-based).

    Fold k holds out part k (it validates and tests on it) and trains on the other two parts.

    Raises:
        ValueError: for a fold outside 1..3.
    """
    if not 1 <= fold <= NUM_FOLDS:
        raise ValueError(f"DISFA fold must be 1, 2 or 3, got {fold}")
    held_out = DISFA_FOLDS[fold - 1]
    train = tuple(s for k, part in enumerate(DISFA_FOLDS, 1) if k != fold for s in part)
    return train, held_out
