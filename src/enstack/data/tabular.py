"""Tabular files (CSV, JSON lines, a JSON array, Parquet) as records of named columns.

Each reader yields a `Record` per row, in file order, holding the value of every column the
config names (None where a column is not read or an optional one is absent); what the values
mean (a label, a CWE id, a target, a pair's fixed text) is decided in `data.rows`.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, NoReturn

from enstack.config import DataConfig
from enstack.errors import UserError

JSON_BLOCK = 1 << 20  # a JSON array is read in blocks of this many characters
MAX_ROW_BYTES = 64 << 20  # one row (a line, a CSV record, an array item): no function is larger


class Columns(NamedTuple):
    """The column behind each role; None: not read."""

    code: str
    label: str | None
    id: str  # optional in the file: ids are generated when it is absent
    pair: str | None
    group: str | None
    cwe: str | None
    target: str | None
    fixed: str | None  # the fixed text of a pair stored in one row (code is the vulnerable one)
    cve: str | None = None  # the row's CVE id (for the knowledge base), optional in rows

    @classmethod
    def of(cls, data: DataConfig, label_needed: bool) -> Columns:
        pairs = data.pair_columns
        return cls(
            code=pairs.vulnerable if pairs else data.code_column,
            label=data.label_column if label_needed else None,
            id=data.id_column,
            pair=data.pair_column,
            group=data.group_column,
            cwe=data.cwe_column,
            target=data.target_column,
            fixed=pairs.fixed if pairs else None,
            cve=data.cve_column,
        )

    def required(self) -> list[tuple[str, str]]:
        """(column, config key) of the columns every row must have."""
        keys = {
            "code": "pair_columns.vulnerable" if self.fixed else "code_column",
            "label": "label_column",
            "pair": "pair_column",
            "group": "group_column",
            "cwe": "cwe_column",
            "target": "target_column",
            "fixed": "pair_columns.fixed",
        }
        optional = ("id", "cve")
        return [(column, keys[role]) for role, column in self.roles() if role not in optional]

    def roles(self) -> list[tuple[str, str]]:
        """(role, column) of every column read."""
        return [(role, column) for role, column in self._asdict().items() if column is not None]


class Record(NamedTuple):
    code: object
    label: object = None
    id: object = None  # None when the file has no id column
    pair: object = None
    group: object = None
    cwe: object = None
    target: object = None
    fixed: object = None
    replaced: bool = False  # the line had bytes that are not UTF-8
    cve: object = None  # None when the config names no CVE column


def _require(path: Path, available: list[str], column: str, role: str) -> None:
    if column not in available:
        raise UserError(
            f"{path}: no column '{column}' (data.{role}); columns: {', '.join(available) or 'none'}"
        )


def _utf8_lines(path: Path, bad_lines: set[int]) -> Iterator[str]:
    """Lines of a file as text; a line with undecodable bytes is replaced and remembered. A
    line is read at most MAX_ROW_BYTES at a time: a longer one is no row (a 256 MB string
    would otherwise be held whole, then copied by the parser)."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_ROW_BYTES + 1), b""), 1):
            if len(raw) > MAX_ROW_BYTES:
                raise UserError(
                    f"{path}: line {number} is over {MAX_ROW_BYTES >> 20} MiB: not one row of "
                    "functions"
                )
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                bad_lines.add(number)
                yield raw.decode("utf-8", errors="replace")


# --- CSV ---------------------------------------------------------------------------------------


def csv_records(path: Path, columns: Columns) -> Iterator[Record]:
    csv.field_size_limit(MAX_ROW_BYTES)  # functions can be far longer than csv's 128 KiB default
    bad_lines: set[int] = set()
    lines = _utf8_lines(path, bad_lines)
    reader = csv.reader(lines)
    header = next(_csv_rows(reader, path), None)
    if header is None:
        raise UserError(f"{path}: empty CSV file (no header row)")
    header = [h.lstrip("\ufeff") for h in header]
    for column, key in columns.required():
        _require(path, header, column, key)
    index = {role: header.index(column) for role, column in columns.roles() if column in header}
    last_line = reader.line_num
    for row, fields in enumerate(_csv_rows(reader, path), start=1):
        if len(fields) != len(header):
            raise UserError(
                f"{path}: row {row} (line {reader.line_num}) has {len(fields)} fields, "
                f"the header has {len(header)}"
            )
        replaced = any(n in bad_lines for n in range(last_line + 1, reader.line_num + 1))
        last_line = reader.line_num
        yield Record(**{role: fields[i] for role, i in index.items()}, replaced=replaced)


def _csv_rows(reader, path: Path) -> Iterator[list[str]]:
    """The reader's rows; a malformed line (a bare carriage return in an unquoted field,
    random bytes) is one error naming the file and line, not csv's exception."""
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise UserError(
                f"{path}: line {reader.line_num + 1} is not valid CSV ({exc})"
            ) from None
        yield fields


# --- JSON lines and JSON arrays -----------------------------------------------------------------


def jsonl_records(path: Path, columns: Columns) -> Iterator[Record]:
    bad_lines: set[int] = set()
    row = 0
    for number, line in enumerate(_utf8_lines(path, bad_lines), start=1):
        if not line.strip():
            continue
        row += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        except ValueError:  # an integer of over 4,300 digits
            raise UserError(f"{path}: line {number} holds a number too long to read") from None
        except RecursionError:
            raise UserError(f"{path}: line {number} is nested too deeply to be a row") from None
        yield _object_record(obj, path, f"row {row} (line {number})", columns, number in bad_lines)


def json_array_records(path: Path, columns: Columns) -> Iterator[Record]:
    """A file holding one JSON array of row objects, read object by object (PairVul's files
    are arrays; a large one is not held in memory twice)."""
    for row, obj in enumerate(_array_items(path), start=1):
        yield _object_record(obj, path, f"row {row}", columns, False)


def _array_items(path: Path) -> Iterator[object]:
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8", errors="replace") as handle:
        buffer, position, started = "", 0, False
        while True:
            block = handle.read(JSON_BLOCK)
            buffer = buffer[position:] + block
            position = 0
            while True:
                position = _skip(buffer, position, "," if started else "")
                if not started:
                    if position < len(buffer) and buffer[position] != "[":
                        raise UserError(f"{path}: not a JSON array of rows (data.format json)")
                    if position < len(buffer):
                        started, position = True, position + 1
                        continue
                    break
                if position < len(buffer) and buffer[position] == "]":
                    return
                try:
                    item, end = decoder.raw_decode(buffer, position)
                except json.JSONDecodeError as exc:
                    if block:  # the object may continue in the next block
                        if len(buffer) - position > MAX_ROW_BYTES:
                            raise UserError(
                                f"{path}: an item over {MAX_ROW_BYTES >> 20} MiB: not one row"
                            ) from None
                        break
                    raise UserError(f"{path}: not valid JSON ({exc.msg})") from None
                except ValueError:  # an integer of over 4,300 digits
                    raise UserError(f"{path}: a row holds a number too long to read") from None
                except RecursionError:
                    raise UserError(f"{path}: a row nested too deeply") from None
                if end == len(buffer) and block:
                    break  # a number may continue in the next block: decode it again with it
                yield item
                position = end
            if not block:
                raise UserError(f"{path}: the JSON array is cut short (no closing ])")


def _skip(text: str, position: int, separators: str) -> int:
    while position < len(text) and (text[position].isspace() or text[position] in separators):
        position += 1
    return position


def _object_record(obj: object, path: Path, where: str, columns: Columns, replaced: bool):
    if not isinstance(obj, dict):
        raise UserError(f"{path}: {where} is not a JSON object")
    for column, role in columns.required():
        # a pair stored in one row: a row without a flawed text may give its fixed one alone
        # (MegaVul's unchanged functions have `func` and no `func_before`)
        if role == "pair_columns.vulnerable" and columns.fixed in obj:
            continue
        if column not in obj:
            raise UserError(
                f"{path}: {where} has no key '{column}' (data.{role}); keys: {', '.join(obj)}"
            )
    for role in ("code", "fixed"):
        column = getattr(columns, role)
        if column is not None:
            _check_text(obj.get(column), path, where, column)
    values = {role: obj.get(column) for role, column in columns.roles()}
    return Record(**values, replaced=replaced)


def _check_text(value: object, path: Path, where: str, column: str) -> None:
    """JSON may escape a lone surrogate (`\\ud800`) that no encoder can write back."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(
                f"{path}: {where}: '{column}' holds a lone surrogate escape, not valid text"
            ) from None


# --- Parquet -----------------------------------------------------------------------------------


def parquet_records(path: Path, columns: Columns, chunk_rows: int) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception:
        raise UserError(f"{path}: not a readable Parquet file") from None
    names = parquet.schema_arrow.names
    for column, key in columns.required():
        _require(path, names, column, key)
    for column, key in ((columns.code, "code_column"), (columns.fixed, "pair_columns.fixed")):
        if column is not None:
            _check_text_type(path, parquet.schema_arrow.field(column).type, column, key)
    roles = [(role, column) for role, column in columns.roles() if column in names]
    wanted = list(dict.fromkeys(column for _, column in roles))
    batches = parquet.iter_batches(batch_size=chunk_rows, columns=wanted)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as exc:  # a damaged page: snappy, thrift, checksum
            reason = " ".join(str(exc).split())[:160]
            raise UserError(f"{path}: a damaged Parquet page ({reason})") from None
        values = {role: batch.column(column).to_pylist() for role, column in roles}
        for i in range(batch.num_rows):
            yield Record(**{role: column[i] for role, column in values.items()})


def _check_text_type(path: Path, kind, column: str, key: str) -> None:
    import pyarrow as pa

    text = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
            pa.types.is_large_binary)  # fmt: skip
    if not any(check(kind) for check in text):
        raise UserError(f"{path}: column '{column}' (data.{key}) must hold text, not {kind}")


# --- SQLite ------------------------------------------------------------------------------------

# what a data query may do: read. Writing, attaching another file and the like are refused.
_SQLITE_READS = {"SQLITE_SELECT", "SQLITE_READ", "SQLITE_FUNCTION", "SQLITE_RECURSIVE"}


def sqlite_records(path: Path, columns: Columns, query: str | None) -> Iterator[Record]:
    """The rows of `query` (data.sqlite_query) over a SQLite database opened read-only; its
    result's column names are the columns (CVEfixes' tables joined into one row per method)."""
    import sqlite3

    if not query:
        raise UserError(f"{path}: format sqlite needs data.sqlite_query (a SELECT)")
    readable = {getattr(sqlite3, name) for name in _SQLITE_READS if hasattr(sqlite3, name)}

    def authorise(action: int, *_args) -> int:
        return sqlite3.SQLITE_OK if action in readable else sqlite3.SQLITE_DENY

    try:
        connection = sqlite3.connect(_read_only_uri(path), uri=True)
    except sqlite3.Error as exc:
        raise UserError(f"{path}: not a readable SQLite database ({exc})") from None
    watch = _QueryWatch()
    try:
        connection.set_authorizer(authorise)
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_SQLITE_VALUE_BYTES)
        connection.set_progress_handler(watch, 100_000)
        try:
            cursor = connection.execute(query)
        except sqlite3.DatabaseError as exc:
            watch.raise_for(path, exc, "data.sqlite_query failed")
        names = [d[0] for d in cursor.description or []]
        for column, key in columns.required():
            _require(path, names, column, key)
        index = {role: names.index(column) for role, column in columns.roles() if column in names}
        count = 0
        while True:
            watch.restart()
            try:
                rows = cursor.fetchmany(1000)
            except sqlite3.DatabaseError as exc:  # a damaged page, a value past the limit
                watch.raise_for(path, exc, "the database could not be read")
            if not rows:
                return
            count += len(rows)
            if count > MAX_SQLITE_ROWS:
                raise UserError(
                    f"{path}: data.sqlite_query returned over {MAX_SQLITE_ROWS:,} rows (an "
                    "endless query?); no dataset of functions is that large"
                )
            for row in rows:
                yield Record(**{role: row[i] for role, i in index.items()})
    finally:
        connection.close()


MAX_SQLITE_VALUE_BYTES = 16 << 20  # a larger value is no function's code
MAX_SQLITE_ROWS = 50_000_000
SQLITE_STALL_S = 600.0  # no row for this long: the query is endless (a recursive view)


def _read_only_uri(path: Path) -> str:
    """Read-only, and immutable where no `-wal` file exists: opening a WAL-mode database
    read-only otherwise creates `-wal` and `-shm` files beside the user's data. Where a `-wal`
    is there (a writer's), its rows are read through it, as SQLite must."""
    from urllib.parse import quote

    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    wal = path.with_name(path.name + "-wal")
    return uri if os.path.lexists(wal) else uri + "&immutable=1"


class _QueryWatch:
    """SQLite's progress handler: stops a query that yields no row for SQLITE_STALL_S. It also
    lets SIGTERM and Ctrl-C through: their handler runs in this callback, inside the query,
    and sqlite3 turns the exception it raises into an "interrupted" error."""

    def __init__(self) -> None:
        self.stalled = False
        self.restart()

    def restart(self) -> None:
        self.deadline = time.monotonic() + SQLITE_STALL_S

    def __call__(self) -> int:
        self.stalled = time.monotonic() > self.deadline
        return int(self.stalled)

    def raise_for(self, path: Path, exc: Exception, what: str) -> NoReturn:
        if "interrupted" in str(exc) and not self.stalled:  # not stopped here: a signal
            raise KeyboardInterrupt from None
        if self.stalled:
            raise UserError(
                f"{path}: data.sqlite_query gave no row in {SQLITE_STALL_S:.0f} s (an endless "
                "query, a recursive view?); stopped"
            ) from None
        raise UserError(f"{path}: {what} ({exc})") from None


# One reader per format in `registries.formats.TABULAR`: (path, columns, data) -> records.
TABULAR_READERS = {
    "csv": lambda path, columns, _data: csv_records(path, columns),
    "jsonl": lambda path, columns, _data: jsonl_records(path, columns),
    "json": lambda path, columns, _data: json_array_records(path, columns),
    "parquet": lambda path, columns, data: parquet_records(path, columns, data.chunk_rows),
    "sqlite": lambda path, columns, data: sqlite_records(path, columns, data.sqlite_query),
}
