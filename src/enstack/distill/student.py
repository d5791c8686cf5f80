"""The student's training: enstack's trainer, with the teacher's probabilities as targets.

Everything the trainer promises holds unchanged (mid-epoch checkpoints, exact resume after a
SIGKILL, SIGTERM saves and exits 130, progress, TensorBoard and metrics.jsonl): only the
training rows' targets and the loss differ. Validation still scores the student against the
true labels of the run's val split, so its best epoch is chosen as any model's is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from enstack.encode import EncodedSplit
from enstack.train.trainer import Trainer


class SoftTargetLoss(torch.nn.Module):
    """Cross-entropy against the teacher's probabilities softened by `temperature` (Hinton
    et al.'s distillation loss, scaled by T^2 so its gradients keep their size as T grows);
    against class ids (validation's true labels), plain cross-entropy."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not targets.is_floating_point():
            return F.cross_entropy(logits, targets)
        t = self.temperature
        # softening a distribution: its log-probabilities divided by T, renormalised
        soft = F.softmax(torch.log(targets.clamp_min(1e-12)) / t, dim=-1)
        return -(soft * F.log_softmax(logits / t, dim=-1)).sum(-1).mean() * (t * t)


class StudentTrainer(Trainer):
    """A Trainer whose training rows learn the teacher's probabilities (each window of a long
    function its function's), with `SoftTargetLoss`."""

    def __init__(self, *args: Any, teacher: np.ndarray, temperature: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = torch.as_tensor(teacher, dtype=torch.float32)
        self.temperature = temperature

    def _training_rows(self, split: EncodedSplit) -> EncodedSplit:
        """Each training row's target is its function's teacher probabilities."""
        functions = split.owner if split.owner is not None else torch.arange(len(split))
        if len(self.teacher) != split.functions:
            raise RuntimeError(  # the targets and the data are written together: a bug
                f"{len(self.teacher)} teacher rows for {split.functions} train functions"
            )
        return dataclasses.replace(split, labels=self.teacher[functions])

    def _loss_function(self, train_split: EncodedSplit) -> torch.nn.Module:
        return SoftTargetLoss(self.temperature)
