r"""ICC(3,1) and MSE per AU, as torchmetrics ``Metric``\ s and their functional twins.

ICC(3,1) is Shrout & Fleiss' (1979) intraclass correlation for a two-way mixed model,
consistency of single ratings, which the FERA challenges and the paper (Sec. 5.2) use to compare
a model's predictions (one "judge") with the ground truth (the other). For ``n`` targets (frames)
rated by ``k`` judges, with BMS the between-targets mean square and EMS the residual mean square
of the two-way ANOVA,

    ICC(3,1) = (BMS - EMS) / (BMS + (k - 1) EMS).

Both mean squares come from the k x k centred cross-product matrix ``C`` of the ratings
(``C = G - s s^T / n`` with ``G`` the raw cross products and ``s`` the column sums):
``(n - 1) BMS = sum(C) / k`` and ``(n - 1)(k - 1) EMS = trace(C) - sum(C) / k``. So ``n``, ``s`` and
``G`` are sufficient statistics: they add up over batches and over processes (DDP reduces them
with ``sum``), and the result is identical however the frames are split. For ``k = 2`` the formula
reduces to ``2 S_xy / (S_xx + S_yy)``.

Statistics accumulate in float64: 200,000 float32 frames sum to ~10^7, where float32 would keep
only one or two significant digits of the variance. The ICC is NaN for a column with fewer than
two known frames, or whose ratings are all constant (zero total variance); a constant ground
truth with varying predictions gives 0, as the definition (and pingouin) says. NaN targets are
ignored per column.

Reference: P. E. Shrout and J. L. Fleiss, "Intraclass correlations: uses in assessing rater
reliability", Psychological Bulletin 86(2), 1979 (the paper's [52]).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

# Relative size below which the total variance counts as zero (all ratings equal) rather than
# as float64 round-off of the centring: such a column has no defined ICC.
_ZERO_VARIANCE = 1e-12

__all__ = [
    "ICC",
    "MSE",
    "icc",
    "icc_from_ratings",
    "icc_from_statistics",
    "icc_statistics",
    "mse",
    "mse_from_statistics",
    "mse_statistics",
]


def _as_columns(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Check two N x K (or N) tensors and return them as float64 N x K."""
    if preds.shape != target.shape:
        raise ValueError(
            f"preds and target must have the same shape, got {tuple(preds.shape)} and "
            f"{tuple(target.shape)}"
        )
    if preds.ndim == 1:
        preds, target = preds.unsqueeze(1), target.unsqueeze(1)
    if preds.ndim != 2:
        raise ValueError(f"expected N x K tensors (frames x AUs), got {tuple(preds.shape)}")
    return preds.double(), target.double()


def _icc_update(ratings: Tensor, known: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sufficient statistics of N x K x R ratings (R judges) where ``known`` (N x K) is True.

    Returns:
        ``(count, sums, gram)``: K frames counted, K x R column sums, K x R x R cross products.
    """
    # Unknown entries become exact zeros; a NaN prediction for a known target stays NaN, so a
    # broken model shows up as a NaN ICC instead of being scored as predicting 0.
    ratings = ratings.masked_fill(~known.unsqueeze(-1), 0.0)
    count = known.sum(dim=0).to(ratings.dtype)
    sums = ratings.sum(dim=0)
    gram = torch.einsum("nkr,nks->krs", ratings, ratings)
    return count, sums, gram


def _icc_compute(count: Tensor, sums: Tensor, gram: Tensor) -> Tensor:
    """ICC(3,1) per column from the statistics of :func:`_icc_update`."""
    judges = sums.shape[-1]
    centred = gram - sums.unsqueeze(-1) * sums.unsqueeze(-2) / count.clamp_min(1)[..., None, None]
    total = centred.diagonal(dim1=-2, dim2=-1).sum(-1)  # (n-1)(BMS + (k-1) EMS)
    between = centred.sum(dim=(-2, -1)) / judges  # (n-1) BMS
    residual = (total - between) / (judges - 1)  # (n-1) EMS
    value = (between - residual) / total
    scale = gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    undefined = (count < 2) | (total <= _ZERO_VARIANCE * scale)
    return value.masked_fill(undefined, float("nan"))


def icc(preds: Tensor, target: Tensor) -> Tensor:
    """ICC(3,1) between predictions and ground truth, per column.

    Args:
        preds: N x K (or N) predicted intensities.
        target: N x K (or N) ground truth; NaN = unknown, ignored in that column.

    Returns:
        K ICC values (float64); NaN where undefined (see the module docstring).

    Example:
        >>> target = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, float("nan")]])
        >>> icc(target + 0.5, target)  # a constant offset does not lower ICC(3,1)
        tensor([1., 1.], dtype=torch.float64)
    """
    preds, target = _as_columns(preds, target)
    return _icc_compute(*_icc_update(torch.stack((preds, target), dim=-1), ~target.isnan()))


def icc_statistics(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The sufficient statistics of :func:`icc`: they add up over frames (and subjects).

    Returns:
        ``(count, sums, gram)``: K, K x 2 and K x 2 x 2 float64 (predictions, then targets).
    """
    preds, target = _as_columns(preds, target)
    return _icc_update(torch.stack((preds, target), dim=-1), ~target.isnan())


def icc_from_statistics(count: Tensor, sums: Tensor, gram: Tensor) -> Tensor:
    """ICC(3,1) per column from (sums of) :func:`icc_statistics`; leading dimensions batch."""
    return _icc_compute(count, sums, gram)


def icc_from_ratings(ratings: Tensor) -> Tensor:
    """ICC(3,1) of ``n`` targets rated by ``k`` judges: an n x k matrix, no missing values.

    This is the k-judge form of :func:`icc` (which is the k = 2 case, per AU).

    Args:
        ratings: n x k, one row per target, one column per judge.

    Returns:
        A scalar float64 tensor.
    """
    if ratings.ndim != 2 or ratings.shape[1] < 2:
        raise ValueError(f"ratings must be n targets x k >= 2 judges, got {tuple(ratings.shape)}")
    ratings = ratings.double().unsqueeze(1)  # n x 1 x k: one "AU"
    known = torch.ones(ratings.shape[:2], dtype=torch.bool, device=ratings.device)
    return _icc_compute(*_icc_update(ratings, known))[0]


def _mse_update(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-column sum of squared errors and count over known targets."""
    known = ~target.isnan()
    squared = (preds - target).square().masked_fill(~known, 0.0)
    return squared.sum(dim=0), known.sum(dim=0).to(preds.dtype)


def _mse_compute(sum_squared: Tensor, count: Tensor) -> Tensor:
    """Mean squared error per column; NaN for a column with no known target."""
    return sum_squared / count  # 0 / 0 = NaN is the intended result for an empty column


def mse(preds: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per column, ignoring NaN targets.

    Args:
        preds: N x K (or N) predicted intensities.
        target: N x K (or N) ground truth; NaN = unknown.

    Returns:
        K values (float64); NaN for a column without known targets.
    """
    preds, target = _as_columns(preds, target)
    return _mse_compute(*_mse_update(preds, target))


def mse_statistics(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """The sufficient statistics of :func:`mse`: per column, squared errors and known targets."""
    return _mse_update(*_as_columns(preds, target))


def mse_from_statistics(sum_squared: Tensor, count: Tensor) -> Tensor:
    """MSE per column from (sums of) :func:`mse_statistics`."""
    return _mse_compute(sum_squared, count)


class _PerColumnMetric(Metric):
    """Shared input handling for the per-AU metrics: N x K batches into float64 columns."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, num_outputs: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_outputs < 1:
            raise ValueError(f"num_outputs must be a positive number of AUs, got {num_outputs}")
        self.num_outputs = num_outputs

    def _columns(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        preds, target = _as_columns(preds, target)
        if preds.shape[1] != self.num_outputs:
            raise ValueError(
                f"{type(self).__name__}(num_outputs={self.num_outputs}) got {preds.shape[1]} "
                "columns"
            )
        return preds, target

    def _zeros(self, *shape: int) -> Tensor:
        return torch.zeros(self.num_outputs, *shape, dtype=torch.float64)


class ICC(_PerColumnMetric):
    """ICC(3,1) per AU between predictions and ground truth, exact under DDP and any batching.

    States are the sufficient statistics of :func:`icc` (frame counts, column sums and cross
    products per AU, float64) reduced with ``sum``. ``compute()`` returns K values; for K = 1
    torchmetrics returns them as a scalar tensor.

    Args:
        num_outputs: number of AUs (columns).
        **kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = ICC(num_outputs=2)
        >>> target = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, 0.0]])
        >>> metric.update(target[:2] * 2, target[:2])
        >>> metric.update(target[2:] * 2, target[2:])
        >>> metric.compute()
        tensor([0.8000, 0.8000], dtype=torch.float64)
    """

    higher_is_better = True

    def __init__(self, num_outputs: int = 1, **kwargs) -> None:
        super().__init__(num_outputs, **kwargs)
        self.add_state("count", default=self._zeros(), dist_reduce_fx="sum")
        self.add_state("sums", default=self._zeros(2), dist_reduce_fx="sum")
        self.add_state("gram", default=self._zeros(2, 2), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of N x K predictions and targets (NaN targets ignored)."""
        preds, target = self._columns(preds, target)
        count, sums, gram = _icc_update(torch.stack((preds, target), dim=-1), ~target.isnan())
        self.count += count
        self.sums += sums
        self.gram += gram

    def compute(self) -> Tensor:
        """ICC(3,1) of every AU over all frames seen (K values, NaN where undefined)."""
        return _icc_compute(self.count, self.sums, self.gram)


class MSE(_PerColumnMetric):
    """Mean squared error per AU, ignoring NaN targets; float64 ``sum``-reduced states.

    Args:
        num_outputs: number of AUs (columns).
        **kwargs: passed to :class:`torchmetrics.Metric`.
    """

    higher_is_better = False

    def __init__(self, num_outputs: int = 1, **kwargs) -> None:
        super().__init__(num_outputs, **kwargs)
        self.add_state("sum_squared", default=self._zeros(), dist_reduce_fx="sum")
        self.add_state("count", default=self._zeros(), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of N x K predictions and targets (NaN targets ignored)."""
        sum_squared, count = _mse_update(*self._columns(preds, target))
        self.sum_squared += sum_squared
        self.count += count

    def compute(self) -> Tensor:
        """MSE of every AU over all frames seen (K values, NaN for an AU never labelled)."""
        return _mse_compute(self.sum_squared, self.count)
