"""Optimizer and learning-rate schedule, from the training config."""

from __future__ import annotations

import math

import torch

from enstack.config import TrainingConfig


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
