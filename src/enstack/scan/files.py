"""The source files a scan reads: named files, directories walked recursively (C and C++ by
extension), or `-` for standard input. Nothing here is fatal: binary, oversized, unreadable
and non-UTF-8 files, and symlink loops, are counted and skipped (or read with replacement)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from enstack.csyntax.parser import SOURCE_SUFFIXES
from enstack.errors import UserError
from enstack.fsutil import NotRegularFile, is_below, read_capped
from enstack.scan.scope import IGNORE_FILE, ChangeSet, PathFilter

MAX_FILE_BYTES = 4 << 20  # larger "source" files are generated tables, not code to review
STDIN = "-"
TOO_BIG = f"over {MAX_FILE_BYTES >> 20} MiB"


@dataclass
class SourceFile:
    display: str  # the path as reported: relative to the working directory where possible
    data: bytes
    language_path: Path  # decides the grammar (by suffix)


@dataclass
class FileTally:
    files: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    excluded: int = 0  # left out by --exclude or an ignore file (not skipped: asked for)
    ignored: int = 0  # of those, left out by an ignore file (.enstackignore)
    unchanged: int = 0  # left out by --changed-since: not changed since the revision
    non_utf8: int = 0  # read with undecodable bytes replaced
    inodes: set[tuple[int, int]] = field(default_factory=set)  # of every file read

    def exclude(self, rule: str) -> None:
        self.excluded += 1
        self.ignored += rule == IGNORE_FILE

    def skip(self, reason: str, path: Path | None = None) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if path is not None:
            shown = path.as_posix() if path.as_posix() == "<stdin>" else _display(path)
            self.skipped_files.append((shown, reason))


@dataclass
class Selection:
    """What a scan reads: suffixes, excludes and ignore files, and (with `--changed-since`)
    only the files that changed."""

    filter: PathFilter
    changes: ChangeSet | None = None

    def wants(self, path: Path, tally: FileTally) -> bool:
        rule = self.filter.rule_for(path)
        if rule is not None:
            tally.exclude(rule)
            return False
        if self.changes is not None and not self.changes.has_file(path):
            tally.unchanged += 1
            return False
        return True

    def drop_directory(self, path: Path, rule: str, tally: FileTally) -> None:
        """An excluded directory is not walked for scanning, but its source files are
        counted, so the summary says what `--exclude contrib/` left out."""
        for _, _, files in os.walk(path):
            for name in files:
                if self.filter.wants_suffix(Path(name)):
                    tally.exclude(rule)


def selection_for(
    paths: list[str],
    suffixes: Iterable[str] = SOURCE_SUFFIXES,
    excludes: list[str] | None = None,
    changes: ChangeSet | None = None,
) -> Selection:
    """What a scan of `paths` reads: the ignore files of the working directory and of every
    directory named, besides `excludes`; with `changes`, only the files that changed."""
    dirs = [Path(p) for p in paths if p != STDIN and os.path.isdir(p)]
    return Selection(PathFilter.build(suffixes, excludes or [], [Path.cwd(), *dirs]), changes)


def check_paths(paths: list[str], changes: ChangeSet | None = None) -> None:
    """Every named path must exist (a typo is an error, not an empty scan); with
    `--changed-since`, a named file the change deleted is simply not there to scan."""
    for name in paths:
        if name != STDIN and not os.path.lexists(name) and changes is None:
            raise UserError(f"{name}: no such file or directory")


def source_files(
    paths: list[str], tally: FileTally, selection: Selection | None = None
) -> Iterator[SourceFile]:
    selection = selection or selection_for(paths)
    seen: set[tuple[int, int]] = set()
    for name in paths:
        if name == STDIN:
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
            if _refused(data, Path("<stdin>"), tally):
                continue
            tally.files += 1
            yield SourceFile("<stdin>", data, Path("stdin.cpp"))
            continue
        path = Path(name)
        if not os.path.lexists(path):
            continue  # deleted since --changed-since's revision (check_paths allowed it)
        if path.is_dir():
            yield from _walk(path, tally, seen, selection)
        elif selection.wants(path, tally):
            found = _read(path, tally, seen)
            if found is not None:
                yield found


def _walk(
    root: Path, tally: FileTally, seen: set[tuple[int, int]], selection: Selection
) -> Iterator[SourceFile]:
    """Every wanted file below `root`. Symlinks are followed only where they stay inside the
    tree: a link to `/usr` or `/etc/shadow` is someone else's file, not this tree's code."""
    visited_dirs: set[tuple[int, int]] = set()
    inside = os.path.realpath(root)
    for current, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(current)
        key = (stat.st_dev, stat.st_ino)
        if key in visited_dirs:  # a symlink loop, or a directory reached twice
            tally.skip("symlink loop", Path(current))
            dirs[:] = []
            continue
        visited_dirs.add(key)
        kept = []
        for name in sorted(dirs):
            path = Path(current) / name
            rule = selection.filter.rule_for(path)
            if rule is not None:
                selection.drop_directory(path, rule, tally)  # counted, not read
                continue
            if path.is_symlink() and not _within(path, inside):
                tally.skip("symlink out of the tree", path)
                continue
            kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            path = Path(current) / name
            if not selection.filter.wants_suffix(path) or not selection.wants(path, tally):
                continue
            if path.is_symlink() and not _within(path, inside):
                tally.skip("symlink out of the tree", path)
                continue
            found = _read(path, tally, seen)
            if found is not None:
                yield found


def _within(path: Path, root: str) -> bool:
    return is_below(os.path.realpath(path), root)


def _read(path: Path, tally: FileTally, seen: set) -> SourceFile | None:
    try:
        stat = path.stat()
        if (stat.st_dev, stat.st_ino) in seen:
            return None  # the same file through a symlink: scanned once
        seen.add((stat.st_dev, stat.st_ino))
        data = read_capped(path, MAX_FILE_BYTES)  # bounded as read: a file may grow after stat
        if data is None:
            tally.skip(TOO_BIG, path)
            return None
    except NotRegularFile:
        tally.skip("not a regular file", path)
        return None
    except OSError:
        tally.skip("unreadable", path)
        return None
    if _refused(data, path, tally):
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        tally.non_utf8 += 1
    tally.files += 1
    tally.inodes.add((stat.st_dev, stat.st_ino))
    return SourceFile(_display(path), data, path)


def _refused(data: bytes, path: Path, tally: FileTally) -> bool:
    """Binary or oversized content (the same checks for standard input as for files)."""
    if len(data) > MAX_FILE_BYTES:
        tally.skip(TOO_BIG, path)
        return True
    if b"\0" in data[:8192]:
        tally.skip("binary", path)
        return True
    return False


def _display(path: Path) -> str:
    """Relative to the working directory when inside it (what SARIF viewers resolve against
    the repository root), else absolute; symlinks are not resolved, so names stay the user's."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return absolute.as_posix()
