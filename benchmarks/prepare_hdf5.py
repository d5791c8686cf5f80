"""Peak RSS and rows/s of `enstack prepare` on generated Draper-schema HDF5 files.

Figure `prepare_rss_1m_vs_100k`: peak RSS on a 1M-row file over a 100k-row one (goal <= 1.5:
memory must not grow with the file). The generated files follow VDISC's layout (variable-length
`functionSource`, five boolean columns) and roughly its make-up: about 7% of rows flagged, a few
with several flags, some exact duplicates and empty functions. A second pair where every row is
flagged shows the worst case, where the per-kept-row arrays (17 bytes a row) are largest.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np

from benchmarks.common import Result, run_measured

LABELS = ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other"]
CLASS_WEIGHTS = [0.28, 0.27, 0.01, 0.13, 0.31]  # roughly VDISC's flagged make-up


def write_draper_file(path: Path, rows: int, flagged: float, seed: int = 0) -> None:
    """A VDISC-shaped HDF5 file, written in chunks so the generator's memory stays small."""
    import h5py

    from enstack.data.synthetic import PAPER_LABELS, synthetic_function

    rng = random.Random(seed)
    pool = [synthetic_function(rng.choice(PAPER_LABELS), rng) for _ in range(2000)]
    np_rng = np.random.default_rng(seed)
    chunk = 50_000
    with h5py.File(path, "w") as handle:
        source = handle.create_dataset(
            "functionSource", shape=(rows,), dtype=h5py.string_dtype(), chunks=(10_000,)
        )
        flags = {
            name: handle.create_dataset(name, shape=(rows,), dtype=bool, chunks=(10_000,))
            for name in LABELS
        }
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            # a unique comment makes most rows distinct; 2% repeat an earlier row's text exactly
            codes = [f"/* r{start + i} */\n{pool[(start + i) % len(pool)]}" for i in range(n)]
            for i in np_rng.choice(n, size=n // 50, replace=False):
                codes[i] = codes[max(i - 1, 0)]
            for i in np_rng.choice(n, size=n // 1000, replace=False):
                codes[i] = "   "
            source[start : start + n] = codes
            is_flagged = np_rng.random(n) < flagged
            cls = np_rng.choice(len(LABELS), size=n, p=CLASS_WEIGHTS)
            second = np_rng.random(n) < 0.03  # a few rows with two flags
            for j, name in enumerate(LABELS):
                column = is_flagged & ((cls == j) | (second & (cls == (j + 1) % 5)))
                flags[name][start : start + n] = column


def _measure(path: Path, run_dir: Path) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: prepare must not skip
    code = (
        "from pathlib import Path\n"
        "from enstack.config import load_config\n"
        "from enstack.data.prepare import prepare\n"
        "import yaml, tempfile\n"
        f"cfg = Path({str(run_dir)!r}) / 'c.yaml'\n"
        "cfg.parent.mkdir(parents=True, exist_ok=True)\n"
        f"cfg.write_text(yaml.safe_dump({{'run_dir': {str(run_dir)!r}, "
        f"'data': {{'format': 'draper-hdf5', 'path': {str(path)!r}}}}}))\n"
        "m = prepare(load_config(cfg), progress=False).manifest\n"
        "result = {'rows': sum(s['rows_read'] for s in m['sources'].values()),\n"
        "          'kept': sum(s['total'] for s in m['splits'].values())}\n"
    )
    return run_measured(code)


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    small, large = (10_000, 100_000) if quick else (100_000, 1_000_000)
    figures: dict[str, dict] = {}
    for flagged, tag in ((0.07, "vdisc"), (1.0, "all_flagged")):
        for rows in (small, large):
            path = workdir / f"draper_{tag}_{rows}.hdf5"
            if not path.exists():
                write_draper_file(path, rows, flagged)
            measured = _measure(path, workdir / f"run_{tag}_{rows}")
            measured["rows_per_s"] = measured["rows"] / measured["seconds"]
            figures[f"{tag}_{rows}"] = measured
    results = {}
    for tag, name in (("vdisc", "prepare_rss_1m_vs_100k"), ("all_flagged", "prepare_rss_worst")):
        a, b = figures[f"{tag}_{small}"], figures[f"{tag}_{large}"]
        results[name] = Result(
            value=b["peak_rss_mib"] / a["peak_rss_mib"],
            unit="x",
            goal="<= 1.5",
            detail={
                "rows": [small, large],
                "peak_rss_mib": [round(a["peak_rss_mib"], 1), round(b["peak_rss_mib"], 1)],
                "rows_per_s": [round(a["rows_per_s"]), round(b["rows_per_s"])],
                "kept_rows": [a["kept"], b["kept"]],
                "flagged_fraction": 0.07 if tag == "vdisc" else 1.0,
            },
        )
    return results
