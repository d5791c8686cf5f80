"""The knowledge base on disk: a directory holding `known.sqlite` and `manifest.json`.

The manifest names the format, its version, the abstraction level, the entry count and the
SQLite file's size and SHA-256: a base is checked against it before it is read, so a truncated,
corrupt or foreign base ends in one `error:` line, never in a wrong answer. Nothing is
unpickled; SQLite is opened read-only with its schema untrusted.

The index that finds candidates is a table of (key, entry) with an index on key, so a lookup
costs the same at 1k and at 100k entries and nothing is read at load: each entry is keyed by
its function's name and by the bands of a MinHash (datasketch) of its statements, as an LSH
index bands them (16 bands of 4: two functions sharing about half their statements share a
band with probability over 0.6, at 0.8 over 0.999).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np

from enstack import __version__, versions
from enstack.errors import UserError
from enstack.fsutil import (
    OLD_MARK,
    ProcessLock,
    atomic_write_json,
    clean_debris,
    read_untrusted_json,
    sha256_file,
    staged_dir,
)
from enstack.known.normalise import LEVEL, Normalised, hash63
from enstack.known.signature import Entry, Signature

FORMAT = "enstack-known-base"
DB_NAME = "known.sqlite"
MANIFEST = "manifest.json"
NUM_PERM, BANDS = 64, 16
ROWS = NUM_PERM // BANDS
MAX_CANDIDATES = 64  # entries verified per function, most shared keys first
MAX_MANIFEST_BYTES = 1 << 20
MAX_CACHED_ENTRIES = 8192  # entries kept decoded in memory while a scan runs
SCHEME = "affine32"  # datasketch's permutation scheme (2.0's default, named so it stays put)
# band keys of a fixed set, kept in the manifest: a MinHash that hashes differently (another
# datasketch) would find no candidates in silence, so it is caught at load instead
PROBE = tuple(range(1, 41))

SCHEMA = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    vuln_id TEXT NOT NULL, cwe TEXT NOT NULL, class TEXT, name TEXT, source TEXT NOT NULL,
    vulnerable_key INTEGER NOT NULL, fixed_key INTEGER NOT NULL, vulnerable_keys BLOB NOT NULL,
    fixed_keys BLOB NOT NULL, deleted BLOB NOT NULL, added BLOB NOT NULL, context BLOB NOT NULL,
    marks TEXT NOT NULL, change TEXT NOT NULL);
CREATE UNIQUE INDEX entries_once ON entries (vuln_id, vulnerable_key, fixed_key);
CREATE TABLE keys (key INTEGER NOT NULL, entry INTEGER NOT NULL);
CREATE INDEX keys_by_key ON keys (key);
"""


@cache
def _permutations() -> tuple:
    """The MinHash's random permutations, drawn once (drawing them is most of a MinHash's
    cost on a function of a few dozen statements)."""
    from datasketch import MinHash  # scipy behind it: imported when a base is first used

    return MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME).permutations


def minhash_bands(keys: Iterable[int]) -> list[int]:
    """The LSH band keys of a set of statement keys."""
    from datasketch import MinHash

    sketch = MinHash(
        num_perm=NUM_PERM, hashfunc=_low32, permutations=_permutations(), scheme=SCHEME
    )
    sketch.update_batch(list(keys))
    values = np.asarray(sketch.hashvalues, dtype=np.uint64)
    return [
        _bytes_key(bytes([band]) + values[band * ROWS : (band + 1) * ROWS].tobytes())
        for band in range(BANDS)
    ]


def name_key(name: str) -> int:
    return hash63("name\0" + name)


def _low32(key: int) -> int:
    return key & 0xFFFFFFFF


def _bytes_key(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") >> 1


def _pack(keys: Iterable[int]) -> bytes:
    return np.fromiter(keys, dtype=np.int64).tobytes()


def _unpack(blob: object, what: str) -> tuple[int, ...]:
    if not isinstance(blob, bytes) or len(blob) % 8:
        raise sqlite3.DatabaseError(f"{what} is not a list of keys")
    return tuple(np.frombuffer(blob, dtype=np.int64).tolist())


# --- writing -----------------------------------------------------------------------------------


@dataclass
class BuildTally:
    """What a build took and what it skipped, by reason (said, never fatal)."""

    taken: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class BaseWriter:
    """Entries into a staged copy of the base, published whole at `close` (nothing
    half-written is ever at `path`); `append` starts from the existing base, verified."""

    def __init__(self, staged: Path, previous: Path | None) -> None:
        self.db_path = staged / DB_NAME
        self.sources: list[dict] = []
        if previous is not None:
            old = read_manifest(previous)
            shutil.copyfile(previous / DB_NAME, self.db_path)
            self.sources = list(old.get("sources", []))
            self.db = sqlite3.connect(self.db_path)
        else:
            self.db = sqlite3.connect(self.db_path)
            self.db.executescript(SCHEMA)

    def add(self, entry: Entry, tally: BuildTally) -> None:
        sig = entry.signature
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO entries (vuln_id, cwe, class, name, source, vulnerable_key, "
            "fixed_key, vulnerable_keys, fixed_keys, deleted, added, context, marks, change) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                entry.vuln_id,
                entry.cwe,
                entry.label,
                entry.name,
                entry.source,
                entry.vulnerable_key,
                entry.fixed_key,
                _pack(sorted(entry.vulnerable_keys)),
                _pack(sorted(entry.fixed_keys)),
                _pack(sig.deleted),
                _pack(sig.added),
                _pack(sig.context),
                json.dumps(sig.texts),
                entry.change,
            ),
        )
        if cursor.rowcount == 0:
            tally.skip("already in the base")
            return
        row = cursor.lastrowid
        keys = minhash_bands(entry.sketched) if entry.sketched else []
        if entry.name:
            keys.append(name_key(entry.name))
        self.db.executemany("INSERT INTO keys VALUES (?, ?)", [(k, row) for k in set(keys)])
        tally.taken += 1

    def finish(self, staged: Path, sources: list[dict]) -> int:
        self.db.commit()
        (count,) = self.db.execute("SELECT count(*) FROM entries").fetchone()
        self.db.execute("VACUUM")
        self.db.close()
        self.sources += sources
        manifest = {
            "format": FORMAT,
            "version": versions.KNOWN_BASE_FORMAT,
            "level": LEVEL,
            "entries": count,
            "database": {
                "file": DB_NAME,
                "bytes": self.db_path.stat().st_size,
                "sha256": sha256_file(self.db_path),
            },
            "sources": self.sources,
            "probe_bands": minhash_bands(PROBE),
            "written_by": f"enstack {__version__}",
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        atomic_write_json(staged / MANIFEST, manifest)
        return count


@contextmanager
def writing(path: Path, append: bool) -> Iterator[tuple[BaseWriter, Path]]:
    """A writer whose base replaces `path` only when the block ends without an error; one
    build at a time (a second one's recovery would otherwise remove the first's staging)."""
    with ProcessLock(path.parent / f".{path.name}.lock", f"--out {path}"):
        _recover(path)
        if path.exists() and not append and not _is_base(path):
            raise UserError(
                f"--out {path}: exists and is not a knowledge base; refusing to replace it"
            )
        if append and not path.exists():
            raise UserError(
                f"--append: {path} does not exist yet (build it first, without --append)"
            )
        with staged_dir(path) as staged:
            writer = BaseWriter(staged, path if append else None)
            try:
                yield writer, staged
            finally:
                with suppress(sqlite3.Error):
                    writer.db.close()


def _recover(path: Path) -> None:
    """What a build killed at any point left: a staged copy (removed) or, killed between
    setting the old base aside and moving the new one in, the old base (put back)."""
    set_aside = sorted(path.parent.glob(f".{path.name}{OLD_MARK}*"), key=os.path.getmtime)
    if not path.exists() and set_aside and _is_base(set_aside[-1]):
        os.rename(set_aside[-1], path)
    clean_debris(path.parent, path.name)


def _is_base(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


# --- reading -----------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict:
    """The manifest of the base at `path`, checked against its database; UserError otherwise."""
    if not path.is_dir():
        raise UserError(f"--known {path}: not a knowledge base directory (enstack known build)")
    manifest = read_untrusted_json(
        path / MANIFEST, MAX_MANIFEST_BYTES, f"--known {path / MANIFEST}", "not a base's manifest"
    )
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"--known {path / MANIFEST}: not an enstack knowledge base's manifest")
    if manifest.get("version") != versions.KNOWN_BASE_FORMAT or manifest.get("level") != LEVEL:
        raise UserError(
            f"--known {path}: a base of format {manifest.get('version')!r}, level "
            f"{manifest.get('level')!r}; this enstack reads {versions.KNOWN_BASE_FORMAT}, "
            f"{LEVEL}: build it again"
        )
    database = manifest.get("database")
    db = path / DB_NAME
    if not isinstance(database, dict) or not db.is_file() or db.is_symlink():
        raise UserError(f"--known {db}: missing (the base is incomplete)")
    if db.stat().st_size != database.get("bytes") or sha256_file(db) != database.get("sha256"):
        raise UserError(f"--known {db}: does not match its manifest (truncated or changed)")
    if manifest.get("probe_bands") != minhash_bands(PROBE):
        raise UserError(
            f"--known {path}: its index was hashed by another MinHash (another datasketch): "
            "build it again with this enstack"
        )
    return manifest


class KnownBase:
    """A verified base, opened read-only; candidates by index, entries read on demand."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.entries_count = int(self.manifest.get("entries", 0))
        uri = f"file:{(self.path / DB_NAME).resolve()}?mode=ro&immutable=1"
        try:
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self.db.execute("PRAGMA trusted_schema = OFF")
            self.db.execute("SELECT vuln_id, vulnerable_keys FROM entries LIMIT 1").fetchall()
            self.db.execute("SELECT key, entry FROM keys LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from None
        self._entries: dict[int, Entry] = {}

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def cache_key(self) -> str:
        """What a scan cache keeps this base's verdicts under: its contents and the rules."""
        return f"known:{self.manifest['database']['sha256']}:{LEVEL}:{versions.KNOWN_MATCHER}"

    def candidates(self, function: Normalised, name: str | None) -> list[Entry]:
        """Entries sharing the function's name or a MinHash band, most shared keys first."""
        keys = minhash_bands(function.informative_keys) if function.informative_keys else []
        if name:
            keys.append(name_key(name))
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = self._read(
            f"SELECT entry FROM keys WHERE key IN ({marks}) GROUP BY entry "
            "ORDER BY count(*) DESC, entry LIMIT ?",
            (*keys, MAX_CANDIDATES),
        )
        ids = [int(row) for (row,) in rows]
        self._load([i for i in ids if i not in self._entries])
        if any(i not in self._entries for i in ids):
            raise UserError(f"--known {self.path / DB_NAME}: its index names a missing entry")
        return [self._entries[i] for i in ids]

    def entry(self, row: int) -> Entry | None:
        """The entry at `row`, or None where there is none (a stale scan cache's row)."""
        if row not in self._entries:
            self._load([row])
        return self._entries.get(row)

    def _load(self, rows: list[int]) -> None:
        """Read and decode the entries at `rows` (one query) into the in-memory cache."""
        if not rows:
            return
        if len(self._entries) + len(rows) > MAX_CACHED_ENTRIES:
            self._entries.clear()  # a scan meets few entries: bounded, not clever
        marks = ",".join("?" * len(rows))
        records = self._read(
            "SELECT id, vuln_id, cwe, class, name, source, vulnerable_key, fixed_key, "
            "vulnerable_keys, fixed_keys, deleted, added, context, marks, change "
            f"FROM entries WHERE id IN ({marks})",
            tuple(rows),
        )
        for row, *record in records:
            try:
                self._entries[row] = _entry_of(tuple(record), row)
            except (sqlite3.Error, ValueError) as exc:
                raise self._unreadable(exc) from None

    def _read(self, query: str, parameters: tuple) -> list[tuple]:
        try:
            return self.db.execute(query, parameters).fetchall()
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: Exception) -> UserError:
        return UserError(f"--known {self.path / DB_NAME}: not a readable base ({exc})")

    def close(self) -> None:
        self.db.close()


def _entry_of(record: tuple, row: int) -> Entry:
    vuln_id, cwe, label, name, source, vkey, fkey, vkeys, fkeys = record[:9]
    deleted, added, context, marks, change = record[9:]
    texts = (vuln_id, cwe, source, change, marks)
    if not all(isinstance(t, str) for t in texts) or not all(
        isinstance(k, int) for k in (vkey, fkey)
    ):
        raise sqlite3.DatabaseError("an entry's fields are not of their types")
    signature = Signature(
        _unpack(deleted, "deleted"), _unpack(added, "added"), _unpack(context, "context")
    )
    texts = json.loads(marks)
    if not isinstance(texts, dict) or not all(isinstance(t, str) for t in texts.values()):
        raise sqlite3.DatabaseError("an entry's statement texts are not a mapping of texts")
    signature = Signature(
        signature.deleted,
        signature.added,
        signature.context,
        {int(k): t for k, t in texts.items()},
    )
    return Entry(
        vuln_id,
        cwe,
        label if isinstance(label, str) else None,
        name if isinstance(name, str) else None,
        source,
        vkey,
        fkey,
        frozenset(_unpack(vkeys, "vulnerable_keys")),
        frozenset(_unpack(fkeys, "fixed_keys")),
        frozenset(),  # only building needs it
        signature,
        change,
        row,
    )


def describe(manifest: dict) -> str:
    """One line about a base: entries and where they came from."""
    sources = manifest.get("sources") or []
    names = ", ".join(str(s.get("what", "?")) for s in sources[:3] if isinstance(s, dict))
    more = f" and {len(sources) - 3} more" if len(sources) > 3 else ""
    return f"{manifest.get('entries', 0)} known vulnerable functions (from {names}{more})"
