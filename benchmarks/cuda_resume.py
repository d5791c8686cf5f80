"""`cuda_resume_distance`: how far apart an interrupted-and-resumed GPU run ends from an
uninterrupted one, with and without `training.deterministic`. CUDA only (`--device cuda`).

A small scratch model (2 layers, 128 wide) on synthetic data, bf16 autocast, checkpoints every
5 steps. The twin is SIGKILLed once, a second after its first checkpoint, and resumed. Reported:
the largest absolute difference of any final weight, for both settings, and for two
uninterrupted runs without the option (is a plain run even repeatable?).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks.common import Result

MODEL = {"layers": 2, "hidden": 128, "heads": 4, "intermediate": 256, "vocab_size": 2000}


def _config(path: Path, run_dir: Path, deterministic: bool) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(run_dir),
                "data": {"format": "synthetic", "synthetic": {"n_per_class": 300}},
                "models": [{"name": "m", "family": "codebert", "scratch": MODEL}],
                "training": {
                    "epochs": 2,
                    "batch_size": 16,
                    "learning_rate": 5e-4,
                    "max_length": 256,
                    "save_steps": 5,
                    "device": "cuda",
                    "amp": "bf16",
                    "deterministic": deterministic,
                },
            }
        )
    )
    return path


def _train(cfg: Path, kill_after_first_save: bool = False) -> None:
    args = [sys.executable, "-m", "enstack", "train", "--config", str(cfg), "--model", "m"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if kill_after_first_save:
        ckpts = Path(yaml.safe_load(cfg.read_text())["run_dir"]) / "models" / "m" / "checkpoints"
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while proc.poll() is None and not (ckpts.is_dir() and any(ckpts.glob("ckpt-*"))):
            time.sleep(0.01)
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])


def _max_abs_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x = load_file(str(a / "models" / "m" / "final" / "model.safetensors"))
    y = load_file(str(b / "models" / "m" / "final" / "model.safetensors"))
    return max(float((x[k] - y[k]).abs().max()) for k in x)


def run(workdir: Path, quick: bool, device: str = "cuda") -> dict[str, Result]:
    if device != "cuda":
        return {}
    diffs = {}
    for deterministic in (True, False):
        tag = "deterministic" if deterministic else "default"
        ref, twin = workdir / f"ref-{tag}", workdir / f"twin-{tag}"
        _train(_config(workdir / f"ref-{tag}.yaml", ref, deterministic))
        _train(_config(workdir / f"twin-{tag}.yaml", twin, deterministic), True)
        diffs[f"resumed_vs_uninterrupted_{tag}"] = _max_abs_diff(ref, twin)
    again = workdir / "again-default"
    _train(_config(workdir / "again-default.yaml", again, False))
    diffs["uninterrupted_twice_default"] = _max_abs_diff(workdir / "ref-default", again)
    return {
        "cuda_resume_distance": Result(
            diffs["resumed_vs_uninterrupted_deterministic"],
            "max |weight difference|",
            "0 with deterministic",
            {
                "model": "2-layer 128-wide scratch RoBERTa, bf16, SIGKILLed once and resumed",
                **{k: float(f"{v:.3g}") for k, v in diffs.items()},
            },
        )
    }
