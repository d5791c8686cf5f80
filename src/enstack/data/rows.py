"""Records of a tabular file into chunks of labelled rows.

What a row's class is comes from one of: its label column (a class id or name, any case), its
CWE column (MITRE ids through the hierarchy: `data.cwe`), or its binary target (0: the benign
class). A pair stored in one row (`data.pair_columns`) becomes two rows sharing a pair id: the
vulnerable text with the row's class, and the fixed text as the benign class. A pair whose two
texts are the same (up to whitespace) says both that the function is flawed and that it is
fixed: it is dropped, and counted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from enstack.config import DataConfig
from enstack.data.chunks import NO_LABEL, Chunk, decode_code
from enstack.data.cwe import CweMapper
from enstack.data.labelmap import LabelMap
from enstack.data.tabular import Record
from enstack.errors import UserError

TRUE_TARGETS = {"1", "true", "yes"}
FALSE_TARGETS = {"0", "false", "no"}


def parse_target(value: object) -> bool | None:
    """A binary target as datasets write it (1, 1.0, "true", "yes"; 0, "false", "no"); None
    when it is neither."""
    text = str(value).strip().lower() if value is not None else ""
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    if text in TRUE_TARGETS:
        return True
    if text in FALSE_TARGETS:
        return False
    return None


class Labeller:
    """A record's class id under the config's rules."""

    def __init__(self, data: DataConfig, path: Path) -> None:
        self.path = path
        self.benign = data.benign_id
        self.cwe = CweMapper(data.labels, data.cwe_map) if data.cwe_column else None
        self.target_column = data.target_column
        flawed = [i for i in range(len(data.labels)) if i != self.benign]
        # a binary target over two classes needs no other column to say which flaw
        self.only_flaw = flawed[0] if len(flawed) == 1 else None
        self.label_map = (
            LabelMap(data.labels, path, data.label_column) if self.needs_label(data) else None
        )

    @staticmethod
    def needs_label(data: DataConfig) -> bool:
        if data.cwe_column is not None:
            return False
        binary = data.target_column is not None and len(data.labels) == 2
        return not binary

    def __call__(self, record: Record, row: int) -> int:
        if self.target_column is not None and not self._target(record.target, row):
            assert self.benign is not None  # the config requires the benign class with a target
            return self.benign
        if self.cwe is not None:
            cls = self.cwe(record.cwe)
            return NO_LABEL if cls is None else cls
        if self.label_map is None:
            assert self.only_flaw is not None
            return self.only_flaw
        return self.label_map(record.label, row)

    def _target(self, value: object, row: int) -> bool:
        target = parse_target(value)
        if target is not None:
            return target
        raise UserError(
            f"{self.path}: row {row}: target {value!r} in column '{self.target_column}' is not "
            "0 or 1 (data.target_column)"
        )

    def finish(self) -> None:
        """Every unknown label of the file at once, now that all rows were read."""
        if self.label_map is not None:
            self.label_map.raise_unknown()


class Grouper:
    """A row's group name: the column's value, or what `data.group_pattern` cuts out of it."""

    def __init__(self, pattern: str | None) -> None:
        self.pattern = re.compile(pattern) if pattern else None

    def __call__(self, value: object) -> str | None:
        name = None if value in (None, "") else str(value)
        if name is None or self.pattern is None:
            return name
        found = self.pattern.search(name)
        return found.group(1) if found else name


def labelled_chunks(records: Iterator[Record], data: DataConfig, path: Path) -> Iterator[Chunk]:
    """`records` as chunks of `data.chunk_rows` rows (a pair's two rows count as two)."""
    labeller = Labeller(data, path)
    grouper = Grouper(data.group_pattern)
    paired = data.pair_columns is not None  # a pair in one row: two rows out
    builder = _ChunkBuilder(paired or data.pair_column is not None, data.group_column is not None)
    stem = path.stem
    for row, record in enumerate(records, start=1):
        label = labeller(record, row)
        row_id = str(record.id) if record.id not in (None, "") else f"{stem}:{row - 1}"
        # a pair stored in one row is named by its file and row: unique across sources
        group = grouper(record.group)
        if not paired or label in (labeller.benign, NO_LABEL):
            pair = None if record.pair in (None, "") else str(record.pair)
            # a benign row of a paired layout is one function: its flawed column, or where that
            # is empty (MegaVul's unchanged functions), its fixed one
            code = record.code if not paired or record.code not in (None, "") else record.fixed
            builder.add(code, label, row_id, pair, group, record.replaced)
        else:
            builder.add_pair(record, label, labeller.benign, row_id, f"{stem}:{row_id}", group)
        if builder.rows >= data.chunk_rows:
            yield builder.chunk(labeller)
    labeller.finish()
    yield builder.chunk(labeller)


class _ChunkBuilder:
    def __init__(self, pairs: bool, groups: bool) -> None:
        self.with_pairs, self.with_groups = pairs, groups
        self._reset()

    def _reset(self) -> None:
        self.ids: list[str] = []
        self.codes: list[str] = []
        self.labels: list[int] = []
        self.pairs: list[str | None] = []
        self.groups: list[str | None] = []
        self.undecodable = 0
        self.identical_pairs = 0

    @property
    def rows(self) -> int:
        return len(self.codes)

    def add(self, code: object, label: int, row_id: str, pair, group, replaced: bool) -> None:
        text, replaced_here = decode_code(code if isinstance(code, bytes | str) else _str(code))
        self.codes.append(text)
        self.undecodable += replaced or replaced_here
        self.labels.append(label)
        self.ids.append(row_id)
        self.pairs.append(pair)
        self.groups.append(group)

    def add_pair(
        self, record: Record, label: int, benign: int | None, row_id: str, pair: str, group
    ) -> None:
        before = _text(record.code)
        after = _text(record.fixed)
        if " ".join(before.split()) == " ".join(after.split()):
            self.identical_pairs += 1  # flawed and fixed at once: neither label can be learned
            return
        assert benign is not None  # the config requires the benign class with pair_columns
        self.add(before, label, row_id, pair, group, record.replaced)
        self.add(after, benign, f"{row_id}:fixed", pair, group, record.replaced)

    def chunk(self, labeller: Labeller) -> Chunk:
        seen = labeller.cwe.take_seen() if labeller.cwe is not None else Counter()
        out = Chunk(
            self.ids,
            self.codes,
            np.asarray(self.labels, np.int16),
            self.undecodable,
            pairs=self.pairs if self.with_pairs else None,
            groups=self.groups if self.with_groups else None,
            identical_pairs=self.identical_pairs,
            cwe_seen=dict(seen),
        )
        self._reset()
        return out


def _text(value: object) -> str:
    return decode_code(value if isinstance(value, bytes | str) else _str(value))[0]


def _str(value: object) -> str | None:
    return None if value is None else str(value)
