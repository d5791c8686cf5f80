"""Which files and functions a scan looks at: `--include` suffixes, `--exclude` globs and the
tree's `.enstackignore` (gitignore syntax, matched by `pathspec`), and `--changed-since REV`
(only functions with a line added or modified since that git revision).

Paths are compared as the scan reports them: relative to the working directory (`display`).
An ignore file is read from each directory named on the command line (its patterns match
paths below it) and from the working directory (they match named files and the changed set).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from enstack.errors import UserError

IGNORE_FILE = ".enstackignore"
HUNK = re.compile(rb"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


@dataclass
class PathFilter:
    """`--include`, `--exclude` and ignore files: whether a file is in the scan."""

    suffixes: frozenset[str]
    excludes: pathspec.PathSpec
    ignore_files: dict[Path, pathspec.PathSpec] = field(default_factory=dict)  # root -> spec

    @classmethod
    def build(
        cls, suffixes: Iterable[str], excludes: list[str], roots: Iterable[Path]
    ) -> PathFilter:
        spec = _spec(excludes, "--exclude")
        ignore_files = {}
        for root in {Path(os.path.abspath(r)) for r in roots}:
            found = _read_ignore_file(root)
            if found is not None:
                ignore_files[root] = found
        return cls(frozenset(s.lower() for s in suffixes), spec, ignore_files)

    def wants_suffix(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes

    def excluded(self, path: Path) -> bool:
        """Whether an exclude glob or an ignore file above `path` leaves it out."""
        absolute = Path(os.path.abspath(path))
        relative = _relative(absolute, Path.cwd())
        if relative is not None and self.excludes.match_file(relative):
            return True
        for root, spec in self.ignore_files.items():
            below = _relative(absolute, root)
            if below is not None and spec.match_file(below):
                return True
        return False


def _spec(patterns: list[str], origin: str) -> pathspec.PathSpec:
    try:
        return pathspec.GitIgnoreSpec.from_lines(patterns)  # git's own rules, edge cases too
    except (ValueError, TypeError) as exc:
        raise UserError(f"{origin}: not a valid pattern ({exc})") from None


def _read_ignore_file(root: Path) -> pathspec.PathSpec | None:
    path = root / IGNORE_FILE
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None
    return _spec(lines, str(path))


def _relative(path: Path, root: Path) -> str | None:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


# --- --changed-since ---------------------------------------------------------------------------


@dataclass
class ChangeSet:
    """Lines added or modified since `rev`, per file (absolute paths of the working tree)."""

    rev: str
    lines: dict[Path, set[int]]

    def has_file(self, path: Path) -> bool:
        return Path(os.path.abspath(path)) in self.lines

    def touches(self, path: Path, start: int, end: int) -> bool:
        changed = self.lines.get(Path(os.path.abspath(path)), ())
        return any(start <= line <= end for line in changed)


def changed_since(rev: str, where: Path | None = None) -> ChangeSet:
    """What changed between commit `rev` and the working tree of the repository at `where`:
    added and modified lines of tracked files (renames followed to the new name), and every
    line of untracked files that git does not ignore. Deleted files have no lines to scan."""
    cwd = Path(where or Path.cwd())
    top = _git(["rev-parse", "--show-toplevel"], cwd, rev).decode().strip()
    commit = _git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        cwd,
        rev,
        missing=True,
    )
    if not commit.strip():
        raise UserError(
            f"--changed-since {rev}: not a commit in this repository (in a shallow clone, fetch "
            f"it first: git fetch --depth=1 origin {rev})"
        )
    sha = commit.decode().strip()
    root = Path(top)
    diff = _git(
        [
            *("-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff"),
            *("--unified=0", "--find-renames", "--diff-filter=AMR"),
            *("--src-prefix=a/", "--dst-prefix=b/", sha, "--"),
        ],
        root,
        rev,
    )
    lines = _changed_lines(diff, root)
    untracked = _git(["ls-files", "--others", "--exclude-standard", "-z"], root, rev)
    for name in filter(None, untracked.split(b"\0")):
        path = root / os.fsdecode(name)
        lines[path] = set(range(1, _line_count(path) + 1))
    return ChangeSet(rev, lines)


def _git(args: list[str], cwd: Path, rev: str, missing: bool = False) -> bytes:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, check=False, timeout=300
        )
    except FileNotFoundError:
        raise UserError("--changed-since: git is not installed (or not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"--changed-since {rev}: git took over 300 s; giving up") from None
    if done.returncode != 0 and not missing:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(
            f"--changed-since {rev}: git {args[0] if args[0] != '-c' else args[2]} failed in "
            f"{cwd} ({reason[-1] if reason else f'exit {done.returncode}'})"
        )
    return done.stdout


def _changed_lines(diff: bytes, root: Path) -> dict[Path, set[int]]:
    """New-side line numbers of every hunk, per file. A hunk that only deletes (`+N,0`) marks
    line N, the line after which text was removed: the function around it changed."""
    out: dict[Path, set[int]] = {}
    current: set[int] | None = None
    for raw in diff.split(b"\n"):
        if raw.startswith(b"diff --git "):
            current = None
        elif raw.startswith(b"+++ "):
            name = raw[4:]
            current = (
                None if name == b"/dev/null" else out.setdefault(root / _unquote(name)[2:], set())
            )
        elif current is not None and raw.startswith(b"@@"):
            match = HUNK.match(raw)
            if match:
                start, count = int(match.group(1)), int(match.group(2) or 1)
                current.update(range(start, start + count) if count else [max(start, 1)])
    return out


def _unquote(name: bytes) -> str:
    """git quotes a path with unusual bytes as a C string literal ("a/t\\303\\251st.c")."""
    if not name.startswith(b'"'):
        return os.fsdecode(name)
    body = name[1:-1]
    raw = body.decode("unicode_escape").encode("latin-1")
    return os.fsdecode(raw)


def _line_count(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle) or 1
    except OSError:
        return 0
