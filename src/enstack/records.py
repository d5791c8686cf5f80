"""What stages hand each other, typed: the base of every record a stage writes and another reads.

A record is a pydantic model that is written and read through one pair of functions
(`write_record`, `read_record`), so no reader indexes into an untyped dict and a renamed
field fails where it is declared, not at run time three stages later. Each record's JSON
schema is generated from it (`docs/records.md`, at build time).

Files are read as they come: keys a newer enstack added are kept (`extra="allow"`), fields
an older one did not write stay unset, and a record is written back with exactly the keys it
was given, so a file read and written again is byte for byte what it was. Readers that held
dicts before keep working: `record["labels"]` and `record.get("labels")` read the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from enstack.fsutil import atomic_write_text, read_json_object


class Record(BaseModel):
    """A stage's output record: typed fields, unknown keys kept, dict-style reads allowed."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields or key in (self.model_extra or {}):
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        """Whether the file has `key` (a field given a value, or a key enstack does not know)."""
        return key in self.model_fields_set or key in (self.model_extra or {})

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self else default

    def as_json(self) -> dict[str, Any]:
        """The record as the JSON object its file holds (only the keys it was given)."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)

    def json_text(self) -> str:
        return json.dumps(self.as_json(), indent=2) + "\n"


RecordT = TypeVar("RecordT", bound=Record)


def write_record(path: Path, record: Record) -> None:
    """`record` as indented JSON at `path`, atomically."""
    atomic_write_text(path, record.json_text())


def read_record(path: Path, kind: type[RecordT]) -> RecordT | None:
    """The record at `path`, or None where there is none or it is not a `kind` (damaged, of
    another kind, or of a shape no enstack wrote): the caller says which and what to do."""
    document = read_json_object(path)
    if document is None:
        return None
    try:
        return kind.model_validate(document)
    except ValidationError:
        return None
