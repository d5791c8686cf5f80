"""Where the training loop's time goes, phase by phase."""

from __future__ import annotations

import time

import torch


class PhaseClock:
    """Wall time per phase of the loop (data, forward, backward, optimizer, checkpoint).

    On CUDA each lap synchronises, so kernels are charged to the phase that launched them;
    on CPU the cost is two clock reads per phase.
    """

    def __init__(self, device: torch.device) -> None:
        self.sync = device.type == "cuda"
        self.totals: dict[str, float] = {}
        self._mark = 0.0

    def start(self) -> None:
        self._mark = self._now()

    def lap(self, phase: str) -> None:
        now = self._now()
        self.totals[phase] = self.totals.get(phase, 0.0) + now - self._mark
        self._mark = now

    def _now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def summary(self) -> str:
        total = sum(self.totals.values()) or 1.0
        return ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f}%)" for k, v in self.totals.items())
