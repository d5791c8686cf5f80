"""CUDA paths on a real GPU: mixed precision, the fp16 grad scaler and CUDA RNG states in
checkpoints, and exact resume there under `training.deterministic`.

Skipped where torch sees no CUDA device (CI has none); run on a GPU machine with
`python -m pytest tests/integration/test_cuda.py`. The kills are real SIGKILLs of real
training processes, as in test_resume_exact.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support import kill_repeatedly, slow_saves, tiny_config, train_args

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SETTINGS = {
    "epochs": 3,
    "grad_accum_steps": 2,
    "save_steps": 2,
    "n_per_class": 60,
    "device": "cuda",
    "deterministic": True,
}
PAUSE = slow_saves(0.08)


def _train(cfg: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(train_args(cfg), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_sigkill_anywhere_then_resume_is_bit_exact(tmp_path: Path, amp: str) -> None:
    ref_cfg = tiny_config(tmp_path / "ref.yaml", tmp_path / "ref", amp=amp, **SETTINGS)
    done = _train(ref_cfg)
    assert f"device cuda, amp {amp}" in done.stderr
    reference = tmp_path / "ref" / "models" / "m"

    cfg = tiny_config(tmp_path / "twin.yaml", tmp_path / "twin", amp=amp, **SETTINGS)
    model_dir = tmp_path / "twin" / "models" / "m"
    kill_repeatedly(cfg, model_dir / "checkpoints", PAUSE)
    _train(cfg)
    for name in ("final/model.safetensors", "best/model.safetensors", "metrics.jsonl"):
        assert (model_dir / name).read_bytes() == (reference / name).read_bytes(), name


def test_checkpoint_holds_cuda_rng_and_grad_scaler(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "c.yaml", tmp_path / "run", amp="fp16", **SETTINGS)
    _train(cfg)
    newest = max((tmp_path / "run" / "models" / "m" / "checkpoints").iterdir())
    state = json.loads((newest / "state.json").read_text())
    assert state["scaler"]["scale"] > 0 and "_growth_tracker" in state["scaler"]
    rng = load_file(str(newest / "rng.safetensors"))
    assert rng["torch.cuda.0"].dtype == torch.uint8 and rng["torch.cuda.0"].numel() > 0
    weights = load_file(str(newest / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())  # fp32 master weights


def test_bf16_and_fp32_train_to_similar_accuracy(tmp_path: Path) -> None:
    """Autocast changes rounding, not what is learned: same data, bf16 vs fp32 on the GPU."""
    scores = {}
    for amp in ("bf16", "off"):
        cfg = tiny_config(tmp_path / f"{amp}.yaml", tmp_path / amp, amp=amp, **SETTINGS)
        _train(cfg)
        best = json.loads((tmp_path / amp / "models" / "m" / "best" / "enstack.json").read_text())
        scores[amp] = best["val"]["f1"]
    assert scores["off"] > 0.3, scores  # well above chance (0.2 for five classes)
    assert abs(scores["bf16"] - scores["off"]) < 0.15, scores
