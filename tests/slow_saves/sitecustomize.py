"""Test instrumentation, kept out of the package: a process started with this directory on
PYTHONPATH pauses ENSTACK_TEST_SAVE_PAUSE seconds after each file a checkpoint save writes,
so that a crash test's SIGKILL lands inside a save often enough (conftest.slow_saves). Python
imports `sitecustomize` at startup; torchrun's ranks inherit the environment too."""

import os
import time

_pause = float(os.environ.get("ENSTACK_TEST_SAVE_PAUSE", "0") or 0)
if _pause > 0:
    from enstack.ckpt import writer

    _write_file = writer._write_file

    def _slow_write_file(path, data):
        written = _write_file(path, data)
        time.sleep(_pause)
        return written

    writer._write_file = _slow_write_file
