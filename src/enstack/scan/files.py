"""The source files a scan reads: named files, directories walked recursively (C and C++ by
extension), or `-` for standard input. Nothing here is fatal: binary, oversized, unreadable
and non-UTF-8 files, and symlink loops, are counted and skipped (or read with replacement)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from enstack.errors import UserError
from enstack.scan.functions import SOURCE_SUFFIXES

MAX_FILE_BYTES = 4 << 20  # larger "source" files are generated tables, not code to review
STDIN = "-"


@dataclass
class SourceFile:
    display: str  # the path as reported: relative to the working directory where possible
    data: bytes
    language_path: Path  # decides the grammar (by suffix)


@dataclass
class FileTally:
    files: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    non_utf8: int = 0  # read with undecodable bytes replaced

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def check_paths(paths: list[str]) -> None:
    """Every named path must exist (a typo is an error, not an empty scan)."""
    for name in paths:
        if name != STDIN and not os.path.lexists(name):
            raise UserError(f"{name}: no such file or directory")


def source_files(paths: list[str], tally: FileTally) -> Iterator[SourceFile]:
    seen: set[tuple[int, int]] = set()
    for name in paths:
        if name == STDIN:
            tally.files += 1
            yield SourceFile("<stdin>", sys.stdin.buffer.read(), Path("stdin.cpp"))
            continue
        path = Path(name)
        if path.is_dir():
            yield from _walk(path, tally, seen)
        else:
            found = _read(path, tally, seen)
            if found is not None:
                yield found


def _walk(root: Path, tally: FileTally, seen: set[tuple[int, int]]) -> Iterator[SourceFile]:
    visited_dirs: set[tuple[int, int]] = set()
    for current, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(current)
        key = (stat.st_dev, stat.st_ino)
        if key in visited_dirs:  # a symlink loop, or a directory reached twice
            tally.skip("symlink loop")
            dirs[:] = []
            continue
        visited_dirs.add(key)
        dirs.sort()
        for name in sorted(files):
            path = Path(current) / name
            if path.suffix.lower() in SOURCE_SUFFIXES:
                found = _read(path, tally, seen)
                if found is not None:
                    yield found


def _read(path: Path, tally: FileTally, seen: set) -> SourceFile | None:
    try:
        stat = path.stat()
        if (stat.st_dev, stat.st_ino) in seen:
            return None  # the same file through a symlink: scanned once
        seen.add((stat.st_dev, stat.st_ino))
        if not path.is_file():
            tally.skip("not a regular file")
            return None
        if stat.st_size > MAX_FILE_BYTES:
            tally.skip(f"over {MAX_FILE_BYTES >> 20} MiB")
            return None
        data = path.read_bytes()
    except OSError:
        tally.skip("unreadable")
        return None
    if b"\0" in data[:8192]:
        tally.skip("binary")
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        tally.non_utf8 += 1
    tally.files += 1
    return SourceFile(_display(path), data, path)


def _display(path: Path) -> str:
    """Relative to the working directory when inside it (what SARIF viewers resolve against
    the repository root), else absolute; symlinks are not resolved, so names stay the user's."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return absolute.as_posix()
