"""Saving checkpoints: snapshot in memory on the training thread, write in the background.

The training loop blocks only while tensors are copied (`Snapshot`); a background thread then
writes the files into a temporary directory, fsyncs them, writes the manifest and renames the
directory into place. One save is in flight at a time. With a staging directory (fast local
disk), the save lands there first and is then copied to the final place and verified.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save

from enstack import versions
from enstack.ckpt.layout import (
    MANIFEST,
    STATE,
    CheckpointError,
    candidates,
    checkpoint_name,
    rotate,
    verify,
    verify_contents,
)
from enstack.errors import UserError
from enstack.fsutil import publish_dir, sibling_tmp
from enstack.manifest import manifest_bytes


class SaveError(UserError):
    """A checkpoint could not be written; the previous one is intact."""


@dataclass
class Snapshot:
    global_step: int
    tensors: dict[str, dict[str, torch.Tensor]]  # file name -> tensors (private CPU copies)
    state: dict  # JSON-able


class SnapshotBuffers:
    """CPU tensors reused from one save to the next.

    Allocating fresh tensors for every snapshot costs page faults (measured: 0.12-0.68 s for
    466 MB against 0.02 s to copy into existing ones). Only one save is in flight at a time and
    the writer waits for it before the next snapshot, so the buffers are free when refilled.
    """

    def __init__(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}

    def copy(self, group: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """CPU copies of `tensors`. GPU tensors go to pinned buffers without blocking the host
        per tensor (twice the bandwidth of pageable memory); one wait at the end."""
        out = {}
        from_gpu = False
        for name, value in tensors.items():
            key = f"{group}/{name}"
            source = value.detach()
            held = self._tensors.get(key)
            if held is None or held.shape != source.shape or held.dtype != source.dtype:
                held = torch.empty(
                    source.shape, dtype=source.dtype, device="cpu", pin_memory=source.is_cuda
                )
                self._tensors[key] = held
            held.copy_(source, non_blocking=source.is_cuda and held.is_pinned())
            from_gpu = from_gpu or source.is_cuda
            out[name] = held
        if from_gpu:
            torch.cuda.synchronize()  # the copies must be complete before the writer reads them
        return out


def take_snapshot(
    global_step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict,
    buffers: SnapshotBuffers | None = None,
    extra_rng: dict[str, torch.Tensor] | None = None,
) -> Snapshot:
    """Everything a checkpoint holds, copied now; the only part of a save that blocks training.

    `state` is the caller's JSON-able scalar state; optimizer param groups and RNG positions
    are added to it here.
    """
    from enstack.ckpt.state import capture_rng, optimizer_to_flat

    buffers = buffers or SnapshotBuffers()
    opt_tensors, opt_meta = optimizer_to_flat(optimizer)
    rng_tensors, rng_meta = capture_rng()
    rng_tensors.update(extra_rng or {})
    return Snapshot(
        global_step=global_step,
        tensors={
            "model.safetensors": buffers.copy("model", model.state_dict()),
            "optimizer.safetensors": buffers.copy("optimizer", opt_tensors),
            "rng.safetensors": buffers.copy("rng", rng_tensors),
        },
        state={**state, "optimizer": opt_meta, "rng": rng_meta},
    )


class CheckpointWriter:
    def __init__(
        self,
        final_dir: Path,
        keep: int,
        staging_dir: Path | None = None,
    ) -> None:
        self.final_dir = final_dir
        self.staging_dir = staging_dir
        self.keep = keep
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._buffers = SnapshotBuffers()
        self.last_saved: Path | None = None

    def save(
        self,
        global_step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        state: dict,
        wait: bool = False,
        extra_rng: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Snapshot now (blocking), write in the background; `wait` to block until on disk."""
        self.wait()  # the previous save must be done with the snapshot buffers
        snapshot = take_snapshot(global_step, model, optimizer, state, self._buffers, extra_rng)
        self._start(snapshot)
        if wait:
            self.wait()

    def _start(self, snapshot: Snapshot) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(snapshot,), name="enstack-checkpoint", daemon=False
        )
        self._thread.start()

    def wait(self) -> Path | None:
        """Block until the save in flight is on disk; raise SaveError if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self.last_saved

    def _run(self, snapshot: Snapshot) -> None:
        try:
            first = self.staging_dir or self.final_dir
            path = write_checkpoint(first, snapshot)
            if self.staging_dir is not None:
                path = copy_verified(path, self.final_dir)
                rotate(self.staging_dir, keep=1, keep_best=False)  # run_dir keeps the best
            rotate(self.final_dir, self.keep)
            self.last_saved = path
        except BaseException as exc:  # surfaced on the training thread by wait()
            self._error = exc


def write_checkpoint(parent: Path, snapshot: Snapshot) -> Path:
    final = parent / checkpoint_name(snapshot.global_step)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_tmp(final)
    files: dict[str, dict] = {}
    try:
        tmp.mkdir()
        for name, tensors in snapshot.tensors.items():
            # Serialise to bytes and write with Python's I/O, so that a full disk surfaces as
            # an OSError with its errno (safetensors' own writer reports it as a generic error).
            files[name] = _write_file(tmp / name, save(tensors, metadata={"format": "pt"}))
        state = (json.dumps(snapshot.state, indent=1) + "\n").encode()
        files[STATE] = _write_file(tmp / STATE, state)
        _write_file(tmp / MANIFEST, manifest_bytes(versions.CHECKPOINT_FORMAT, files))
        publish_dir(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SaveError(_save_failure(final, exc)) from None
    return final


def _write_file(path: Path, data: bytes) -> dict:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _save_failure(target: Path, exc: OSError) -> str:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    hint = " (disk full: free space, then run again to resume)" if exc.errno == errno.ENOSPC else ""
    previous = _newest_name(target.parent)
    kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint"
    return f"could not save checkpoint {target}: {reason}{hint}; {kept}"


def _newest_name(directory: Path) -> str | None:
    names = sorted(p.name for p in candidates([directory]) if (p / MANIFEST).is_file())
    return names[-1] if names else None


def copy_verified(source: Path, final_dir: Path) -> Path:
    """Copy a finished checkpoint from staging to `final_dir`, verify the copy, rename it in."""
    final = final_dir / source.name
    final_dir.mkdir(parents=True, exist_ok=True)
    tmp = sibling_tmp(final)
    try:
        shutil.copytree(source, tmp)
        if verify_contents(tmp).state != verify(source).state:
            raise CheckpointError(f"{tmp}: copy differs from {source}")
        publish_dir(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SaveError(_save_failure(final, exc)) from None
    except CheckpointError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
