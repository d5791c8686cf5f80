"""Progress that shows wherever enstack runs, so long work is never silent.

- In a terminal: tqdm's redrawn bar.
- In Jupyter or Colab: tqdm's notebook widget (a plain bar on a notebook's stderr is either
  hidden, because it is not a terminal, or a wall of half-drawn lines).
- Anywhere else (output to a file, a CI log, `nohup`): one plain line every
  `ENSTACK_PROGRESS_INTERVAL` seconds (default 30), with the count, rate, time left and the
  bar's postfix (the loss and learning rate while training), and the final count; work that
  ends within one interval logs nothing.

`enabled`: False hides progress, None (the default everywhere) chooses as above, True is the
same as None (a bar that cannot draw in place is logged rather than hidden). `every`: a
shorter interval for work people sit waiting on (a scan), never a longer one.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

NOTEBOOK_SHELLS = ("ZMQInteractiveShell", "Shell")  # Jupyter's kernel; Colab's


def log_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("ENSTACK_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


def progress_bar(
    iterable: Iterable | None = None,
    *,
    enabled: bool | None,
    every: float | None = None,
    **kwargs: Any,
) -> tqdm:
    """A tqdm for `iterable` (or for manual `update`s), drawn where it will be seen."""
    if enabled is False:
        return tqdm(iterable, disable=True, **kwargs)
    if in_notebook():
        notebook = _notebook_tqdm()
        if notebook is not None:
            kwargs.pop("file", None)
            kwargs.pop("dynamic_ncols", None)
            return notebook(iterable, **kwargs)
    stream = kwargs.get("file") or sys.stderr
    if _is_terminal(stream):
        return tqdm(iterable, disable=False, **kwargs)
    return LogLines(iterable, every=every, **kwargs)


def abandon(bar: tqdm) -> None:
    """The work stopped on an exception: a drawn bar is cleared, a logged one says nothing more
    (the error line stays the last thing printed)."""
    if isinstance(bar, LogLines):
        bar.disable = True
    bar.close()


def in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ in NOTEBOOK_SHELLS


def _notebook_tqdm():
    try:
        import ipywidgets  # noqa: F401  (tqdm's widget needs it; without it, log lines)
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:
        return None
    return notebook_tqdm


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LogLines(tqdm):
    """tqdm writing a whole line at most every `log_interval()` seconds instead of redrawing."""

    def __init__(
        self, iterable: Iterable | None = None, every: float | None = None, **kwargs: Any
    ) -> None:
        # work shorter than one interval logs nothing; longer work a line per interval and
        # its final count
        interval = log_interval() if every is None else min(every, log_interval())
        self._quiet_until = time.monotonic() + interval
        self._logged = False
        kwargs.pop("dynamic_ncols", None)
        kwargs.update(disable=False, mininterval=interval, maxinterval=interval)
        known = kwargs.get("total") is not None or hasattr(iterable, "__len__")
        kwargs["bar_format"] = (
            "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) [{elapsed}<{remaining}, "
            "{rate_fmt}{postfix}]"
            if known
            else "{desc}: {n_fmt}{unit} [{elapsed}, {rate_fmt}{postfix}]"
        )
        super().__init__(iterable, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if time.monotonic() < self._quiet_until and not self._logged:
            return True
        text = self.__str__() if msg is None else msg
        if text.strip():  # tqdm clears a bar with an empty message: nothing to log
            self.fp.write(text.strip() + "\n")
            self.fp.flush()
            self._logged = True
        return True

    def close(self) -> None:
        if not self.disable and self._logged:
            self.display()  # the final count of work long enough to have been logged
        self.disable = True  # tqdm's own close would clear or re-draw the line
        super().close()

    def __del__(self) -> None:
        # collected without close(): the work stopped on an exception, whose error line must
        # stay the last thing printed
        self.disable = True
        super().__del__()
