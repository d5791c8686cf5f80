"""Property-based: mutated configs and mutated data files fed to `enstack prepare` (in-process,
through the CLI's entry point). Whatever the mutation, the contract holds: exit 0, or exit 2
with exactly one `error:` line, last, and no traceback; never another exception."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from enstack.cli import main

from support import write_source

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

ROWS = [(f"int f{i}(char *p) {{ return p[{i}]; }}", i % 5) for i in range(60)]
KEYS = [
    ("seed",),
    ("data", "format"),
    ("data", "labels"),
    ("data", "code_column"),
    ("data", "label_column"),
    ("data", "downsample"),
    ("data", "benign_ratio"),
    ("data", "pair_column"),
    ("data", "group_column"),
    ("data", "chunk_rows"),
    ("training", "max_length"),
    ("training", "learning_rate"),
    ("stacking", "meta"),
    ("stacking", "cv_folds"),
    ("unknown_key",),
]
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _contract(argv: list[str], capsys) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    if code == 0:
        return
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and lines[-1] == errors[0], (code, err)


def _base(root: Path, data: Path) -> dict:
    return {
        "run_dir": str(root / "run"),
        "data": {"format": "jsonl", "path": str(data)},
        "models": [{"name": "m", "family": "codebert"}],
    }


@hypothesis.settings(
    max_examples=40, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
)
@hypothesis.given(
    mutations=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3)
)
def test_mutated_configs_keep_the_contract(mutations, capsys) -> None:
    root = Path(tempfile.mkdtemp(prefix="enstack-prop-"))
    try:
        data = write_source("jsonl", root / "d.jsonl", ROWS)
        config = _base(root, data)
        for path, value in mutations:
            node = config
            for key in path[:-1]:
                node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
            node[path[-1]] = value
        (root / "c.yaml").write_text(yaml.safe_dump(config))
        _contract(["prepare", "--config", str(root / "c.yaml")], capsys)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@hypothesis.settings(
    max_examples=40, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
)
@hypothesis.given(
    fmt=st.sampled_from(["jsonl", "csv", "parquet"]),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.binary(min_size=0, max_size=8), st.integers(0, 8)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_data_files_keep_the_contract(fmt: str, edits, capsys) -> None:
    """Bytes replaced at random places (a `\\r`, a NUL, half a UTF-8 character, a cut)."""
    root = Path(tempfile.mkdtemp(prefix="enstack-prop-"))
    try:
        data = write_source(fmt, root / f"d.{fmt}", ROWS)
        raw = bytearray(data.read_bytes())
        for where, insert, remove in edits:
            at = int(where * len(raw))
            raw[at : at + remove] = insert
        data.write_bytes(bytes(raw))
        config = _base(root, data)
        config["data"]["format"] = fmt
        (root / "c.yaml").write_text(yaml.safe_dump(config))
        _contract(["prepare", "--config", str(root / "c.yaml")], capsys)
    finally:
        shutil.rmtree(root, ignore_errors=True)
