"""The check ``make install`` runs last: the environment still holds the pinned torch build.

Lightning, torchmetrics and others declare an unpinned ``torch``; a pip run that ignored
``constraints.txt`` could replace the pinned 2.13.0 by the newest release and its gigabytes of
CUDA wheels. The check accepts any build of 2.13.0: the CPU one (pip's local wheel, or
``TORCH_INDEX=https://download.pytorch.org/whl/cpu``) with no CUDA packages beside it, or a CUDA
one from a cluster's ``TORCH_INDEX``, which brings its own ``nvidia-*`` and ``triton`` packages.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from importlib.metadata import distributions

#: The torch release every install path pins (Makefile, ``constraints.txt``).
PINNED_TORCH = "2.13.0"
#: Distributions that only a CUDA build of torch needs.
CUDA_PACKAGE_PREFIXES = ("nvidia-", "triton")


def environment_problems(
    torch_version: str, torch_cuda: str | None, installed: Iterable[str]
) -> list[str]:
    """What is wrong with an environment holding ``torch_version`` and ``installed`` packages.

    Args:
        torch_version: ``torch.__version__`` (``2.13.0+cpu``, ``2.13.0+cu128``, ...).
        torch_cuda: ``torch.version.cuda``: None for a CPU build.
        installed: the names of the installed distributions.

    Returns:
        One sentence per problem; empty when the environment is as ``make install`` intends.
    """
    problems = []
    release = torch_version.split("+", 1)[0]
    if release != PINNED_TORCH:
        problems.append(
            f"torch {torch_version} is installed, aunet pins {PINNED_TORCH}: install through "
            "constraints.txt (make install), which no dependency can override"
        )
    if torch_cuda is None:
        cuda_packages = sorted(
            name for name in installed if name.lower().startswith(CUDA_PACKAGE_PREFIXES)
        )
        if cuda_packages:
            problems.append(
                f"CUDA packages beside the CPU build of torch: {', '.join(cuda_packages)}; "
                "something installed them without constraints.txt (remove .venv, make install)"
            )
    return problems


def main() -> None:
    """Print each problem of this environment on stderr; exit 1 if there is any."""
    import torch

    names = [dist.metadata["Name"] or "" for dist in distributions()]
    problems = environment_problems(torch.__version__, torch.version.cuda, names)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
