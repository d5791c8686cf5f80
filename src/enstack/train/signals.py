"""SIGTERM / SIGINT: finish the step, save, exit 130. A second signal exits at once."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType


class Interrupted(Exception):
    """Stopped by SIGTERM/SIGINT after saving a resumable checkpoint (exit 130)."""


class StopSignals:
    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            print("\nsecond signal: exiting now (saved checkpoints are intact)", file=sys.stderr)
            os._exit(130)
        self.received = signum
        name = signal.Signals(signum).name
        print(
            f"\n{name}: finishing this step, saving a checkpoint, then exiting "
            "(send it again to exit at once)",
            file=sys.stderr,
            flush=True,
        )

    @property
    def stop(self) -> bool:
        return self.received is not None
