"""`enstack known build`: entries from fix pairs, read from a dataset or from a repository's
fixing commits.

A pair becomes an entry when both sides read as functions and differ after normalisation;
anything else is counted under its reason and skipped, never fatal. The id an entry is known by
is the CVE id of its row (from the dataset's group or id column, or FIXES.csv); a dataset row
without one (SVEN names commits, not CVEs) is known by its fix commit, `owner/repo@sha12`.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from enstack.config import DataConfig
from enstack.data.cwe import CweMapper
from enstack.data.prepare import source_files
from enstack.data.rows import parse_target
from enstack.data.tabular import TABULAR_READERS, Columns, Record
from enstack.errors import UserError
from enstack.known.base import BuildTally
from enstack.known.normalise import normalise
from enstack.known.signature import MAX_UNITS, Entry, signature_of
from enstack.labels import PAPER_LABELS
from enstack.registries.cwe_ids import cwe_ids

CVE_ID = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)
COMMIT_URL = re.compile(r"github\.com/([^/\s]+/[^/\s]+)/commit/([0-9a-fA-F]{7,64})")
DEFAULT_LABELS = [*PAPER_LABELS, "none"]  # the classes a CWE maps to without a config
MAX_CHANGE_LINES = 2  # lines of each side quoted in a finding's message
MAX_QUOTED = 100  # characters of a quoted line
MAX_FIXES_BYTES = 16 << 20


@dataclass(frozen=True)
class FixPair:
    vulnerable: str
    fixed: str
    vuln_id: str
    cwe: list[str]
    source: str  # where it was read (file:row, repo@commit:path)


class EntryMaker:
    """Fix pairs to entries, with the class each CWE maps to under `labels`."""

    def __init__(self, labels: list[str], cwe_map: dict[str, str] | None = None) -> None:
        self.mapper = CweMapper(labels, cwe_map or {})
        self.labels = labels

    def __call__(self, pair: FixPair, tally: BuildTally) -> Entry | None:
        vulnerable, fixed = normalise(pair.vulnerable), normalise(pair.fixed)
        if not (vulnerable.looks_like_a_function and fixed.looks_like_a_function):
            tally.skip("not a function (no name, or no body of statements)")
            return None
        if vulnerable.key == fixed.key:
            tally.skip("vulnerable and fixed the same after normalisation")
            return None
        if max(len(vulnerable.units), len(fixed.units)) > MAX_UNITS:
            tally.skip(f"over {MAX_UNITS} statements (too long to compare)")
            return None
        cls = self.mapper(pair.cwe) if pair.cwe else None
        return Entry(
            vuln_id=pair.vuln_id,
            cwe=",".join(pair.cwe),
            label=None if cls is None else self.labels[cls],
            name=vulnerable.name,
            source=pair.source,
            vulnerable_key=vulnerable.key,
            fixed_key=fixed.key,
            vulnerable_keys=vulnerable.key_set,
            fixed_keys=fixed.key_set,
            sketched=vulnerable.informative_keys,
            signature=signature_of(vulnerable, fixed),
            change=change_text(pair.vulnerable, pair.fixed),
        )


def change_text(vulnerable: str, fixed: str) -> str:
    """What the fix changed, in the code's own lines: `removed ...; added ...`."""
    removed, added = [], []
    for line in difflib.unified_diff(vulnerable.splitlines(), fixed.splitlines(), n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        text = " ".join(line[1:].split())
        if not text or text.startswith(("//", "/*", "*")):
            continue
        (removed if line[0] == "-" else added).append(text)
    parts = []
    for verb, lines in (("removed", removed), ("added", added)):
        if lines:
            shown = "; ".join(_quoted(t) for t in lines[:MAX_CHANGE_LINES])
            more = f" and {len(lines) - MAX_CHANGE_LINES} more" if len(lines) > 2 else ""
            parts.append(f"{verb} {shown}{more}")
    return ", ".join(parts) or "changed layout only"


def _quoted(text: str) -> str:
    return "`" + (text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 3] + "...") + "`"


# --- datasets -------------------------------------------------------------------------------


def preset_config(name: str, path: Path) -> DataConfig:
    """The data config of a preset read from `path` (a file, a directory or a glob)."""
    from pydantic import ValidationError

    try:
        return DataConfig.model_validate({"preset": name, "path": path, "labels": DEFAULT_LABELS})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"--preset {name}: {first['msg']}") from None


def dataset_pairs(data: DataConfig, what: str, tally: BuildTally) -> Iterator[FixPair]:
    """Every fix pair of every file the data config reads (all its splits and sources)."""
    for reader in data.readers():
        if reader.pair_columns is None and reader.pair_column is None:
            raise UserError(
                f"{what}: format {reader.preset or reader.format!r} holds no fix pairs (no "
                "data.pair_columns or data.pair_column): nothing to learn a fix from"
            )
        columns = Columns.of(reader, label_needed=False)
        for split in (reader.path, reader.train, reader.val, reader.test):
            if split is None:
                continue
            for path in source_files(split, reader.format):
                if not path.is_file():
                    raise UserError(f"data file not found: {path}")
                records = TABULAR_READERS[reader.format](path, columns, reader)
                if reader.pair_columns is not None:
                    yield from _row_pairs(records, path, tally)
                else:
                    yield from _linked_pairs(records, path, tally)


def _row_pairs(records: Iterator[Record], path: Path, tally: BuildTally) -> Iterator[FixPair]:
    """Pairs stored in one row (`pair_columns`); a row whose target says 'not changed by a
    fix' (Big-Vul's vul 0, MegaVul's is_vul false) is no pair."""
    for row, record in enumerate(records):
        if record.target is not None and parse_target(record.target) is not True:
            tally.skip("not changed by the fix (target not 1)")
            continue
        where = f"{path.name}:{_row_name(record, row)}"
        pair = _pair(record.code, record.fixed, record, where, tally)
        if pair is not None:
            yield pair


def _linked_pairs(records: Iterator[Record], path: Path, tally: BuildTally) -> Iterator[FixPair]:
    """Pairs over two rows sharing `pair_column` (CVEfixes): the target says which side."""
    sides: dict[str, dict[bool, Record]] = {}
    for record in records:
        side = parse_target(record.target)
        if record.pair in (None, "") or side is None:
            tally.skip("no pair id, or a target neither 0 nor 1")
            continue
        sides.setdefault(str(record.pair), {})[side] = record
    for key, found in sides.items():
        if True not in found or False not in found:
            tally.skip("one side of the pair missing")
            continue
        pair = _pair(found[True].code, found[False].code, found[True], f"{path.name}:{key}", tally)
        if pair is not None:
            yield pair


def _row_name(record: Record, row: int) -> str:
    return str(record.id) if record.id not in (None, "") else str(row)


def _pair(
    vulnerable: object, fixed: object, record: Record, source: str, tally: BuildTally
) -> FixPair | None:
    """The pair, or None (its reason counted) without two texts or an id to know it by."""
    if not isinstance(vulnerable, str) or not isinstance(fixed, str) or not vulnerable.strip():
        tally.skip("no vulnerable or no fixed text")
        return None
    vuln_id = advisory_id(record)
    if not vuln_id:
        tally.skip("no CVE id or fix commit in the row")
        return None
    return FixPair(vulnerable, fixed, vuln_id, cwe_ids(record.cwe), source)


def advisory_id(record: Record) -> str:
    """The CVE id a row names (`data.cve_column`, else the group or id column), else its fix
    commit, else ''."""
    for value in (record.cve, record.group, record.id):
        found = CVE_ID.search(str(value)) if value is not None else None
        if found:
            return found.group().upper()
    commit = COMMIT_URL.search(str(record.group or ""))
    if commit:
        return f"{commit.group(1)}@{commit.group(2)[:12].lower()}"
    return ""


# --- a repository's fixing commits --------------------------------------------------------------


@dataclass(frozen=True)
class Fix:
    cve_id: str
    commit: str  # as FIXES.csv names it
    cwe: list[str]
    row: int


def read_fixes(path: Path) -> list[Fix]:
    """FIXES.csv: `cve_id,commit` and optionally `cwe`; every row checked before any is used."""
    from enstack.fsutil import read_capped

    try:
        data = read_capped(path, MAX_FIXES_BYTES)
    except OSError as exc:
        raise UserError(f"--fixes {path}: cannot read it ({exc.strerror or exc})") from None
    if data is None:
        raise UserError(f"--fixes {path}: over {MAX_FIXES_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"--fixes {path}: not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    try:
        columns = [c.strip() for c in reader.fieldnames or []]
    except csv.Error as exc:
        raise UserError(f"--fixes {path}: line 1: not CSV ({exc})") from None
    missing = [c for c in ("cve_id", "commit") if c not in columns]
    if missing:
        raise UserError(
            f"--fixes {path}: no column {missing[0]!r} (needs cve_id,commit and optionally cwe; "
            f"found: {', '.join(columns) or 'nothing'})"
        )
    try:
        return _fix_rows(path, reader)
    except csv.Error as exc:
        raise UserError(f"--fixes {path}: line {reader.line_num + 1}: not CSV ({exc})") from None


def _fix_rows(path: Path, reader: csv.DictReader) -> list[Fix]:
    fixes = []
    for row, raw in enumerate(reader, start=2):  # line 1 is the header
        values = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        cve, commit = values.get("cve_id", ""), values.get("commit", "")
        if not CVE_ID.fullmatch(cve):
            raise UserError(f"--fixes {path}: line {row}: {cve!r} is not a CVE id (CVE-YYYY-N)")
        if not re.fullmatch(r"[0-9a-fA-F]{4,64}|[\w./-]{1,200}", commit) or commit.startswith("-"):
            raise UserError(f"--fixes {path}: line {row}: {commit!r} is not a commit")
        fixes.append(Fix(cve.upper(), commit, cwe_ids(values.get("cwe") or None), row))
    if not fixes:
        raise UserError(f"--fixes {path}: no rows")
    return fixes


def git_pairs(repo: Path, fixes_path: Path, tally: BuildTally) -> Iterator[FixPair]:
    """Each function a fixing commit changes in a C/C++ file, before (its first parent) and
    after. Every commit is resolved before any is read: one missing is an error naming it."""
    from enstack.csyntax.functions import extract_functions
    from enstack.csyntax.parser import SOURCE_SUFFIXES, language_of
    from enstack.safegit import Repository

    fixes = read_fixes(fixes_path)
    repository = Repository(repo, f"--from-git {repo}")
    resolved = []
    for fix in fixes:
        sha = repository.commit(fix.commit)
        if sha is None:
            raise UserError(
                f"--fixes {fixes_path}: line {fix.row}: commit {fix.commit!r} is not in {repo}"
            )
        resolved.append((fix, sha))
    name = repo.resolve().name.removesuffix(".git")
    for fix, sha in resolved:
        parent = repository.first_parent(sha)
        if parent is None:
            tally.skip("a root commit (no parent to compare with)")
            continue
        for path in repository.changed_paths(parent, sha):
            if Path(path).suffix.lower() not in SOURCE_SUFFIXES:
                continue
            before, after = repository.file_at(parent, path), repository.file_at(sha, path)
            if before is None or after is None:
                tally.skip("a file the fix added or deleted (or over 4 MiB)")
                continue
            language = language_of(Path(path))
            old = extract_functions(before, path, language).functions
            new = dict(_numbered_pairs(extract_functions(after, path, language).functions))
            for key, function in _numbered_pairs(old):
                fixed = new.get(key)
                if fixed is None or fixed.code == function.code:
                    continue
                source = f"{name}@{sha[:12]}:{path}"
                yield FixPair(function.code, fixed.code, fix.cve_id, fix.cwe, source)


def _numbered_pairs(functions: list) -> list[tuple[tuple[str, int], object]]:
    """Functions keyed by name and occurrence (two `#if` branches may define one name)."""
    seen: dict[str, int] = {}
    out = []
    for function in functions:
        n = seen.get(function.name, 0)
        seen[function.name] = n + 1
        out.append(((function.name, n), function))
    return out
