"""The typed schema of a checkpoint's `state.json`, checked when a checkpoint is verified.

A bad value (a negative step, a string where a number belongs, a truncated RNG state) makes the
checkpoint invalid with the field named, instead of a traceback deep inside torch at resume.
Fields added by later versions are optional here, so older checkpoints stay readable.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

NonNegative = Annotated[int, Field(ge=0)]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, use_attribute_docstrings=True)


class PythonRng(_Schema):
    version: int
    state: Annotated[
        list[Annotated[int, Field(ge=0, lt=2**32)]], Field(min_length=625, max_length=625)
    ]
    gauss: float | None


class NumpyRng(_Schema):
    kind: str
    pos: Annotated[int, Field(ge=0, le=624)]
    has_gauss: int
    cached: float


class RngMeta(_Schema):
    python: PythonRng
    numpy: NumpyRng
    cuda_devices: NonNegative = 0


class OptimizerMeta(_Schema):
    param_groups: list[dict[str, Any]]
    scalars: dict[str, dict[str, Any]] = Field(default_factory=dict)


class CheckpointState(_Schema):
    """Where a run stands: its step, its best epoch, and what a resume restores beside the
    tensors (optimizer, scheduler, random states)."""

    epoch: NonNegative
    """The epoch in progress (0-based)."""
    step: NonNegative
    """Optimizer steps done in that epoch: (epoch, step) is where a resume starts."""
    global_step: NonNegative
    """Optimizer steps done in all."""
    total_batches: NonNegative | None = None
    """Micro-batches in an epoch."""
    steps_per_epoch: NonNegative | None = None
    """Optimizer steps in an epoch."""
    best_f1: Annotated[float, Field(ge=0, le=1)] | None = None
    """The best epoch's selection score (val weighted F1; pretraining: 1 / perplexity)."""
    best_epoch: NonNegative | None = None
    """The epoch `best/` was exported from."""
    epochs_without_improvement: NonNegative = 0
    """Counted for early stopping."""
    finished: bool = False
    """The run is done: a later `train` answers "already trained"."""
    stopped_early: bool = False
    """It ended by early stopping."""
    loss_sum: float = 0.0
    """This epoch's summed step losses (for the running mean shown)."""
    loss_count: NonNegative = 0
    """Steps in that sum."""
    last_eval: dict[str, float] = Field(default_factory=dict)
    """The last validation's scores."""
    grad_accum_steps: Annotated[int, Field(ge=1)] = 1
    """Micro-batches per optimizer step."""
    seed: NonNegative | None = None
    """The run's seed."""
    world_size: Annotated[int, Field(ge=1)] = 1
    """Ranks that trained (torchrun)."""
    scheduler: dict[str, Any] | None = None
    """The learning-rate scheduler's state."""
    scaler: dict[str, Any] | None = None
    """The AMP grad scaler's state (fp16 on CUDA)."""
    optimizer: OptimizerMeta
    """The optimizer's parameter groups and scalars (its tensors are in safetensors)."""
    rng: RngMeta
    """Python's, NumPy's (and CUDA's) random states, so a resume draws what the run would have."""
    rng_ranks: list[RngMeta] | None = None
    """Every rank's random states (torchrun)."""

    @field_validator("loss_sum")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


def schema_problem(state: dict) -> str | None:
    """The first field of `state` that breaks the schema, described; None when it is valid."""
    try:
        CheckpointState.model_validate(state)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        return f"field {field!r}: {error['msg']}"
    return None
