"""Shared fixtures: small sources in every format, and a runner for the real CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JULIET = REPO.parent / "shared" / "data" / "juliet5"
LABELS = ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other"]


Row = tuple[bytes | str, int | list[int] | None]  # code, class id / several flags / no label


def write_source(fmt: str, path: Path, rows: list[Row], label_names: bool = False) -> Path:
    """Write `rows` as a Draper HDF5, CSV, JSONL or Parquet file at `path`."""
    if fmt == "draper-hdf5":
        return _write_hdf5(path, rows)
    codes = [code for code, _ in rows]
    labels = [_tabular_label(label, label_names) for _, label in rows]
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["id", "code", "label"])
        for i, (code, label) in enumerate(zip(codes, labels, strict=True)):
            writer.writerow([f"r{i}", _placeholder(code, i), "" if label is None else label])
        path.write_bytes(_restore_bytes(text.getvalue(), codes))
    elif fmt == "jsonl":
        lines = [
            json.dumps({"id": f"r{i}", "code": _placeholder(code, i), "label": label})
            for i, (code, label) in enumerate(zip(codes, labels, strict=True))
        ]
        path.write_bytes(_restore_bytes("\n".join(lines) + "\n", codes))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        raw = [c if isinstance(c, bytes) else c.encode() for c in codes]
        table = pa.table(
            {
                "id": [f"r{i}" for i in range(len(rows))],
                "code": pa.array(raw, pa.binary()),
                "label": pa.array([None if lb is None else str(lb) for lb in labels], pa.string()),
            }
        )
        pq.write_table(table, path)
    else:
        raise ValueError(fmt)
    return path


def _tabular_label(label: int | list[int] | None, names: bool) -> int | str | None:
    if label is None:
        return None
    assert isinstance(label, int), "several flags exist only in Draper HDF5"
    return LABELS[label] if names else label


def _placeholder(code: bytes | str, i: int) -> str:
    # Non-UTF-8 code cannot pass through csv/json writers: write a marker, swap bytes in after.
    return f"@@RAW{i}@@" if isinstance(code, bytes) else code


def _restore_bytes(text: str, codes: list[bytes | str]) -> bytes:
    data = text.encode("utf-8")
    for i, code in enumerate(codes):
        if isinstance(code, bytes):
            data = data.replace(f"@@RAW{i}@@".encode(), code)
    return data


def _write_hdf5(path: Path, rows: list[Row]) -> Path:
    import h5py
    import numpy as np

    flags = np.zeros((len(rows), len(LABELS)), dtype=bool)
    for i, (_, label) in enumerate(rows):
        for cls in [] if label is None else [label] if isinstance(label, int) else label:
            flags[i, cls] = True
    raw = [c if isinstance(c, bytes) else c.encode() for c, _ in rows]
    with h5py.File(path, "w") as handle:
        handle.create_dataset("functionSource", data=raw, dtype=h5py.vlen_dtype(bytes))
        for j, name in enumerate(LABELS):
            handle.create_dataset(name, data=flags[:, j])
    return path


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> CliResult:
    """Run `python -m enstack ARGS` in a real subprocess, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "enstack", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_user_error(result: CliResult, *fragments: str) -> None:
    """Exit 2, exactly one stderr line starting `error:`, holding each fragment, no traceback."""
    assert result.code == 2, (result.code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def write_config(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def juliet() -> Path:
    if not (JULIET / "train.jsonl").is_file():
        pytest.skip("../shared/data/juliet5 is not beside this checkout")
    return JULIET
