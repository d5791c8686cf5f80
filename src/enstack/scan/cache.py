"""Scores and line rankings of functions already scanned, keyed by the model's fingerprint and
the function's text, so a re-scan of a tree where a few files changed scores only those; and
the functions cut out of each file, keyed by the file's bytes and the extractor's version, so
an unchanged file is not parsed again.

One SQLite file (atomic writes, safe with several scans at once). A cache that cannot be opened
or read is not an error: the scan goes on without it and says so. Every row is checked as it is
read (shapes, types, finite numbers, line numbers): one that does not fit is a miss, scored
again and rewritten, never a crash. Writes are batched (one transaction per WRITE_BATCH rows and
at close), so the cache never makes a cold scan of many small files slower.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from dataclasses import asdict
from pathlib import Path

import numpy as np

from enstack import log
from enstack.csyntax.functions import Extraction, Function, Unscored

LOG = log.get(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    model TEXT NOT NULL, code TEXT NOT NULL, probs TEXT NOT NULL, per_model TEXT NOT NULL,
    PRIMARY KEY (model, code));
CREATE TABLE IF NOT EXISTS lines (
    model TEXT NOT NULL, code TEXT NOT NULL, method TEXT NOT NULL, ranked TEXT NOT NULL,
    PRIMARY KEY (model, code, method));
CREATE TABLE IF NOT EXISTS files (
    source TEXT NOT NULL PRIMARY KEY, functions TEXT NOT NULL, damaged INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS known (
    model TEXT NOT NULL, code TEXT NOT NULL, found TEXT NOT NULL, PRIMARY KEY (model, code));
CREATE TABLE IF NOT EXISTS coverage (
    model TEXT NOT NULL, code TEXT NOT NULL, long INTEGER NOT NULL, lines INTEGER NOT NULL,
    seen INTEGER NOT NULL, PRIMARY KEY (model, code));
"""


WRITE_BATCH = 2000  # rows per transaction
FUNCTION_FIELDS = {"path": str, "name": str, "start_line": int, "end_line": int, "code": str,
                   "damaged": bool}  # fmt: skip


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "enstack" / "scan"


def code_key(code: str) -> str:
    return code_key_bytes(code.encode("utf-8", errors="surrogatepass"))


def code_key_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _probabilities(value: object, width: int | None) -> np.ndarray | None:
    """A row of class probabilities as written, or None."""
    if not isinstance(value, list) or (width is not None and len(value) != width):
        return None
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in value):
        return None
    array = np.asarray(value, dtype=np.float64)
    return array if np.isfinite(array).all() and len(array) else None


def _ranked_lines(value: object) -> list[tuple[int, float]] | None:
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2):
            return None
        line, score = item
        if not isinstance(line, int) or isinstance(line, bool) or line < 0:
            return None
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            return None
        out.append((line, float(score)))
    return out


def _extraction(value: object, has_errors: bool) -> Extraction | None:
    """A stored extraction as `put_functions` wrote it, or None."""
    if not isinstance(value, dict) or set(value) != {"functions", "unscored"}:
        return None
    functions, unscored = value["functions"], value["unscored"]
    if not isinstance(functions, list) or not isinstance(unscored, list) or len(unscored) != 2:
        return None
    if not all(type(n) is int and n >= 0 for n in unscored):
        return None
    for item in functions:
        if not isinstance(item, dict) or set(item) != set(FUNCTION_FIELDS):
            return None
        if not all(type(item[k]) is kind for k, kind in FUNCTION_FIELDS.items()):
            return None
        if not 1 <= item["start_line"] <= item["end_line"]:
            return None
    lines, bodies = unscored
    return Extraction([Function(**item) for item in functions], has_errors, Unscored(bodies, lines))


class ScanCache:
    def __init__(self, directory: Path, model_fingerprint: str, width: int | None = None) -> None:
        self.model = model_fingerprint
        self.width = width  # the model's number of classes: rows of another width are misses
        self.db: sqlite3.Connection | None = None
        self.pending: dict[str, list[tuple]] = {}
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(directory / "scan.sqlite", timeout=30)
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            self._give_up(directory, exc)

    def _give_up(self, where: object, exc: Exception) -> None:
        LOG.warning(f"scan cache at {where} not used ({exc})")
        if self.db is not None:
            self.db.close()
        self.db = None

    def get_scores(self, keys: list[str]) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
        found = {}
        for code, probs, per_model in self._rows_for("scores", "probs, per_model", keys):
            row = self._scores_row(probs, per_model)
            if row is not None:
                found[code] = row
        return found

    def _rows_for(
        self, table: str, columns: str, keys: list[str], owner: str | None = None
    ) -> list[tuple]:
        """`(code, *columns)` of this model's rows (or `owner`'s: a knowledge base) for `keys`,
        500 keys a query (SQLite's limit on variables); none where the database fails (the
        cache is then given up)."""
        if self.db is None or not keys:
            return []
        rows: list[tuple] = []
        try:
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                marks = ",".join("?" * len(part))
                rows += self.db.execute(
                    f"SELECT code, {columns} FROM {table} WHERE model = ? AND code IN ({marks})",
                    [owner or self.model, *part],
                ).fetchall()
        except sqlite3.Error as exc:
            self._give_up("its database", exc)
            return []
        return rows

    def _scores_row(
        self, probs: object, per_model: object
    ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """A stored row, or None when it is not what put_scores writes."""
        probs, per_model = _json_or_none(probs), _json_or_none(per_model)
        mean = _probabilities(probs, self.width)
        if mean is None or not isinstance(per_model, dict) or not per_model:
            return None
        models = {str(k): _probabilities(v, self.width) for k, v in per_model.items()}
        if any(v is None for v in models.values()):
            return None
        return mean, models  # type: ignore[return-value]

    def put_scores(self, items: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]) -> None:
        rows = [
            (
                self.model,
                key,
                json.dumps(probs.tolist()),
                json.dumps({k: v.tolist() for k, v in per_model.items()}),
            )
            for key, (probs, per_model) in items.items()
        ]
        self._write("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", rows)

    def get_coverage(self, keys: list[str]) -> dict[str, tuple[int, int, int]]:
        """What the model saw of each text when it scored it: (long, lines, lines seen)."""
        found = {}
        for code, *counts in self._rows_for("coverage", "long, lines, seen", keys):
            if all(isinstance(c, int) and 0 <= c < 1 << 31 for c in counts):
                found[code] = tuple(counts)  # a poisoned row is a miss
        return found

    def put_coverage(self, items: dict[str, tuple[int, int, int]]) -> None:
        rows = [(self.model, key, *map(int, counts)) for key, counts in items.items()]
        self._write("INSERT OR REPLACE INTO coverage VALUES (?, ?, ?, ?, ?)", rows)

    def get_known(self, base: str, keys: list[str]) -> dict[str, list[tuple]]:
        """What a knowledge base (`base`: its contents' hash and the matching rules' version)
        found in each function before: [(entry row, how, lines, containment)]."""
        found = {}
        for code, text in self._rows_for("known", "found", keys, owner=base):
            verdicts = _known_verdicts(_json_or_none(text))
            if verdicts is not None:  # a poisoned row is a miss
                found[code] = verdicts
        return found

    def put_known(self, base: str, items: dict[str, list[tuple]]) -> None:
        rows = [(base, key, json.dumps(found)) for key, found in items.items()]
        self._write("INSERT OR REPLACE INTO known VALUES (?, ?, ?)", rows)

    def get_lines(self, key: str, method: str) -> list[tuple[int, float]] | None:
        if self.db is None:
            return None
        try:
            row = self.db.execute(
                "SELECT ranked FROM lines WHERE model = ? AND code = ? AND method = ?",
                (self.model, key, method),
            ).fetchone()
            return _ranked_lines(_json_or_none(row[0])) if row else None
        except sqlite3.Error as exc:
            self._give_up("its database", exc)
            return None

    def put_lines(self, key: str, method: str, ranked: list[tuple[int, float]]) -> None:
        self._write(
            "INSERT OR REPLACE INTO lines VALUES (?, ?, ?, ?)",
            [(self.model, key, method, json.dumps(ranked))],
        )

    def get_functions(self, key: str) -> Extraction | None:
        """A file's functions as extracted before, with what could not be."""
        if self.db is None:
            return None
        try:
            row = self.db.execute(
                "SELECT functions, damaged FROM files WHERE source = ?", (key,)
            ).fetchone()
            return _extraction(_json_or_none(row[0]), bool(row[1])) if row else None
        except sqlite3.Error as exc:
            self._give_up("its database", exc)
            return None

    def put_functions(self, key: str, found: Extraction) -> None:
        stored = {
            "functions": [asdict(f) for f in found.functions],
            "unscored": [found.unscored.lines, found.unscored.functions],
        }
        self._write(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?)",
            [(key, json.dumps(stored), int(found.has_errors))],
        )

    def _write(self, statement: str, rows: list[tuple]) -> None:
        if self.db is None or not rows:
            return
        self.pending.setdefault(statement, []).extend(rows)
        if sum(len(r) for r in self.pending.values()) >= WRITE_BATCH:
            self.flush()

    def flush(self) -> None:
        """Write what is pending in one transaction."""
        pending, self.pending = self.pending, {}
        if self.db is None or not pending:
            return
        try:
            with self.db:
                for statement, rows in pending.items():
                    self.db.executemany(statement, rows)
        except sqlite3.Error as exc:
            self._give_up("its database", exc)

    def close(self) -> None:
        self.flush()
        if self.db is not None:
            self.db.close()
            self.db = None


def _known_verdicts(value: object) -> list[tuple] | None:
    """[(entry row, how, relative lines, containment)] as put_known writes it, or None."""
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 4):
            return None
        row, how, lines, containment = item
        if type(row) is not int or row < 1 or how not in ("clone", "signature"):
            return None
        if not isinstance(lines, list) or not all(type(n) is int and n >= 1 for n in lines):
            return None
        if not isinstance(containment, (int, float)) or not 0 <= containment <= 1:
            return None
        out.append((row, how, lines, float(containment)))
    return out


def _json_or_none(text: object) -> object:
    try:
        return json.loads(str(text))
    except (ValueError, RecursionError):
        return None
