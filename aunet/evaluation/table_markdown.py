"""``table.md``: the paper's table layout, with intervals, complexity and the paper's numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from aunet.data.folds import FOLD_DATASETS
from aunet.evaluation.bootstrap import (
    format_interval,
)
from aunet.evaluation.paper_results import (
    AVERAGE,
    PAPER_TABLE_5,
    PaperTable,
)
from aunet.evaluation.table_rows import (
    BLOCKS,
    NO_FAN,
    UNKNOWN,
    MethodResults,
    PairedWithBest,
    RowModel,
    paper_results,
    table_blocks,
)
from aunet.files import format_number, markdown_table


def _confidence_section(
    results: Sequence[MethodResults], paired: PairedWithBest, digits: int
) -> list[str]:
    """How sure each average is, and whether each row differs from the best beyond luck."""
    rows = []
    several = [r for r in results if r.seeds > 1]

    def average(r: MethodResults, metric: str) -> str:
        """The row's average, ``± sd`` over its seeds where it has several."""
        value = format_number(r.block(metric).get(AVERAGE), digits, UNKNOWN)
        sd = r.spread.get(metric)
        return value if sd is None else f"{value} ± {format_number(sd, digits + 1, UNKNOWN)}"

    for r in results:
        against = paired.against_best.get(r.experiment)
        if r.experiment == paired.best:
            gap, gap_interval, differs = "(best)", "", ""
        elif against is None:
            gap, gap_interval, differs = "n/a", "", ""
        else:
            gap = format_number(against["difference"], digits + 1, UNKNOWN)
            gap_interval = format_interval(against["interval"], digits + 1)
            differs = "yes" if against["excludes_zero"] else "no"
        rows.append([
            r.method, average(r, "icc"), format_interval(r.intervals.get("icc"), digits),
            average(r, "mse"), format_interval(r.intervals.get("mse"), digits), gap,
            gap_interval, differs,
        ])  # fmt: skip
    header = ["Method", "ICC Avg.", "95% interval", "MSE Avg.", "95% interval",
              "ICC Avg. - best's", "95% interval", "Differs from the best"]  # fmt: skip
    return [
        "## How sure: intervals and the paired comparison",
        "",
        "95% intervals from a bootstrap over subjects (frames of one subject are not "
        "independent; docs/experiments.md), from each report. The last columns compare each "
        'row with the best average ICC on the same resamples of subjects: "yes" where the '
        "interval of the difference excludes 0. n/a: a report made before intervals, or no "
        "predictions of the same subjects.",
        "",
        *(
            [
                "Seeds: "
                + ", ".join(f"{r.method} {r.seeds}" for r in results)
                + ". A row of several seeds gives the mean over its seeds of each figure "
                "(every table here), ± the sample standard deviation over them here; its "
                "interval and its paired comparison are those of the seed mean, over every "
                "seed's predictions on the same resamples of subjects.",
                "",
            ]
            if several
            else []
        ),
        markdown_table(header, rows, right=1),
        "",
    ]


def best_experiments(
    results: Sequence[MethodResults], block: str, column: str, digits: int
) -> set[str]:
    """The experiments whose value in ``column`` is the best of ``results`` as printed.

    Best is the highest ICC or the lowest MSE, compared at ``digits`` decimals (so equal printed
    values are all best, as a reader of the table sees them); unknown values never are.
    """
    higher_is_better = dict((name, high) for name, _, high in BLOCKS)[block]
    printed = {
        r.experiment: round(value, digits)
        for r in results
        if (value := r.block(block).get(column)) is not None
    }
    if not printed:
        return set()
    best = max(printed.values()) if higher_is_better else min(printed.values())
    return {name for name, value in printed.items() if value == best}


def _blocks_table(
    results: Sequence[MethodResults],
    au_names: Sequence[str],
    digits: int,
    blocks: Sequence[str],
    unranked: Sequence[MethodResults] = (),
) -> str:
    """Table 2's layout: a block of rows per metric, the best of each column in bold.

    ``unranked`` rows follow ``results`` in each block and are never bold (aunet's rows under
    the paper's, which are ranked as printed).
    """
    columns = [*au_names, AVERAGE]
    labels = {name: label for name, label, _ in BLOCKS}
    rows = []
    for block in blocks:
        best = {column: best_experiments(results, block, column, digits) for column in columns}
        for i, result in enumerate([*results, *unranked]):
            cells = []
            for column in columns:
                text = format_number(result.block(block).get(column), digits, UNKNOWN)
                ranked = i < len(results) and result.experiment in best[column]
                cells.append(f"**{text}**" if ranked else text)
            rows.append([labels[block] if i == 0 else "", result.method, *cells])
    return markdown_table(["", "Method", *au_names, "Avg."], rows, right=2)


def _millions(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value / 1e6:.2f}M"


def _complexity_table(
    results: Sequence[MethodResults],
    models: Mapping[str, RowModel],
    paper: PaperTable | None,
    digits: int,
) -> str:
    """Table 5's layout: parameters, FLOPs and average ICC, aunet's and the paper's."""
    paper_icc = {r.experiment: r.icc[AVERAGE] for r in paper_results(paper)} if paper else {}
    header = ["Method", "Input", "Params", "Trainable", "GFLOPs", "ICC Avg."]
    if paper:
        header += ["Paper: params", "Paper: GFLOPs", f"Paper: ICC ({paper.dataset})"]
    rows = []
    for result in results:
        cost = models[result.experiment].cost
        size = cost.image_size if cost else None
        row = [
            result.method,
            UNKNOWN if size is None else f"{size} px",
            _millions(cost.params if cost else None),
            _millions(cost.trainable_params if cost else None),
            format_number(cost.gflops if cost else None, 2, UNKNOWN),
            format_number(result.icc[AVERAGE], digits, UNKNOWN),
        ]
        if paper:
            printed = PAPER_TABLE_5.get(result.experiment)
            row += [
                _millions(printed.params) if printed else UNKNOWN,
                format_number(printed.flops / 1e9 if printed else None, 2, UNKNOWN),
                format_number(paper_icc.get(result.experiment), 2, UNKNOWN),
            ]
        rows.append(row)
    return markdown_table(header, rows, right=1)


def _protocol(dataset: str) -> str:
    if dataset in FOLD_DATASETS:
        return (
            "three-fold subject-exclusive cross-validation, each metric computed once on the "
            "aggregated out-of-fold predictions (Sec. 5.1)"
        )
    return (
        "official partitions: trained on `train`, scored on `test` (on `devel` where the store "
        "has no test partition, as FERA2015's public release)"
    )


def _complexity_notes(
    results: Sequence[MethodResults], models: Mapping[str, RowModel]
) -> list[str]:
    """What the complexity block's reader must know: which FANs, what is unknown, and why."""
    layouts: dict[str, list[str]] = {}
    for result in results:
        fan = models[result.experiment].fan
        if fan not in (NO_FAN, UNKNOWN):
            layouts.setdefault(fan, []).append(f"`{result.experiment}`")
    notes = []
    if len(layouts) == 1:
        notes.append(f"The FAN in every row's network has one layout: {next(iter(layouts))}.")
    elif layouts:
        named = "; ".join(f"{fan}: {', '.join(names)}" for fan, names in layouts.items())
        notes.append(
            f"**The rows run over different FAN layouts** ({named}; see Settings), so their "
            "costs differ by that too."
        )
    if "adapt_finetune" in models:
        notes.append(
            "Adaptation + fine-tuning: trainable in its first stage; once it unfreezes the FAN "
            "(`UnfreezeBackbone`), every parameter trains."
        )
    notes += [
        f"{r.method}: not counted, {models[r.experiment].unknown}."
        for r in results
        if models[r.experiment].cost is None
    ]
    return [" ".join(notes), ""] if notes else []


def render_markdown(
    dataset: str,
    results: Sequence[MethodResults],
    au_names: Sequence[str],
    models: Mapping[str, RowModel],
    paper: PaperTable | None,
    missing: Sequence[str] = (),
    digits: int = 2,
    comparisons: Sequence[PaperTable] = (),
    paired: PairedWithBest | None = None,
) -> str:
    """The whole ``table.md``: Table 2's layout, intervals, Table 5's, the paper's, settings."""
    paired = paired or PairedWithBest()
    blocks = table_blocks(dataset)
    rmse = (
        " RMSE is the square root of each AU's MSE, as the paper's FERA2017 errors (Sec. 7.3); "
        "its Avg. is the mean of those roots, as the paper averages them, which is not the "
        "root of the MSE Avg."
        if "rmse" in blocks
        else ""
    )
    lines = [
        f"# aunet on {dataset}: every method, as the paper's Tables 2 and 3",
        "",
        f"ICC(3,1){', MSE and RMSE' if 'rmse' in blocks else ' and MSE'} per AU (Sec. 5.2), "
        f"{_protocol(dataset)}, from `runs/cv/<experiment>-{dataset}/report.json`. Best per "
        f"column in **bold** (highest ICC, lowest error, compared as printed).{rmse}",
        "",
        _blocks_table(results, au_names, digits, blocks),
        "",
        "![ICC and MSE per AU and method](table.png)",
        "",
        *_confidence_section(results, paired, digits),
    ]
    if missing:
        lines += [f"Not run yet (no report): {', '.join(missing)}.", ""]
    lines += [
        "## Complexity (Table 5 layout)",
        "",
        "Parameters (all, and trainable: a frozen FAN counts in the first only) and GFLOPs of one "
        "image at the row's own input size (Input), of the network each row trained: rebuilt "
        "from its runs' checkpoints (strategy, FAN layout, options and AUs as saved; "
        "reparametrisation folded) and counted by `aunet/models/complexity.py`. Beside them, the "
        "average ICC above"
        + (
            f" and the paper's Table 5 (256 x 256 images over its light FAN) with its "
            f"{paper.dataset} ICC."
            if paper
            else "."
        ),
        "",
        _complexity_table(results, models, paper, digits),
        "",
        *_complexity_notes(results, models),
    ]
    if paper:
        lines += _paper_section(dataset, paper, digits)
    for comparison in comparisons:
        lines += _comparison_section(comparison, results, digits)
    lines += [
        "## Settings",
        "",
        markdown_table(
            ["Experiment", "FAN", "ARGS (extra `aunet fit` flags)", "Frames scored"],
            [
                [
                    f"`{r.experiment}`",
                    models[r.experiment].fan,
                    f"`{r.settings}`" if r.settings else UNKNOWN,
                    str(r.frames),
                ]
                for r in results
            ],
            right=3,
        ),
        "",
        "FAN: the layout of the FAN inside each row's network, read from its checkpoints: the "
        "backbone it transferred from (frozen, or fine-tuned), or, trained from scratch, the "
        "AU-Net's own.",
        "",
    ]
    return "\n".join(lines)


def _paper_section(dataset: str, paper: PaperTable, digits: int) -> list[str]:
    caveat = (
        " They are measured on real DISFA faces, not on these synthetic ones: compare the "
        "ordering of the methods, not the values."
        if paper.dataset != dataset and dataset == "synthetic"
        else ""
    )
    error = (
        f" Its error block is {paper.error_name.upper()} ({paper.error_label})."
        if paper.error_label
        else ""
    )
    return [
        f"## The paper's numbers ({paper.source})",
        "",
        "As printed (`aunet/evaluation/paper_results.py`), best per column in bold."
        f"{caveat}{error}",
        "",
        _blocks_table(
            paper_results(paper), paper.au_names, min(digits, 2), ("icc", paper.error_name)
        ),
        "",
    ]


def _comparison_section(
    table: PaperTable, results: Sequence[MethodResults], digits: int
) -> list[str]:
    """A table of the paper against earlier work, with aunet's rows of the same methods below.

    aunet's rows join only when they scored what the paper's did (the same partition).
    """
    printed = {r.experiment: r for r in paper_results(table)}
    matching = [r for r in results if r.experiment in printed]
    ours = [
        replace(r, method=f"aunet: {r.method} (as {printed[r.experiment].method})")
        for r in matching
        if r.partition == table.partition
    ]
    if ours:
        below = "Below them, aunet's rows of the same methods, on the same partition (not ranked)."
    elif matching:
        scored = ", ".join(sorted({str(r.partition) for r in matching}))
        below = (
            f"aunet's rows of its methods are not shown: they scored {scored}, this table "
            f"{table.partition}."
        )
    else:
        below = ""
    return [
        f"## The paper against earlier work ({table.source})",
        "",
        "As printed (`aunet/evaluation/paper_results.py`), best per column in bold among the "
        "paper's rows: "
        f"(*) results the paper quotes from the reference, † its in-house reproductions, "
        f'"Ours" its adaptation layers; – not reported. {below}'.rstrip(),
        "",
        _blocks_table(
            list(printed.values()),
            table.au_names,
            min(digits, 2),
            ("icc", table.error_name),
            unranked=ours,
        ),
        "",
    ]
