"""The third-party notices every fit printed, silenced each at its source and by its own text.

A fit printed four lines that ask nothing of aunet's users and drowned the warnings that do:

- W&B's "The anonymous setting has no effect and will be removed": Lightning's
  ``WandbLogger`` always passes ``anonymous`` to ``wandb.init`` (``None`` when unset), and
  wandb 0.31 warns whenever the setting is given at all. :class:`AUNetWandbLogger` does not
  pass it.
- Lightning's "💡 Tip: For seamless cloud logging ..." (and its litmodels sibling), logged at
  INFO whenever no ``LitLogger`` runs; Lightning has no setting for it, so
  :class:`LightningTips` drops those records, and only those, from Lightning's rank-zero logger,
  which also carries aunet's own lines (``precision: ...``).
- torch 2.13's FutureWarning "``isinstance(treespec, LeafSpec)`` is deprecated", raised by
  Lightning's own ``pytorch_lightning/utilities/_pytree.py`` (it builds ``LeafSpec()``): only
  Lightning can change that, so it is ignored for that message from that module alone.
- jsonargparse's deprecation of ``save(skip_none=...)``: aunet passes the new name
  (:data:`KEEP_NONE_VALUES`).

Nothing else is filtered: every other warning, Lightning's, W&B's and aunet's, still shows.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import jsonargparse
from packaging.version import Version
from pytorch_lightning.loggers import WandbLogger

#: The deprecation Lightning's ``_pytree`` module triggers in torch (message, origin module).
LEAFSPEC_MESSAGE = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
LEAFSPEC_MODULE = r"pytorch_lightning\.utilities\._pytree\Z"
#: How Lightning's advertising tips start, and the modules that log them.
TIP_PREFIX = "💡 Tip: For seamless cloud"
TIP_MODULES = frozenset({"logger_connector", "callback_connector"})
#: The loggers Lightning's ``rank_zero_info`` writes to (whichever of the two packages was
#: imported last sets it).
RANK_ZERO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)
#: ``ArgumentParser.save``'s "write the None values too" (a run's ``config.yaml`` is complete):
#: jsonargparse 4.49 renamed ``skip_none`` to ``skip_unset`` and warns at every use of the old
#: name, which older releases (the project allows 4.27) still need.
KEEP_NONE_VALUES: dict[str, bool] = (
    {"skip_unset": False}
    if Version(jsonargparse.__version__) >= Version("4.49")
    else {"skip_none": False}
)


class LightningTips(logging.Filter):
    """Drop Lightning's "💡 Tip: For seamless cloud ..." records; pass every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a tip logged by Lightning's logger or callback connector."""
        return not (record.module in TIP_MODULES and str(record.msg).startswith(TIP_PREFIX))


_TIPS = LightningTips()


def silence_third_party_notices() -> None:
    """Install the warning filter and the log filter above (idempotent: a fit may call it twice).

    Called when a CLI is built, before the Trainer logs its tip and before the fit flattens its
    first batch (:mod:`pytorch_lightning.utilities._pytree`).
    """
    warnings.filterwarnings(
        "ignore", message=LEAFSPEC_MESSAGE, category=FutureWarning, module=LEAFSPEC_MODULE
    )
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _TIPS not in logger.filters:
            logger.addFilter(_TIPS)


class AUNetWandbLogger(WandbLogger):
    """Lightning's W&B logger without its ``anonymous=None`` argument, and with one config.

    wandb (0.31 here) has no anonymous mode left and warns whenever the setting is passed, even
    as None; Lightning passes it always. A value given explicitly is kept (and wandb warns).

    The W&B run config is the run's whole config, logged once (:meth:`log_run_config`): the
    hyperparameters Lightning sends at every start, the module's flat beside it, are in it
    already (``model.init_args``), so :meth:`log_hyperparams` drops them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous", False) is None:
            del self._wandb_init["anonymous"]

    def log_hyperparams(self, params: Any) -> None:
        """Nothing: the module's hyperparameters are part of the run config logged once."""

    def log_run_config(self, config: dict[str, Any]) -> None:
        """Log ``config`` (the run's whole config, nested) as the W&B run config."""
        super().log_hyperparams(config)
