"""ICC(3,1) and MSE against independent references: pingouin, Shrout & Fleiss (1979), numpy."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from references import pingouin_icc31

from aunet.metrics import ICC, MSE, icc, icc_from_ratings, mse


def random_labels(n: int, k: int, seed: int, nan_fraction: float = 0.1):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 6, size=(n, k)).astype(np.float64)
    preds = np.clip(target + rng.normal(0, 1.0, size=(n, k)) + rng.normal(0, 0.5, k), 0, 5)
    target[rng.random((n, k)) < nan_fraction] = np.nan
    return torch.tensor(preds), torch.tensor(target)


def test_icc_matches_pingouin_per_column_with_nan_targets():
    preds, target = random_labels(n=60, k=4, seed=1, nan_fraction=0.2)
    values = icc(preds, target)
    for column in range(4):
        known = ~torch.isnan(target[:, column])
        expected = pingouin_icc31(preds[known, column].numpy(), target[known, column].numpy())
        assert values[column].item() == pytest.approx(expected, abs=1e-10)


def test_shrout_fleiss_published_example():
    # Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; ICC(3,1) = 0.71.
    ratings = torch.tensor(
        [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    )
    assert icc_from_ratings(ratings).item() == pytest.approx(0.7148, abs=5e-5)
    assert round(icc_from_ratings(ratings).item(), 2) == 0.71


def test_two_rater_form_equals_k_rater_form():
    preds, target = random_labels(n=30, k=1, seed=2, nan_fraction=0.0)
    pair = torch.cat([preds, target], dim=1)
    assert icc(preds, target)[0].item() == pytest.approx(icc_from_ratings(pair).item(), abs=1e-12)


def test_metric_batch_by_batch_equals_all_at_once():
    preds, target = random_labels(n=97, k=3, seed=3)
    icc_metric, mse_metric = ICC(num_outputs=3), MSE(num_outputs=3)
    for start in range(0, 97, 10):  # uneven last batch
        icc_metric.update(preds[start : start + 10].float(), target[start : start + 10].float())
        mse_metric.update(preds[start : start + 10].float(), target[start : start + 10].float())
    torch.testing.assert_close(icc_metric.compute(), icc(preds.float(), target.float()))
    torch.testing.assert_close(mse_metric.compute(), mse(preds.float(), target.float()))


def test_float32_inputs_accumulate_exactly_over_200k_frames():
    # Intensities near 3 with small differences: summing squares of 200,000 of them in float32
    # keeps ~7 digits of ~2e6, too few for the variance; the float64 states keep them all.
    rng = np.random.default_rng(4)
    target = (3.0 + rng.normal(0, 0.01, 200_000)).astype(np.float32)
    preds = (target + rng.normal(0, 0.005, 200_000)).astype(np.float32)
    metric = ICC(num_outputs=1)
    for chunk in np.array_split(np.arange(200_000), 50):
        metric.update(torch.from_numpy(preds[chunk]), torch.from_numpy(target[chunk]))
    x, y = preds.astype(np.float64), target.astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    expected = 2 * (x * y).sum() / ((x * x).sum() + (y * y).sum())  # ICC(3,1) for two raters
    assert metric.compute().item() == pytest.approx(expected, abs=1e-9)  # K = 1: a scalar


def test_undefined_cases_give_nan_not_exceptions():
    constant = torch.full((10, 1), 2.0)
    assert torch.isnan(icc(constant, constant)).all()  # no variance at all
    assert torch.isnan(icc(torch.tensor([1.0]), torch.tensor([2.0]))).all()  # one frame
    assert torch.isnan(icc(torch.tensor([1.0, 2.0]), torch.tensor([float("nan")] * 2))).all()
    assert torch.isnan(mse(torch.tensor([[1.0]]), torch.tensor([[float("nan")]]))).all()
    assert torch.isnan(ICC(num_outputs=2).compute()).all()


def test_constant_truth_with_varying_predictions_scores_zero_like_pingouin():
    preds = torch.linspace(0, 5, 12, dtype=torch.float64)
    target = torch.zeros(12, dtype=torch.float64)
    expected = pingouin_icc31(preds.numpy(), target.numpy())
    assert icc(preds, target)[0].item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.0, abs=1e-12)


def test_nan_prediction_for_a_known_target_is_not_hidden():
    preds, target = random_labels(n=20, k=2, seed=5, nan_fraction=0.0)
    preds[3, 1] = float("nan")
    values = icc(preds, target)
    assert torch.isfinite(values[0]) and torch.isnan(values[1])
    assert torch.isnan(mse(preds, target)[1])


def test_nan_prediction_where_target_is_unknown_is_ignored():
    preds, target = random_labels(n=20, k=1, seed=6, nan_fraction=0.0)
    expected_icc, expected_mse = icc(preds[1:], target[1:]), mse(preds[1:], target[1:])
    preds[0, 0], target[0, 0] = float("nan"), float("nan")
    torch.testing.assert_close(icc(preds, target), expected_icc)
    torch.testing.assert_close(mse(preds, target), expected_mse)


def test_mse_matches_numpy():
    preds, target = random_labels(n=50, k=3, seed=7)
    expected = np.nanmean((preds.numpy() - target.numpy()) ** 2, axis=0)
    np.testing.assert_allclose(mse(preds, target).numpy(), expected, rtol=1e-12)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="same shape"):
        icc(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="num_outputs=2"):
        ICC(num_outputs=2).update(torch.zeros(4, 3), torch.zeros(4, 3))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, preds, target, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        icc_metric, mse_metric = ICC(num_outputs=preds.shape[1]), MSE(num_outputs=preds.shape[1])
        shard = slice(0, 41) if rank == 0 else slice(41, None)  # unequal shards, no padding
        icc_metric.update(preds[shard], target[shard])
        mse_metric.update(preds[shard], target[shard])
        results[rank] = (icc_metric.compute(), mse_metric.compute())
    finally:
        dist.destroy_process_group()


def test_ddp_synced_value_equals_single_process():
    preds, target = random_labels(n=100, k=3, seed=8)
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), preds, target, results), nprocs=2, join=True)
    for rank in (0, 1):
        torch.testing.assert_close(results[rank][0], icc(preds, target))
        torch.testing.assert_close(results[rank][1], mse(preds, target))
