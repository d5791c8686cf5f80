"""Exact resume, proven with real processes and real kills (SIGKILL and SIGTERM).

The reference is an uninterrupted run; the twin is killed again and again (at random moments,
and deliberately inside saves) and resumed each time. Their final weights and their metric logs
must be identical byte for byte: no batch trained twice, none skipped, dropout and the data
order restored. The config crosses epoch boundaries, accumulates gradients over 2 batches and
keeps dropout on (RoBERTa's default 0.1).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support import (
    kill_repeatedly,
    popen_train,
    slow_saves,
    tiny_config,
    train_args,
    until_event,
)

SETTINGS = {"epochs": 3, "grad_accum_steps": 2, "save_steps": 2, "n_per_class": 60}
PAUSE = slow_saves(0.08)  # keeps each save open long enough to be hit


def _reference(tmp_path: Path, family: str = "codebert") -> Path:
    cfg = tiny_config(tmp_path / "ref.yaml", tmp_path / "ref", family, **SETTINGS)
    subprocess.run(train_args(cfg), check=True, capture_output=True)
    return tmp_path / "ref" / "models" / "m"


def _assert_twins(reference: Path, twin: Path) -> None:
    for name in ("final/model.safetensors", "best/model.safetensors", "metrics.jsonl"):
        assert (twin / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.parametrize("family", ["codebert", "graphcodebert"])  # graphcodebert: with a graph
def test_sigkill_anywhere_then_resume_is_bit_exact(tmp_path: Path, family: str) -> None:
    reference = _reference(tmp_path, family)
    cfg = tiny_config(tmp_path / "twin.yaml", tmp_path / "twin", family, **SETTINGS)
    model_dir = tmp_path / "twin" / "models" / "m"
    kill_repeatedly(cfg, model_dir / "checkpoints", PAUSE)
    final = subprocess.run(train_args(cfg), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    _assert_twins(reference, model_dir)


@pytest.mark.slow
def test_sigterm_saves_exits_130_and_resumes_exactly(tmp_path: Path) -> None:
    reference = _reference(tmp_path)
    cfg = tiny_config(tmp_path / "twin.yaml", tmp_path / "twin", **SETTINGS)
    model_dir = tmp_path / "twin" / "models" / "m"
    # save_steps is large here so that the only mid-epoch checkpoint is the one SIGTERM writes
    proc = popen_train(cfg, PAUSE, "--set", "training.save_steps=1000")
    assert until_event(
        proc,
        lambda: (
            (model_dir / "metrics.jsonl").is_file()
            and len((model_dir / "metrics.jsonl").read_text().splitlines()) >= 4
        ),
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "SIGTERM" in err and "checkpoint saved" in err
    saved = list((model_dir / "checkpoints").iterdir())
    assert len(saved) == 1, saved
    state = json.loads((saved[0] / "state.json").read_text())
    assert state["epoch"] == 0 and 0 < state["step"] < state["steps_per_epoch"]  # mid-epoch

    resumed = subprocess.run(
        train_args(cfg, "--set", "training.save_steps=1000"), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    line = next(x for x in resumed.stderr.splitlines() if x.startswith("resuming"))
    assert "epoch 1/" in line and "batches left in this epoch" in line  # epochs count from 1
    _assert_twins(reference, model_dir)


@pytest.mark.slow
def test_resume_never_sets_old_checkpoints_aside(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "c.yaml", tmp_path / "run", epochs=1)
    subprocess.run(train_args(cfg), check=True, capture_output=True)
    again = subprocess.run(train_args(cfg, "--resume", "never"), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    models = tmp_path / "run" / "models" / "m"
    aside = [p for p in models.iterdir() if p.name.startswith("checkpoints.old-")]
    assert len(aside) == 1 and any(aside[0].iterdir())
    assert "moved" in again.stderr and "resuming" not in again.stderr
    # the old run's logs went with it: the new ones start fresh
    stamp = aside[0].name.split(".old-")[1]
    assert (models / f"tb.old-{stamp}").is_dir() and (
        models / f"metrics.jsonl.old-{stamp}"
    ).is_file()
    steps = [json.loads(line)["global_step"] for line in (models / "metrics.jsonl").open()]
    assert steps == sorted(steps)  # one run: the old one's lines would come first, then 1 again
    assert "ckpt clean" in again.stderr and "--old" in again.stderr
    cleaned = subprocess.run(
        [sys.executable, "-m", "enstack", "ckpt", "clean", str(models / "checkpoints"), "--old"],
        capture_output=True,
        text=True,
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert not aside[0].exists() and (models / "checkpoints").is_dir()
    assert (models / f"tb.old-{stamp}").is_dir()  # logs are the user's to delete


@pytest.mark.slow
def test_more_epochs_on_a_finished_model_is_refused_then_trained_when_forced(
    tmp_path: Path,
) -> None:
    cfg = tiny_config(tmp_path / "c.yaml", tmp_path / "run", epochs=1)
    subprocess.run(train_args(cfg), check=True, capture_output=True)
    longer = train_args(cfg, "--set", "training.epochs=2")
    refused = subprocess.run(longer, capture_output=True, text=True)
    assert refused.returncode == 2
    assert "changed: training.epochs" in refused.stderr and "train longer" in refused.stderr
    forced = subprocess.run([*longer, "--force-resume"], capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr
    assert "training longer, from the end of epoch 1 to 2 epochs" in forced.stderr
    metrics = tmp_path / "run" / "models" / "m" / "metrics.jsonl"
    evals = [json.loads(line) for line in metrics.open() if '"eval"' in line]
    assert [e["epoch"] for e in evals] == [0, 1]  # the second epoch was trained
