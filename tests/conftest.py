"""Shared test configuration: GPU tests skip without CUDA; every test is seeded."""

import os

import cv2
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# The tests use tiny tensors, where a second thread brings nothing but contention (and, on a
# shared 2-core machine, a 10x slowdown); subprocesses the tests start inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
# Tests call OpenCV in this process and then fork DataLoader workers, which deadlock in OpenCV
# if its thread pool was started before the fork (see aunet/data/dataset.py).
cv2.setNumThreads(0)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running one-node SLURM cluster (tests/slurm_cluster.py), stopped after the module."""
    from slurm_cluster import Cluster, install_slurm

    reason = install_slurm()
    if reason is not None:
        pytest.skip(f"cannot run a SLURM cluster here: {reason}")
    started = Cluster(tmp_path_factory.mktemp("slurm"))
    if started.cpus < 2:
        started.stop()
        pytest.skip(f"the SLURM tests need 2 CPUs; this machine has {started.cpus}")
    yield started
    started.stop()
