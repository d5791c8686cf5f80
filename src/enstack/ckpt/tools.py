"""`enstack ckpt inspect | verify | clean`."""

from __future__ import annotations

from pathlib import Path

from enstack.ckpt.layout import (
    CheckpointError,
    candidates,
    holds_only_checkpoint_files,
    is_checkpoint_name,
    is_unfinished_name,
    remove_tree,
    remove_unfinished,
    rotate,
    verify,
)
from enstack.errors import UserError


def inspect_text(path: Path) -> str:
    """What a checkpoint holds; for a checkpoints directory, a line per checkpoint in it."""
    if path.is_dir() and not is_checkpoint_name(path.name) and candidates([path]):
        return list_text(path)
    ckpt = verify(path)
    s = ckpt.state
    accum = s.get("grad_accum_steps", 1)
    total = s.get("total_batches")
    lines = [
        f"checkpoint   {ckpt.path}",
        f"model        {s.get('model', '?')}  (enstack {s.get('enstack_version', '?')}, "
        f"format {s.get('format_version', '?')})",
        f"position     {position(s)}, global step {s['global_step']}"
        f"  (state.json: epoch {s['epoch']}, step {s['step']}; epochs from 0 there)",
        f"meaning      {s['step']} optimizer steps of epoch {s['epoch'] + 1} are done; the next "
        f"batch trained is batch {s['step'] * accum + 1} of {total or '?'} in that epoch",
        f"total batches {total if total is not None else 'not recorded (older checkpoint)'}"
        f" per epoch, {accum} per optimizer step",
        f"finished     {s.get('finished', False)}"
        + ("  (early stop)" if s.get("stopped_early") else ""),
        f"best val F1  {_fmt(s.get('best_f1'))}"
        + (f" (epoch {s['best_epoch'] + 1})" if s.get("best_epoch") is not None else ""),
        f"last eval    {_metrics(s.get('last_eval') or {})}",
        f"saved at     {s.get('saved_at', '?')}",
        "files",
    ]
    for f in sorted(ckpt.path.iterdir()):
        lines.append(f"  {f.name:<24}{f.stat().st_size:>14,} bytes")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def _metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) or "none"


def position(state: dict) -> str:
    """Where training stood, as a person counts: `epoch 2, step 40` or `end of epoch 1`."""
    if state["step"] == 0 and state["epoch"] > 0:
        return f"end of epoch {state['epoch']}"
    return f"epoch {state['epoch'] + 1}, step {state['step']}"


def list_text(directory: Path) -> str:
    """One line per checkpoint in `directory`, oldest first: position, or why it is invalid."""
    lines = [f"checkpoints in {directory} (epochs counted from 1):"]
    for path in sorted(candidates([directory]), key=lambda p: p.name):
        try:
            s = verify(path).state
        except CheckpointError as problem:
            lines.append(f"  {path.name}  invalid: {problem}")
            continue
        finished = "  finished" if s.get("finished") else ""
        lines.append(
            f"  {path.name}  {position(s)}, global step {s['global_step']}, best val F1 "
            f"{_fmt(s.get('best_f1'))}{finished}"
        )
    return "\n".join(lines)


def clean(directory: Path, keep: int | None) -> tuple[list[Path], list[str]]:
    """Remove unfinished saves, invalid checkpoints and, with `keep`, all but the newest N.

    Only what enstack wrote is touched: entries named exactly as its checkpoints or unfinished
    saves, holding only its files. Returns what was removed and what was left alone, and why.
    A directory with nothing of enstack's in it is refused.
    """
    entries = list(directory.iterdir())
    if not any(is_checkpoint_name(e.name) or is_unfinished_name(e.name) for e in entries):
        raise UserError(
            f"{directory}: not a checkpoints directory (no ckpt-g<step> checkpoint or "
            "unfinished save in it); nothing removed"
        )
    removed = remove_unfinished(directory)
    left: list[str] = []
    for path in candidates([directory]):
        try:
            verify(path)
        except CheckpointError as problem:
            if holds_only_checkpoint_files(path) and remove_tree(path):
                removed.append(path)
            else:
                left.append(f"{path}: invalid ({problem}), but holds files enstack did not write")
    if keep is not None:
        removed += rotate(directory, keep)
    return removed, left


def clean_set_aside(directory: Path) -> tuple[list[Path], list[str]]:
    """Remove the `NAME.old-STAMP` directories `--resume never` set aside beside `directory`,
    each only when everything in it is a checkpoint enstack wrote."""
    removed: list[Path] = []
    left: list[str] = []
    for aside in sorted(directory.parent.glob(f"{directory.name}.old-*")):
        if not aside.is_dir():
            continue
        entries = list(aside.iterdir())
        ours = all(is_checkpoint_name(e.name) and holds_only_checkpoint_files(e) for e in entries)
        if ours and remove_tree(aside):
            removed.append(aside)
        else:
            left.append(f"{aside}: holds files enstack did not write")
    return removed, left
