"""Where training numbers go: metrics.jsonl and TensorBoard, the same numbers in both.

On resume both are cut back to the checkpoint's global step, so a step logged after the last
checkpoint and before a crash is not logged twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from enstack.fsutil import atomic_write_text

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class Logbook:
    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.jsonl = model_dir / "metrics.jsonl"
        self._open: tuple[SummaryWriter, TextIO] | None = None  # while training

    def open(self, resume_step: int) -> None:
        """Start writing after `resume_step`: later lines (from a run killed past its last
        checkpoint) are dropped, and TensorBoard purges its later events."""
        self._truncate(resume_step)
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(
            log_dir=str(self.model_dir / "tb"),
            purge_step=resume_step + 1 if resume_step else None,
        )
        handle = open(self.jsonl, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._open = (tb, handle)

    def _truncate(self, resume_step: int) -> None:
        if not self.jsonl.is_file():
            return
        if resume_step == 0:
            self.jsonl.unlink()
            return
        kept = []
        for line in self.jsonl.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("global_step", 0) <= resume_step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        atomic_write_text(self.jsonl, "".join(line + "\n" for line in kept))

    def write(self, record: dict, scalars: dict[str, float], prefix: str) -> None:
        if self._open is None:
            raise RuntimeError("Logbook.write before Logbook.open")
        tb, handle = self._open
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        for name, value in scalars.items():
            tb.add_scalar(f"{prefix}/{name}", value, record["global_step"])

    def close(self) -> None:
        if self._open is not None:
            tb, handle = self._open
            handle.close()
            tb.close()
            self._open = None
