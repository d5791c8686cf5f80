"""Checkpoint directory layout, the manifest, and verification."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from enstack.ckpt.schema import schema_problem
from enstack.errors import UserError
from enstack.fsutil import TMP_MARK, fsync_dir
from enstack.manifest import MANIFEST, verify_files

STATE = "state.json"
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")
REQUIRED = (*TENSOR_FILES, STATE)
OWN_FILES = frozenset((*REQUIRED, MANIFEST))
PREFIX = "ckpt-g"
CHECKPOINT_NAME = re.compile(r"ckpt-g\d{9}")
# `fsutil.sibling_tmp` and `publish_dir` names: .ckpt-g000000012.tmp-1a2b3c4d / .old-...
UNFINISHED_NAME = re.compile(r"\.ckpt-g\d{9}\.(tmp|old)-[0-9a-f]{8}")


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
    verify_files(directory, files, CheckpointError)
    state = _read_json(directory / STATE, "state")
    problem = schema_problem(state)
    if problem:
        raise CheckpointError(f"{directory / STATE}: {problem}")
    return Checkpoint(directory, state)


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (an incomplete save, or not a checkpoint)")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path}: not valid JSON, so not an enstack {what} file") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return value


def is_checkpoint_name(name: str) -> bool:
    return CHECKPOINT_NAME.fullmatch(name) is not None


def is_unfinished_name(name: str) -> bool:
    """The temporary (or set-aside) directory of a checkpoint save, as `fsutil` names them."""
    return UNFINISHED_NAME.fullmatch(name) is not None


def holds_only_checkpoint_files(directory: Path) -> bool:
    """Whether everything in `directory` is a file enstack writes into a checkpoint: what
    may be deleted without losing anything of the user's."""
    return (
        directory.is_dir()
        and not directory.is_symlink()
        and all(
            entry.name in OWN_FILES and entry.is_file() and not entry.is_symlink()
            for entry in directory.iterdir()
        )
    )


def remove_unfinished(directory: Path) -> list[Path]:
    """Delete the temporary directories of saves that never finished (a crash mid-save).

    Only entries with the exact name and contents of an unfinished enstack save are removed;
    a user's `.notes.tmp-1` beside them is left alone. Returns what was really removed.
    """
    removed: list[Path] = []
    if directory.is_dir():
        for entry in directory.iterdir():
            own = is_unfinished_name(entry.name) and holds_only_checkpoint_files(entry)
            if own and remove_tree(entry):
                removed.append(entry)
    return removed


def remove_tree(path: Path) -> bool:
    """Remove a directory enstack wrote; whether it is really gone."""
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def candidates(directories: list[Path]) -> list[Path]:
    """Every directory named exactly as a finished checkpoint (temporary ones excluded)."""
    found = []
    for directory in directories:
        if directory.is_dir():
            found += [p for p in directory.iterdir() if p.is_dir() and is_checkpoint_name(p.name)]
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


def rotate(directory: Path, keep: int, keep_best: bool = True) -> list[Path]:
    """Remove all but the newest `keep` checkpoints and (with `keep_best`) the newest one
    marked best.

    Reads only each state.json (these are checkpoints this process wrote or verified at start),
    orders them by the global step recorded inside.
    """
    entries = []
    for path in candidates([directory]):
        if not (path / MANIFEST).is_file():
            continue
        try:
            state = json.loads((path / STATE).read_text())
            entries.append((int(state["global_step"]), bool(state.get("is_best")), path))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    entries.sort(key=lambda e: e[0])
    keep_paths = {path for _, _, path in entries[-keep:]}
    best = [path for _, is_best, path in entries if is_best and keep_best]
    if best:
        keep_paths.add(best[-1])
    removed = []
    for _, _, path in entries:
        # a checkpoint holding anything enstack did not write is the user's to remove
        if path not in keep_paths and holds_only_checkpoint_files(path) and remove_tree(path):
            removed.append(path)
    if removed:
        fsync_dir(directory)
    return removed
