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
    model_config = ConfigDict(extra="allow", strict=True)


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
    epoch: NonNegative
    step: NonNegative
    global_step: NonNegative
    total_batches: NonNegative | None = None
    steps_per_epoch: NonNegative | None = None
    best_f1: Annotated[float, Field(ge=0, le=1)] | None = None
    best_epoch: NonNegative | None = None
    epochs_without_improvement: NonNegative = 0
    finished: bool = False
    stopped_early: bool = False
    loss_sum: float = 0.0
    loss_count: NonNegative = 0
    last_eval: dict[str, float] = Field(default_factory=dict)
    grad_accum_steps: Annotated[int, Field(ge=1)] = 1
    seed: NonNegative | None = None
    world_size: Annotated[int, Field(ge=1)] = 1
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    optimizer: OptimizerMeta
    rng: RngMeta
    rng_ranks: list[RngMeta] | None = None

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
