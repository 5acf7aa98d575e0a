"""``python -m data_prep <dataset> ... --out FILE.h5``: dispatch to one converter module."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Sub-command -> (module, one-line description). Converter modules import their optional,
#: heavy dependencies (dlib, the video decoder) inside functions, so building this parser needs
#: none of them.
CONVERTERS: dict[str, tuple[str, str]] = {
    "disfa": ("data_prep.disfa", "DISFA: left-camera videos, AU labels, 66-point landmarks"),
    "bp4d": ("data_prep.bp4d", "BP4D / FERA2015 intensity: frames and AU_INT labels"),
    "manifest": ("data_prep.manifest", "any dataset described by a CSV manifest (e.g. FERA2017)"),
    "300w-lp": ("data_prep.lp300w", "300W-LP landmark faces for FAN pre-training (no AUs)"),
    "synthetic": ("data_prep.synthetic", "procedural faces with exact landmarks and 12 AUs"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per converter."""
    parser = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Convert a dataset into an aunet HDF5 frame store (see docs/data-format.md).",
    )
    commands = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, (module_name, help_text) in CONVERTERS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module_name)
        importlib.import_module(module_name).configure(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen converter."""
    args = build_parser().parse_args(argv)
    importlib.import_module(args.module).main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
