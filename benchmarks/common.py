"""Helpers shared by the benchmarks: child processes with peak-RSS, and result records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

# the shared real-data fixtures beside the checkout; ENSTACK_SHARED_DATA points elsewhere
SHARED_DATA = Path(
    os.environ.get("ENSTACK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@dataclass
class Result:
    value: float
    unit: str
    goal: str
    detail: dict

    def to_json(self) -> dict:
        return asdict(self)


def run_measured(code: str, cwd: Path | None = None) -> dict:
    """Run Python `code` in a fresh interpreter; it must print one JSON object as its last line.

    The child's own peak RSS is added as `peak_rss_mib`: VmHWM from /proc/self/status, the
    high-water mark of the child's own address space. (ru_maxrss is not used: Linux carries it
    across exec from the forking parent, so a child of a big benchmark process would report
    the parent's peak.)
    """
    wrapper = (
        "import json, time\n"
        "_t0 = time.perf_counter()\n"
        f"{code}\n"
        "_out = dict(result)\n"
        "_out['seconds'] = time.perf_counter() - _t0\n"
        "_hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "_out['peak_rss_mib'] = int(_hwm.split()[1]) / 1024\n"
        "print(json.dumps(_out))\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", wrapper], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
