"""`training.pairwise`: a margin ranking term over fix pairs, beside cross-entropy.

The batch order keeps each pair whole and stays a pure function of the seed and the epoch;
the term is checked by hand; and a run with it on resumes after SIGKILLs byte for byte like
any run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from enstack.train.pairwise import NO_PAIR, PairRows, pair_batches, pair_margin_loss

from support import (
    TINY_MODEL,
    assert_user_error,
    kill_repeatedly,
    run_cli,
    slow_saves,
    train_args,
    write_config,
)

PAUSE = slow_saves(0.08)


def _units(n_pairs: int = 30, singles: int = 17) -> np.ndarray:
    """Two rows per pair unit, then units of one row."""
    return np.r_[np.repeat(np.arange(n_pairs), 2), n_pairs + np.arange(singles)]


def test_pair_batches_keep_units_whole_and_are_a_function_of_seed_and_epoch() -> None:
    units = _units()
    lengths = np.random.default_rng(0).integers(10, 200, len(units))
    batches = pair_batches(lengths, units, batch_size=8, seed=5, epoch=0)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(units)))  # every row once
    for batch in batches:
        assert len(batch) <= 8
        for unit in set(units[batch].tolist()):  # a unit's rows are all in this batch
            assert set(np.flatnonzero(units == unit)) <= set(batch.tolist())
    again = pair_batches(lengths, units, batch_size=8, seed=5, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = pair_batches(lengths, units, batch_size=8, seed=5, epoch=1)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other, strict=False))
    # two ranks: disjoint shares, whole units, the same global order for both
    shares = [pair_batches(lengths, units, 4, 5, 0, rank=r, world=2) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1])
    seen = np.concatenate([np.concatenate(s) for s in shares])
    assert len(seen) == len(set(seen.tolist()))
    for share in shares:
        for batch in share:
            for unit in set(units[batch].tolist()):
                assert set(np.flatnonzero(units == unit)) <= set(batch.tolist())


def test_pair_rows_from_functions_windows_and_pairs() -> None:
    # functions 0 (flawed, pair a, two windows), 1 (fix of a), 2 (alone), 3 (flawed, no fix)
    owner = torch.tensor([0, 0, 1, 2, 3])
    index = PairRows.of(owner, 5, ["a", "a", None, "b"], [0, 2, 2, 1], benign_id=2)
    assert index.pair.tolist() == [0, 0, 0, NO_PAIR, 1]
    assert index.flawed.tolist() == [True, True, False, False, True]
    assert index.unit[0] == index.unit[1] == index.unit[2] != index.unit[3] != index.unit[4]
    assert index.pairs == 1  # pair b has no fix


def _logits_for(log_odds: list[float]) -> torch.Tensor:
    """Two-class logits (flawed, benign) whose vulnerable log-odds are `log_odds`."""
    odds = torch.tensor(log_odds)
    return torch.stack([odds, torch.zeros_like(odds)], 1).requires_grad_(True)


def test_the_margin_term_by_hand() -> None:
    owner = torch.tensor([0, 0, 1, 2, 3])
    index = PairRows.of(owner, 5, ["a", "a", None, "b"], [0, 1, 1, 0], benign_id=1)
    rows = torch.arange(5)
    # flawed function 0 scores as its most vulnerable window (0.5), its fix 0.2: gap 0.3
    logits = _logits_for([-3.0, 0.5, 0.2, 9.0, 9.0])
    loss = pair_margin_loss(logits, rows, index, benign_id=1, margin=1.0)
    assert loss.item() == pytest.approx(0.7)
    loss.backward()
    grad = logits.grad[:, 0]
    assert grad[1] < 0 < grad[2]  # descent raises the flaw's window and lowers the fix
    assert grad[0] == 0 and grad[3] == 0 and grad[4] == 0  # the other rows are not in it
    # a gap beyond the margin costs nothing; a batch without both sides of a pair, nothing
    wide = pair_margin_loss(_logits_for([0.0, 2.0, 0.5, 0, 0]), rows, index, 1, 1.0)
    assert wide.item() == 0.0
    half = pair_margin_loss(_logits_for([0.0, 2.0]), torch.tensor([0, 1]), index, 1, 1.0)
    assert half.item() == 0.0 and half.requires_grad


def _paired_config(path: Path, run_dir: Path, **training: object) -> Path:
    settings = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "max_length": 128,
                "save_steps": 2, "grad_accum_steps": 2, "device": "cpu", "log_steps": 1,
                "long_functions": "truncate", "pairwise": True, **training}  # fmt: skip
    labels = ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other", "none"]
    return write_config(
        path,
        {
            "run_dir": str(run_dir),
            "data": {"format": "synthetic", "labels": labels, "synthetic": {"n_per_class": 30}},
            "models": [{"name": "m", "family": "codebert", "scratch": TINY_MODEL}],
            "training": settings,
        },
    )


def test_pairwise_without_pairs_is_one_error(tmp_path: Path) -> None:
    config = _paired_config(tmp_path / "c.yaml", tmp_path / "run")
    bad = run_cli("train", "--config", str(config), "--model", "m",
                  "--set", "data.labels=[CWE-119,CWE-120,CWE-469,CWE-476,CWE-other]")  # fmt: skip
    assert_user_error(bad, "training.pairwise", "fix pairs")


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_is_bit_exact_with_the_pairwise_term(tmp_path: Path) -> None:
    ref = _paired_config(tmp_path / "ref.yaml", tmp_path / "ref")
    done = subprocess.run(train_args(ref), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pairwise term over 120 fix pairs" in done.stderr  # the train split's 240 rows
    twin = _paired_config(tmp_path / "twin.yaml", tmp_path / "twin")
    model = tmp_path / "twin" / "models" / "m"
    kill_repeatedly(twin, model / "checkpoints", PAUSE)
    final = subprocess.run(train_args(twin), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    reference = tmp_path / "ref" / "models" / "m"
    for name in ("final/model.safetensors", "best/model.safetensors", "metrics.jsonl"):
        assert (model / name).read_bytes() == (reference / name).read_bytes(), name
    # the term changes what is learned: the same run without it ends elsewhere
    off = _paired_config(tmp_path / "off.yaml", tmp_path / "off", pairwise=False)
    subprocess.run(train_args(off), check=True, capture_output=True)
    without = tmp_path / "off" / "models" / "m" / "final" / "model.safetensors"
    assert without.read_bytes() != (reference / "final" / "model.safetensors").read_bytes()
