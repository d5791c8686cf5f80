"""One runner for the stages that publish a directory: prepare, features, stack and evaluate.

What they share is written once, here: hold the stage's lock on the run directory, remove what
a killed run left beside the output, read and fingerprint the inputs, answer with what is
already published when it was built from the same inputs, and otherwise build the output in a
staged directory that replaces the published one only when complete. A stage keeps only what
it reads and what it builds:

    class Evaluate(Stage[EvaluateInputs, StackSummary]):
        lock = "evaluate"
        def inputs(self) -> EvaluateInputs: ...      # read, check, fingerprint
        def reuse(self, inputs) -> StackSummary | None: ...   # the published record, if current
        def build(self, inputs, tmp: Path) -> StackSummary: ...  # write into `tmp`

    result = run_stage(Evaluate(config))   # StageResult(directory, record, skipped)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, Protocol, TypeVar

from enstack.fsutil import clean_debris, stage_lock, staged_dir


class Fingerprinted(Protocol):
    @property
    def fingerprint(self) -> str: ...


InputsT = TypeVar("InputsT", bound=Fingerprinted)
RecordT = TypeVar("RecordT")


@dataclass(frozen=True)
class StageResult(Generic[RecordT]):
    """What a stage run answers: where its output is, the record it wrote (or found), and
    whether it found the output current and wrote nothing."""

    directory: Path
    record: RecordT
    skipped: bool


class Stage(ABC, Generic[InputsT, RecordT]):
    """A stage's own part; `run_stage` does the rest."""

    # the lock held on the run directory while the stage runs; None for a stage that runs
    # inside another's (features, under stack's lock)
    lock: ClassVar[str | None]

    def __init__(self, run_dir: Path, output: Path) -> None:
        self.run_dir = run_dir
        self.output = output

    @abstractmethod
    def inputs(self) -> InputsT:
        """Read and check what the stage depends on; the result's `fingerprint` names it."""

    @abstractmethod
    def reuse(self, inputs: InputsT) -> RecordT | None:
        """The published output's record when it was built from `inputs` and is intact."""

    @abstractmethod
    def build(self, inputs: InputsT, tmp: Path) -> RecordT:
        """Write the output into `tmp` (published in its place when this returns)."""


def run_stage(stage: Stage[InputsT, RecordT]) -> StageResult[RecordT]:
    """Run `stage` under its lock: reuse what is current, else build and publish."""
    lock = stage_lock(stage.run_dir, stage.lock) if stage.lock else nullcontext()
    with lock:
        inputs = stage.inputs()
        out = stage.output
        clean_debris(out.parent, out.name)  # what a killed run left (under this lock)
        found = stage.reuse(inputs)
        if found is not None:
            return StageResult(out, found, skipped=True)
        with staged_dir(out) as tmp:
            record = stage.build(inputs, tmp)
        return StageResult(out, record, skipped=False)
