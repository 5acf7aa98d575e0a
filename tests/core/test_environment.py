"""The install check: any build of the pinned torch, no CUDA packages beside a CPU build."""

from __future__ import annotations

import subprocess
import sys

from aunet.environment import PINNED_TORCH, environment_problems


def test_the_pinned_cpu_build_alone_and_a_cuda_build_with_its_packages_pass():
    assert environment_problems(f"{PINNED_TORCH}+cpu", None, ["numpy", "torch"]) == []
    cuda = ["torch", "nvidia-cublas-cu12", "triton"]
    assert environment_problems(f"{PINNED_TORCH}+cu128", "12.8", cuda) == []
    assert environment_problems(PINNED_TORCH, None, ["torch"]) == []


def test_another_torch_or_cuda_packages_beside_a_cpu_build_are_named():
    (problem,) = environment_problems("2.15.0", "12.8", ["torch", "nvidia-cudnn-cu12"])
    assert problem.startswith(f"torch 2.15.0 is installed, aunet pins {PINNED_TORCH}")
    (problem,) = environment_problems(f"{PINNED_TORCH}+cpu", None, ["Triton", "nvidia-nccl-cu12"])
    assert problem.startswith("CUDA packages beside the CPU build of torch: Triton, nvidia-nccl")


def test_this_environment_passes_the_check_make_install_runs():
    result = subprocess.run([sys.executable, "-m", "aunet.environment"], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
