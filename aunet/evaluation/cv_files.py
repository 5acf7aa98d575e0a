"""A cross-validation report as people read it: ``report.md`` and the ``per_au.png`` chart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aunet.evaluation.bootstrap import (
    format_interval,
)
from aunet.files import (
    format_number,
    markdown_table,
    pyplot,
    save_figure,
)

if TYPE_CHECKING:
    from aunet.evaluation.cv import CVPlan


def report_markdown(report: dict[str, Any], plan: CVPlan) -> str:
    """The report as Markdown: the per-AU table, then each run for reference."""
    if len(plan.tasks) > 1:
        scope = (
            f"on the aggregated out-of-fold predictions of {report['frames']} frames: each "
            "frame predicted by the model of the fold that held its subject out, all scored "
            "together (Sec. 5.1), not as a mean of fold scores."
        )
    else:
        partition = report["runs"][0]["held_out"]
        scope = (
            f"on the {report['frames']} frames of the official `{partition}` partition (the "
            "test partition, or devel where the store has none), predicted by one model."
        )
    bounds = report["intervals"]
    settings = bounds["bootstrap"]
    seeds = report.get("seeds")
    spread = seeds["spread"] if seeds else None
    lines = [
        f"# {plan.experiment} on {plan.dataset}: cross-validation report",
        "",
        f"ICC(3,1) and MSE per AU (Sec. 5.2) {scope}",
        f"Checkpoint: `{plan.checkpoint}`.",
        "",
    ]
    if seeds:
        lines += [
            f"Seeds: {seeds['count']}. Every fold was trained once per seed s = 0 to "
            f"{seeds['count'] - 1} (`--seed_everything s`; seed 0 with the configs' own seed); "
            "each seed's aggregated predictions are scored as above "
            "(`predictions.csv` is seed 0's, `predictions-seed<s>.csv` seed s's), and each "
            "figure is the mean of the seeds' figures, with the sample standard deviation "
            "(sd) and the range (min-max) over the seeds.",
            "",
        ]
    lines += [
        f"Intervals: {settings['level']:.0%} percentile intervals from a bootstrap over the "
        f"{settings['subjects']} subjects ({settings['resamples']} resamples, seed "
        f"{settings['seed']}; docs/experiments.md), n/a where the statistic is undefined in "
        "many resamples"
        + (
            ": each resample scores every seed's predictions on the same subjects and takes "
            "the mean over the seeds, so the interval is that of the seed mean."
            if seeds
            else "."
        ),
        "",
    ]
    metric_columns = ["sd", "min-max"] if spread else []
    header = ["AU", *(c for m in ("ICC", "MSE") for c in (m, *metric_columns, f"{m} interval"))]

    def cells(metric: str, au: str | None, value: str) -> list[str]:
        """A metric's value for an AU (None: the mean), its spread over seeds, its interval."""
        interval = format_interval(bounds[f"{metric}_mean"] if au is None else bounds[metric][au])
        if not spread:
            return [value, interval]
        figures = spread[f"{metric}_mean"] if au is None else spread[metric][au]
        span = (
            "n/a"
            if figures["min"] is None
            else f"{format_number(figures['min'])}-{format_number(figures['max'])}"
        )
        return [value, format_number(figures["sd"]), span, interval]

    rows = [
        [au, *cells("icc", au, format_number(report["icc"][au])),
         *cells("mse", au, format_number(report["mse"][au]))]
        for au in report["icc"]
    ]  # fmt: skip
    icc_mean, mse_mean = (f"**{format_number(report[key])}**" for key in ("icc_mean", "mse_mean"))
    rows.append(["**mean**", *cells("icc", None, icc_mean), *cells("mse", None, mse_mean)])
    lines += [markdown_table(header, rows, right=1), "", "![ICC and MSE per AU](per_au.png)", ""]
    if seeds:
        per_seed = [
            [str(entry["seed"]), format_number(entry["icc_mean"]),
             format_number(entry["mse_mean"]), f"`{entry['predictions']}`"]
            for entry in seeds["per_seed"]
        ]  # fmt: skip
        header = ["seed", "ICC mean", "MSE mean", "predictions"]
        lines += [markdown_table(header, per_seed), ""]
    runs = [
        [run["label"], str(run["frames"]), format_number(run["icc_mean"]), f"`{run['run_dir']}`"]
        for run in report["runs"]
    ]
    header = ["run", "frames", "ICC mean of this run alone", "folder"]
    lines += [
        markdown_table(header, runs, right=1),
        "",
        "Per-run means are for reference only: the figures above are computed on all frames "
        "together.",
        "",
    ]
    return "\n".join(lines)


def plot_per_au(path: Path, report: dict[str, Any], title: str) -> Path:
    """Bar charts of ICC and MSE per AU (undefined values left out), with their means. Atomic."""
    plt = pyplot()
    names = list(report["icc"])
    figure, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.9 * len(names) + 3), 3.6))
    for axis, metric, colour in zip(axes, ("icc", "mse"), ("tab:blue", "tab:orange"), strict=True):
        values = [np.nan if report[metric][au] is None else report[metric][au] for au in names]
        axis.bar(names, values, color=colour)
        mean = report[f"{metric}_mean"]
        if mean is not None:
            axis.axhline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
            axis.legend(loc="upper right", fontsize=8)
        axis.set_title(metric.upper())
        axis.tick_params(axis="x", labelrotation=90, labelsize=8)
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(min(0.0, axes[0].get_ylim()[0]), 1.0)  # ICC(3,1) may be negative
    return save_figure(figure, path, title)
