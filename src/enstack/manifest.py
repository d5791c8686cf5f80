"""File manifests: the size and sha256 of every file in a directory, written last and checked
before anything in the directory is read. One writer and one verifier, for checkpoints and
bundles alike.

A manifest is read as hostile input: every name must be a plain relative path inside the
directory, the listing must match the directory's files exactly (nothing missing, nothing
extra, no links), and each file must have the recorded size and hash.
"""

from __future__ import annotations

import json
from pathlib import Path

from enstack.errors import UserError
from enstack.fsutil import contained, sha256_file

MANIFEST = "manifest.json"


def manifest_bytes(format_version: int, files: dict[str, dict], **fields) -> bytes:
    """A manifest's bytes: the format version, any other `fields`, then the file listing."""
    document = {"format_version": format_version, **fields, "files": files}
    return (json.dumps(document, indent=2) + "\n").encode()


def describe_files(directory: Path) -> dict[str, dict]:
    """{relative name: {bytes, sha256}} for every file under `directory` but the manifest."""
    return {
        path.relative_to(directory).as_posix(): {
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def verify_files(directory: Path, listing: object, error: type[UserError] = UserError) -> None:
    """Raise `error` naming the first file that is not exactly as `listing` records it."""
    where = directory / MANIFEST
    if not isinstance(listing, dict) or not listing:
        raise error(f"{where}: no file list")
    for name, entry in listing.items():
        path = contained(directory, name) if isinstance(name, str) else None
        if path is None:
            raise error(f"{where}: lists {name!r}, which is not a file inside {directory}")
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("sha256"), str)
        ):
            raise error(f"{where}: the entry for {name!r} has no integer bytes and sha256")
    unlisted = sorted(_files(directory) - set(listing))
    if unlisted:
        raise error(f"{directory / unlisted[0]}: not listed in {where} (added after the save?)")
    for name, entry in listing.items():
        path = directory / name
        if path.is_symlink() or not path.is_file():
            raise error(f"{path}: missing (or not a regular file)")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise error(f"{path}: {size} bytes, the manifest says {entry['bytes']} (truncated?)")
        if sha256_file(path) != entry["sha256"]:
            raise error(f"{path}: sha256 does not match the manifest (modified or corrupted)")


def _files(directory: Path) -> set[str]:
    return {
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.name != MANIFEST
    }
