"""The W&B runs of evaluations: the cross-validation report and the robustness study.

Each is a run of its own in the W&B group of the training runs it evaluates
(``<experiment>-<dataset>``), with its job type (``cv-report``, ``robustness``), so that W&B's
grouping by group and job type shows an experiment's evaluations beside its training runs. Each
carries the resolved config of the runs it evaluates, nested as a fit run's config is
(``model.init_args.lr``, ``trainer.max_epochs``, ...), so that the dashboard's run table and
parallel-coordinates plot compare experiments on those settings against the evaluated figures,
and the W&B ids of those runs, so that a reader finds them from the evaluation.
"""

from __future__ import annotations

import contextlib
import netrc
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from aunet.runs import CONFIG_FILE

WandbMode = Literal["auto", "online", "offline", "disabled"]
#: The file of a run folder that holds its W&B run id (:func:`wandb_run_id`).
WANDB_ID_FILE = "wandb_id"
_ABSENT = object()


def logged_run_id(run_dir: str | os.PathLike) -> str | None:
    """The W&B id of the run in ``run_dir``, or None when it logged to no W&B run.

    Only read: :func:`wandb_run_id` would make an id for a run that never had one.
    """
    path = Path(run_dir) / WANDB_ID_FILE
    return path.read_text().strip() if path.exists() else None


def run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The resolved config of a run (its ``config.yaml``), or an empty dict without one."""
    path = Path(run_dir) / CONFIG_FILE
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def shared_config(configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The settings on which every config agrees, nested as given; the others are left out.

    The folds of a cross-validation differ in their own fold and run folder (``data.fold``,
    ``run.dir``) and agree on everything the experiment sets: what is left is the experiment's
    config, which runs of other experiments have under the same keys.
    """
    if not configs:
        return {}
    first, *others = configs
    shared: dict[str, Any] = {}
    for key, value in first.items():
        values = [other.get(key, _ABSENT) for other in others]
        if isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in values):
            nested = shared_config([value, *values])
            if nested:
                shared[key] = nested
        elif all(v == value for v in values):
            shared[key] = value
    return shared


def start_evaluation_run(
    folder: Path,
    experiment: str,
    dataset: str,
    job_type: str,
    name: str,
    config: Mapping[str, Any],
    mode: WandbMode = "auto",
    project: str = "aunet",
) -> Any:
    """The W&B run of an evaluation kept in ``folder``, or None when W&B is disabled.

    Args:
        folder: the evaluation's output folder; its ``wandb_id`` keeps the run, so that
            re-making the evaluation updates the same W&B run.
        experiment: the evaluated experiment.
        dataset: its dataset.
        job_type: ``cv-report`` or ``robustness``.
        name: the run's name after ``<experiment>-<dataset>-`` (``cv``, ``robustness``).
        config: the run's config.
        mode: ``auto``/``online``/``offline``/``disabled``, as ``run.wandb`` of ``aunet fit``.
        project: the W&B project (``run.wandb_project``).
    """
    group = f"{experiment}-{dataset}"
    return start_summary_run(
        # Absolute: wandb's core process, which a second run of this process reuses, resolves
        # a relative folder against its own working directory, so after a chdir (a notebook,
        # the tests) the second run's file went nowhere the folder shows.
        folder.resolve(),
        mode,
        project,
        group=group,
        name=f"{group}-{name}",
        job_type=job_type,
        tags=[experiment, dataset, name],
        config=dict(config),
    )


def wandb_offline(mode: WandbMode) -> bool:
    """Whether W&B should log offline, for ``auto``/``online``/``offline``."""
    environment = os.environ.get("WANDB_MODE", "").lower()
    if mode == "offline" or environment in ("offline", "dryrun"):
        return True
    if mode == "online" or environment == "online":
        return False
    if os.environ.get("WANDB_API_KEY"):
        return False
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is None
    except (FileNotFoundError, netrc.NetrcParseError):
        return True


def wandb_run_id(folder: Path) -> str:
    """The W&B run id kept in ``folder/wandb_id``, made once (a resumed run continues it).

    Every process of a run calls this (under ``srun`` all ranks start at once): each offers
    a random id by hard-linking a complete file to ``wandb_id``, which only the first link
    creates, and all then read the winner, so the file never holds a lost id.
    """
    id_file = folder / WANDB_ID_FILE
    if not id_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        offer = secrets.token_hex(4)  # W&B accepts any short [a-z0-9] id
        offered = folder / f".wandb_id.{offer}"
        offered.write_text(offer + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(offered, id_file)
        offered.unlink()
    return id_file.read_text().strip()


def wandb_disabled(mode: WandbMode) -> bool:
    """Whether nothing goes to W&B: ``run.wandb disabled`` or ``WANDB_MODE=disabled``."""
    return mode == "disabled" or os.environ.get("WANDB_MODE", "").lower() == "disabled"


def own_wandb_service() -> None:
    """Make the next W&B run of this process start its own wandb-core service.

    wandb keeps its service's address in ``WANDB_SERVICE``, which child processes inherit (and
    sbatch passes on): a run would join its parent's service, where a killed predecessor with
    the same run id still counts as live and refuses the resume.
    """
    os.environ.pop("WANDB_SERVICE", None)


def start_summary_run(folder: Path, mode: WandbMode, project: str, **settings: Any) -> Any:
    """A W&B run kept in ``folder`` (its id in ``folder/wandb_id``), or None when disabled.

    For the runs that summarise others (cross-validation reports, tables): re-making one
    updates the same W&B run. ``settings`` go to ``wandb.init`` (group, name, tags, ...).
    """
    if wandb_disabled(mode):
        return None
    import wandb

    own_wandb_service()
    return wandb.init(
        project=project,
        # Absolute: given a relative dir, a second run opened after this process changed
        # directory wrote no run file under it (tests/training/test_wandb_runs.py).
        dir=str(Path(folder).resolve()),
        id=wandb_run_id(folder),
        resume="allow",
        mode="offline" if wandb_offline(mode) else "online",
        **settings,
    )
