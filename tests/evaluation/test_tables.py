"""make table: the table builder on fake reports, the paper's numbers, skipping finished runs."""

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_factories import make_command, run_make, save_checkpoint, tiny_disfa_project
from test_cv import finished_run
from torch import nn

from aunet import launch
from aunet.aus import DATASET_AUS
from aunet.evaluation import cv, table_rows, tables
from aunet.evaluation.bootstrap import BootstrapSettings, intervals
from aunet.evaluation.paper_results import (
    AVERAGE,
    COMPARISON_ROWS,
    PAPER_COMPARISONS,
    PAPER_TABLE_5,
    PAPER_TABLES,
)
from aunet.evaluation.table_rows import (
    EXPERIMENT_ORDER,
    METHOD_NAMES,
    TableError,
    missing_experiments,
    order_experiments,
    report_file,
    table_folder,
)
from aunet.launch import slurm, studies
from aunet.models import FANConfig
from aunet.training import AUHeatmapModule

REPO = Path(__file__).resolve().parents[2]
AUS = ("AU01", "AU02", "AU04")
# Two small FAN layouts, so that rows over them cost visibly different amounts.
FAN_A = FANConfig(width=16, depth=2)
FAN_B = FANConfig(num_stacks=2, width=8, depth=2)
# Hand-picked per-AU values: AU01 ICC is a tie between scratch and adapt at two decimals
# (0.612 and 0.608 both print 0.61), AU04 is undefined for reparam.
ICC = {
    "scratch": {"AU01": 0.612, "AU02": 0.30, "AU04": 0.10},
    "reparam": {"AU01": 0.20, "AU02": 0.55, "AU04": None},
    "adapt": {"AU01": 0.608, "AU02": 0.40, "AU04": 0.05},
}
MSE = {
    "scratch": {"AU01": 0.50, "AU02": 0.31, "AU04": 0.90},
    "reparam": {"AU01": 0.40, "AU02": 0.30, "AU04": None},
    "adapt": {"AU01": 0.45, "AU02": 0.32, "AU04": 0.70},
}


def _mean(values: dict) -> float:
    return float(np.mean([v for v in values.values() if v is not None]))


def fake_report(
    root: Path, experiment: str, dataset: str = "disfa", extra=("--x", "1"), run_dirs=(),
    held_out: str | None = None,
) -> Path:  # fmt: skip
    """A report.json and plan.json as `make cv` leaves them, naming ``run_dirs`` as its runs.

    Each run held out its fold (1, 2, ...), or the partition ``held_out``.
    """
    folder = cv.cv_folder(experiment, dataset, root)
    folder.mkdir(parents=True)
    runs = [{"label": f"fold{i}", "run_dir": str(run), "held_out": held_out or str(i)}
            for i, run in enumerate(run_dirs, 1)]  # fmt: skip
    report = {"icc": ICC[experiment], "mse": MSE[experiment], "icc_mean": _mean(ICC[experiment]),
              "mse_mean": _mean(MSE[experiment]), "frames": 54, "checkpoint": "last",
              "runs": runs}  # fmt: skip
    (folder / "report.json").write_text(json.dumps(report))
    plan = {"experiment": experiment, "dataset": dataset, "fan": None, "checkpoint": "last",
            "extra": list(extra), "tasks": []}  # fmt: skip
    (folder / "plan.json").write_text(json.dumps(plan))
    return folder / "report.json"


def untrained_runs(
    root: Path, experiment: str, fan: FANConfig, image_size: int, folds: int = 3
) -> tuple[list[Path], AUHeatmapModule]:
    """Run folders with an untrained ``last.ckpt`` of ``experiment`` over a ``fan``-shaped FAN."""
    # scratch ignores a given FAN: its own strategy option shapes it like ``fan``.
    shape = {"fan_config": dataclasses.asdict(fan)} if experiment == "scratch" else {}
    module = AUHeatmapModule(experiment, AUS, fan_config=dataclasses.asdict(fan),
                             strategy_args=shape, image_size=image_size)  # fmt: skip
    runs = [
        root / "runs" / experiment / "disfa" / f"fold{k}" / "stamp" for k in range(1, folds + 1)
    ]
    for run in runs:
        save_checkpoint(module, run / "checkpoints" / "last.ckpt")
    return runs, module


def independent_count(module: AUHeatmapModule, image_size: int) -> tuple[int, int, float]:
    """Parameters, trainable parameters and GFLOPs of a real forward pass, counted by hooks.

    These networks are convolutions only: 2 FLOPs per multiply-add, (C_in / groups) x k x k
    multiply-adds per output value.
    """
    network = module.model.eval()
    flops = 0

    def count(layer: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal flops
        flops += (
            2 * output.numel() * layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        )

    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    handles = [conv.register_forward_hook(count) for conv in convs]
    with torch.no_grad():
        network(torch.rand(1, 3, image_size, image_size))
    for handle in handles:
        handle.remove()
    params = sum(p.numel() for p in network.parameters())
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    return params, trainable, flops / 1e9


@pytest.fixture
def reports(tmp_path, monkeypatch) -> Path:
    """Reports for scratch, reparam and adapt on DISFA in tmp_path/runs/cv; cwd = tmp_path.

    Only scratch's report names run folders (untrained, over FAN_A at 32 px).
    """
    monkeypatch.chdir(tmp_path)
    scratch_runs, _ = untrained_runs(Path(), "scratch", FAN_A, 32)
    for experiment in ICC:
        fake_report(
            cv.CV_ROOT, experiment, run_dirs=scratch_runs if experiment == "scratch" else ()
        )
    return tmp_path


def table_lines(markdown: str, first: str) -> list[str]:
    """The lines of the Markdown table whose header starts with ``first``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_markdown_has_the_blocks_in_paper_order_and_marks_the_best(reports):
    files = tables.build_table("disfa", ["adapt", "scratch", "reparam", "resnet18"])
    markdown = files.markdown.read_text()
    rows = [cells(line) for line in table_lines(markdown, "|  | Method")]
    assert rows[0] == ["", "Method", *AUS, "Avg."]
    body = rows[2:]
    assert [row[:2] for row in body] == [
        ["ICC", "Scratch"], ["", "Reparametrisation"], ["", "Adaptation layers"],
        ["MSE", "Scratch"], ["", "Reparametrisation"], ["", "Adaptation layers"],
    ]  # fmt: skip
    icc_scratch, icc_reparam, icc_adapt, mse_scratch, mse_reparam, mse_adapt = body
    # AU01 ICC: 0.612 and 0.608 print alike, so both are best; AU02: reparam; AU04: scratch.
    assert icc_scratch[2] == "**0.61**" and icc_adapt[2] == "**0.61**"
    assert icc_reparam[3] == "**0.55**" and icc_scratch[3] == "0.30"
    assert icc_reparam[4] == "–"  # undefined: printed as a dash, never best
    assert icc_scratch[4] == "**0.10**"
    # MSE: the lowest is best.
    assert mse_reparam[2] == "**0.40**" and mse_reparam[3] == "**0.30**"
    assert mse_adapt[4] == "**0.70**" and mse_scratch[4] == "0.90"
    # Avg. is the report's mean over the defined AUs.
    assert icc_reparam[5] == "**0.38**" and icc_scratch[5] == "0.34"
    assert "Not run yet (no report): resnet18." in markdown
    assert "`--x 1`" in markdown  # each row's ARGS, so reduced settings are visible


def test_complexity_and_the_papers_numbers_sit_beside(reports):
    markdown = tables.build_table("disfa", list(ICC)).markdown.read_text()
    complexity = [cells(line) for line in table_lines(markdown, "| Method | Input")]
    scratch = complexity[2]
    _, module = untrained_runs(reports / "again", "scratch", FAN_A, 32, folds=1)
    params, trainable, gflops = independent_count(module, 32)
    assert scratch[:6] == ["Scratch", "32 px", f"{params / 1e6:.2f}M", f"{trainable / 1e6:.2f}M",
                           f"{gflops:.2f}", "0.34"]  # fmt: skip
    assert scratch[6:] == ["1.65M", "5.21", "0.53"]  # Table 5 and the DISFA average of Table 2
    assert complexity[3][1:5] == ["–", "–", "–", "–"]  # its report names no run folders
    assert "Reparametrisation: not counted, its report names no run folders." in markdown
    assert "## The paper's numbers (Table 2, DISFA" in markdown
    paper = [cells(line) for line in table_lines(markdown.split("## The paper's")[1], "|  |")]
    assert paper[0][2:] == [*DATASET_AUS["disfa"], "Avg."]
    resnet = next(row for row in paper if row[1] == "ResNet-18")
    assert resnet[2:6] == ["0.41", "0.35", "0.63", "0.32"]  # the "032" typo read as 0.32
    assert paper[2][2] == "**0.59**" and paper[3][2] == "0.57"  # scratch is best on AU01
    assert paper[6][-1] == paper[8][-1] == "**0.57**"  # attention and adapt tie on Avg.


def test_csv_has_every_row_unrounded_with_best_marks_and_complexity(reports):
    files = tables.build_table("disfa", list(ICC))
    with files.csv.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["source", "block", "experiment", "method", *AUS, "avg", "best_in",
                             "avg_low", "avg_high", "seeds", "avg_sd", "vs_best", "vs_best_low",
                             "vs_best_high", "differs_from_best", "params", "trainable_params",
                             "gflops", "image_size", "fan"]  # fmt: skip
    assert {row["avg_low"] for row in rows} == {""}  # these reports predate intervals
    ours = [row for row in rows if row["source"] == "aunet"]
    assert [(row["block"], row["experiment"]) for row in ours] == [
        (block, name) for block in ("icc", "mse") for name in ("scratch", "reparam", "adapt")
    ]
    assert float(ours[0]["AU01"]) == 0.612
    assert ours[0]["best_in"] == "AU01 AU04" and ours[2]["best_in"] == "AU01"
    assert ours[1]["AU04"] == "" and ours[1]["best_in"] == "AU02 avg"
    _, module = untrained_runs(reports / "again", "scratch", FAN_A, 32, folds=1)
    params, trainable, gflops = independent_count(module, 32)
    assert (ours[0]["params"], ours[0]["trainable_params"]) == (str(params), str(trainable))
    assert float(ours[0]["gflops"]) == pytest.approx(gflops, rel=1e-12)
    assert (ours[0]["image_size"], ours[0]["fan"]) == (
        "32",
        "FAN (width=16, depth=2, stem_pool_at=after_conv2)",
    )
    assert ours[1]["params"] == ours[1]["fan"] == ""  # reparam: no run folders to count
    paper = [row for row in rows if row["source"].startswith("paper")]
    sources = [row["source"] for row in paper]
    assert sources == 14 * ["paper (Table 2, DISFA three-fold cross-validation)"] + 14 * [
        "paper (Table 4, DISFA three-fold cross-validation)"
    ]
    assert paper[14]["method"] == "2DC [53]*" and paper[14]["AU01"] == "0.7"
    assert files.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(files.folder.glob(".*"))  # no temporary files left


def scored_report(root: Path, experiment: str, true: np.ndarray, pred: np.ndarray) -> None:
    """A report.json with intervals and its predictions.csv, as `make cv` writes them."""
    subjects = np.repeat([f"SN{i:03d}" for i in range(1, 13)], len(true) // 12)
    predictions = cv.Predictions(AUS, subjects.astype(object), np.arange(len(true)),
                                 np.full(len(true), "1", dtype=object), true, pred)  # fmt: skip
    folder = cv.cv_folder(experiment, "disfa", root)
    folder.mkdir(parents=True)
    cv.write_predictions(folder / "predictions.csv", predictions)
    report = cv.score(predictions)
    report.update(intervals=intervals(predictions, BootstrapSettings(resamples=300)),
                  checkpoint="last", runs=[])  # fmt: skip
    (folder / "report.json").write_text(json.dumps(report))


def test_table_gives_intervals_and_tells_which_rows_differ_from_the_best(tmp_path):
    rng = np.random.default_rng(0)
    level = np.repeat(rng.uniform(0, 4, 12), 30)[:, None]
    true = np.clip(level + rng.normal(0, 0.7, (360, 3)), 0, 5)
    good = true + rng.normal(0, 0.4, true.shape)
    scored_report(tmp_path, "adapt", true, good)
    scored_report(tmp_path, "scratch", true, good + rng.normal(0, 0.05, true.shape))  # a tie
    scored_report(tmp_path, "reparam", true, true + rng.normal(0, 2.0, true.shape))  # far worse
    files = tables.build_table("disfa", ["scratch", "reparam", "adapt"], cv_root=tmp_path,
                               out_root=tmp_path / "tables")  # fmt: skip
    section = table_lines(files.markdown.read_text(), "| Method | ICC Avg. | 95% interval")
    rows = {cells(line)[0]: cells(line) for line in section[2:]}
    best = next(name for name, row in rows.items() if row[5] == "(best)")
    assert {name: row[7] for name, row in rows.items() if name != best} == {
        next(n for n in rows if n.startswith("Reparam")): "yes",
        **{n: "no" for n in rows if n != best and not n.startswith("Reparam")},
    }
    for row in rows.values():  # each average lies in its own interval
        low, high = (float(v) for v in row[2].strip("[]").split(","))
        assert low <= float(row[1]) <= high
    with files.csv.open(newline="") as file:
        icc_rows = [
            r for r in csv.DictReader(file) if r["source"] == "aunet" and r["block"] == "icc"
        ]
    reparam = next(r for r in icc_rows if r["experiment"] == "reparam")
    assert reparam["differs_from_best"] == "1" and float(reparam["vs_best_high"]) < 0
    assert float(reparam["avg_low"]) <= float(reparam["avg"]) <= float(reparam["avg_high"])


def test_each_row_is_counted_on_its_own_network_at_its_own_size_once(tmp_path, monkeypatch):
    """Rows over two FANs at two input sizes; each network counted once for its three folds."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(ICC, "finetune", ICC["scratch"])
    monkeypatch.setitem(MSE, "finetune", MSE["scratch"])
    expected = {}
    for experiment, fan, size in (("finetune", FAN_A, 32), ("adapt", FAN_B, 64)):
        runs, module = untrained_runs(Path(), experiment, fan, size)
        fake_report(cv.CV_ROOT, experiment, run_dirs=runs)
        expected[experiment] = (*independent_count(module, size), size)
    counted, measure = [], table_rows.measure
    monkeypatch.setattr(
        table_rows, "measure", lambda net, size: counted.append(size) or measure(net, size)
    )
    files = tables.build_table("disfa", ["finetune", "adapt"])
    assert sorted(counted) == [32, 64]  # six checkpoints, two networks
    aunet_rows = [row for row in files.rows if row["source"] == "aunet" and row["block"] == "icc"]
    for row in aunet_rows:
        params, trainable, gflops, size = expected[row["experiment"]]
        assert (row["params"], row["trainable_params"], row["image_size"]) == (
            params, trainable, size)  # fmt: skip
        assert row["gflops"] == pytest.approx(gflops, rel=1e-12)
    assert expected["finetune"][0] != expected["adapt"][0]
    assert expected["finetune"][2] != expected["adapt"][2]
    markdown = files.markdown.read_text()
    settings = {row[0]: row[1] for row in map(cells, table_lines(markdown, "| Experiment | FAN"))}
    assert settings["`finetune`"] == "FAN (width=16, depth=2, stem_pool_at=after_conv2)"
    assert settings["`adapt`"] == "FAN (num_stacks=2, width=8, depth=2, stem_pool_at=after_conv2)"
    assert "**The rows run over different FAN layouts**" in markdown
    inputs = [cells(line)[1] for line in table_lines(markdown, "| Method | Input")[2:]]
    assert inputs == ["32 px", "64 px"]


def test_rows_whose_folds_differ_or_whose_checkpoint_is_gone_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs, _ = untrained_runs(Path(), "adapt", FAN_A, 32, folds=2)
    other, _ = untrained_runs(Path("other"), "adapt", FAN_B, 32, folds=1)
    fake_report(cv.CV_ROOT, "adapt", run_dirs=[*runs, *other])
    with pytest.raises(TableError, match=r"adapt: its folds trained different networks"):
        tables.build_table("disfa", ["adapt"])
    other[0].joinpath("checkpoints", "last.ckpt").unlink()
    markdown = tables.build_table("disfa", ["adapt"]).markdown.read_text()
    assert f"Adaptation layers: not counted, {other[0]} has no last checkpoint." in markdown


def test_synthetic_gets_disfas_numbers_with_a_caveat_and_fera2017_its_rmse_note(tmp_path):
    for dataset, expected in (("synthetic", "not on these synthetic ones"),
                              ("fera2017", "Its error block is RMSE")):  # fmt: skip
        fake_report(tmp_path, "scratch", dataset)
        files = tables.build_table(dataset, ["scratch"], cv_root=tmp_path, out_root=tmp_path)
        assert expected in files.markdown.read_text()


def test_disfa_and_fera2015_put_their_rows_under_the_papers_comparison_of_their_partition(
    tmp_path,
):
    for experiment in ICC:  # scratch and adapt are rows of Tables 4 and 7, reparam is not
        fake_report(tmp_path, experiment, run_dirs=["a", "b", "c"])
    markdown = tables.build_table("disfa", list(ICC), cv_root=tmp_path, out_root=tmp_path)
    section = markdown.markdown.read_text().split("## The paper against earlier work")[1]
    assert section.startswith(" (Table 4, DISFA three-fold cross-validation)")
    rows = [cells(line) for line in table_lines(section, "|  | Method")[2:]]
    assert [row[1] for row in rows[:9]] == [
        "2DC [53]*", "CCNN-IT [57]*", "VGP-AE [14]*", "HR [48]*", "HR †", "ResNet-18", "Ours",
        "aunet: Scratch (as HR †)", "aunet: Adaptation layers (as Ours)",
    ]  # fmt: skip
    assert rows[0][2] == "**0.70**" and rows[1][2] == "–"  # 2DC is the best printed AU1
    # The report's AUs under the paper's columns, never bold (0.61 would tie for best on AU1).
    assert rows[8][2:] == ["0.61", "0.40", "0.05", *9 * ["–"], "0.35"]
    assert "**" not in "".join(rows[7][2:] + rows[8][2:] + rows[16][2:])

    dataset = "bp4d"  # FERA2015; scored on its public devel partition
    for experiment in ("scratch", "adapt"):
        fake_report(tmp_path, experiment, dataset, run_dirs=["x"], held_out="devel")
    files = tables.build_table(dataset, ["scratch", "adapt"], cv_root=tmp_path, out_root=tmp_path)
    text = files.markdown.read_text()
    table_4, table_7 = text.split("## The paper against earlier work")[1:]
    assert table_4.startswith(" (Table 4, FERA2015 development partition)")
    assert "| aunet: Scratch (as HR †) |" in table_4
    assert table_7.startswith(" (Table 7, FERA2015 test partition)")
    assert "not shown: they scored devel, this table test" in table_7
    assert "| aunet:" not in table_7 and "| HR-Scratch | 0.79 |" in table_7


def test_fera2017_gets_rmse_beside_mse_averaged_as_the_paper_averages(tmp_path):
    fake_report(tmp_path, "adapt", "fera2017", run_dirs=["x"], held_out="test")
    files = tables.build_table("fera2017", ["adapt"], cv_root=tmp_path, out_root=tmp_path)
    roots = {au: math.sqrt(value) for au, value in MSE["adapt"].items()}
    mean_of_roots = sum(roots.values()) / 3
    assert mean_of_roots < math.sqrt(_mean(MSE["adapt"]))  # not the root of the mean MSE
    (rmse,) = [row for row in files.rows if row["source"] == "aunet" and row["block"] == "rmse"]
    assert {au: rmse[au] for au in AUS} == pytest.approx(roots, rel=1e-12)
    assert rmse[AVERAGE] == pytest.approx(mean_of_roots, rel=1e-12)
    markdown = files.markdown.read_text()
    main = [cells(line) for line in table_lines(markdown, "|  | Method")]
    assert [row[0] for row in main[2:]] == ["ICC", "MSE", "RMSE"]
    assert main[4][2:] == [f"**{v:.2f}**" for v in (*roots.values(), mean_of_roots)]
    assert "not the root of the MSE Avg." in markdown
    # Table 3's error block is RMSE (printed "MSE"), and so is Table 6's, test half with aunet.
    paper = [row for row in files.rows if row["source"].startswith("paper")]
    assert {row["block"] for row in paper} == {"icc", "rmse"}
    table_6_test = markdown.split("(Table 6, FERA2017 test set)")[1]
    lines = [cells(line) for line in table_lines(table_6_test, "|  | Method")]
    ours = [row for row in lines if row[1] == "aunet: Adaptation layers (as Ours)"]
    # Under the paper's columns: the report's AU01 and AU04 (AU02 is no FERA2017 AU).
    expected = [f"{roots['AU01']:.2f}", f"{roots['AU04']:.2f}", *5 * ["–"], f"{mean_of_roots:.2f}"]
    assert ours[1][2:] == expected
    assert lines[2 + 8][:2] == ["RMSE", "AUMPNet [5]*"]  # after 7 printed rows and aunet's
    assert "not shown: they scored test, this table devel" in markdown


def test_a_small_negative_value_prints_as_zero_not_minus_zero(tmp_path, monkeypatch):
    monkeypatch.setitem(ICC, "scratch", {"AU01": -0.004, "AU02": 0.0, "AU04": -0.02})
    fake_report(tmp_path, "scratch")
    files = tables.build_table("disfa", ["scratch"], cv_root=tmp_path, out_root=tmp_path)
    row = cells(table_lines(files.markdown.read_text(), "|  | Method")[2])
    assert row[2:5] == ["**0.00**", "**0.00**", "**-0.02**"]


def test_no_report_and_mismatched_reports_fail_naming_the_files(tmp_path):
    with pytest.raises(TableError, match="no cross-validation report for disfa"):
        tables.build_table("disfa", ["scratch"], cv_root=tmp_path, out_root=tmp_path)
    fake_report(tmp_path, "scratch")
    fake_report(tmp_path, "adapt")
    other = json.loads(report_file("adapt", "disfa", tmp_path).read_text())
    other["icc"] = {"AU06": 0.5}
    report_file("adapt", "disfa", tmp_path).write_text(json.dumps(other))
    with pytest.raises(TableError, match=r"adapt-disfa/report\.json scores other AUs"):
        tables.build_table("disfa", ["scratch", "adapt"], cv_root=tmp_path, out_root=tmp_path)
    with pytest.raises(TableError, match="no table row for fan"):
        order_experiments(["scratch", "fan"])


def test_every_au_experiment_is_a_row_of_the_default_table() -> None:
    assert set(EXPERIMENT_ORDER) == set(launch.experiment_names()) - {"fan"}
    assert set(METHOD_NAMES) == set(EXPERIMENT_ORDER)
    assert len(set(METHOD_NAMES.values())) == len(METHOD_NAMES)


def test_table_skips_experiments_whose_report_exists(reports, monkeypatch, capsys):
    trained = []

    def fake_cross_validation(plan):
        trained.append(plan.experiment)
        fake_report(cv.CV_ROOT, plan.experiment, extra=plan.extra)

    monkeypatch.setattr(studies, "cross_validate_locally", fake_cross_validation)
    monkeypatch.setattr(studies, "plan_cross_validation", lambda e, d, f, c, x, s=1: cv.CVPlan(
        e, d, f, c, tuple(x), ()))  # fmt: skip
    monkeypatch.setitem(ICC, "resnet18", {"AU01": 0.1, "AU02": 0.1, "AU04": 0.1})
    monkeypatch.setitem(MSE, "resnet18", {"AU01": 1.0, "AU02": 1.0, "AU04": 1.0})
    launch.table("disfa", ["resnet18", "scratch", "adapt"], "local", None, "last",
                 ["--run.wandb", "disabled"])  # fmt: skip
    assert trained == ["resnet18"]
    out = capsys.readouterr().out
    assert "scratch: runs/cv/scratch-disfa/report.json exists; not running it again" in out
    markdown = (table_folder("disfa") / "table.md").read_text()
    assert "| ICC | Scratch |" in markdown and "|  | ResNet-18 |" in markdown
    assert "Reparametrisation" not in markdown.split("## The paper's")[0]  # not asked for


def test_table_on_slurm_submits_the_missing_and_a_table_job_after_their_reports(
    reports, monkeypatch
):
    submitted, jobs = [], []
    monkeypatch.setattr(studies, "plan_cross_validation", lambda e, d, f, c, x, s=1: cv.CVPlan(
        e, d, f, c, tuple(x), ()))  # fmt: skip
    monkeypatch.setattr(
        studies, "submit_to_slurm",
        lambda plan, *_: submitted.append(plan.experiment) or ("10", str(20 + len(submitted))),
    )  # fmt: skip
    monkeypatch.setattr(slurm, "sbatch", lambda arguments, env: jobs.append(arguments) or "30")
    launch.table("disfa", ["resnet18", "finetune", "scratch"], "slurm", None, "last",
                 ["--run.wandb", "offline"], ["--partition=gpu"])  # fmt: skip
    assert submitted == ["finetune", "resnet18"]
    (arguments,) = jobs
    assert "--dependency=afterok:21:22" in arguments and "--partition=gpu" in arguments
    wrap = next(a for a in arguments if a.startswith("--wrap="))
    assert "-m aunet.launch table-report --data disfa --exps scratch finetune resnet18" in wrap
    assert wrap.endswith("-- --run.wandb offline")


ALL_PAPER_TABLES = [*PAPER_TABLES.values(), *(t for ts in PAPER_COMPARISONS.values() for t in ts)]
#: Printed averages that are not the mean of their printed AUs (see
# aunet/evaluation/paper_results.py).
ODD_AVERAGES = {
    ("Table 2, DISFA three-fold cross-validation", "scratch"): (0.37, 0.336),
    ("Table 4, DISFA three-fold cross-validation", "scratch"): (0.37, 0.336),
    ("Table 4, FERA2015 development partition", "CCNN-IT [57]*"): (1.57, 1.558),
}


def test_papers_averages_agree_with_their_rows():
    """The transcription, checked against the paper's own averages (and Table 5)."""
    for table in ALL_PAPER_TABLES:
        for block in (table.icc, table.error):
            for row_name, row in block.items():
                values = [row[au] for au in table.au_names]
                if all(value is None for value in values):  # not reported
                    assert row[AVERAGE] is None, (table.source, row_name)
                    continue
                mean = np.mean(values)
                odd = ODD_AVERAGES.get((table.source, row_name))
                if odd and block is table.error:
                    assert (row[AVERAGE], round(mean, 3)) == odd
                    continue
                # Each printed value is rounded: the mean of rounded values is within 0.01.
                assert abs(mean - row[AVERAGE]) <= 0.01, (table.source, row_name)
    table_5_icc = {"resnet18": (0.65, 0.47, 0.62), "scratch": (0.69, 0.53, 0.63),
                   "finetune": (0.71, 0.56, 0.63), "reparam": (0.70, 0.54, 0.62),
                   "attention": (0.71, 0.57, 0.63), "adapt": (0.72, 0.57, 0.64)}  # fmt: skip
    for experiment, expected in table_5_icc.items():
        assert experiment in PAPER_TABLE_5
        got = tuple(PAPER_TABLES[d].icc[experiment][AVERAGE] for d in
                    ("fera2015", "disfa", "fera2017"))  # fmt: skip
        assert got == expected


def test_papers_tables_have_their_datasets_aus_and_repeat_each_other_where_they_should():
    for table in ALL_PAPER_TABLES:
        assert table.au_names == DATASET_AUS[table.dataset], table.source
        assert set(table.icc) == set(table.error) == set(table.labels), table.source
    # Tables 4 and 6 repeat the rows of Tables 2 and 3 for HR† (scratch), ResNet-18 and Ours.
    comparisons = {t.source: t for t in ALL_PAPER_TABLES}
    for comparison, main in (("Table 4, FERA2015 development partition", "fera2015"),
                             ("Table 4, DISFA three-fold cross-validation", "disfa"),
                             ("Table 6, FERA2017 development set", "fera2017")):  # fmt: skip
        for experiment in set(COMPARISON_ROWS.values()):
            assert comparisons[comparison].icc[experiment] == PAPER_TABLES[main].icc[experiment]
            assert comparisons[comparison].error[experiment] == PAPER_TABLES[main].error[experiment]
    # As printed: Table 7's test-partition ResNet-18 rows are Table 4's development rows.
    table_4, table_7 = PAPER_COMPARISONS["fera2015"]
    assert table_7.icc["resnet18"] == table_4.icc["resnet18"]
    assert table_7.error["resnet18"] == table_4.error["resnet18"]


def test_papers_text_agrees_with_table_6():
    """Sec. 7.3: ICC 0.64 against the winners' 0.60 (devel), 0.50 against 0.45 (test), and
    an RMSE better than the winners' by 5%."""
    devel, test = PAPER_COMPARISONS["fera2017"]
    winners = "MTask (Dep) [68]*"
    assert (devel.icc["adapt"][AVERAGE], devel.icc[winners][AVERAGE]) == (0.64, 0.60)
    assert (test.icc["adapt"][AVERAGE], test.icc[winners][AVERAGE]) == (0.50, 0.45)
    margin = 1 - devel.error["adapt"][AVERAGE] / devel.error[winners][AVERAGE]
    assert round(margin, 2) == 0.05
    assert devel.error_name == test.error_name == PAPER_TABLES["fera2017"].error_name == "rmse"


def test_table_is_logged_to_wandb_offline(reports):
    files = tables.build_table("disfa", list(ICC))
    directory = tables.log_table_to_wandb(files, "disfa", mode="offline")
    assert directory is not None and Path(directory).exists()
    assert (files.folder / "wandb_id").exists()
    assert list((files.folder / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_make_table_end_to_end_then_a_rerun_trains_nothing(tmp_path):
    """`make table ... FAN=` on a tiny DISFA store with two experiments, then once more."""
    fan = tiny_disfa_project(tmp_path)
    args = (
        "--data.image_size 32 --data.batch_size 8 --data.num_workers 0 --trainer.max_epochs 1 "
        "--trainer.enable_progress_bar false --run.wandb offline"
    )
    command = make_command("table", "DATA=disfa", "EXPS=finetune reparam", f"FAN={fan}",
                           f"ARGS={args}")  # fmt: skip
    first = run_make(tmp_path, command, WANDB_MODE="offline")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    folder = tmp_path / "runs" / "tables" / "disfa"
    markdown = (folder / "table.md").read_text()
    for experiment in ("finetune", "reparam"):
        report = json.loads((tmp_path / f"runs/cv/{experiment}-disfa/report.json").read_text())
        assert report["frames"] == 54
        assert f"{round(report['icc_mean'], 2) + 0.0:.2f}" in markdown  # never "-0.00"
    # Each row counted on the network its checkpoints hold: at 32 px, over the tiny FAN.
    complexity = [cells(line) for line in table_lines(markdown, "| Method | Input")[2:]]
    assert [row[1] for row in complexity] == ["32 px", "32 px"]
    assert "| `reparam` | FAN (width=16, depth=2, stem_pool_at=after_conv2) |" in markdown
    assert (folder / "table.csv").exists() and (folder / "table.png").exists()
    assert list((folder / "wandb").glob("offline-run-*"))
    runs = sorted(tmp_path.glob("runs/*/disfa/fold*/*/checkpoints/last.ckpt"))
    assert len(runs) == 6  # two experiments x three folds
    stamps = [path.stat().st_mtime for path in runs]
    second = run_make(tmp_path, command, WANDB_MODE="offline")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("exists; not running it again") == 2
    assert sorted(tmp_path.glob("runs/*/disfa/fold*/*/checkpoints/last.ckpt")) == runs
    assert [path.stat().st_mtime for path in runs] == stamps


def with_seeds(path: Path, count: int, icc_sd: float, mse_sd: float) -> None:
    """Give a report.json the ``seeds`` block of a report of ``count`` seeds."""
    report = json.loads(path.read_text())
    spread = {f"{m}_mean": {"mean": report[f"{m}_mean"], "sd": sd, "min": 0.0, "max": 1.0}
              for m, sd in (("icc", icc_sd), ("mse", mse_sd))}  # fmt: skip
    report["seeds"] = {"count": count, "spread": spread, "per_seed": []}
    path.write_text(json.dumps(report))


def test_a_row_of_seeds_shows_the_seed_mean_its_spread_and_how_many_seeds(reports):
    with_seeds(report_file("adapt", "disfa"), 3, icc_sd=0.0123, mse_sd=0.0456)
    files = tables.build_table("disfa", list(ICC))
    markdown = files.markdown.read_text()
    counts = [
        f"{METHOD_NAMES[name]} {3 if name == 'adapt' else 1}"
        for name in order_experiments(list(ICC))
    ]
    assert f"Seeds: {', '.join(counts)}. " in markdown
    section = table_lines(markdown, "| Method | ICC Avg. | 95% interval")
    rows = {cells(line)[0]: cells(line) for line in section[2:]}
    adapt = next(row for name, row in rows.items() if name == METHOD_NAMES["adapt"])
    assert adapt[1] == f"{_mean(ICC['adapt']):.2f} ± 0.012"
    assert adapt[3] == f"{_mean(MSE['adapt']):.2f} ± 0.046"
    scratch = rows[METHOD_NAMES["scratch"]]
    assert "±" not in scratch[1]  # one seed: no spread
    # The main table's cells are the reports' means, as before.
    main = [cells(line) for line in table_lines(markdown, "| ICC |")]
    assert any(row[1] == METHOD_NAMES["adapt"] and f"{_mean(ICC['adapt']):.2f}" in row[-1]
               for row in main)  # fmt: skip
    ours = {(r["block"], r["experiment"]): r for r in files.rows if r["source"] == "aunet"}
    assert (ours["icc", "adapt"]["seeds"], ours["icc", "adapt"]["avg_sd"]) == (3, 0.0123)
    assert (ours["mse", "adapt"]["avg_sd"], ours["icc", "scratch"]["avg_sd"]) == (0.0456, None)
    assert ours["icc", "scratch"]["seeds"] == 1
    assert {r["seeds"] for r in files.rows if r["source"] != "aunet"} == {None}
    # `make table SEEDS=3` re-runs the experiments whose reports have fewer seeds.
    assert missing_experiments(list(ICC), "disfa", seeds=3) == ["scratch", "reparam"]
    assert missing_experiments(list(ICC), "disfa") == []


def test_rows_of_seeds_are_compared_with_the_best_as_their_seed_means(tmp_path, monkeypatch):
    """The paired gap of each row is the difference of the seed-mean averages the table prints."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    subjects = np.repeat([f"SN{i:03d}" for i in range(1, 13)], 10).astype(object)
    true = np.clip(
        np.repeat(rng.uniform(0, 4, 12), 10)[:, None] + rng.normal(0, 0.7, (120, 3)), 0, 5
    )
    noise = {"adapt": 0.4, "scratch": 1.5, "reparam": 0.8}
    for experiment, seeds in (("adapt", 2), ("scratch", 3), ("reparam", 1)):
        tasks = []
        for seed in range(seeds):
            pred = true + rng.normal(0, noise[experiment], true.shape)
            folds = np.full(120, "1", dtype=object)
            predictions = cv.Predictions(AUS, subjects, np.arange(120), folds, true, pred)
            run = finished_run(tmp_path / experiment / str(seed), predictions)
            tasks.append(cv.CVTask(seed + 1, 1, str(run), seed))
        cv.make_report(cv.CVPlan(experiment, "disfa", None, "last", (), tuple(tasks)),
                       BootstrapSettings(resamples=100))  # fmt: skip
        for task in tasks:  # no network to count: the complexity columns stay unknown
            (Path(task.run_dir) / "checkpoints" / "last.ckpt").unlink()
    files = tables.build_table("disfa", ["scratch", "reparam", "adapt"])
    icc_rows = {
        r["experiment"]: r for r in files.rows if r["source"] == "aunet" and r["block"] == "icc"
    }
    best = max(icc_rows.values(), key=lambda r: r["avg"])
    assert best["experiment"] == "adapt" and best["seeds"] == 2
    for name in ("scratch", "reparam"):
        assert icc_rows[name]["vs_best"] == pytest.approx(icc_rows[name]["avg"] - best["avg"])
    assert icc_rows["scratch"]["seeds"] == 3 and icc_rows["scratch"]["avg_sd"] > 0
