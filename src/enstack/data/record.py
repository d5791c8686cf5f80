"""The prepared data's record, `run_dir/data/manifest.json`: what `enstack prepare` made and
from what. Training, features, stacking and distillation read it; only prepare writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from enstack import versions
from enstack.errors import UserError
from enstack.records import Record, read_record

MANIFEST_NAME = "manifest.json"


class SplitRecord(Record):
    """One split file: its rows, per class, and (with those columns) its pairs and groups."""

    total: int
    """Rows in the split."""
    per_class: dict[str, int]
    """Rows per class."""
    file: str
    """The split file's name inside the data directory."""
    sha256: str
    """The split file's sha256 (a changed file is prepared again)."""
    pairs: int | None = None
    """Pairs holding a flawed and a benign row (data.pair_column)."""
    groups: int | None = None
    """Named groups its rows come from (data.group_column)."""
    groups_also_in_train: int | None = None
    """Val and test: of those, groups train has too."""


class TrainingData(Protocol):
    """What a trainer and the token cache read of the data they are handed: the classes and a
    fingerprint of the rows (a checkpoint of other data does not resume). A prepared run's
    manifest is one; distillation and pretraining hand a `TrainedOn` with keys of their own."""

    @property
    def labels(self) -> list[str]: ...

    @property
    def data_fingerprint(self) -> str: ...

    def __getitem__(self, key: str) -> Any: ...


class TrainedOn(Record):
    """Training data that is not a prepared run's (a teacher's targets, a pretraining
    corpus): the two fields a trainer reads, and whatever else its stage records."""

    labels: list[str]
    """The classes, in label-id order."""
    data_fingerprint: str
    """Of the rows' contents (what a checkpoint is keyed by)."""


class PreparedData(Record):
    """What `enstack prepare` made and from what: the split files and their hashes, the
    classes, per-class counts, and every row dropped and why."""

    format_version: int = versions.PREPARED_DATA
    """The format of the prepared data (`versions.PREPARED_DATA`)."""
    fingerprint: str
    """Of the inputs: sources, rules, seed (prepare is skipped while it holds)."""
    data_fingerprint: str
    """Of the split files' contents (what trained models are keyed by)."""
    labels: list[str]
    """The classes, in label-id order."""
    benign_label: str | None
    """The class that means no vulnerability, where there is one."""
    format: str
    """The readers' formats, joined by "+"."""
    sources: dict[str, dict[str, Any]]
    """Per source: its path, size, sha256, rows read."""
    splits: dict[str, SplitRecord]
    """Train, val, test."""
    table: dict[str, dict[str, int]]
    """Class (and "total") -> split -> rows."""
    dropped: dict[str, int]
    """Why rows were dropped, and how many."""
    dropped_by: dict[str, dict[str, Any]]
    """The same, per source or class."""
    notes: dict[str, Any]
    """Rules applied and what they changed."""
    cwe_mapping: dict[str, Any] | None = None
    """With data.cwe_column: where each CWE id went."""


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
