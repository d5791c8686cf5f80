"""Data-parallel training under torchrun: 2 gloo processes on CPU, real launches, real kills."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support import save_in_progress, sleep, slow_saves, tiny_config, train_args, until_event

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def torchrun(config: Path, *extra: str, ranks: int = 2) -> list[str]:
    """The train command of `train_args`, launched by torchrun instead of plain python."""
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={ranks}",
    ]
    return launcher + train_args(config, *extra)[1:]


def _workers(parent: int) -> list[int]:
    """The rank processes torchrun started (its children), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def _ddp_config(path: Path, run_dir: Path, **training: object) -> Path:
    settings = {"epochs": 2, "save_steps": 2, "num_threads": 1, "n_per_class": 50, **training}
    return tiny_config(path, run_dir, **settings)


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_resume_is_bit_exact(tmp_path: Path) -> None:
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    ref_cfg = _ddp_config(tmp_path / "ref.yaml", tmp_path / "ref", grad_accum_steps=2)
    done = subprocess.run(torchrun(ref_cfg), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "x 2 ranks x 2 accumulation = 32" in done.stderr  # effective batch, logged

    cfg = _ddp_config(tmp_path / "twin.yaml", tmp_path / "twin", grad_accum_steps=2)
    ckpts = tmp_path / "twin" / "models" / "m" / "checkpoints"
    kills = 0
    for attempt in range(4):
        job = subprocess.Popen(
            torchrun(cfg),
            env={**ENV, **slow_saves(0.05)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if attempt == 0:  # while rank 0 is writing a checkpoint: surely mid-run
            until_event(job, lambda: save_in_progress(ckpts))
        else:  # a random moment once training runs
            until_event(job, ckpts.is_dir)
            sleep(rng.uniform(0.0, 2.0))
        workers = _workers(job.pid)
        if job.poll() is not None or not workers:
            job.communicate()
            break
        os.kill(rng.choice(workers), signal.SIGKILL)
        _, err = job.communicate(timeout=120)  # the job comes down; no hang
        assert job.returncode != 0, (seed, err[-2000:])
        kills += 1
    final = subprocess.run(torchrun(cfg), env=ENV, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-3000:]
    assert kills >= 1, seed
    ours = tmp_path / "twin" / "models" / "m"
    theirs = tmp_path / "ref" / "models" / "m"
    for name in ("final/model.safetensors", "metrics.jsonl"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), (name, seed)
    state = json.loads(next(ckpts.iterdir()).joinpath("state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2


@pytest.mark.slow
def test_two_ranks_of_8_match_one_rank_of_16(tmp_path: Path) -> None:
    """The same global batches, split across ranks: equal up to float rounding (dropout off,
    160 train rows, so every global batch of 16 splits evenly)."""
    no_dropout = ("--set", "models.0.scratch.dropout=0.0")
    one = _ddp_config(tmp_path / "one.yaml", tmp_path / "one", batch_size=16, n_per_class=40)
    two = _ddp_config(tmp_path / "two.yaml", tmp_path / "two", batch_size=8, n_per_class=40)
    single = subprocess.run(train_args(one, *no_dropout), env=ENV, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    double = subprocess.run(torchrun(two, *no_dropout), env=ENV, capture_output=True, text=True)
    assert double.returncode == 0, double.stderr[-3000:]
    final = Path("models") / "m" / "final" / "model.safetensors"
    a = load_file(str(tmp_path / "one" / final))
    b = load_file(str(tmp_path / "two" / final))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=2e-4, rtol=1e-3), key
    # and the runs really trained: a checkpoint from the first steps differs from the end
    early = min((tmp_path / "one" / "models" / "m" / "checkpoints").iterdir())
    first = load_file(str(early / "model.safetensors"))
    assert any(not torch.allclose(first[k], a[k]) for k in a)


@pytest.mark.slow
def test_resuming_with_another_number_of_ranks_is_refused(tmp_path: Path) -> None:
    cfg = _ddp_config(tmp_path / "c.yaml", tmp_path / "run", epochs=1)
    done = subprocess.run(torchrun(cfg), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = next((tmp_path / "run" / "models" / "m" / "checkpoints").iterdir())
    single = subprocess.run(
        train_args(cfg, "--resume", str(ckpt)), env=ENV, capture_output=True, text=True
    )
    assert single.returncode == 2 and "different config" in single.stderr
