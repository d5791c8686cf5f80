"""Progress where it will be seen: plain lines when stderr is a file or a CI log, nothing when
disabled, and the notebook front end only inside a notebook kernel."""

from __future__ import annotations

import io
import sys
import types

import pytest

from enstack import progress
from enstack.progress import LogLines, progress_bar


def test_a_log_gets_whole_lines_with_the_postfix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENSTACK_PROGRESS_INTERVAL", "0")
    log = io.StringIO()  # not a terminal
    bar = progress_bar(enabled=None, total=4, desc="codebert epoch 1/2", unit="batch", file=log)
    assert isinstance(bar, LogLines)
    for step in range(4):
        bar.set_postfix_str(f"loss={1.0 / (step + 1):.4f}, lr=1.0e-03", refresh=False)
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) >= 3
    assert lines[-1].startswith("codebert epoch 1/2: 4/4 (100%)")
    assert "loss=0.2500, lr=1.0e-03" in lines[-1]


def test_a_log_gets_a_line_per_interval_and_nothing_for_short_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    monkeypatch.setenv("ENSTACK_PROGRESS_INTERVAL", "0.2")
    log = io.StringIO()
    for _ in progress_bar(range(10), enabled=None, desc="tokenising val", file=log):
        time.sleep(0.05)  # half a second in all: about two intervals
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 5  # a few lines, not one per item
    assert lines[-1].startswith("tokenising val: 10/10 (100%)")

    monkeypatch.setenv("ENSTACK_PROGRESS_INTERVAL", "3600")
    quick = io.StringIO()
    for _ in progress_bar(range(10_000), enabled=None, desc="scoring", file=quick):
        pass
    assert quick.getvalue() == ""  # done within one interval: nothing to log


def test_disabled_progress_writes_nothing() -> None:
    log = io.StringIO()
    for _ in progress_bar(range(100), enabled=False, desc="x", file=log):
        pass
    assert log.getvalue() == ""


def test_the_notebook_front_end_only_inside_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not progress.in_notebook()  # pytest is not a notebook kernel

    class ZMQInteractiveShell:  # what Jupyter's kernel calls its shell
        pass

    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: ZMQInteractiveShell()
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert progress.in_notebook()
    chosen = []
    monkeypatch.setattr(progress, "_notebook_tqdm", lambda: lambda it, **kw: chosen.append(kw))
    progress_bar(range(3), enabled=None, desc="stacking", file=io.StringIO())
    assert chosen and "file" not in chosen[0] and chosen[0]["desc"] == "stacking"
