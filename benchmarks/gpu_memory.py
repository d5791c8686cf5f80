"""`gpu_largest_batch_512`: peak GPU memory per batch size for the roberta-base architecture
at max_length 512 (every row full), training in bf16 autocast with enstack's classifier and
fused AdamW, and the largest batch that fits; `gpu_mfu_512`: model FLOPs utilisation at the
batch size with the best throughput. CUDA only (`--device cuda`).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import Result, run_measured
from benchmarks.training import ROBERTA_BASE, mfu_result

CHILD = """
import time
import torch
from transformers import RobertaConfig
from enstack.config import TrainingConfig
from enstack.models.classifier import Classifier, build_encoder
from enstack.device import autocast
from enstack.train.optim import make_optimizer

s = {scratch!r}
config = RobertaConfig(vocab_size=s['vocab_size'], hidden_size=s['hidden'],
                       num_hidden_layers=s['layers'], num_attention_heads=s['heads'],
                       intermediate_size=s['intermediate'], max_position_embeddings=514,
                       type_vocab_size=1, pad_token_id=1, num_labels=5)
torch.manual_seed(0)
device = torch.device('cuda')
model = Classifier(build_encoder(config, None), config, 'cls').to(device).train()
optimizer = make_optimizer(model, TrainingConfig())
loss_fn = torch.nn.CrossEntropyLoss()

def step(batch):
    ids = torch.randint(5, config.vocab_size, (batch, 512), device=device)
    labels = torch.randint(0, 5, (batch,), device=device)
    with autocast('bf16', device):
        logits = model(ids, torch.ones_like(ids))
    loss_fn(logits.float(), labels).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

def measure(batch):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        step(batch)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(3):
            step(batch)
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / 3
    except torch.cuda.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        return None
    return {{'batch': batch, 'peak_gib': torch.cuda.max_memory_allocated() / 2**30,
             'samples_per_s': batch / seconds, 'step_seconds': seconds}}

rows, batch, failed = [], 8, None
while failed is None:
    row = measure(batch)
    if row is None:
        failed = batch
    else:
        rows.append(row)
        batch *= 2
low = rows[-1]['batch']
while failed - low > max(1, low // 16):  # bisect to within 1/16 of the largest that fits
    mid = (low + failed) // 2
    row = measure(mid)
    if row is None:
        failed = mid
    else:
        rows.append(row)
        low = mid
result = {{'rows': rows, 'largest': low, 'first_oom': failed,
          'total_gib': torch.cuda.get_device_properties(0).total_memory / 2**30,
          'attention': model.config._attn_implementation}}
"""


def run(workdir: Path, quick: bool, device: str = "cuda") -> dict[str, Result]:
    if device != "cuda":
        return {}
    scratch = ROBERTA_BASE
    out = run_measured(CHILD.format(scratch=scratch))
    rows = sorted(out["rows"], key=lambda r: r["batch"])
    best = max(rows, key=lambda r: r["samples_per_s"])
    tokens = best["batch"] * 512
    measured = {
        "tokens": float(tokens),
        "tokens_squared": float(best["batch"] * 512**2),
        "train_seconds": best["step_seconds"],
        "samples": best["batch"],
    }
    return {
        "gpu_largest_batch_512": Result(
            out["largest"],
            "rows",
            "report",
            {
                "model": "roberta-base architecture, bf16 autocast, fused AdamW",
                "attention": out["attention"],
                "card_memory_gib": round(out["total_gib"], 1),
                "first_batch_out_of_memory": out["first_oom"],
                "peak_gib_by_batch": {r["batch"]: round(r["peak_gib"], 2) for r in rows},
                "samples_per_s_by_batch": {r["batch"]: round(r["samples_per_s"], 1) for r in rows},
            },
        ),
        "gpu_mfu_512": mfu_result(measured, scratch, f"full 512-token rows, batch {best['batch']}"),
    }
