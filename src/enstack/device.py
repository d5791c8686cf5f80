"""Which device and precision run a model: shared by training, stacking and scanning."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from enstack.errors import UserError


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("training.device: cuda was asked for, but torch sees no CUDA device")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def amp_mode(requested: str, device: torch.device) -> str:
    """'bf16', 'fp16' or 'off'. AMP is a CUDA feature here; CPU training runs in fp32."""
    if device.type != "cuda":
        if requested in ("bf16", "fp16"):
            raise UserError(f"training.amp: {requested} needs a CUDA device (use auto or off)")
        return "off"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return requested


def use_deterministic_kernels(device: torch.device) -> None:
    """Make CUDA training repeatable bit for bit (`training.deterministic`).

    cuBLAS reads CUBLAS_WORKSPACE_CONFIG when its handle is created, so this runs before the
    first CUDA operation; an operation with no deterministic kernel then raises instead of
    silently differing. On CPU enstack's training is deterministic without it.
    """
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def autocast(mode: str, device: torch.device):
    if mode == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpus_available() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (what a
    CI container is given), not the host's core count that PyTorch sees by default."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = count or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def fit_cpu_threads() -> None:
    """Inference threads: as many as the CPUs this process may use, unless the user chose
    (OMP_NUM_THREADS). More threads than CPUs on a shared runner make every step wait on
    descheduled threads, which is where throughput collapses."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    available = cpus_available()
    if torch.get_num_threads() > available:
        torch.set_num_threads(available)
