"""Turning a tabular label (an id such as 3, or a name such as "CWE-476") into a class id."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

from enstack.data.chunks import NO_LABEL
from enstack.errors import UserError

MAX_LISTED = 20  # unknown labels named in the error, most frequent first


INTEGER = re.compile(r"-?[0-9]{1,18}")


class LabelMap:
    """Class names match whatever their case (`cwe-476` is CWE-476). Unknown labels are
    collected over the whole file and reported at once, each with its count and first row."""

    def __init__(self, labels: list[str], source: Path, column: str) -> None:
        self.labels = labels
        self.by_name = {name.casefold(): i for i, name in enumerate(labels)}
        self.source = source
        self.column = column
        self.unknown: Counter[str] = Counter()
        self.first_row: dict[str, int] = {}

    def __call__(self, value: object, row: int) -> int:
        """Class id of `value`; `row` is the 1-based data row, for the error message."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return NO_LABEL
        if isinstance(value, float) and math.isnan(value):
            return NO_LABEL
        if isinstance(value, str):
            text = value.strip()
            if text.casefold() in self.by_name:
                return self.by_name[text.casefold()]
            if INTEGER.fullmatch(text):  # ASCII digits only: `²` is a digit to str.isdigit
                value = int(text)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(self.labels):
            return value
        return self._unknown(value, row)

    def _unknown(self, value: object, row: int) -> int:
        key = repr(value)
        self.unknown[key] += 1
        self.first_row.setdefault(key, row)
        return NO_LABEL

    def raise_unknown(self) -> None:
        if not self.unknown:
            return
        listed = [
            f"{value} ({count} row{'s' * (count > 1)}, first row {self.first_row[value]})"
            for value, count in self.unknown.most_common(MAX_LISTED)
        ]
        more = len(self.unknown) - len(listed)
        tail = f", and {more} more" if more > 0 else ""
        raise UserError(
            f"{self.source}: {len(self.unknown)} unknown label(s) in column '{self.column}': "
            f"{', '.join(listed)}{tail}; a label is a class id 0-{len(self.labels) - 1} or one "
            f"of {', '.join(self.labels)} (any case)"
        )
