"""`enstack ckpt inspect | verify | clean`."""

from __future__ import annotations

import shutil
from pathlib import Path

from enstack.ckpt.layout import candidates, remove_unfinished, verify
from enstack.ckpt.writer import rotate


def inspect_text(path: Path) -> str:
    ckpt = verify(path)
    s = ckpt.state
    accum = s.get("grad_accum_steps", 1)
    total = s.get("total_batches")
    lines = [
        f"checkpoint   {ckpt.path}",
        f"model        {s.get('model', '?')}  (enstack {s.get('enstack_version', '?')}, "
        f"format {s.get('format_version', '?')})",
        f"position     epoch {s['epoch']}, step {s['step']}, global step {s['global_step']}",
        f"meaning      {s['step']} optimizer steps of epoch {s['epoch']} are done; the next batch "
        f"trained is batch {s['step'] * accum} of epoch {s['epoch']} (counting from 0)",
        f"total batches {total if total is not None else 'not recorded (older checkpoint)'}"
        f" per epoch, {accum} per optimizer step",
        f"finished     {s.get('finished', False)}"
        + ("  (early stop)" if s.get("stopped_early") else ""),
        f"best val F1  {_fmt(s.get('best_f1'))} (epoch {s.get('best_epoch')})",
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


def clean(directory: Path, keep: int | None) -> list[Path]:
    """Remove unfinished saves, invalid checkpoints and, with `keep`, all but the newest N."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    removed += remove_unfinished(directory)
    for path in candidates([directory]):
        try:
            verify(path)
        except Exception:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if keep is not None:
        removed += rotate(directory, keep)
    return removed
