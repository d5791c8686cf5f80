"""What a training run carries and returns: its scalar state, its paths, its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from enstack.run_layout import ModelPaths


@dataclass
class TrainState:
    """The scalar state of a run. (epoch e, step s): s optimizer steps of epoch e are done."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    total_batches: int = 0  # micro-batches in an epoch
    steps_per_epoch: int = 0
    # the best epoch's selection score: val weighted F1 (pretraining: 1 / val MLM perplexity)
    best_f1: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    finished: bool = False
    stopped_early: bool = False
    loss_sum: float = 0.0  # this epoch's summed step losses, for the running mean
    loss_count: int = 0
    last_eval: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """What a training run answers (`es.train`): where its files are, its final state (also
    in the last checkpoint's `state.json`, the Records page's training state), the checkpoint
    it resumed from, and whether it found the model already trained."""

    paths: ModelPaths
    state: TrainState
    resumed_from: Path | None
    already_done: bool
    phase_seconds: dict[str, float] = field(default_factory=dict)  # where the loop's time went
