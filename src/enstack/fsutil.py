"""Crash-safe filesystem primitives shared by every stage.

Every stage writes its outputs into a temporary sibling, fsyncs them, and renames into place, so
a crash leaves either the old output or the new one. These helpers are the only place that does
it, so the rules (fsync the file, then the directory after a rename) live in one spot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def sibling_tmp(path: Path) -> Path:
    """A unique temporary name beside `path`, recognisable as debris by `clean_debris`."""
    return path.with_name(f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_tmp(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces `final` only if the block finishes.

    On success every file inside is fsynced, an existing `final` is moved aside, the new
    directory renamed into place and the old one removed. On any exception the temporary
    directory is removed and `final` is untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_tmp(final)
    tmp.mkdir()
    try:
        yield tmp
        publish_dir(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        storage = _storage_error(exc, final, tmp)
        if storage is not None:
            raise storage from None
        raise


def _storage_error(exc: BaseException, final: Path, tmp: Path) -> OSError | None:
    """A full or read-only disk met while writing `final`, as an OSError that names it:
    libraries writing into the staged directory (skops, safetensors' Rust writer) often lose
    the file name, or report the OS error as their own exception; a temporary name inside
    `tmp` (which is gone now) means nothing to the user either."""
    if isinstance(exc, OSError):
        unnamed = exc.filename is None or str(exc.filename).startswith(str(tmp))
        if unnamed and exc.errno is not None:
            return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(final))
        return None
    found = re.search(r"os error (\d+)", str(exc))
    if found and type(exc).__name__ == "SafetensorError":
        code = int(found.group(1))
        return OSError(code, os.strerror(code), str(final))
    return None


def publish_dir(tmp: Path, final: Path) -> None:
    """Fsync everything under `tmp`, then swap it in for `final`."""
    for root, _dirs, files in os.walk(tmp):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_dir(Path(root))
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}{OLD_MARK}{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_debris(parent: Path, name: str) -> list[Path]:
    """Remove temporary or set-aside copies of `parent/name` left by an interrupted write."""
    removed = []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        if entry.name.startswith(f".{name}{TMP_MARK}") or entry.name.startswith(
            f".{name}{OLD_MARK}"
        ):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """A stable fingerprint of a JSON-able value (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_below(path: str, root: str) -> bool:
    """Whether the resolved path `path` is `root` or lies below it (both already resolved)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def contained(root: Path, relative: str) -> Path | None:
    """`root / relative` if that stays inside `root` (no absolute path, no `..`, no link out);
    None otherwise. For names read from a manifest someone may have written."""
    if not relative or relative.startswith("/") or "\\" in relative:
        return None
    parts = Path(relative).parts
    if any(part in ("..", ".", "") for part in parts):
        return None
    path = root / relative
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return path


class ProcessLock:
    """One writer at a time: an exclusive `flock` on `path`, holding the owner's PID.

    The kernel drops the lock when its process dies (SIGKILL included), so a lock left by a
    dead process is simply taken over; a live owner makes entering fail with its PID. The
    file is removed on release (while still locked), and so are the directories made for it
    that are still empty, so a command that failed on bad input leaves nothing behind; a
    process that locked a file just removed sees it is no longer at `path` and tries again.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None
        self._made: list[Path] = []  # directories created for the lock, deepest first

    def __enter__(self) -> ProcessLock:
        import fcntl

        from enstack.errors import UserError

        self._made = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise UserError(
                    f"{self.what} is in use by process {owner} (lock {self.path}); wait for it "
                    "to finish or stop it"
                ) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the previous owner removed this file as we locked it
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing releases the lock
            self._fd = None
        for directory in self._made:
            try:
                directory.rmdir()  # only if still empty: whatever was written there stays
            except OSError:
                break


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def stage_lock(run_dir: Path, stage: str) -> ProcessLock:
    """The lock a stage holds on a run directory while it writes there."""
    return ProcessLock(run_dir / f".lock-{stage}", f"{run_dir} ({stage})")


class NotRegularFile(OSError):
    """Raised by `read_capped` for a FIFO, a device, a directory or (unfollowed) a symlink."""


def read_capped(path: Path, limit: int, *, follow_symlinks: bool = True) -> bytes | None:
    """At most `limit` bytes of a regular file, or None where it holds more. The size is
    checked as the file is read, not by `stat` (`/dev/zero` and `/proc` files report 0 bytes,
    and a file may grow between the two); a FIFO is opened without blocking and refused, like
    every other file that is not regular, with `NotRegularFile`."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow_symlinks and os.path.islink(path):
            raise NotRegularFile(f"{path}: a symbolic link") from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{path}: not a regular file")
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None


def read_json_object(path: Path) -> dict | None:
    """A JSON object enstack wrote earlier (a stage's record, a cache's meta), or None when it
    is missing, damaged, nested too deeply or not an object: the caller redoes the work."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def read_untrusted_json(path: Path, max_bytes: int, culprit: str, hint: str = "") -> Any:
    """A JSON file someone handed us: its size checked before reading, deep nesting refused,
    every failure one `UserError` naming `culprit` (and `hint`: what the file should be)."""
    from enstack.errors import UserError

    tail = f"; {hint}" if hint else ""
    try:
        data = read_capped(path, max_bytes)
        if data is None:
            raise UserError(f"{culprit}: over {max_bytes >> 20} MiB{tail}")
        return json.loads(data)
    except NotRegularFile:
        raise UserError(f"{culprit}: not a regular file{tail}") from None
    except OSError as exc:
        raise UserError(f"{culprit}: cannot read it ({exc.strerror})") from None
    except (ValueError, RecursionError):
        raise UserError(f"{culprit}: not JSON{tail}") from None
