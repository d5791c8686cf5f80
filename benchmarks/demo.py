"""The demo and start-up, as a user meets them: fresh processes, a fresh run directory.

- `demo_seconds`: wall time of `enstack demo` (goal <= 300 s on a 2-core CPU).
- `startup_*_seconds`: the median of 3 fresh processes for `enstack --help`, `enstack ckpt
  inspect` on the demo's checkpoints and a no-op rerun of the demo (everything already done;
  goals 1, 2 and 5 s), beside a bare interpreter and `import torch` measured in the same run.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Result

REPEATS = 3


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    target = workdir / "demo-run"
    shutil.rmtree(target, ignore_errors=True)
    extra = (
        ["--set", "training.epochs=1", "--set", "data.synthetic.n_per_class=60"] if quick else []
    )
    demo = [sys.executable, "-m", "enstack", "demo", "--run-dir", str(target), *extra]
    seconds = _seconds(demo)
    config = "embedded demo" + (" (quick: 1 epoch, 60 rows per class)" if quick else "")
    baseline = {
        "python_bare_seconds": round(_median([sys.executable, "-c", "pass"]), 3),
        "import_torch_seconds": round(_median([sys.executable, "-c", "import torch"]), 3),
    }
    checkpoints = target / "models" / "codebert" / "checkpoints"
    startup = {
        "help": ([sys.executable, "-m", "enstack", "--help"], "< 1"),
        "ckpt_inspect": (
            [sys.executable, "-m", "enstack", "ckpt", "inspect", str(checkpoints)],
            "< 2",
        ),
        "noop_run": (demo, "< 5"),
    }
    results = {"demo_seconds": Result(seconds, "s", "<= 300", {"config": config})}
    for name, (command, goal) in startup.items():
        detail = {"command": " ".join(command[2:]), "repeats": REPEATS, **baseline}
        results[f"startup_{name}_seconds"] = Result(_median(command), "s", goal, detail)
    return results


def _seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def _median(command: list[str]) -> float:
    return statistics.median(_seconds(command) for _ in range(REPEATS))
