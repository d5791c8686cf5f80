"""Streaming readers for each source format. Memory is bounded by `chunk_rows`, not the file.

Each reader yields `Chunk`s in file order. Ids come from the file's id column when it has one,
otherwise they are `<file stem>:<row>` (0-based), so they stay stable across runs.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from enstack.config import DataConfig
from enstack.data.chunks import MULTI_DROPPED, NO_LABEL, Chunk, decode_code
from enstack.data.labelmap import LabelMap
from enstack.errors import UserError

DRAPER_CODE = "functionSource"


def read_source(data: DataConfig, path: Path) -> Iterator[Chunk]:
    """Chunks of `path` read as `data.format`, with the labels, columns and rules of `data`."""
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    if data.format == "draper-hdf5":
        return read_draper(path, data.labels, data.benign_id, data.multi_label, data.chunk_rows)
    label_map = LabelMap(data.labels, path, data.label_column)
    columns = Columns(
        data.code_column, data.label_column, data.id_column, data.pair_column, data.group_column
    )
    reader = TABULAR_READERS.get(data.format)
    if reader is None:
        raise UserError(f"data.format {data.format!r} has no file reader")
    return _chunked(
        reader(path, columns, data.chunk_rows), label_map, path, data.chunk_rows, columns
    )


# --- Draper VDISC HDF5 ----------------------------------------------------------------------


def read_draper(
    path: Path, labels: list[str], benign_id: int | None, multi_label: str, chunk_rows: int
) -> Iterator[Chunk]:
    """Draper's flag columns by class name; with a benign class, unflagged rows become it."""
    import h5py

    flagged = [i for i in range(len(labels)) if i != benign_id]

    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise UserError(f"{path}: not a readable HDF5 file") from None
    with handle:
        found = sorted(handle.keys())
        if DRAPER_CODE not in handle:
            raise UserError(
                f"{path}: no '{DRAPER_CODE}' dataset, so not a Draper VDISC file "
                f"(found: {', '.join(found) or 'nothing'})"
            )
        missing = [labels[i] for i in flagged if labels[i] not in handle]
        if missing:
            raise UserError(
                f"{path}: no dataset for class {missing[0]!r} (data.labels must name the file's "
                f"flag columns; found: {', '.join(found)})"
            )
        code_ds = handle[DRAPER_CODE]
        flag_ds = [handle[labels[i]] for i in flagged]
        _check_draper_dataset(path, code_ds, DRAPER_CODE, "a column of strings", "SOU")
        n_rows = code_ds.shape[0]
        for ds, name in zip(flag_ds, [labels[i] for i in flagged], strict=True):
            _check_draper_dataset(path, ds, name, "a column of booleans (or 0/1)", "biu")
            if ds.shape[0] != n_rows:
                raise UserError(
                    f"{path}: column {name!r} has {ds.shape[0]} rows but {DRAPER_CODE} has {n_rows}"
                )
        stem = path.stem
        for start in range(0, n_rows, chunk_rows):
            stop = min(start + chunk_rows, n_rows)
            flags = np.stack([np.asarray(ds[start:stop]).reshape(-1) != 0 for ds in flag_ds], 1)
            chunk = _draper_chunk(code_ds[start:stop], flags, flagged, start, stem, multi_label)
            if benign_id is not None:
                unflagged = chunk.labels == NO_LABEL
                chunk.labels[unflagged] = benign_id
                chunk.unflagged_benign = int(unflagged.sum())
                _decode_rows(chunk, np.flatnonzero(unflagged), code_ds, start)
            yield chunk


def _check_draper_dataset(path: Path, ds, name: str, wanted: str, kinds: str) -> None:
    """A Draper column is one value per row, of the kind VDISC has (checked before reading)."""
    import h5py

    if not isinstance(ds, h5py.Dataset) or len(ds.shape) != 1:
        shape = getattr(ds, "shape", None)
        raise UserError(f"{path}: '{name}' must be {wanted}, one per row (shape {shape})")
    kind = ds.dtype.kind
    if kind == "O" and h5py.check_string_dtype(ds.dtype) is None:
        kind = "?"  # an object dtype that is not a string
    if kind not in kinds:
        raise UserError(f"{path}: '{name}' must be {wanted}, not {ds.dtype}")


def _draper_chunk(
    raw_codes: Iterable[bytes | str],
    flags: np.ndarray,
    class_ids: list[int],
    start: int,
    stem: str,
    multi_label: str,
) -> Chunk:
    """Rows labelled by their first flag (`class_ids[column]`); unflagged rows NO_LABEL."""
    n_flags = flags.sum(axis=1)
    ids_of_flags = np.asarray(class_ids, np.int16)
    labels = np.where(n_flags > 0, ids_of_flags[flags.argmax(axis=1)], NO_LABEL).astype(np.int16)
    multi = n_flags > 1
    if multi_label == "drop":
        labels[multi] = MULTI_DROPPED
    codes, bad = [], 0
    for raw, label in zip(raw_codes, labels, strict=True):
        # Decoding is the slow part; unlabelled rows are dropped anyway, so skip them.
        if label < 0:
            codes.append("")
            continue
        text, replaced = decode_code(raw)
        codes.append(text)
        bad += replaced
    ids = [f"{stem}:{start + i}" for i in range(len(codes))]
    return Chunk(ids, codes, labels, undecodable=bad, multi_label=int(multi.sum()))


def _decode_rows(chunk: Chunk, rows: np.ndarray, code_ds, start: int) -> None:
    """Decode rows that `_draper_chunk` skipped as unlabelled (now kept as benign)."""
    if not len(rows):
        return
    raw = code_ds[start : start + len(chunk)]
    for row in rows.tolist():
        chunk.codes[row], replaced = decode_code(raw[row])
        chunk.undecodable += replaced


# --- tabular: CSV, JSONL, Parquet -------------------------------------------------------------


class Columns(NamedTuple):
    code: str
    label: str
    id: str  # optional in the file: ids are generated when it is absent
    pair: str | None  # read only when data.pair_column is set
    group: str | None  # read only when data.group_column is set

    def required(self) -> list[tuple[str, str]]:
        """(column, config key) of the columns every row must have: code, label, and the
        optional ones the config names."""
        named = ((self.pair, "pair_column"), (self.group, "group_column"))
        optional = [(column, key) for column, key in named if column is not None]
        return [(self.code, "code_column"), (self.label, "label_column"), *optional]


class Record(NamedTuple):
    code: object
    label: object
    id: object  # None when the file has no id column
    pair: object  # None when not read, or empty in the file
    group: object  # the same
    replaced: bool  # the line had bytes that are not UTF-8


def _chunked(
    records: Iterator[Record], label_map: LabelMap, path: Path, chunk_rows: int, columns: Columns
) -> Iterator[Chunk]:
    stem = path.stem
    ids: list[str] = []
    codes: list[str] = []
    labels: list[int] = []
    pairs: list[str | None] = []
    groups: list[str | None] = []
    bad = 0
    row = 0

    def chunk() -> Chunk:
        return Chunk(
            ids,
            codes,
            np.asarray(labels, np.int16),
            bad,
            pairs=pairs if columns.pair is not None else None,
            groups=groups if columns.group is not None else None,
        )

    for row, record in enumerate(records):
        code = record.code
        text, replaced_here = decode_code(code if isinstance(code, bytes | str) else _str(code))
        codes.append(text)
        bad += record.replaced or replaced_here
        labels.append(label_map(record.label, row + 1))
        ids.append(str(record.id) if record.id not in (None, "") else f"{stem}:{row}")
        pairs.append(_optional_id(record.pair))
        groups.append(_optional_id(record.group))
        if len(codes) == chunk_rows:
            yield chunk()
            ids, codes, labels, pairs, groups, bad = [], [], [], [], [], 0
    if codes or row == 0:
        yield chunk()


def _optional_id(value: object) -> str | None:
    return None if value in (None, "") else str(value)


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _require(path: Path, available: list[str], column: str, role: str) -> None:
    if column not in available:
        raise UserError(
            f"{path}: no column '{column}' (data.{role}); columns: {', '.join(available) or 'none'}"
        )


def _utf8_lines(path: Path, bad_lines: set[int]) -> Iterator[str]:
    """Lines of a file as text; a line with undecodable bytes is replaced and remembered."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                bad_lines.add(number)
                yield raw.decode("utf-8", errors="replace")


def _csv_records(path: Path, columns: Columns) -> Iterator[Record]:
    csv.field_size_limit(sys.maxsize)  # functions can be far longer than csv's 128 KiB default
    bad_lines: set[int] = set()
    lines = _utf8_lines(path, bad_lines)
    reader = csv.reader(lines)
    header = next(_csv_rows(reader, path), None)
    if header is None:
        raise UserError(f"{path}: empty CSV file (no header row)")
    header = [h.lstrip("\ufeff") for h in header]
    for column, key in columns.required():
        _require(path, header, column, key)
    code_i, label_i = header.index(columns.code), header.index(columns.label)
    id_i = header.index(columns.id) if columns.id in header else None
    pair_i = header.index(columns.pair) if columns.pair is not None else None
    group_i = header.index(columns.group) if columns.group is not None else None
    last_line = reader.line_num
    for row, fields in enumerate(_csv_rows(reader, path), start=1):
        if len(fields) != len(header):
            raise UserError(
                f"{path}: row {row} (line {reader.line_num}) has {len(fields)} fields, "
                f"the header has {len(header)}"
            )
        replaced = any(n in bad_lines for n in range(last_line + 1, reader.line_num + 1))
        last_line = reader.line_num
        row_id = fields[id_i] if id_i is not None else None
        pair = fields[pair_i] if pair_i is not None else None
        group = fields[group_i] if group_i is not None else None
        yield Record(fields[code_i], fields[label_i], row_id, pair, group, replaced)


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


def _jsonl_records(path: Path, columns: Columns) -> Iterator[Record]:
    required = columns.required()
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
        except RecursionError:
            raise UserError(f"{path}: line {number} is nested too deeply to be a row") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}: line {number} is not a JSON object")
        for column, role in required:
            if column not in obj:
                raise UserError(
                    f"{path}: row {row} (line {number}) has no key '{column}' (data.{role}); "
                    f"keys: {', '.join(obj)}"
                )
        pair = obj[columns.pair] if columns.pair is not None else None
        group = obj[columns.group] if columns.group is not None else None
        _check_text(obj[columns.code], path, f"row {row} (line {number})", columns.code)
        yield Record(
            obj[columns.code],
            obj[columns.label],
            obj.get(columns.id),
            pair,
            group,
            number in bad_lines,
        )


def _check_text(value: object, path: Path, where: str, column: str) -> None:
    """JSON may escape a lone surrogate (`\\ud800`) that no encoder can write back."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(
                f"{path}: {where}: '{column}' holds a lone surrogate escape, not valid text"
            ) from None


def _parquet_records(path: Path, columns: Columns, chunk_rows: int) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception:
        raise UserError(f"{path}: not a readable Parquet file") from None
    names = parquet.schema_arrow.names
    for column, key in columns.required():
        _require(path, names, column, key)
    code_type = parquet.schema_arrow.field(columns.code).type
    if not (
        pa.types.is_string(code_type)
        or pa.types.is_large_string(code_type)
        or pa.types.is_binary(code_type)
        or pa.types.is_large_binary(code_type)
    ):
        raise UserError(
            f"{path}: column '{columns.code}' (data.code_column) must hold text, not {code_type}"
        )
    wanted = [columns.code, columns.label]
    wanted += [c for c in (columns.id, columns.pair, columns.group) if c is not None and c in names]
    batches = parquet.iter_batches(batch_size=chunk_rows, columns=list(dict.fromkeys(wanted)))
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as exc:  # a damaged page: snappy, thrift, checksum
            reason = " ".join(str(exc).split())[:160]
            raise UserError(f"{path}: a damaged Parquet page ({reason})") from None
        values = [_column(batch, name, names) for name in columns]
        for code, label, row_id, pair, group in zip(*values, strict=True):
            yield Record(code, label, row_id, pair, group, False)


def _column(batch, name: str | None, names: list[str]) -> list:
    """A batch's column as Python values; Nones when the file (or the config) has none."""
    return batch.column(name).to_pylist() if name in names else [None] * batch.num_rows


# One reader per tabular format in `data.formats.TABULAR`: (path, columns, chunk_rows) -> records.
TABULAR_READERS = {
    "csv": lambda path, columns, _rows: _csv_records(path, columns),
    "jsonl": lambda path, columns, _rows: _jsonl_records(path, columns),
    "parquet": _parquet_records,
}
