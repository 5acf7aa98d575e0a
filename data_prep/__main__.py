"""``python -m data_prep <dataset> ... --out FILE.h5``: dispatch to one converter module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

#: Sub-command -> (module, one-line description). Only the chosen sub-command's module is
#: imported (its ``configure`` adds its arguments), so one converter's dependencies never stand
#: in the way of another, and ``--help`` lists them all without importing any.
CONVERTERS: dict[str, tuple[str, str]] = {
    "disfa": ("data_prep.disfa", "DISFA: left-camera videos, AU labels, 66-point landmarks"),
    "bp4d": ("data_prep.bp4d", "BP4D / FERA2015 intensity: frames and AU_INT labels"),
    "manifest": ("data_prep.manifest", "any dataset described by a CSV manifest"),
    "fera2017": ("data_prep.manifest", "FERA2017 from a CSV manifest (manifest --name fera2017)"),
    "300w-lp": ("data_prep.lp300w", "300W-LP landmark faces for FAN pre-training (no AUs)"),
    "synthetic": ("data_prep.synthetic", "procedural faces with exact landmarks and 12 AUs"),
}
#: Argument defaults a sub-command sets on top of its module's (a preset of a generic converter).
PRESETS: dict[str, dict[str, object]] = {"fera2017": {"name": "fera2017"}}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser; the sub-command named in ``argv`` gets its converter's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Convert a dataset into an aunet HDF5 frame store (see docs/data-format.md).",
    )
    commands = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    chosen = next((arg for arg in argv or () if not arg.startswith("-")), None)
    for name, (module_name, help_text) in CONVERTERS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module_name)
        if name == chosen:
            importlib.import_module(module_name).configure(sub)
            sub.set_defaults(**PRESETS.get(name, {}))
    return parser


def run(argv: list[str]) -> None:
    """Parse ``argv`` and run the chosen converter (errors propagate).

    The converter runs holding ``<out>.lock``: a second conversion into the same ``--out`` is
    refused before it reads anything (:func:`data_prep.common.one_writer`).
    """
    args = build_parser(argv).parse_args(argv)
    check_output(Path(args.out))
    from data_prep.common import one_writer  # after parsing: --help and its errors stay quick

    with one_writer(Path(args.out)):
        importlib.import_module(args.module).main(args)


def check_output(out: Path) -> None:
    """Fail before any work if ``out`` cannot be written, creating nothing.

    Raises:
        ConversionError: naming the file and why (checked on its nearest existing folder).
    """
    from data_prep.common import ConversionError

    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if out.is_dir():
        problem = "it is a folder"
    elif not folder.is_dir():
        problem = f"{folder} is not a folder"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"{folder} is not writable"
    else:
        return
    raise ConversionError(f"--out {out}: cannot write the store there ({problem}); choose another")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: input errors, Ctrl-C and SIGTERM end it with one line.

    Statuses 2, 130 and 143 (:func:`aunet.cli.guards.command_line`); an interruption says how to
    resume.
    """
    from aunet.cli.guards import command_line
    from data_prep.common import INPUT_ERRORS

    convert = command_line(
        "python -m data_prep",
        INPUT_ERRORS,
        stop_hint="; the finished subjects are kept: re-run the same command to resume",
    )(lambda: run(sys.argv[1:] if argv is None else argv))
    convert()


if __name__ == "__main__":
    main()
