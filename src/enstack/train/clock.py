"""Where the training loop's time goes, phase by phase."""

from __future__ import annotations

import time

import torch

# CUDA event pairs held before their times are read (one wait on the GPU per this many laps)
_PENDING_LAPS = 512


class PhaseClock:
    """Time per phase of the loop (data, forward, backward, optimizer, checkpoint).

    On CPU: wall time, two clock reads per phase. On CUDA: GPU time between CUDA events
    recorded at each lap, read back in batches; the host never waits on the GPU to take a
    lap, so timing does not serialise the loop (synchronising at every lap cost throughput).
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._totals: dict[str, float] = {}
        self._mark: float | torch.cuda.Event = 0.0
        self._laps: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @property
    def totals(self) -> dict[str, float]:
        """Seconds per phase so far."""
        self._read_events()
        return self._totals

    def start(self) -> None:
        self._mark = self._now()

    def lap(self, phase: str) -> None:
        now = self._now()
        if self.cuda:
            self._laps.append((phase, self._mark, now))
            if len(self._laps) >= _PENDING_LAPS:
                self._read_events()
        else:
            self._add(phase, now - self._mark)
        self._mark = now

    def _now(self) -> float | torch.cuda.Event:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _read_events(self) -> None:
        if not self._laps:
            return
        self._laps[-1][2].synchronize()
        for phase, begin, end in self._laps:
            self._add(phase, begin.elapsed_time(end) / 1000)
        self._laps.clear()

    def _add(self, phase: str, seconds: float) -> None:
        self._totals[phase] = self._totals.get(phase, 0.0) + seconds

    def summary(self) -> str:
        totals = self.totals
        total = sum(totals.values()) or 1.0
        return ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f}%)" for k, v in totals.items())
