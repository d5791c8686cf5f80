"""enstack's messages to people: one `enstack` logger tree, and enstack's own warning class.

Every stage says what it did through `logging.getLogger("enstack.<module>")`; the CLI's
lines and a notebook's are the same text, one per record, written to standard error as it
is at that moment (pytest's capture, a notebook's stream). A warning reads `warning: ...`.

From Python, the messages can be silenced, filtered or redirected like any library's:

    import logging
    logging.getLogger("enstack").setLevel(logging.WARNING)   # warnings only
    logging.getLogger("enstack").addHandler(my_handler)      # also somewhere else

Under `enstack.api`, every warning (a model trained on synthetic data, an epoch that predicts
one class, a checkpoint skipped, ...) is also issued with `warnings.warn(..., EnstackWarning)`
(`warnings_issued`), so code can catch or filter it. A signal handler never logs (logging takes
locks a handler must not wait on): `train/signals.py` writes its two lines directly.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from types import FrameType

ROOT = "enstack"


class EnstackWarning(UserWarning):
    """A warning about what enstack was given or produced that a caller may want to act on."""


class StderrHandler(logging.Handler):
    """Writes each record as one line to whatever `sys.stderr` is when it is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except (OSError, ValueError):  # stderr closed or its reader gone: nowhere to say it
            pass


class PlainFormatter(logging.Formatter):
    """The message as the CLI has always printed it; a warning's prefixed `warning: `."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"warning: {text}" if record.levelno >= logging.WARNING else text


def _install() -> logging.Logger:
    root = logging.getLogger(ROOT)
    if not any(isinstance(h, StderrHandler) for h in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(PlainFormatter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False  # said once, here; an application's root handlers stay quiet
    return root


_install()


class _WarningBridge(logging.Handler):
    """Issues each warning record as `warnings.warn(..., EnstackWarning)` too, attributed to
    the caller's code (the first frame outside logging and enstack), as a library's warning
    is: a filter by module then sees the caller's module."""

    def emit(self, record: logging.LogRecord) -> None:
        warnings.warn(record.getMessage(), EnstackWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """The `stacklevel` of the first frame outside `logging` and the enstack package."""
    import os

    inside = (os.path.dirname(logging.__file__), os.path.dirname(__file__))
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


@contextlib.contextmanager
def warnings_issued() -> Iterator[None]:
    """While the block runs, every warning the `enstack` loggers say is also issued as an
    `EnstackWarning`, which a caller can catch, filter or turn into an error (the API's
    stages run under it; the CLI does not, so a terminal shows each warning once)."""
    bridge = _WarningBridge(level=logging.WARNING)
    root = logging.getLogger(ROOT)
    root.addHandler(bridge)
    try:
        yield
    finally:
        root.removeHandler(bridge)


def get(name: str) -> logging.Logger:
    """The logger of module `name` (`enstack.train.trainer` ...), under the `enstack` tree."""
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


def count_of(n: int, noun: str, plural: str | None = None) -> str:
    """`1 file`, `2 files`, `0 findings`; `plural` where adding an s is wrong."""
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"
