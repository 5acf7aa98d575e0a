"""The paper's own numbers: Tables 2 to 7 of Ntinou et al., transcribed from its text.

Each block below is a table's rows as printed (two decimals), one method per line, the AU
columns in the printed order and then the printed average ("Avg."), so that a reader can hold
it against the paper line by line; "-" is a cell the paper leaves empty.
:mod:`aunet.evaluation.tables` puts them beside aunet's own results.

- Tables 2 and 3 (:data:`PAPER_TABLES`): every method of the paper (its Sec. 6), one line per
  aunet experiment.
- Tables 4, 6 and 7 (:data:`PAPER_COMPARISONS`): the paper against earlier work (its Sec. 7),
  each line named as printed (``*``: numbers quoted from the reference; ``†``: the paper's
  in-house reproduction). Three of their rows are aunet experiments (:data:`COMPARISON_ROWS`):
  "HR" trained from scratch (``scratch``), ResNet-18 (``resnet18``) and "Ours", the adaptation
  layers (``adapt``; Sec. 7: "the best performing method ... herein simply referred to as Ours").
- Table 5 (:data:`PAPER_TABLE_5`): parameters, FLOPs and seconds per image.

Transcription notes (where the printed tables are odd, the numbers are kept as printed):

- Table 2, DISFA, ResNet-18, AU5: printed "032", read as 0.32 (Table 4 repeats the row with
  0.32).
- Table 2, DISFA, Scratch, MSE: the printed average 0.37 is not the mean of the printed AUs
  (0.34); Table 4 repeats 0.37 for the same model (HR†). Kept as printed.
- Table 3 (FERA2017) calls its error block MSE, but its rows are Table 6's *RMSE* rows of the
  same models (Scratch = HR†, Adaptation layers = Ours; Sec. 7.3: "for FERA 2017 we choose to
  report the Root Mean Squared Error"). aunet reports MSE, and its square root per AU beside it.
- Table 4, FERA2015, CCNN-IT, MSE: the printed average 1.57 is 0.012 from the mean of the
  printed AUs (1.558), more than rounding allows. Kept as printed.
- Table 4, the error block's "HR [48]" row is printed without the "*" its ICC row has (the
  extracted text has a stray glyph there); taken to be the same method, results of [48].
- Tables 4 and 7 label their error block with glyphs that did not survive extraction; read as
  MSE: Table 4's HR†, ResNet-18 and Ours rows are Table 2's MSE rows, and Table 7's label
  extracts as a rotated "E", "S" and a third glyph, as "MSE" rotated would.
- Table 6: the two halves are the development and test sets (headers "FERA 2017 (development
  set)" and "FERA 2017 (test set)", broken up in the extracted text); its error block is RMSE
  (Sec. 7.3). Its rows are on one line each in the text: the first eight values are the
  development set's, the last eight the test set's.
- Table 7 (FERA2015 *test* partition): its ResNet-18 rows, ICC and MSE, are digit for digit the
  development-partition rows of Tables 2 and 4. Kept as printed.
- Table 5's "flops" are the paper's; aunet's own counts are ``make bench-complexity``
  (``bench/results/complexity.json``) and each ``make table`` row's own network.

Experiments are aunet's names (``experiments/<name>.yaml``); the paper has no row for
``adapt_finetune`` (Sec. 6.5 reports only that it did not help).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aunet.aus import au_name

#: The paper's methods in the order of its Tables 2 and 3, as aunet experiments.
PAPER_METHODS: tuple[tuple[str, str], ...] = (
    ("scratch", "Scratch"),
    ("finetune", "Fine-tuning"),
    ("reparam", "Reparametrisation"),
    ("random_backbone", "Random Backbone"),
    ("attention", "Attention maps"),
    ("resnet18", "ResNet-18"),
    ("adapt", "Adaptation layers"),
)
AVERAGE = "avg"


#: The error measures a paper table can print, as :mod:`aunet.evaluation.tables` names its blocks.
ERRORS = ("mse", "rmse")


@dataclass(frozen=True)
class PaperTable:
    """One dataset's (and partition's) block of one of the paper's tables.

    Args:
        source: where it is printed, e.g. ``"Table 2, DISFA"``.
        dataset: the paper's dataset (``disfa``, ``fera2015``, ``fera2017``).
        partition: what was scored: ``folds`` (DISFA's three-fold cross-validation),
            ``devel`` or ``test``; as aunet's reports name their held-out frames.
        au_names: the AU columns, e.g. ``("AU01", ...)``.
        icc: row -> ``{AU: value or None, ..., "avg": printed average}``, in the printed order;
            a row is an aunet experiment's name where it is one (Tables 2 and 3, and
            :data:`COMPARISON_ROWS`), else its printed name.
        error: the same for the error block.
        error_name: what the error block holds: ``mse`` or ``rmse``.
        error_label: how the paper labels it, where that differs (Table 3 prints "MSE").
        labels: row -> the method's printed name.
    """

    source: str
    dataset: str
    partition: str
    au_names: tuple[str, ...]
    icc: dict[str, dict[str, float | None]]
    error: dict[str, dict[str, float | None]]
    error_name: str = "mse"
    error_label: str = ""
    labels: dict[str, str] = field(default_factory=lambda: dict(PAPER_METHODS))

    def __post_init__(self) -> None:
        if self.error_name not in ERRORS:
            raise ValueError(f"{self.source}: error_name must be one of {ERRORS}")


def _parse(block: str, au_numbers: tuple[int, ...]) -> dict[str, dict[str, float | None]]:
    """Rows of ``name v_1 ... v_K avg`` (``name | v_1 ...`` where the name has spaces).

    Returns ``{name: {AU..: v, "avg": avg}}``; a ``-`` value is None (not reported).
    """
    columns = [*(au_name(n) for n in au_numbers), AVERAGE]
    rows: dict[str, dict[str, float | None]] = {}
    for line in block.strip().splitlines():
        if "|" in line:
            name, text = (part.strip() for part in line.split("|"))
            values = text.split()
        else:
            name, *values = line.split()
        if len(values) != len(columns):
            raise ValueError(f"paper row {name!r}: {len(values)} values for {columns}")
        numbers = (None if value == "-" else float(value) for value in values)
        rows[name] = dict(zip(columns, numbers, strict=True))
    return rows


_FERA2015_AUS = (6, 10, 12, 14, 17)
_DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
_FERA2017_AUS = (1, 4, 6, 10, 12, 14, 17)

# Table 2, FERA2015 development partition: AU 6 10 12 14 17, Avg.
_TABLE_2_FERA2015_ICC = """
scratch          0.75 0.77 0.85 0.48 0.59 0.69
finetune         0.78 0.75 0.88 0.46 0.66 0.71
reparam          0.78 0.75 0.86 0.49 0.63 0.70
random_backbone  0.75 0.72 0.85 0.41 0.47 0.64
attention        0.78 0.73 0.89 0.49 0.67 0.71
resnet18         0.74 0.75 0.85 0.40 0.52 0.65
adapt            0.79 0.76 0.84 0.52 0.67 0.72
"""
_TABLE_2_FERA2015_MSE = """
scratch          1.00 1.06 0.71 1.64 0.86 1.05
finetune         0.79 1.19 0.59 1.82 0.60 1.00
reparam          0.80 1.13 0.55 1.67 0.55 0.94
random_backbone  0.87 1.09 0.68 1.73 1.04 1.08
attention        0.75 1.03 0.55 1.65 0.63 0.92
resnet18         0.98 0.98 0.86 1.37 0.90 1.02
adapt            0.88 0.98 0.57 1.55 0.55 0.91
"""
# Table 2, DISFA (three-fold cross-validation): AU 1 2 4 5 6 9 12 15 17 20 25 26, Avg.
_TABLE_2_DISFA_ICC = """
scratch          0.59 0.56 0.74 0.36 0.53 0.52 0.78 0.40 0.38 0.13 0.91 0.53 0.53
finetune         0.57 0.57 0.74 0.40 0.52 0.50 0.80 0.51 0.42 0.16 0.93 0.64 0.56
reparam          0.54 0.51 0.68 0.40 0.49 0.49 0.80 0.40 0.36 0.23 0.91 0.69 0.54
random_backbone  0.31 0.21 0.60 0.29 0.50 0.46 0.77 0.36 0.40 0.14 0.88 0.61 0.46
attention        0.51 0.50 0.77 0.47 0.60 0.50 0.82 0.43 0.45 0.21 0.93 0.62 0.57
resnet18         0.41 0.35 0.63 0.32 0.49 0.48 0.83 0.31 0.32 0.20 0.84 0.50 0.47
adapt            0.56 0.52 0.75 0.42 0.51 0.55 0.82 0.55 0.37 0.21 0.93 0.62 0.57
"""
_TABLE_2_DISFA_MSE = """
scratch          0.45 0.36 0.70 0.07 0.45 0.33 0.42 0.14 0.26 0.18 0.30 0.37 0.37
finetune         0.44 0.32 0.66 0.05 0.48 0.36 0.36 0.11 0.25 0.19 0.21 0.33 0.31
reparam          0.53 0.42 0.94 0.05 0.50 0.44 0.38 0.19 0.32 0.19 0.28 0.34 0.38
random_backbone  0.70 0.67 1.09 0.06 0.49 0.35 0.42 0.13 0.26 0.18 0.37 0.34 0.42
attention        0.51 0.40 0.68 0.06 0.40 0.30 0.38 0.15 0.26 0.21 0.22 0.31 0.32
resnet18         0.56 0.44 0.90 0.10 0.47 0.33 0.30 0.13 0.33 0.15 0.49 0.60 0.40
adapt            0.41 0.37 0.70 0.08 0.44 0.30 0.29 0.14 0.26 0.16 0.24 0.39 0.32
"""
# Table 3, FERA2017 development partition: AU 1 4 6 10 12 14 17, Avg.
_TABLE_3_FERA2017_ICC = """
scratch          0.46 0.49 0.77 0.81 0.87 0.48 0.50 0.63
finetune         0.45 0.42 0.80 0.80 0.83 0.63 0.48 0.63
reparam          0.45 0.44 0.78 0.80 0.86 0.56 0.46 0.62
random_backbone  0.47 0.39 0.78 0.80 0.85 0.47 0.45 0.60
attention        0.52 0.44 0.77 0.79 0.86 0.57 0.49 0.63
resnet18         0.46 0.45 0.76 0.78 0.85 0.60 0.46 0.62
adapt            0.54 0.42 0.79 0.80 0.86 0.59 0.49 0.64
"""
_TABLE_3_FERA2017_ERROR = """
scratch          0.46 0.49 0.88 0.80 0.74 1.26 0.73 0.76
finetune         0.39 0.55 0.86 0.83 0.79 1.06 0.92 0.77
reparam          0.50 0.46 0.86 0.84 0.81 1.15 0.80 0.77
random_backbone  0.54 0.47 0.84 0.84 0.76 1.29 0.75 0.78
attention        0.44 0.56 0.90 0.88 0.77 1.15 0.69 0.77
resnet18         0.58 0.49 0.93 0.88 0.81 1.13 0.83 0.81
adapt            0.54 0.48 0.89 0.86 0.84 1.14 0.67 0.78
"""

#: The paper's per-method results by the paper's dataset names.
PAPER_TABLES: dict[str, PaperTable] = {
    "fera2015": PaperTable(
        "Table 2, FERA2015 development partition",
        "fera2015",
        "devel",
        tuple(au_name(n) for n in _FERA2015_AUS),
        _parse(_TABLE_2_FERA2015_ICC, _FERA2015_AUS),
        _parse(_TABLE_2_FERA2015_MSE, _FERA2015_AUS),
    ),
    "disfa": PaperTable(
        "Table 2, DISFA three-fold cross-validation",
        "disfa",
        "folds",
        tuple(au_name(n) for n in _DISFA_AUS),
        _parse(_TABLE_2_DISFA_ICC, _DISFA_AUS),
        _parse(_TABLE_2_DISFA_MSE, _DISFA_AUS),
    ),
    "fera2017": PaperTable(
        "Table 3, FERA2017 development partition",
        "fera2017",
        "devel",
        tuple(au_name(n) for n in _FERA2017_AUS),
        _parse(_TABLE_3_FERA2017_ICC, _FERA2017_AUS),
        _parse(_TABLE_3_FERA2017_ERROR, _FERA2017_AUS),
        error_name="rmse",
        error_label="printed as MSE in Table 3",
    ),
}

#: aunet's dataset names -> the paper's table to show beside them. The synthetic faces carry
#: DISFA's AUs and protocol, so DISFA's numbers are their reference (a different dataset: for
#: the ordering of the methods, not the values).
REFERENCE_OF: dict[str, str] = {
    "disfa": "disfa",
    "bp4d": "fera2015",
    "fera2015": "fera2015",
    "fera2017": "fera2017",
    "synthetic": "disfa",
}


#: The rows of Tables 4, 6 and 7 that are aunet experiments: printed name -> experiment.
COMPARISON_ROWS: dict[str, str] = {
    "HR †": "scratch",  # Table 4: the paper's re-run of HR [48] (Sec. 3), its "Scratch"
    "HR [48]†": "scratch",  # Table 6, the same
    "HR-Scratch": "scratch",  # Table 7, the same
    "ResNet-18": "resnet18",
    "Ours": "adapt",  # Sec. 7: the adaptation layers
}

# Table 4, FERA2015 development partition: AU 6 10 12 14 17, Avg.
_TABLE_4_FERA2015_ICC = """
2DC [53]*      | 0.76 0.71 0.85 0.45 0.53 0.66
CCNN-IT [57]*  | 0.75 0.69 0.86 0.40 0.45 0.63
VGP-AE [14]*   | 0.75 0.66 0.88 0.47 0.49 0.65
HR [48]*       | 0.79 0.80 0.86 0.54 0.43 0.68
HR †           | 0.75 0.77 0.85 0.48 0.59 0.69
ResNet-18      | 0.74 0.75 0.85 0.40 0.52 0.65
Ours           | 0.79 0.76 0.84 0.52 0.67 0.72
"""
_TABLE_4_FERA2015_MSE = """
2DC [53]*      | 0.75 1.02 0.66 1.44 0.88 0.95
CCNN-IT [57]*  | 1.23 1.69 0.98 2.72 1.17 1.57
VGP-AE [14]*   | 0.82 1.28 0.70 1.43 0.77 1.00
HR [48]*       | 0.77 0.92 0.65 1.57 0.77 0.94
HR †           | 1.00 1.06 0.71 1.64 0.86 1.05
ResNet-18      | 0.98 0.98 0.86 1.37 0.90 1.02
Ours           | 0.88 0.98 0.57 1.55 0.55 0.91
"""
# Table 4, DISFA (three-fold cross-validation): AU 1 2 4 5 6 9 12 15 17 20 25 26, Avg.
_TABLE_4_DISFA_ICC = """
2DC [53]*      | 0.70 0.55 0.69 0.05 0.59 0.57 0.88 0.32 0.10 0.08 0.90 0.50 0.50
CCNN-IT [57]*  | -    -    -    -    -    -    -    -    -    -    -    -    -
VGP-AE [14]*   | 0.48 0.47 0.62 0.19 0.50 0.42 0.80 0.19 0.36 0.15 0.84 0.53 0.46
HR [48]*       | -    -    -    -    -    -    -    -    -    -    -    -    -
HR †           | 0.59 0.56 0.74 0.36 0.53 0.52 0.78 0.40 0.38 0.13 0.91 0.53 0.53
ResNet-18      | 0.41 0.35 0.63 0.32 0.49 0.48 0.83 0.31 0.32 0.20 0.84 0.50 0.47
Ours           | 0.56 0.52 0.75 0.42 0.51 0.55 0.82 0.55 0.37 0.21 0.93 0.62 0.57
"""
_TABLE_4_DISFA_MSE = """
2DC [53]*      | 0.32 0.39 0.53 0.26 0.43 0.30 0.25 0.27 0.61 0.18 0.37 0.55 0.37
CCNN-IT [57]*  | -    -    -    -    -    -    -    -    -    -    -    -    -
VGP-AE [14]*   | 0.51 0.32 1.13 0.08 0.56 0.31 0.47 0.20 0.28 0.16 0.49 0.44 0.41
HR [48]*       | -    -    -    -    -    -    -    -    -    -    -    -    -
HR †           | 0.45 0.36 0.70 0.07 0.45 0.33 0.42 0.14 0.26 0.18 0.30 0.37 0.37
ResNet-18      | 0.56 0.44 0.90 0.10 0.47 0.33 0.30 0.13 0.33 0.15 0.49 0.60 0.40
Ours           | 0.41 0.37 0.70 0.08 0.44 0.30 0.29 0.14 0.26 0.16 0.24 0.39 0.32
"""
# Table 6, FERA2017 development set: AU 1 4 6 10 12 14 17, Avg.
_TABLE_6_DEVEL_ICC = """
AUMPNet [5]*      | 0.38 0.23 0.66 0.69 0.76 0.46 0.33 0.50
SVR [3]*          | 0.18 0.13 0.50 0.65 0.63 0.48 0.20 0.40
MTask (Inv) [68]* | 0.44 0.25 0.72 0.77 0.80 0.55 0.34 0.55
MTask (Dep) [68]* | 0.54 0.41 0.70 0.78 0.82 0.50 0.45 0.60
HR [48]†          | 0.46 0.49 0.77 0.81 0.87 0.48 0.50 0.63
ResNet-18         | 0.46 0.45 0.76 0.78 0.85 0.60 0.46 0.62
Ours              | 0.54 0.42 0.79 0.80 0.86 0.59 0.49 0.64
"""
_TABLE_6_DEVEL_RMSE = """
AUMPNet [5]*      | -    -    -    -    -    -    -    -
SVR [3]*          | 0.42 0.47 1.79 1.46 1.59 2.07 0.95 1.25
MTask (Inv) [68]* | 0.55 0.56 0.99 0.88 0.91 1.14 0.87 0.84
MTask (Dep) [68]* | 0.52 0.57 0.99 0.95 0.83 1.17 0.75 0.82
HR [48]†          | 0.46 0.49 0.88 0.80 0.74 1.26 0.73 0.76
ResNet-18         | 0.58 0.49 0.93 0.88 0.81 1.13 0.83 0.81
Ours              | 0.54 0.48 0.89 0.86 0.84 1.14 0.67 0.78
"""
# Table 6, FERA2017 test set: AU 1 4 6 10 12 14 17, Avg.
_TABLE_6_TEST_ICC = """
AUMPNet [5]*      | 0.23 0.06 0.70 0.71 0.73 0.10 0.26 0.40
SVR [3]*          | 0.17 0.02 0.51 0.59 0.62 -0.03 0.19 0.30
MTask (Inv) [68]* | -    -    -    -    -    -    -    -
MTask (Dep) [68]* | 0.31 0.15 0.67 0.74 0.79 0.15 0.32 0.45
HR [48]†          | 0.38 0.20 0.77 0.79 0.82 0.19 0.40 0.51
ResNet-18         | 0.23 0.08 0.75 0.77 0.79 0.17 0.36 0.45
Ours              | 0.31 0.23 0.78 0.78 0.82 0.18 0.40 0.50
"""
_TABLE_6_TEST_RMSE = """
AUMPNet [5]*      | -    -    -    -    -    -    -    -
SVR [3]*          | 0.55 0.32 1.29 1.19 1.21 1.53 0.70 0.97
MTask (Inv) [68]* | -    -    -    -    -    -    -    -
MTask (Dep) [68]* | 0.74 0.47 0.97 1.05 0.87 1.21 0.85 0.88
HR [48]†          | 0.55 0.49 0.96 0.88 0.97 1.27 0.76 0.84
ResNet-18         | 0.95 0.53 1.02 0.92 1.03 1.39 0.90 0.96
Ours              | 0.89 0.42 1.00 0.98 1.06 1.63 0.69 0.95
"""
# Table 7, FERA2015 test partition: AU 6 10 12 14 17, Avg.
_TABLE_7_ICC = """
ISIR [31]*     | 0.79 0.80 0.86 0.71 0.44 0.72
CDL [4]*       | 0.69 0.73 0.83 0.50 0.37 0.62
HR-Scratch     | 0.79 0.81 0.82 0.60 0.41 0.69
ResNet-18      | 0.74 0.75 0.85 0.40 0.52 0.65
Ours           | 0.82 0.82 0.80 0.71 0.50 0.73
"""
_TABLE_7_MSE = """
ISIR [31]*     | 0.83 0.80 0.62 1.14 0.84 0.85
CDL [4]*       | -    -    -    -    -    -
HR-Scratch     | 0.96 0.97 0.82 1.08 1.10 0.99
ResNet-18      | 0.98 0.98 0.86 1.37 0.90 1.02
Ours           | 0.68 0.80 0.79 0.98 0.64 0.78
"""


def _comparison(
    source: str,
    dataset: str,
    partition: str,
    au_numbers: tuple[int, ...],
    icc: str,
    error: str,
    error_name: str = "mse",
) -> PaperTable:
    """A block of Table 4, 6 or 7: rows named as printed, aunet's experiments by their name."""
    key = {name: COMPARISON_ROWS.get(name, name) for name in _parse(icc, au_numbers)}
    return PaperTable(
        source,
        dataset,
        partition,
        tuple(au_name(n) for n in au_numbers),
        {key[name]: row for name, row in _parse(icc, au_numbers).items()},
        {key[name]: row for name, row in _parse(error, au_numbers).items()},
        error_name,
        labels={row: name for name, row in key.items()},
    )


#: The paper's comparisons with earlier work, by the paper's dataset names, in the paper's order.
PAPER_COMPARISONS: dict[str, tuple[PaperTable, ...]] = {
    "fera2015": (
        _comparison(
            "Table 4, FERA2015 development partition", "fera2015", "devel", _FERA2015_AUS,
            _TABLE_4_FERA2015_ICC, _TABLE_4_FERA2015_MSE,
        ),
        _comparison(
            "Table 7, FERA2015 test partition", "fera2015", "test", _FERA2015_AUS,
            _TABLE_7_ICC, _TABLE_7_MSE,
        ),
    ),
    "disfa": (
        _comparison(
            "Table 4, DISFA three-fold cross-validation", "disfa", "folds", _DISFA_AUS,
            _TABLE_4_DISFA_ICC, _TABLE_4_DISFA_MSE,
        ),
    ),
    "fera2017": (
        _comparison(
            "Table 6, FERA2017 development set", "fera2017", "devel", _FERA2017_AUS,
            _TABLE_6_DEVEL_ICC, _TABLE_6_DEVEL_RMSE, "rmse",
        ),
        _comparison(
            "Table 6, FERA2017 test set", "fera2017", "test", _FERA2017_AUS,
            _TABLE_6_TEST_ICC, _TABLE_6_TEST_RMSE, "rmse",
        ),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class PaperComplexity:
    """A row of Table 5: parameters, FLOPs and seconds per image as printed."""

    params: float
    flops: float
    seconds_per_image: float


#: Table 5 ("Computation complexity of the proposed methods").
PAPER_TABLE_5: dict[str, PaperComplexity] = {
    "resnet18": PaperComplexity(11.17e6, 4.75e9, 0.004),
    "scratch": PaperComplexity(1.65e6, 5.21e9, 0.012),
    "finetune": PaperComplexity(1.65e6, 5.21e9, 0.012),
    "reparam": PaperComplexity(1.79e6, 5.21e9, 0.016),
    "attention": PaperComplexity(2.65e6, 6.32e9, 0.021),
    "adapt": PaperComplexity(2.65e6, 6.32e9, 0.018),
    # The same row: aunet's adaptation layers at the ~1M trainable parameters the text gives.
    "adapt_1m": PaperComplexity(2.65e6, 6.32e9, 0.018),
}


def paper_table(dataset: str) -> PaperTable | None:
    """The paper's table to show beside aunet's results on ``dataset``, if it has one."""
    reference = REFERENCE_OF.get(dataset)
    return PAPER_TABLES[reference] if reference else None


def paper_comparisons(dataset: str) -> tuple[PaperTable, ...]:
    """The paper's comparisons with earlier work on aunet's ``dataset`` (Tables 4, 6, 7).

    None for the synthetic faces: those tables add other works' numbers on real faces, and
    their aunet rows (Scratch, ResNet-18, Adaptation layers) are Table 2's, already beside them.
    """
    reference = REFERENCE_OF.get(dataset)
    return PAPER_COMPARISONS[reference] if reference and dataset != "synthetic" else ()
