"""Optimizer, LR schedule and mixed precision, from the training config."""

from __future__ import annotations

import contextlib
import math
import os

import torch

from enstack.config import TrainingConfig
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


def make_optimizer(model: torch.nn.Module, tc: TrainingConfig) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights get no weight decay (the usual BERT recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": tc.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused: one kernel for all parameters on CUDA (elementwise, so deterministic); on CPU the
    # per-parameter loop, whose arithmetic every CPU checkpoint so far was written with
    on_cuda = next(model.parameters()).is_cuda
    return torch.optim.AdamW(
        groups, lr=tc.learning_rate, foreach=False, fused=True if on_cuda else None
    )


def make_scheduler(optimizer: torch.optim.Optimizer, tc: TrainingConfig, total_steps: int):
    warmup = round(tc.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if tc.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if tc.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return max(0.0, 1.0 - progress)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
