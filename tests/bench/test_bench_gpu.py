"""The one-shot GPU benchmark, dry-run on the CPU: every code path but the CUDA-only calls."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import bench.common
from bench.gpu import (
    BF16_PEAK_TFLOPS,
    Settings,
    StrategyResult,
    largest_batch,
    main,
    rate_at_sizes,
    table_peak,
)


@pytest.fixture
def benchmarks_md(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where rows would go: a temporary BENCHMARKS.md."""
    path = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(bench.common, "BENCHMARKS_MD", path)
    return path


def settings(batch_size: int, max_batch: int) -> Settings:
    return Settings(
        device=torch.device("cpu"), bf16=False, image_size=64, batch_size=batch_size,
        max_batch=max_batch, seconds=0.0, warmup=0, min_steps=1, compile_backend="eager",
        workers=(1,), loader_frames=12, time_limit=60.0,
    )  # fmt: skip


def oom_above(limit: int, tried: list[int]) -> Callable[[int], Callable[[], None]]:
    """Steps of each batch size that run out of memory above ``limit``; ``tried`` logs them."""

    def make_step(batch: int) -> Callable[[], None]:
        def step() -> None:
            tried.append(batch)
            if batch > limit:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")

        return step

    return make_step


def test_largest_batch_doubles_until_out_of_memory():
    tried: list[int] = []
    make_step = oom_above(200, tried)

    def fits(batch: int) -> None:
        make_step(batch)()

    assert largest_batch(fits, settings(48, 10_000)) == 192
    assert tried == [48, 96, 192, 384]
    assert largest_batch(fits, settings(48, 96)) == 96  # capped
    assert largest_batch(fits, settings(300, 10_000)) is None  # not even the first


def test_rates_are_timed_at_the_first_batch_and_the_largest_where_they_fit():
    result = StrategyResult(train_gflops=1.0)
    assert rate_at_sizes(result, "train", oom_above(96, []), settings(48, 1000)) == 96
    assert list(result.rates) == ["train, batch 48", "train, batch 96"]
    nothing = StrategyResult(train_gflops=1.0)
    assert rate_at_sizes(nothing, "inference", oom_above(0, []), settings(48, 1000)) is None
    assert nothing.rates == {}  # batch 48 itself does not fit: nothing timed, no crash


def test_the_peak_table_matches_cuda_device_names():
    assert table_peak("NVIDIA H200")[0] == 790.0  # the figure
    assert table_peak("NVIDIA H100 PCIe")[0] == 756.0  # before the SXM part's "H100"
    assert table_peak("NVIDIA H100 80GB HBM3")[0] == 989.0
    assert table_peak("NVIDIA A100-SXM4-80GB")[0] == 312.0
    assert table_peak("Tesla T4") is None
    assert all(source for _, _, source in BF16_PEAK_TFLOPS)  # every number says where it is from


def test_without_a_gpu_it_says_so_and_measures_nothing(benchmarks_md, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code == 1
    assert "no CUDA GPU here" in capsys.readouterr().err
    assert not benchmarks_md.exists()


def test_cpu_dry_run_measures_every_figure_and_records_nothing(benchmarks_md, capsys):
    results = main(
        ["--device", "cpu", "--quick", "--no-record", "--threads", "1",
         "--strategies", "adapt", "reparam", "resnet18", "--compile", "adapt"]
    )  # fmt: skip
    assert list(results) == ["adapt", "reparam", "resnet18"]  # heatmaps, folded, intensities
    for result in results.values():
        assert result.largest_train == result.largest_infer == 4  # doubled from 2 up to the cap
        assert {"train, batch 2", "train, batch 4", "inference, batch 2", "inference, batch 4"} <= (
            result.rates.keys()
        )
        assert result.train_gflops > 0 and result.infer_gflops > 0
    compiled = results["adapt"]
    assert {"train, batch 2, compiled", "train, batch 4, compiled"} <= compiled.rates.keys()
    assert all(rate > 0 for result in results.values() for rate in result.rates.values())
    out = capsys.readouterr().out
    figures = [line.strip() for line in out.splitlines() if "img/s" in line]
    rates = [line for line in figures if line.startswith(("train", "inference"))]
    assert len(rates) == 4 * 3 + 2 and all("of the limit P/F = " in line for line in rates)
    assert "1 workers, JPEG store: " in out and "x the fastest training rate" in out
    assert "device decode: not measured: aunet has no device-decode path yet" in out
    assert "skipped (time limit): nothing" in out
    assert not benchmarks_md.exists()  # --no-record
