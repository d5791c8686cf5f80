"""What every reader yields: a chunk of rows with their code and class id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_LABEL = -1  # no class flag / empty label: dropped from the classification task
MULTI_DROPPED = -2  # several flags under `multi_label: drop`


@dataclass
class Chunk:
    ids: list[str]
    codes: list[str]
    labels: np.ndarray  # int16 class ids, or NO_LABEL / MULTI_DROPPED
    undecodable: int = 0  # rows whose code had bytes that are not UTF-8 (replaced with U+FFFD)
    multi_label: int = 0  # rows with several flags (resolved or dropped per the rule)
    pairs: list[str | None] | None = None  # pair ids when data.pair_column is read
    groups: list[str | None] | None = None  # group names when data.group_column is read
    unflagged_benign: int = 0  # Draper rows with no flag kept as the benign class
    identical_pairs: int = 0  # pairs in one row whose fixed text is the vulnerable one
    cwe_seen: dict[str, int] | None = None  # rows per CWE id, where data.cwe_column is read

    def __len__(self) -> int:
        return len(self.codes)


def decode_code(raw: bytes | str | None) -> tuple[str, bool]:
    """Code as text; undecodable bytes are replaced, and the second value says so."""
    if raw is None:
        return "", False
    if isinstance(raw, str):
        return raw, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), True
