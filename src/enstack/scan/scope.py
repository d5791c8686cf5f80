"""Which files and functions a scan looks at: `--include` suffixes, `--exclude` globs and the
tree's `.enstackignore` (gitignore syntax, matched by `pathspec`), and `--changed-since REV`
(only functions with a line added or modified since that git revision).

Paths are compared as the scan reports them: relative to the working directory (`display`).
An ignore file is read from each directory named on the command line (its patterns match
paths below it) and from the working directory (they match named files and the changed set).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from enstack.errors import UserError
from enstack.fsutil import NotRegularFile, is_below, read_capped
from enstack.safegit import Repository, line_changes, one_line

IGNORE_FILE = ".enstackignore"


@dataclass
class PathFilter:
    """`--include`, `--exclude` and ignore files: whether a file is in the scan."""

    suffixes: frozenset[str]
    excludes: pathspec.PathSpec
    ignore_files: dict[Path, pathspec.PathSpec] = field(default_factory=dict)  # root -> spec
    roots: tuple[Path, ...] = ()  # the directories scanned: --exclude matches below each

    @classmethod
    def build(
        cls, suffixes: Iterable[str], excludes: list[str], roots: Iterable[Path]
    ) -> PathFilter:
        spec = _spec(excludes, "--exclude")
        absolute = sorted({Path(os.path.abspath(r)) for r in roots})
        ignore_files = {}
        for root in absolute:
            found = _read_ignore_file(root)
            if found is not None:
                ignore_files[root] = found
        return cls(frozenset(s.lower() for s in suffixes), spec, ignore_files, tuple(absolute))

    def wants_suffix(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes

    def excluded(self, path: Path) -> bool:
        """Whether an exclude glob or an ignore file above `path` leaves it out."""
        return self.rule_for(path) is not None

    def rule_for(self, path: Path) -> str | None:
        """What leaves `path` out: EXCLUDE_OPTION (a `--exclude` pattern, matched relative to
        the working directory and to each scanned directory), IGNORE_FILE (an ignore file
        above it), or None."""
        absolute = Path(os.path.abspath(path))
        for base in (Path.cwd(), *self.roots):
            relative = _relative(absolute, base)
            if relative and relative != "." and self.excludes.match_file(relative):
                return EXCLUDE_OPTION
        for root, spec in self.ignore_files.items():
            below = _relative(absolute, root)
            if below is not None and spec.match_file(below):
                return IGNORE_FILE
        return None


EXCLUDE_OPTION = "--exclude"
MAX_IGNORE_FILE_BYTES = 1 << 20  # a gitignore of a million bytes is not a list of paths


def _spec(patterns: list[str], origin: str) -> pathspec.PathSpec:
    """git's own rules (pathspec), matched by RE2: linear time in the name's length whatever
    the pattern (`a*a*a*a*a*a*a*a*a*a*b` backtracks for hours in Python's `re`)."""
    try:
        return pathspec.GitIgnoreSpec.from_lines(patterns, backend="re2")
    except (ValueError, TypeError) as exc:
        raise UserError(f"{origin}: not a valid pattern ({one_line(str(exc))[:200]})") from None


def _read_ignore_file(root: Path) -> pathspec.PathSpec | None:
    """The ignore file of `root`, read only where it is a regular file of the tree: a symlink
    (to `/etc/shadow`, say) is refused unread, and so is a file over the cap."""
    path = root / IGNORE_FILE
    if not os.path.lexists(path):
        return None
    try:
        data = read_capped(path, MAX_IGNORE_FILE_BYTES, follow_symlinks=False)
    except NotRegularFile:
        raise UserError(f"{path}: not a regular file (a link or a device); not read") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    if data is None:
        raise UserError(f"{path}: over {MAX_IGNORE_FILE_BYTES >> 20} MiB; not an ignore file")
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return _spec(lines, str(path))


def _relative(path: Path, root: Path) -> str | None:
    """`path` below `root`, as the matcher takes it: a name that is not UTF-8 (held with
    surrogate escapes) has its undecodable bytes as U+FFFD, so `*.c` still matches it."""
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        return None
    return relative.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# --- --changed-since ---------------------------------------------------------------------------


@dataclass
class ChangeSet:
    """Lines added or modified since `rev`, per file (absolute paths of the working tree);
    `whole` holds the files that are new since `rev` (every line counts as changed)."""

    rev: str
    lines: dict[Path, set[int]]
    whole: set[Path] = field(default_factory=set)

    def has_file(self, path: Path) -> bool:
        absolute = Path(os.path.abspath(path))
        return absolute in self.lines or absolute in self.whole

    def touches(self, path: Path, start: int, end: int) -> bool:
        absolute = Path(os.path.abspath(path))
        if absolute in self.whole:
            return True
        return any(start <= line <= end for line in self.lines.get(absolute, ()))


def changed_since(
    rev: str,
    where: Path | None = None,
    suffixes: Iterable[str] | None = None,
    roots: Iterable[Path] | None = None,
) -> ChangeSet:
    """What changed between commit `rev` and the working tree of the repository at `where`:
    added and modified lines of tracked files (staged renames followed to the new name), and
    every line of untracked files that git does not ignore. Deleted files have no lines to
    scan. Only files with one of `suffixes` below one of `roots` are read.

    Nothing the repository configures runs (see `enstack.safegit`): the commit's blobs and the
    index are read through plumbing, each working file is read here (regular files only, never
    through a symlink, at most `MAX_CHANGED_FILE_BYTES`) and diffed against its blob outside
    the repository. A file's hunks are never parsed for file names, so no added line can end
    one file's diff or start another's."""
    what = f"--changed-since {one_line(rev)}"
    repo = Repository(Path(where or Path.cwd()), what)
    sha = repo.commit(rev)
    if sha is None:
        raise UserError(
            f"{what}: not a commit in this repository (in a shallow clone, fetch "
            f"it first: git fetch --depth=1 origin {one_line(rev)})"
        )
    wanted = _Wanted(repo.top, suffixes, roots)
    old_tree = repo.tree(sha)
    renames = repo.staged_renames(sha)
    changes = ChangeSet(rev, {})
    pending: dict[str, list[tuple[Path, bytes]]] = {}  # old blob id -> working files to diff
    for name in repo.index():
        path = wanted.path(name)
        data = _working_bytes(path) if path is not None else None
        if path is None or data is None:
            continue
        old = old_tree.get(renames.get(name, name))
        if old is None or data is TOO_BIG:
            changes.whole.add(path)
        elif repo.blob_id(data) != old.oid:
            pending.setdefault(old.oid, []).append((path, data))
    for oid, content in repo.blobs(list(pending), MAX_CHANGED_FILE_BYTES):
        for path, data in pending[oid]:
            if content is None:
                changes.whole.add(path)
            else:
                changes.lines[path] = line_changes(content, data)
    for name in repo.untracked():
        path = wanted.path(name)
        if path is not None and _is_regular(path):
            changes.whole.add(path)
    return changes


MAX_CHANGED_FILE_BYTES = 4 << 20  # the scanner's own cap: a larger file is skipped anyway


class _Wanted:
    """Which repository paths the scan could read: a suffix it scans, below a root it was
    given, and inside the repository (a crafted index may name `../x` or a path through a
    symlinked directory)."""

    def __init__(self, top: Path, suffixes: Iterable[str] | None, roots: Iterable[Path] | None):
        self.top = top
        self.real_top = os.path.realpath(top)
        self.suffixes = None if suffixes is None else {s.lower() for s in suffixes}
        self.roots = [os.path.realpath(r) for r in (roots or [top])]

    def path(self, name: str) -> Path | None:
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            return None
        if self.suffixes is not None and Path(name).suffix.lower() not in self.suffixes:
            return None
        path = self.top / name
        parent = os.path.realpath(path.parent)
        if not is_below(parent, self.real_top):
            return None
        real = os.path.join(parent, path.name)  # the file itself is not resolved: a link is no file
        if not any(real == r or is_below(parent, r) for r in self.roots):
            return None
        return path


TOO_BIG = b"<over the cap>"  # a marker compared by identity: the scanner skips such a file


def _working_bytes(path: Path) -> bytes | None:
    """A tracked file's content as it is on disk; None where it is gone, not a regular file
    (a symlink is not followed: git tracks the link, not its target) or unreadable; `TOO_BIG`
    (never read past the cap) where it is larger than the scanner reads."""
    try:
        data = read_capped(path, MAX_CHANGED_FILE_BYTES, follow_symlinks=False)
    except OSError:
        return None
    return TOO_BIG if data is None else data


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
