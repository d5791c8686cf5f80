"""Scores and line rankings of functions already scanned, keyed by the model's fingerprint and
the function's text, so a re-scan of a tree where a few files changed scores only those; and
the functions cut out of each file, keyed by the file's bytes and the extractor's version, so
an unchanged file is not parsed again.

One SQLite file (atomic writes, safe with several scans at once). A cache that cannot be opened
or read is not an error: the scan goes on without it and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    model TEXT NOT NULL, code TEXT NOT NULL, probs TEXT NOT NULL, per_model TEXT NOT NULL,
    PRIMARY KEY (model, code));
CREATE TABLE IF NOT EXISTS lines (
    model TEXT NOT NULL, code TEXT NOT NULL, method TEXT NOT NULL, ranked TEXT NOT NULL,
    PRIMARY KEY (model, code, method));
CREATE TABLE IF NOT EXISTS files (
    source TEXT NOT NULL PRIMARY KEY, functions TEXT NOT NULL, damaged INTEGER NOT NULL);
"""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "enstack" / "scan"


def code_key(code: str) -> str:
    return code_key_bytes(code.encode("utf-8", errors="surrogatepass"))


def code_key_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ScanCache:
    def __init__(self, directory: Path, model_fingerprint: str) -> None:
        self.model = model_fingerprint
        self.db: sqlite3.Connection | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(directory / "scan.sqlite", timeout=30)
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            self._give_up(directory, exc)

    def _give_up(self, where: object, exc: Exception) -> None:
        print(f"warning: scan cache at {where} not used ({exc})", file=sys.stderr)
        if self.db is not None:
            self.db.close()
        self.db = None

    def get_scores(self, keys: list[str]) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
        if self.db is None or not keys:
            return {}
        found = {}
        try:
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self.db.execute(
                    "SELECT code, probs, per_model FROM scores "
                    f"WHERE model = ? AND code IN ({marks})",
                    [self.model, *part],
                ).fetchall()
                for code, probs, per_model in rows:
                    found[code] = (
                        np.asarray(json.loads(probs)),
                        {k: np.asarray(v) for k, v in json.loads(per_model).items()},
                    )
        except (sqlite3.Error, ValueError) as exc:
            self._give_up("its database", exc)
            return {}
        return found

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

    def get_lines(self, key: str, method: str) -> list[tuple[int, float]] | None:
        if self.db is None:
            return None
        try:
            row = self.db.execute(
                "SELECT ranked FROM lines WHERE model = ? AND code = ? AND method = ?",
                (self.model, key, method),
            ).fetchone()
            return (
                [(int(line), float(score)) for line, score in json.loads(row[0])] if row else None
            )
        except (sqlite3.Error, ValueError, TypeError) as exc:
            self._give_up("its database", exc)
            return None

    def put_lines(self, key: str, method: str, ranked: list[tuple[int, float]]) -> None:
        self._write(
            "INSERT OR REPLACE INTO lines VALUES (?, ?, ?, ?)",
            [(self.model, key, method, json.dumps(ranked))],
        )

    def get_functions(self, key: str) -> tuple[list[dict], bool] | None:
        """A file's functions (as `Function` fields) and whether it had parse errors."""
        if self.db is None:
            return None
        try:
            row = self.db.execute(
                "SELECT functions, damaged FROM files WHERE source = ?", (key,)
            ).fetchone()
            return (json.loads(row[0]), bool(row[1])) if row else None
        except (sqlite3.Error, ValueError) as exc:
            self._give_up("its database", exc)
            return None

    def put_functions(self, key: str, functions: list[dict], damaged: bool) -> None:
        self._write(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?)",
            [(key, json.dumps(functions), int(damaged))],
        )

    def _write(self, statement: str, rows: list[tuple]) -> None:
        if self.db is None or not rows:
            return
        try:
            with self.db:
                self.db.executemany(statement, rows)
        except sqlite3.Error as exc:
            self._give_up("its database", exc)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
