"""`demo_seconds`: wall time of `enstack demo` (goal <= 300 s on a 2-core CPU), as a user runs
it: a fresh process and a fresh run directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Result


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    target = workdir / "demo-run"
    shutil.rmtree(target, ignore_errors=True)
    extra = (
        ["--set", "training.epochs=1", "--set", "data.synthetic.n_per_class=60"] if quick else []
    )
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "enstack", "demo", "--run-dir", str(target), *extra],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    return {
        "demo_seconds": Result(
            seconds,
            "s",
            "<= 300",
            {
                "config": "embedded demo"
                + (" (quick: 1 epoch, 60 rows per class)" if quick else ""),
            },
        )
    }
