"""Checkpoint directory layout, the manifest, and verification."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from enstack.errors import UserError
from enstack.fsutil import TMP_MARK, sha256_file

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
STATE = "state.json"
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")
REQUIRED = (*TENSOR_FILES, STATE)
PREFIX = "ckpt-g"


class CheckpointError(UserError):
    """A checkpoint that is missing, partial, corrupt or not a checkpoint at all."""


def checkpoint_name(global_step: int) -> str:
    return f"{PREFIX}{global_step:09d}"


@dataclass
class Checkpoint:
    path: Path
    state: dict

    @property
    def global_step(self) -> int:
        return int(self.state["global_step"])


def write_manifest(directory: Path) -> None:
    """Record each file's size and sha256; written last, it is what makes a checkpoint valid."""
    files = {}
    for path in sorted(directory.iterdir()):
        if path.name != MANIFEST and path.is_file():
            files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {"format_version": FORMAT_VERSION, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def verify(directory: Path) -> Checkpoint:
    """The checkpoint at `directory` if every file is present and intact; else CheckpointError.

    Only JSON is parsed here; tensor files are checked by size and sha256 against the manifest
    (and by safetensors' own header check when loaded), so nothing in them is executed.
    """
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    if TMP_MARK in directory.name:
        raise CheckpointError(f"{directory}: an unfinished save (temporary directory)")
    return verify_contents(directory)


def verify_contents(directory: Path) -> Checkpoint:
    """`verify` without the name check: for a copy still in its temporary directory."""
    manifest_path = directory / MANIFEST
    manifest = _read_json(manifest_path, "manifest")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(f"{manifest_path}: no file list; not an enstack checkpoint")
    for name in REQUIRED:
        if name not in files:
            raise CheckpointError(f"{manifest_path}: does not list {name}")
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
        size = path.stat().st_size
        if size != expected.get("bytes"):
            raise CheckpointError(
                f"{path}: {size} bytes, the manifest says {expected.get('bytes')} (truncated?)"
            )
        if sha256_file(path) != expected.get("sha256"):
            raise CheckpointError(f"{path}: sha256 does not match the manifest (corrupted)")
    state = _read_json(directory / STATE, "state")
    for key in ("epoch", "step", "global_step"):
        if not isinstance(state.get(key), int):
            raise CheckpointError(f"{directory / STATE}: no integer {key!r}")
    return Checkpoint(directory, state)


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (an incomplete save, or not a checkpoint)")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not valid JSON, so not an enstack {what} file") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return value


def remove_unfinished(directory: Path) -> list[Path]:
    """Delete the temporary directories of saves that never finished (a crash mid-save)."""
    removed: list[Path] = []
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name.startswith(".") and TMP_MARK in entry.name:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def candidates(directories: list[Path]) -> list[Path]:
    """Every finished-looking checkpoint directory (temporary ones excluded)."""
    found = []
    for directory in directories:
        if directory.is_dir():
            found += [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return found


def newest_valid(directories: list[Path]) -> tuple[Checkpoint | None, list[str]]:
    """The valid checkpoint with the highest global step recorded inside it, and the problems
    found with the others (never chosen by name or modification time)."""
    problems = []
    valid = []
    for path in candidates(directories):
        try:
            valid.append(verify(path))
        except CheckpointError as exc:
            problems.append(str(exc))
    if not valid:
        return None, problems
    return max(valid, key=lambda c: (c.global_step, c.state.get("saved_at", ""))), problems
