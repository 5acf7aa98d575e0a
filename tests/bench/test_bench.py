"""The benchmarks' moving parts: the naive targets reference, the runner, the recorder.

Each benchmark runs here on tiny sizes (seconds); the figures themselves are not checked.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

import bench.common
import bench.inference as bench_inference
from aunet.heatmaps import au_targets
from bench.__main__ import main as run_benchmarks
from bench.common import Limit, flop_rate, images_rate
from bench.data_pipeline import main as data_pipeline
from bench.heatmaps import AUS, numpy_targets, random_labels
from bench.inference import main as inference
from bench.train_step import main as train_step

LIMIT_BESIDE = "of the limit P/F = "


@pytest.fixture
def benchmarks_md(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Rows go to a temporary BENCHMARKS.md."""
    path = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(bench.common, "BENCHMARKS_MD", path)
    return path


@pytest.mark.parametrize(("image_size", "heatmap_size", "sigmas"), [
    (256, 64, ()), (128, 32, ()), (64, 16, (1.5, 4.0)),
])  # fmt: skip
def test_numpy_targets_match_batched_au_targets(image_size, heatmap_size, sigmas):
    landmarks, intensities = random_labels(6, seed=3)
    landmarks *= image_size / 256
    landmarks[0, 21] = np.nan  # AU01/AU04 lose their left and centre Gaussians
    landmarks[1, [48, 54, 51]] = np.nan  # AU12/15/20 lose every Gaussian
    intensities[1] = 3.0
    intensities[2, 0] = np.nan
    maps, mask = zip(
        *(numpy_targets(p, a, AUS, image_size, heatmap_size, *sigmas)
          for p, a in zip(landmarks, intensities, strict=True)),
        strict=True,
    )  # fmt: skip
    targets, batched_mask = au_targets(
        torch.from_numpy(landmarks), torch.from_numpy(intensities), AUS, image_size,
        heatmap_size, *sigmas,
    )  # fmt: skip
    np.testing.assert_allclose(np.stack(maps), targets.numpy(), atol=1e-5)
    np.testing.assert_array_equal(np.stack(mask), batched_mask.numpy())
    assert not mask[1][AUS.index("AU12")] and not mask[2][0]  # undrawable, unknown label


def test_numpy_targets_peak_is_the_intensity_at_the_rounded_centre():
    landmarks = np.full((68, 2), 100.0, np.float32)
    landmarks[[48, 54]] = [[81.0, 150.0], [170.0, 151.0]]  # AU12's Gaussians: mouth corners
    maps, mask = numpy_targets(landmarks, np.array([4.0]), ("AU12",), 256, 64)
    assert mask.tolist() == [True]
    assert maps[0, 38, 20] == pytest.approx(4.0)  # (81/4, 150/4) rounds to x 20, y 38
    assert maps[0, 38, 42] == pytest.approx(4.0)  # (42.5, 37.75) rounds to x 42, y 38
    assert maps.max() == pytest.approx(4.0)


def test_record_appends_a_dated_row_under_its_section(benchmarks_md):
    bench.common.record("First", {"speed": "1 img/s"}, command="python -m bench.x")
    bench.common.record("Second", {"speed": "2 img/s"}, command="python -m bench.y")
    bench.common.record("First", {"speed": "3 img/s"}, command="python -m bench.x")
    text = benchmarks_md.read_text()
    first = text[text.index("## First") : text.index("## Second")]
    assert "speed: 1 img/s" in first and "speed: 3 img/s" in first
    assert first.index("1 img/s") < first.index("3 img/s")
    assert "3 img/s" not in text[text.index("## Second") :]
    assert text.count("| `python -m bench.x` |") == 2
    assert "torch threads: " in first and "load average (1, 5 min): " in first


def test_runner_runs_one_benchmark_and_records_its_duration(benchmarks_md):
    seconds = run_benchmarks(["--quick", "--only", "heatmaps", "--threads", "1"])
    assert list(seconds) == ["heatmaps"]
    text = benchmarks_md.read_text()
    assert "naive / batched" in text.split("## Heatmap targets")[1]
    assert (
        "`python -m bench --threads 1 --quick --only heatmaps`"
        in text.split("## Benchmark runs")[1]
    )


def test_limit_is_peak_over_flops_and_share_its_fraction():
    limit = Limit(peak_gflops=195.0, gflops_per_image=9.1)  # the reparam: P/F ~ 21.5
    assert limit.images_per_s == pytest.approx(21.428, abs=1e-3)
    assert limit.share(14.2) == pytest.approx(0.6627, abs=1e-4)
    assert limit.share(limit.images_per_s) == pytest.approx(1.0)
    assert limit.describe(14.2) == (
        "14.2 img/s = 66% of the limit P/F = 195 GFLOP/s / 9.10 GFLOP = 21.4 img/s"
    )
    gpu = Limit(peak_gflops=790e3, gflops_per_image=15.8)
    assert gpu.images_per_s == pytest.approx(50_000.0)
    assert gpu.describe(10_000, "frames/s") == (
        "10,000 frames/s = 20% of the limit P/F = 790 TFLOP/s / 15.80 GFLOP = 50,000 frames/s"
    )
    assert [images_rate(x) for x in (1.354, 14.24, 143.4)] == ["1.35 img/s", "14.2 img/s",
                                                                 "143 img/s"]  # fmt: skip
    assert flop_rate(9_999.0) == "9999 GFLOP/s"


def test_train_step_runs_tiny_and_counts_the_same_flops_both_ways(benchmarks_md, capsys):
    results = train_step(
        ["--batch-size", "2", "--steps", "1", "--image-size", "64", "--strategies", "adapt",
         "--configurations", "default", "naive", "--threads", "1"]
    )  # fmt: skip
    default, naive = results["adapt"]["default"], results["adapt"]["naive"]
    # The same network; only the batched targets' landmark averaging (an einsum) adds FLOPs.
    assert default["gflops_per_image"] == pytest.approx(naive["gflops_per_image"], rel=1e-3)
    assert default["images_per_s"] > 0 and naive["images_per_s"] > 0
    assert "default / naive" in benchmarks_md.read_text()
    printed = {line.split(":")[0].strip(): line for line in capsys.readouterr().out.splitlines()}
    for configuration in ("default", "naive"):
        assert LIMIT_BESIDE in printed[configuration]  # every rate beside its limit


def test_inference_prints_the_limit_beside_every_rate(benchmarks_md, capsys):
    arguments = ["--frames", "6", "--batch-size", "4", "--image-sizes", "64", "--threads", "1"]
    inference([*arguments, "--redetect-every", "1", "3"])
    rates = [line for line in capsys.readouterr().out.splitlines() if "frames/s" in line]
    assert len(rates) == 3  # end to end searching every frame, one in 3, the network alone
    assert all(LIMIT_BESIDE in line for line in rates)
    assert "detector every 3 frames" in rates[1] and "intensities off by at most" in rates[1]
    row = benchmarks_md.read_text().split("## Inference")[1]
    assert "--image-sizes 64 --redetect-every 1 3`" in row and row.count(LIMIT_BESIDE) == 3


def test_inference_difference_compares_the_frames_both_runs_found_a_face(tmp_path):
    header = "frame,face_id,timestamp,confidence,success,AU01_r,AU02_r,AU04_r\n"
    first = tmp_path / "first.csv"
    first.write_text(header + "1,0,0,0.9,1,1.0,nan,2.0\n2,0,0.04,0.9,1,3.0,nan,0.0\n")
    second = tmp_path / "second.csv"
    second.write_text(header + "1,0,0,0.9,1,1.5,nan,2.0\n2,0,0.04,0,0,0,nan,0\n")
    # Frame 2 has no face in the second run: only frame 1 counts (|1.5 - 1|, |2 - 2|).
    assert bench_inference.difference(first, second) == (
        "intensities off by at most 0.500 (mean 0.2500) on 1 frames both scored; faces 1 vs 2"
    )


def test_data_pipeline_runs_tiny_for_both_encodings(benchmarks_md):
    results = data_pipeline(["--frames", "12", "--batch-size", "4", "--image-size", "64"])
    assert list(results) == ["jpeg", "raw"]
    for result in results.values():
        assert result["images_per_worker_cpu_s"] > 0 and result["max_rss_mib"] > 0
    assert benchmarks_md.read_text().count("## Data pipeline") == 1
