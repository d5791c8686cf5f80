"""Streaming readers for each source format. Memory is bounded by `chunk_rows`, not the file.

Each reader yields `Chunk`s in file order. Ids come from the file's id column when it has one,
otherwise they are `<file stem>:<row>` (0-based), so they stay stable across runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from enstack.config import DataConfig
from enstack.data.chunks import MULTI_DROPPED, NO_LABEL, Chunk, decode_code
from enstack.data.rows import Labeller, labelled_chunks
from enstack.data.tabular import TABULAR_READERS, Columns
from enstack.errors import UserError

DRAPER_CODE = "functionSource"


def read_source(data: DataConfig, path: Path) -> Iterator[Chunk]:
    """Chunks of `path` read as `data.format`, with the labels, columns and rules of `data`."""
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    if data.format == "draper-hdf5":
        return read_draper(path, data.labels, data.benign_id, data.multi_label, data.chunk_rows)
    reader = TABULAR_READERS.get(data.format)
    if reader is None:
        raise UserError(f"data.format {data.format!r} has no file reader")
    columns = Columns.of(data, Labeller.needs_label(data))
    records = reader(path, columns, data)
    return labelled_chunks(records, data, path)


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
