"""Confidence intervals for ICC and MSE from a bootstrap over subjects.

The frames of one subject are not independent (the same face, lighting and labeller, seconds
apart), so resampling frames would count 130,000 DISFA frames as 130,000 pieces of evidence
when there are 27 people: its intervals would be far too narrow. The unit resampled here is
the subject: each resample draws as many subjects as there are, with replacement, and keeps
all of a drawn subject's frames (once per draw). The interval is the percentile interval of
the statistic over the resamples (Efron & Tibshirani, *An Introduction to the Bootstrap*,
1993, ch. 13), at 95% unless asked otherwise.

ICC(3,1) and MSE have additive sufficient statistics (:mod:`aunet.metrics`), so a resample's
statistics are the per-subject statistics weighted by how often each subject was drawn: one
matrix product for all resamples, not a pass over the frames per resample.

Two methods scored on the same frames are compared *paired*: the same resamples of subjects
for both, and the interval of the difference of their mean ICC. When it excludes 0, the
difference is unlikely to be one drawn set of subjects' luck.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aunet.metrics import (
    icc_from_statistics,
    icc_statistics,
    mse_from_statistics,
    mse_statistics,
)

if TYPE_CHECKING:  # cv imports this module; the type only
    from aunet.evaluation.predictions import Predictions

#: Defaults: resamples (enough for the 2.5% and 97.5% percentiles to be stable to about
#: 0.005 ICC on DISFA-sized data), the generator's seed, and the interval's coverage.
RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
#: A per-AU interval is given only when the statistic is defined in at least this share of
#: the resamples (an AU active in one subject only is undefined whenever that one is not drawn).
MIN_DEFINED = 0.9


@dataclass(frozen=True)
class BootstrapSettings:
    """How intervals are drawn; recorded beside them.

    Args:
        resamples: number of resamples of the subjects.
        seed: seed of the generator that draws them (same seed, same subjects: the same draws).
        level: the interval's coverage (0.95: the 2.5% and 97.5% percentiles).
    """

    resamples: int = RESAMPLES
    seed: int = SEED
    level: float = LEVEL

    def __post_init__(self) -> None:
        if self.resamples < 2:
            raise ValueError(f"resamples must be at least 2, got {self.resamples}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must lie in (0, 1), got {self.level}")

    def record(self, subjects: int) -> dict[str, Any]:
        """The settings as stored in reports, with what was resampled."""
        return {**asdict(self), "unit": "subject", "subjects": subjects}


@dataclass(frozen=True)
class SubjectStatistics:
    """Sufficient statistics of ICC(3,1) and MSE per subject and AU.

    Attributes:
        subjects: the S subject names, sorted (resamples are drawn over this order).
        count, sums, gram: S x K, S x K x 2 and S x K x 2 x 2 float64 (:mod:`aunet.metrics`).
        squared, known: S x K sums of squared errors and of known targets.
    """

    subjects: tuple[str, ...]
    count: torch.Tensor
    sums: torch.Tensor
    gram: torch.Tensor
    squared: torch.Tensor
    known: torch.Tensor

    @classmethod
    def of(cls, predictions: Predictions) -> SubjectStatistics:
        """The statistics of each subject's frames."""
        subjects = tuple(sorted(set(predictions.subject)))
        if not subjects:
            raise ValueError("no predictions to bootstrap")
        parts = []
        for subject in subjects:
            rows = predictions.subject == subject
            pred = torch.from_numpy(predictions.pred[rows])
            true = torch.from_numpy(predictions.true[rows])
            parts.append((*icc_statistics(pred, true), *mse_statistics(pred, true)))
        stacked = [torch.stack(column) for column in zip(*parts, strict=True)]
        return cls(subjects, *stacked)

    def scores(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """ICC and MSE per AU (R x K) and their means over defined AUs (R) for R x S weights."""

        def weighted(statistic: torch.Tensor) -> torch.Tensor:
            return torch.einsum("rs,s...->r...", weights, statistic)

        icc = icc_from_statistics(weighted(self.count), weighted(self.sums), weighted(self.gram))
        mse = mse_from_statistics(weighted(self.squared), weighted(self.known))
        return {"icc": icc, "mse": mse, "icc_mean": icc.nanmean(-1), "mse_mean": mse.nanmean(-1)}


#: The settings reports use unless told otherwise.
DEFAULT_SETTINGS = BootstrapSettings()


def subject_draws(subjects: int, settings: BootstrapSettings) -> torch.Tensor:
    """R x S float64: how often each subject is drawn in each resample (each row sums to S)."""
    generator = np.random.default_rng(settings.seed)
    counts = generator.multinomial(subjects, np.full(subjects, 1.0 / subjects), settings.resamples)
    return torch.from_numpy(counts.astype(np.float64))


def percentile_interval(samples: torch.Tensor, level: float) -> list[float] | None:
    """The [low, high] percentiles of the defined samples; None if too few are defined."""
    defined = samples[samples.isfinite()]
    if defined.numel() < MIN_DEFINED * samples.numel() or defined.numel() < 2:
        return None
    tail = (1 - level) / 2
    low, high = torch.quantile(defined, torch.tensor([tail, 1 - tail], dtype=defined.dtype))
    return [float(low), float(high)]


def intervals(predictions: Predictions, settings: BootstrapSettings) -> dict[str, Any]:
    """Subject-bootstrap intervals of every figure :func:`aunet.evaluation.cv.score` reports.

    Returns:
        ``{"icc": {"AU01": [low, high] or None, ...}, "mse": {...}, "icc_mean": [low, high],
        "mse_mean": [...], "bootstrap": settings.record(...)}``.
    """
    return seed_mean_intervals([predictions], settings)


def seed_mean_intervals(
    seeds: Sequence[Predictions], settings: BootstrapSettings
) -> dict[str, Any]:
    """Intervals of the mean over seeds of each figure, as :func:`intervals` for one seed.

    Every seed's predictions (the same frames, predicted by the runs of one seed) are scored
    on the same resamples of subjects, and each resample's figure is the mean of the seeds'
    figures: the interval is that of the seed mean a report gives, and the subjects' luck is
    not counted once per seed. For one seed it is :func:`intervals`, value for value.

    Returns:
        As :func:`intervals`; ``bootstrap`` also records ``seeds`` when there are several.

    Raises:
        ValueError: for no seeds, or seeds of different subjects or AUs.
    """
    if not seeds:
        raise ValueError("no predictions to bootstrap")
    statistics = [SubjectStatistics.of(predictions) for predictions in seeds]
    first = statistics[0]
    same_aus = len({predictions.au_names for predictions in seeds}) == 1
    if not same_aus or any(each.subjects != first.subjects for each in statistics):
        raise ValueError("the seeds' predictions cover different subjects or AUs")
    draws = subject_draws(len(first.subjects), settings)
    per_seed = [s.scores(draws) for s in statistics]
    samples = {key: torch.stack([each[key] for each in per_seed]).mean(0) for key in per_seed[0]}
    result: dict[str, Any] = {}
    for metric in ("icc", "mse"):
        result[metric] = {
            au: percentile_interval(samples[metric][:, k], settings.level)
            for k, au in enumerate(seeds[0].au_names)
        }
        result[f"{metric}_mean"] = percentile_interval(samples[f"{metric}_mean"], settings.level)
    result["bootstrap"] = settings.record(len(first.subjects))
    if len(seeds) > 1:
        result["bootstrap"]["seeds"] = len(seeds)
    return result


def paired_difference(
    first: Predictions | Sequence[Predictions],
    second: Predictions | Sequence[Predictions],
    settings: BootstrapSettings,
) -> dict[str, Any]:
    """Mean ICC of ``first`` minus that of ``second`` on the same subjects, with its interval.

    Both are scored on each resample of subjects (the same draws), so what the subjects have
    in common (some are harder for every method) cancels out of the difference. A method given
    as several seeds' predictions is scored as their mean ICC (as
    :func:`seed_mean_intervals`), on the same draws for every seed.

    Returns:
        ``{"difference": d, "interval": [low, high] or None, "excludes_zero": bool}``.

    Raises:
        ValueError: when the two were not scored on the same subjects and AUs.
    """
    firsts, seconds = ([p] if not isinstance(p, Sequence) else list(p) for p in (first, second))
    a, b = ([SubjectStatistics.of(p) for p in seeds] for seeds in (firsts, seconds))
    subjects = {each.subjects for each in (*a, *b)}
    au_names = {p.au_names for p in (*firsts, *seconds)}
    if len(subjects) != 1 or len(au_names) != 1:
        raise ValueError(
            "a paired comparison needs predictions of the same subjects and AUs; got "
            f"{sorted(len(names) for names in subjects)} subjects, AUs {sorted(au_names)}"
        )

    def seed_mean_icc(statistics: list[SubjectStatistics], weights: torch.Tensor) -> torch.Tensor:
        return torch.stack([each.scores(weights)["icc_mean"] for each in statistics]).mean(0)

    count = len(a[0].subjects)
    draws = subject_draws(count, settings)
    every_subject_once = torch.ones(1, count, dtype=torch.float64)
    difference = float(
        seed_mean_icc(a, every_subject_once)[0] - seed_mean_icc(b, every_subject_once)[0]
    )
    interval = percentile_interval(
        seed_mean_icc(a, draws) - seed_mean_icc(b, draws), settings.level
    )
    excludes = interval is not None and (interval[0] > 0 or interval[1] < 0)
    return {"difference": difference, "interval": interval, "excludes_zero": excludes}


def format_interval(interval: Sequence[float] | None, digits: int = 3) -> str:
    """``[low, high]`` at ``digits`` decimals, or ``n/a``."""
    if interval is None:
        return "n/a"
    return f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
