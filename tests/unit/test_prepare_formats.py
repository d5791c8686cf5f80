"""`enstack prepare` on all four file formats: drops, dedup, leakage and counts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from enstack.config import load_config
from enstack.data.prepare import prepare

from support import LABELS, Row, run_cli, write_config, write_source

BAD_BYTES = b"int f(char *p) { return p[0] == '\xff\xfe'; }"

# Pre-split sources exercising every rule. Letters stand for distinct functions.
TRAIN: list[Row] = [
    ("int a(void) { return 1; }", 0),
    ("int b(void) { return 2; }", 1),
    ("int   a(void)\n{\treturn 1; }", 0),  # a, with other whitespace: duplicate
    ("", 2),  # empty code
    ("   \n\t ", 3),  # whitespace-only code
    ("int c(void) { return 3; }", None),  # no label
    (BAD_BYTES, 4),  # not UTF-8: kept, bytes replaced
    ("int d(void) { return 4; }", 2),
    ("int e(void) { return 5; }", 3),
]
VAL: list[Row] = [
    ("int a(void) { return 1; }", 0),  # in train: leakage
    ("int g(void) { return 7; }", 1),
    ("int h(void) { return 8; }", 2),
]
TEST: list[Row] = [
    ("int b(void) {\n  return 2;\n}", 1),  # in train (after whitespace normalisation)
    ("int i(void) { return 9; }", 0),
    ("int g(void) { return 7; }", 1),  # in val: leakage
    ("int j(void) { return 10; }", 4),
]

EXT = {"draper-hdf5": "hdf5", "csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}


def _prepare(tmp_path: Path, fmt: str, train: list[Row], **data: object) -> dict:
    files = {}
    for split, rows in (("train", train), ("val", VAL), ("test", TEST)):
        files[split] = str(write_source(fmt, tmp_path / f"{split}.{EXT[fmt]}", rows))
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "run_dir": str(tmp_path / "run"),
            "data": {"format": fmt, **files, **data},
        },
    )
    result = run_cli("prepare", "--config", str(cfg))
    assert result.code == 0, result.stderr
    assert "CWE-469" in result.stdout and "total" in result.stdout  # the Table I layout
    return json.loads((tmp_path / "run" / "data" / "manifest.json").read_text())


@pytest.mark.parametrize("fmt", ["draper-hdf5", "csv", "jsonl", "parquet"])
def test_every_format_counts_each_rule(tmp_path: Path, fmt: str) -> None:
    manifest = _prepare(tmp_path, fmt, TRAIN)
    dropped = manifest["dropped"]
    assert dropped["empty_code"] == 2
    assert dropped["no_label"] == 1
    assert dropped["duplicates"] == 1
    assert dropped["cross_split_duplicates"] == 3  # a in val, b and g in test
    assert manifest["notes"]["undecodable_replaced"] == 1
    splits = manifest["splits"]
    assert splits["train"]["per_class"] == {
        "CWE-119": 1,
        "CWE-120": 1,
        "CWE-469": 1,
        "CWE-476": 1,
        "CWE-other": 1,
    }
    assert splits["val"]["total"] == 2 and splits["test"]["total"] == 2
    assert manifest["table"]["total"] == {"train": 5, "val": 2, "test": 2}

    train = pq.read_table(tmp_path / "run" / "data" / "train.parquet").to_pylist()
    assert [row["label"] for row in train] == [0, 1, 4, 2, 3]  # file order kept
    assert "\ufffd" in train[2]["code"]  # undecodable bytes replaced, not fatal
    for split in ("train", "val", "test"):
        assert pq.read_schema(tmp_path / "run" / "data" / f"{split}.parquet").names == [
            "id",
            "code",
            "label",
        ]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_label_names_are_accepted(tmp_path: Path, fmt: str) -> None:
    manifest = _prepare(tmp_path, fmt, [(c, lb) for c, lb in TRAIN])
    by_name_dir = tmp_path / "names"
    by_name_dir.mkdir()
    files = {
        split: str(write_source(fmt, by_name_dir / f"{split}.{EXT[fmt]}", rows, label_names=True))
        for split, rows in (("train", TRAIN), ("val", VAL), ("test", TEST))
    }
    config = load_config(
        write_config(
            by_name_dir / "c.yaml",
            {"run_dir": str(by_name_dir / "run"), "data": {"format": fmt, **files}},
        )
    )
    named = prepare(config, progress=False).manifest
    assert named["table"] == manifest["table"]


def _flagged_rows() -> list[Row]:
    return [
        ("int m(void) { return 11; }", [1, 3]),  # CWE-120 and CWE-476: first in label order
        ("int n(void) { return 12; }", [0, 4]),
        *[(f"int z{i}(void) {{ return {i}; }}", i) for i in range(5)],
    ]


def test_draper_multi_flag_takes_first_class_by_default(tmp_path: Path) -> None:
    manifest = _prepare(tmp_path, "draper-hdf5", _flagged_rows())
    assert manifest["notes"]["multi_label_resolved"] == 2
    assert manifest["dropped"]["multi_label"] == 0
    per_class = manifest["splits"]["train"]["per_class"]
    assert per_class["CWE-119"] == 2 and per_class["CWE-120"] == 2
    assert per_class["CWE-476"] == 1 and per_class["CWE-other"] == 1


def test_draper_multi_flag_drop_rule(tmp_path: Path) -> None:
    manifest = _prepare(tmp_path, "draper-hdf5", _flagged_rows(), multi_label="drop")
    assert manifest["dropped"]["multi_label"] == 2
    assert manifest["splits"]["train"]["total"] == 5


def test_draper_with_string_dtype_and_small_chunks(tmp_path: Path) -> None:
    """The real VDISC files store functionSource as variable-length strings."""
    import h5py
    import numpy as np

    path = tmp_path / "vdisc.hdf5"
    codes = [f"void f{i}(char *p) {{ p[{i}] = 0; }}" for i in range(50)]
    with h5py.File(path, "w") as handle:
        handle.create_dataset("functionSource", data=codes, dtype=h5py.string_dtype())
        for j, name in enumerate(LABELS):
            handle.create_dataset(name, data=np.arange(50) % 5 == j)
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "run_dir": str(tmp_path / "run"),
            "data": {"format": "draper-hdf5", "path": str(path), "chunk_rows": 7},
        },
    )
    manifest = prepare(load_config(cfg), progress=False).manifest
    assert manifest["table"]["total"] == {"train": 40, "val": 5, "test": 5}
    ids = pq.read_table(tmp_path / "run" / "data" / "train.parquet").column("id").to_pylist()
    assert all(i.startswith("vdisc:") for i in ids) and len(set(ids)) == 40
