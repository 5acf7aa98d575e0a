"""Numeric precision chosen by the hardware: bf16 autocast where it is native, float32 elsewhere.

bfloat16 autocast (Lightning's ``bf16-mixed``) halves the memory traffic of the convolutions
where the hardware computes in bf16: CUDA GPUs that support it (Ampere and newer, and ROCm), and
CPUs with AVX512_BF16 or AMX-BF16, where oneDNN runs bf16 kernels. Elsewhere it is emulated and
slow: on a CPU with AVX2 only, a training step under bf16 autocast takes several times as long as
in float32 (``docs/cluster.md``, "DDP and mixed precision"). So ``precision: auto``, the default
of the experiment configs, resolves to ``bf16-mixed`` only where bf16 is native and to
``32-true`` otherwise; any other value (a config file or ``--trainer.precision``) is kept as it
is. The CPU is asked as PyTorch and oneDNN see it (``torch.cpu.get_capabilities()``, from
cpuinfo, and ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``), never by its name.

:class:`AUNetTrainer` is Lightning's Trainer with ``auto`` accepted (LightningCLI type-checks
``trainer.precision`` against the Trainer's signature); the CLI resolves ``auto`` before it
builds the Trainer, so the run's ``config.yaml`` records the precision that ran.

>>> choose_precision("32-true", "cpu").precision
'32-true'
"""

import inspect
from dataclasses import dataclass
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info

AUTO = "auto"
BF16_MIXED = "bf16-mixed"
FLOAT32 = "32-true"
#: The CPU features (keys of ``torch.cpu.get_capabilities()``) that compute bf16 natively.
CPU_BF16_FEATURES = {"amx_bf16": "AMX_BF16", "avx512_bf16": "AVX512_BF16"}
#: What Lightning's Trainer accepts as ``precision``, read from its signature.
TrainerPrecision = inspect.signature(pl.Trainer.__init__).parameters["precision"].annotation


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses and why.

    Args:
        precision: a value of Lightning's ``precision`` (``bf16-mixed``, ``32-true``, ...).
        reason: why, in words (the hardware's answer, or the setting that asked for it).
    """

    precision: Any
    reason: str

    def __str__(self) -> str:
        return f"precision: {self.precision} ({self.reason})"


def device_type(accelerator: object) -> str:
    """``cuda``, ``mps`` or ``cpu``: where a Trainer with this ``accelerator`` computes.

    ``auto`` and ``gpu`` pick as Lightning does (MPS, else CUDA; ``auto`` falls back to the CPU);
    an unknown name or an Accelerator object is returned as its lower-case text.
    """
    name = str(accelerator if accelerator is not None else AUTO).lower()
    if name in (AUTO, "gpu"):
        if torch.backends.mps.is_available():
            return "mps"
        if torch.cuda.is_available() or name == "gpu":
            return "cuda"
        return "cpu"
    return name


def cuda_bf16() -> PrecisionChoice:
    """``bf16-mixed`` on a CUDA device that computes bf16 natively, else ``32-true``."""
    if not torch.cuda.is_available():
        return PrecisionChoice(FLOAT32, "no CUDA device visible")
    name = torch.cuda.get_device_name()
    major, minor = torch.cuda.get_device_capability()
    device = f"{name} (compute capability {major}.{minor})"
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return PrecisionChoice(BF16_MIXED, f"GPU {device} supports bf16")
    return PrecisionChoice(FLOAT32, f"no native bf16 on GPU {device}")


def cpu_bf16() -> PrecisionChoice:
    """``bf16-mixed`` on a CPU with AVX512_BF16 or AMX-BF16 that oneDNN uses, else ``32-true``."""
    capabilities = torch.cpu.get_capabilities()
    features = [name for key, name in CPU_BF16_FEATURES.items() if capabilities.get(key)]
    if not features:
        level = torch.backends.cpu.get_cpu_capability()
        return PrecisionChoice(FLOAT32, f"no native bf16 on this CPU ({level})")
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return PrecisionChoice(
            FLOAT32, f"CPU has {' and '.join(features)}, but this torch build's oneDNN has no bf16"
        )
    return PrecisionChoice(BF16_MIXED, f"CPU supports {' and '.join(features)}")


def choose_precision(
    requested: object, accelerator: object = AUTO, setting: str = "trainer.precision"
) -> PrecisionChoice:
    """Resolve ``auto`` (or None, the Trainer's own default) for the device; keep anything else.

    Args:
        requested: the configured precision.
        accelerator: the Trainer's ``accelerator`` (``auto``, ``cpu``, ``gpu``, ``cuda``, ...),
            or a torch device type (``cpu``, ``cuda``).
        setting: the option's name, for the reason of a value that was set explicitly.
    """
    if requested not in (AUTO, None):
        return PrecisionChoice(requested, f"set by {setting}")
    kind = device_type(accelerator)
    if kind == "cuda":
        return cuda_bf16()
    if kind == "cpu":
        return cpu_bf16()
    return PrecisionChoice(
        FLOAT32, f"bf16 autocast is chosen by the hardware on CUDA and CPUs, not {kind}"
    )


#: A Trainer batch limit: an int is a number of batches, a float a fraction of them. Written
#: ``int | float`` (a ``types.UnionType``, which keeps its order) so that the command line tries
#: int first: Lightning annotates the limits ``Optional[Union[int, float]]``, but ``typing``
#: caches unions as equal whatever their order, and in practice hands back a ``Union[float, int,
#: None]`` made earlier, under which LightningCLI parses ``--trainer.limit_train_batches 1`` as
#: 1.0, the whole epoch, where the user asked for one batch.
BatchLimit = int | float | None


class AUNetTrainer(pl.Trainer):
    """Lightning's Trainer whose ``precision`` also takes ``auto``, its default here.

    ``auto`` is resolved by :func:`choose_precision` for the Trainer's accelerator (and printed).
    The batch limits are Lightning's, typed so that an integer given on the command line stays
    an integer (:data:`BatchLimit`); every other argument is Lightning's.

    Args:
        precision: Lightning's ``precision``, or ``auto``: bf16 autocast where it is native.
        limit_train_batches: training batches per epoch (int), or the fraction of them (float).
        limit_val_batches: validation batches per epoch (int), or the fraction of them (float).
        limit_test_batches: test batches (int), or the fraction of them (float).
        limit_predict_batches: prediction batches (int), or the fraction of them (float).
        overfit_batches: train and validate on this many training batches (int) or this
            fraction of them (float); 0 = off.
        kwargs: Lightning's other Trainer arguments.
    """

    def __init__(
        self,
        *,
        precision: TrainerPrecision | Literal["auto"] = AUTO,
        limit_train_batches: BatchLimit = None,
        limit_val_batches: BatchLimit = None,
        limit_test_batches: BatchLimit = None,
        limit_predict_batches: BatchLimit = None,
        overfit_batches: int | float = 0.0,
        **kwargs: Any,
    ) -> None:
        if precision in (AUTO, None):
            choice = choose_precision(precision, kwargs.get("accelerator", AUTO))
            rank_zero_info(str(choice))
            precision = choice.precision
        super().__init__(
            precision=precision,
            limit_train_batches=limit_train_batches,
            limit_val_batches=limit_val_batches,
            limit_test_batches=limit_test_batches,
            limit_predict_batches=limit_predict_batches,
            overfit_batches=overfit_batches,
            **kwargs,
        )
