"""Turning a tabular label (an id such as 3, or a name such as "CWE-476") into a class id."""

from __future__ import annotations

import math
from pathlib import Path

from enstack.data.chunks import NO_LABEL
from enstack.errors import UserError


class LabelMap:
    def __init__(self, labels: list[str], source: Path, column: str) -> None:
        self.labels = labels
        self.by_name = {name: i for i, name in enumerate(labels)}
        self.source = source
        self.column = column

    def __call__(self, value: object, row: int) -> int:
        """Class id of `value`; `row` is the 1-based data row, for the error message."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return NO_LABEL
        if isinstance(value, float) and math.isnan(value):
            return NO_LABEL
        if isinstance(value, bool):
            self._unknown(value, row)
        if isinstance(value, str):
            text = value.strip()
            if text in self.by_name:
                return self.by_name[text]
            if text.lstrip("-").isdigit():
                value = int(text)
            else:
                self._unknown(value, row)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and 0 <= value < len(self.labels):
            return value
        self._unknown(value, row)
        raise AssertionError("unreachable")

    def _unknown(self, value: object, row: int) -> None:
        raise UserError(
            f"{self.source}: row {row}: label {value!r} in column '{self.column}' is not a class "
            f"id 0-{len(self.labels) - 1} or one of {', '.join(self.labels)}"
        )
