"""Re-running prepare: unchanged inputs do nothing; changed ones re-prepare; failures leave
the previous output whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enstack.config import load_config
from enstack.data.prepare import prepare
from enstack.errors import UserError

from support import LABELS, run_cli, write_config, write_source

ROWS = [(f"int f{i}(int x) {{ return x + {i}; }}", i % 5) for i in range(100)]


def _config(tmp_path: Path, **data: object) -> Path:
    return write_config(
        tmp_path / "c.yaml",
        {
            "run_dir": str(tmp_path / "run"),
            "data": {"format": "csv", "path": str(tmp_path / "d.csv"), **data},
        },
    )


def test_unchanged_inputs_do_nothing(tmp_path: Path) -> None:
    write_source("csv", tmp_path / "d.csv", ROWS)
    cfg = _config(tmp_path)
    first = run_cli("prepare", "--config", str(cfg))
    assert first.code == 0 and "prepared" in first.stdout
    train = tmp_path / "run" / "data" / "train.parquet"
    stamp = train.stat().st_mtime_ns
    second = run_cli("prepare", "--config", str(cfg))
    assert second.code == 0 and "unchanged, nothing to do" in second.stdout
    assert train.stat().st_mtime_ns == stamp


def test_changed_source_or_rule_is_re_prepared(tmp_path: Path) -> None:
    write_source("csv", tmp_path / "d.csv", ROWS)
    config = load_config(_config(tmp_path))
    assert prepare(config, progress=False).manifest["table"]["total"]["train"] == 80
    write_source("csv", tmp_path / "d.csv", ROWS[:50])
    again = prepare(config, progress=False)
    assert not again.skipped and again.manifest["table"]["total"]["train"] == 40
    capped = load_config(_config(tmp_path), ["data.downsample={max_per_class: 3}"])
    result = prepare(capped, progress=False)
    assert not result.skipped
    assert result.manifest["splits"]["train"]["per_class"] == dict.fromkeys(LABELS, 3)


def test_damaged_output_is_re_prepared(tmp_path: Path) -> None:
    write_source("csv", tmp_path / "d.csv", ROWS)
    config = load_config(_config(tmp_path))
    prepare(config, progress=False)
    (tmp_path / "run" / "data" / "val.parquet").write_bytes(b"garbage")
    assert not prepare(config, progress=False).skipped


def test_failed_prepare_keeps_previous_output(tmp_path: Path) -> None:
    write_source("csv", tmp_path / "d.csv", ROWS)
    config = load_config(_config(tmp_path))
    before = prepare(config, progress=False).manifest
    data_dir = tmp_path / "run" / "data"
    files = {p.name: p.read_bytes() for p in data_dir.iterdir()}
    bad_rows = [*ROWS, ("int bad(void) { return 0; }", 9)]
    write_source("csv", tmp_path / "d.csv", bad_rows)
    with pytest.raises(UserError, match="row 101"):
        prepare(config, progress=False)
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == files
    assert sorted(os.listdir(tmp_path / "run")) == ["data"]  # no temporary directory left
    assert before["fingerprint"]
