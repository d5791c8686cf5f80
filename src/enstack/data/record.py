"""The prepared data's record, `run_dir/data/manifest.json`: what `enstack prepare` made and
from what. Training, features, stacking and distillation read it; only prepare writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from enstack import versions
from enstack.errors import UserError
from enstack.records import Record, read_record

MANIFEST_NAME = "manifest.json"


class SplitRecord(Record):
    """One split file: its rows, per class, and (with those columns) its pairs and groups."""

    total: int
    per_class: dict[str, int]
    file: str
    sha256: str
    pairs: int | None = None  # pairs holding a flawed and a benign row (data.pair_column)
    groups: int | None = None  # named groups its rows come from (data.group_column)
    groups_also_in_train: int | None = None  # val and test: of those, groups train has too


class TrainingData(Record):
    """What a trainer and the token cache read of the data they are handed: the classes and a
    fingerprint of the rows (a checkpoint of other data does not resume). A prepared run's
    manifest is one; distillation and pretraining make their own, with their own keys."""

    labels: list[str]
    data_fingerprint: str  # of the rows' contents (what trained models are keyed by)


class PreparedData(TrainingData):
    """`run_dir/data/manifest.json`."""

    format_version: int = versions.PREPARED_DATA
    fingerprint: str  # of the inputs: sources, rules, seed (prepare is skipped while it holds)
    benign_label: str | None
    format: str  # the readers' formats, joined by "+"
    sources: dict[str, dict[str, Any]]  # per source: its path, size, sha256, rows read
    splits: dict[str, SplitRecord]  # train, val, test
    table: dict[str, dict[str, int]]  # class (and "total") -> split -> rows
    dropped: dict[str, int]  # why rows were dropped, and how many
    dropped_by: dict[str, dict[str, Any]]  # the same, per source or class
    notes: dict[str, Any]  # rules applied and what they changed
    cwe_mapping: dict[str, Any] | None = None  # with data.cwe_column: where each CWE id went


def read_prepared(data_dir: Path) -> PreparedData:
    """The prepared data's record; an error naming what to run where there is none."""
    path = data_dir / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"no prepared data at {data_dir} (run `enstack prepare` first)")
    record = read_record(path, PreparedData)
    if record is None:
        raise UserError(
            f"{path}: damaged (not a prepared-data record); run `enstack prepare` again"
        )
    return record
