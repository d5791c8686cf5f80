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

import numpy as np

from enstack.data.chunks import MULTI_DROPPED, NO_LABEL, Chunk, decode_code
from enstack.data.labelmap import LabelMap
from enstack.errors import UserError

DRAPER_CODE = "functionSource"


def read_source(
    fmt: str,
    path: Path,
    *,
    labels: list[str],
    code_column: str,
    label_column: str,
    id_column: str,
    multi_label: str,
    chunk_rows: int,
) -> Iterator[Chunk]:
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    if fmt == "draper-hdf5":
        return read_draper(path, labels, multi_label, chunk_rows)
    label_map = LabelMap(labels, path, label_column)
    columns = (code_column, label_column, id_column)
    if fmt == "csv":
        return _chunked(_csv_records(path, *columns), label_map, path, chunk_rows)
    if fmt == "jsonl":
        return _chunked(_jsonl_records(path, *columns), label_map, path, chunk_rows)
    if fmt == "parquet":
        return _chunked(_parquet_records(path, *columns, chunk_rows), label_map, path, chunk_rows)
    raise UserError(f"data.format {fmt!r} has no file reader")


# --- Draper VDISC HDF5 ----------------------------------------------------------------------


def read_draper(
    path: Path, labels: list[str], multi_label: str, chunk_rows: int
) -> Iterator[Chunk]:
    import h5py

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
        missing = [name for name in labels if name not in handle]
        if missing:
            raise UserError(
                f"{path}: no dataset for class {missing[0]!r} (data.labels must name the file's "
                f"flag columns; found: {', '.join(found)})"
            )
        code_ds = handle[DRAPER_CODE]
        flag_ds = [handle[name] for name in labels]
        n_rows = code_ds.shape[0]
        for ds, name in zip(flag_ds, labels, strict=True):
            if ds.shape[0] != n_rows:
                raise UserError(
                    f"{path}: column {name!r} has {ds.shape[0]} rows but {DRAPER_CODE} has {n_rows}"
                )
        stem = path.stem
        for start in range(0, n_rows, chunk_rows):
            stop = min(start + chunk_rows, n_rows)
            flags = np.stack([np.asarray(ds[start:stop]).reshape(-1) != 0 for ds in flag_ds], 1)
            yield _draper_chunk(code_ds[start:stop], flags, start, stem, multi_label)


def _draper_chunk(
    raw_codes: Iterable[bytes | str], flags: np.ndarray, start: int, stem: str, multi_label: str
) -> Chunk:
    n_flags = flags.sum(axis=1)
    labels = np.where(n_flags > 0, flags.argmax(axis=1), NO_LABEL).astype(np.int16)
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


# --- tabular: CSV, JSONL, Parquet -------------------------------------------------------------

Record = tuple[object, object, object, bool]  # code, label, id-or-None, had undecodable bytes


def _chunked(
    records: Iterator[Record], label_map: LabelMap, path: Path, chunk_rows: int
) -> Iterator[Chunk]:
    stem = path.stem
    ids: list[str] = []
    codes: list[str] = []
    labels: list[int] = []
    bad = 0
    row = 0
    for row, (code, label, row_id, replaced) in enumerate(records):
        text, replaced_here = decode_code(code if isinstance(code, bytes | str) else _str(code))
        codes.append(text)
        bad += replaced or replaced_here
        labels.append(label_map(label, row + 1))
        ids.append(str(row_id) if row_id not in (None, "") else f"{stem}:{row}")
        if len(codes) == chunk_rows:
            yield Chunk(ids, codes, np.asarray(labels, np.int16), undecodable=bad)
            ids, codes, labels, bad = [], [], [], 0
    if codes or row == 0:
        yield Chunk(ids, codes, np.asarray(labels, np.int16), undecodable=bad)


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


def _csv_records(path: Path, code_col: str, label_col: str, id_col: str) -> Iterator[Record]:
    csv.field_size_limit(sys.maxsize)  # functions can be far longer than csv's 128 KiB default
    bad_lines: set[int] = set()
    lines = _utf8_lines(path, bad_lines)
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise UserError(f"{path}: empty CSV file (no header row)")
    header = [h.lstrip("\ufeff") for h in header]
    _require(path, header, code_col, "code_column")
    _require(path, header, label_col, "label_column")
    code_i, label_i = header.index(code_col), header.index(label_col)
    id_i = header.index(id_col) if id_col in header else None
    last_line = reader.line_num
    for row, fields in enumerate(reader, start=1):
        if len(fields) != len(header):
            raise UserError(
                f"{path}: row {row} (line {reader.line_num}) has {len(fields)} fields, "
                f"the header has {len(header)}"
            )
        replaced = any(n in bad_lines for n in range(last_line + 1, reader.line_num + 1))
        last_line = reader.line_num
        row_id = fields[id_i] if id_i is not None else None
        yield fields[code_i], fields[label_i], row_id, replaced


def _jsonl_records(path: Path, code_col: str, label_col: str, id_col: str) -> Iterator[Record]:
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
        if not isinstance(obj, dict):
            raise UserError(f"{path}: line {number} is not a JSON object")
        for column, role in ((code_col, "code_column"), (label_col, "label_column")):
            if column not in obj:
                raise UserError(
                    f"{path}: row {row} (line {number}) has no key '{column}' (data.{role}); "
                    f"keys: {', '.join(obj)}"
                )
        yield obj[code_col], obj[label_col], obj.get(id_col), number in bad_lines


def _parquet_records(
    path: Path, code_col: str, label_col: str, id_col: str, chunk_rows: int
) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception:
        raise UserError(f"{path}: not a readable Parquet file") from None
    names = parquet.schema_arrow.names
    _require(path, names, code_col, "code_column")
    _require(path, names, label_col, "label_column")
    columns = [code_col, label_col] + ([id_col] if id_col in names else [])
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        codes = batch.column(code_col).to_pylist()
        labels = batch.column(label_col).to_pylist()
        ids = batch.column(id_col).to_pylist() if id_col in names else [None] * len(codes)
        for code, label, row_id in zip(codes, labels, ids, strict=True):
            yield code, label, row_id, False
