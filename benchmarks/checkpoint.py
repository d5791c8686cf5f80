"""How much a checkpoint costs the training loop, and how big it is.

`checkpoint_stall_vs_sync`: time the loop is blocked by one save (snapshot in memory, then the
write goes on in the background) over a plain synchronous `torch.save` of the same state to
the same disk. `checkpoint_bytes_vs_tensors`: bytes on disk over the bytes of the tensors the
checkpoint must hold (weights, AdamW moments and steps, RNG states).

The model is the roberta-base architecture (125M parameters, random weights; --quick uses a
4-layer, 512-wide one), after one optimizer step so AdamW's state exists.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from transformers import RobertaConfig

from benchmarks.common import Result


def _model(quick: bool, device: str):
    from enstack.config import TrainingConfig
    from enstack.models.classifier import Classifier, build_encoder
    from enstack.train.optim import make_optimizer

    size = (
        dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048)
        if quick
        else {}
    )
    config = RobertaConfig(
        vocab_size=50265,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        num_labels=5,
        **size,
    )
    torch.manual_seed(0)
    model = Classifier(build_encoder(config, None), config, "cls").to(device)
    optimizer = make_optimizer(model, TrainingConfig())
    ids = torch.randint(5, 1000, (2, 32), device=device)
    loss = model(ids, torch.ones_like(ids)).sum()
    loss.backward()
    optimizer.step()
    return model, optimizer


def run(workdir: Path, quick: bool, device: str = "cpu") -> dict[str, Result]:
    from enstack.ckpt.writer import CheckpointWriter

    model, optimizer = _model(quick, device)
    n_params = sum(p.numel() for p in model.parameters())
    ckpt_dir = workdir / "ckpt-bench"
    writer = CheckpointWriter(ckpt_dir, keep=1)
    repeats = 4
    stalls, writes, syncs = [], [], []
    for i in range(repeats):
        # the first save allocates the snapshot buffers; a training run pays that once
        state = {"epoch": 0, "step": i + 1, "global_step": i + 1}
        started = time.perf_counter()
        writer.save(i + 1, model, optimizer, state)
        stalls.append(time.perf_counter() - started)
        writer.wait()
        writes.append(time.perf_counter() - started)

        started = time.perf_counter()
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
            },
            workdir / "sync.pt",
        )
        syncs.append(time.perf_counter() - started)

    saved = writer.wait()
    assert saved is not None
    on_disk = sum(f.stat().st_size for f in saved.iterdir())
    tensors = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    for entry in optimizer.state_dict()["state"].values():
        tensors += sum(
            t.numel() * t.element_size() for t in entry.values() if isinstance(t, torch.Tensor)
        )
    tensors += torch.get_rng_state().numel()
    stall, sync = statistics.median(stalls[1:]), statistics.median(syncs)
    arch = "4-layer 512-wide RoBERTa" if quick else "roberta-base"
    arch += ", on the GPU (copied to pinned host buffers)" if device == "cuda" else ""
    return {
        "checkpoint_stall_vs_sync": Result(
            stall / sync,
            "x",
            "<= 0.25",
            {
                "model": arch,
                "parameters": n_params,
                "stall_s": round(stall, 3),
                "background_write_s": round(statistics.median(writes), 3),
                "first_save_stall_s": round(stalls[0], 3),
                "sync_torch_save_s": round(sync, 3),
                "repeats": repeats,
            },
        ),
        "checkpoint_bytes_vs_tensors": Result(
            on_disk / tensors,
            "x",
            "<= 1.05",
            {"model": arch, "bytes_on_disk": on_disk, "tensor_bytes": tensors},
        ),
    }
