"""`train_throughput_vs_hf`: samples/s of enstack's trainer over a Hugging Face `Trainer`, and
`extract_speedup_vs_padded`: the feature extractor over fixed 512-token padding.

Same tiny RoBERTa (2 layers, 128 wide), same rows (a slice of juliet5's train split, or the
synthetic demo data where juliet5 is absent), same tokenizer and token ids, batch size 16,
max_length 512. The Trainer runs at its best comparable settings: length-grouped sampling
(`train_sampling_strategy="group_by_length"`, formerly `group_by_length=True`) and dynamic
padding (`DataCollatorWithPadding`), no saving, no evaluation, no logging. Only the window
from the first step's start to the last step's end is timed, in a fresh process each.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import yaml

from benchmarks.common import SHARED_DATA, Result, run_measured

JULIET = SHARED_DATA / "juliet5" / "train.jsonl"
MODEL = {"layers": 2, "hidden": 128, "heads": 4, "intermediate": 256, "vocab_size": 8000}
# the codebert-base architecture (random weights: no hub), for the GPU figures
ROBERTA_BASE = {
    "layers": 12,
    "hidden": 768,
    "heads": 12,
    "intermediate": 3072,
    "vocab_size": 50265,
}

ENSTACK_CHILD = """
import time
from pathlib import Path
from enstack.config import load_config
from enstack.train import trainer as T

marks = []
original = T.Trainer._train_step
def timed(self, group):
    if not marks:
        marks.append(time.perf_counter())
    loss = original(self, group)
    marks.append(time.perf_counter())
    self.steps_done = len(marks) - 1
    return loss
T.Trainer._train_step = timed
config = load_config(Path({cfg!r}))
result_obj = T.train_model(config, 'm', resume='never', progress=False)
import pyarrow.parquet as pq
from safetensors.torch import load_file
n = pq.read_metadata(Path({run!r}) / 'data' / 'train.parquet').num_rows
cache = next((Path({run!r}) / 'cache' / 'tokens').iterdir())
offsets = load_file(str(cache / 'train.safetensors'))['offsets'].double()
lengths = offsets[1:] - offsets[:-1]
result = {{'samples_per_s': n / (marks[-1] - marks[0]), 'seconds': marks[-1] - marks[0],
          'samples': n, 'phases': result_obj.phase_seconds, 'train_seconds': marks[-1] - marks[0],
          'tokens': float(lengths.sum()), 'tokens_squared': float((lengths ** 2).sum())}}
"""

HF_CHILD = """
import time
import pyarrow.parquet as pq
import torch
from pathlib import Path
from transformers import (AutoConfig, AutoTokenizer, DataCollatorWithPadding,
                          RobertaForSequenceClassification, Trainer, TrainerCallback,
                          TrainingArguments)
from safetensors.torch import load_file

torch.set_num_threads(torch.get_num_threads())
base = Path({run!r}) / 'models' / 'm' / 'base'
tokenizer = AutoTokenizer.from_pretrained(base)
config = AutoConfig.from_pretrained(base)
torch.manual_seed(0)
model = RobertaForSequenceClassification(config)
cache = next((Path({run!r}) / 'cache' / 'tokens').iterdir())
t = load_file(str(cache / 'train.safetensors'))
tokens, offsets, labels = t['tokens'], t['offsets'], t['labels']
rows = [{{'input_ids': tokens[offsets[i]:offsets[i + 1]].tolist(),
          'attention_mask': [1] * int(offsets[i + 1] - offsets[i]),
          'labels': int(labels[i])}} for i in range(len(labels))]

marks = []
class Clock(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
        if not marks:
            marks.append(time.perf_counter())
    def on_step_end(self, args, state, control, **kw):
        marks.append(time.perf_counter())

args = TrainingArguments(output_dir=str(Path({run!r}) / 'hf-out'), per_device_train_batch_size=16,
                         num_train_epochs=1, learning_rate={lr}, bf16={bf16},
                         train_sampling_strategy='group_by_length',
                         save_strategy='no', eval_strategy='no', logging_strategy='no',
                         report_to=[], use_cpu={cpu}, dataloader_num_workers=0, seed=0,
                         max_grad_norm=1.0, weight_decay=0.01, disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=rows,
                  data_collator=DataCollatorWithPadding(tokenizer), callbacks=[Clock()])
trainer.train()
result = {{'samples_per_s': len(rows) / (marks[-1] - marks[0]), 'seconds': marks[-1] - marks[0],
          'samples': len(rows)}}
"""

EXTRACT_CHILD = """
import time
import torch
from pathlib import Path
from enstack.models.loading import load_classifier
from enstack.infer import predict as extract_split
from enstack.device import autocast
from enstack.encode import EncodedSplit
from safetensors.torch import load_file
import numpy as np


def padded_baseline(model, split, batch_size, width, device, amp='off'):
    # the naive extractor compared against: every row padded to `width`
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            rows = np.arange(start, min(start + batch_size, len(split)))
            (ids, mask, _), _ = split.collate(rows)
            full = torch.full((len(rows), width), split.pad_id, dtype=torch.long)
            full_mask = torch.zeros((len(rows), width), dtype=torch.long)
            full[:, : ids.shape[1]] = ids[:, :width]
            full_mask[:, : ids.shape[1]] = mask[:, :width]
            with autocast(amp, device):
                model.classifier(model.embed(full.to(device), full_mask.to(device)))


model, tok = load_classifier(Path({run!r}) / 'models' / 'm' / 'final')
cache = next((Path({run!r}) / 'cache' / 'tokens').iterdir())
t = load_file(str(cache / 'train.safetensors'))
split = EncodedSplit(t['tokens'], t['offsets'], t['labels'], tok.pad_token_id)
device = torch.device({device!r})
model = model.to(device)
def timed(work):
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    work()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start
warm = split.subset(np.arange(min(256, len(split))))  # kernels and allocator warmed first
extract_split(model, warm, 64, device, {amp!r}, progress=False)
padded_baseline(model, warm, 64, 512, device, {amp!r})
ours = timed(lambda: extract_split(model, split, 64, device, {amp!r}, progress=False))
padded = timed(lambda: padded_baseline(model, split, 64, 512, device, {amp!r}))
result = {{'ours_rows_per_s': len(split) / ours, 'padded_rows_per_s': len(split) / padded,
          'rows': len(split)}}
"""


def _data(workdir: Path, rows: int) -> tuple[dict, str]:
    """The first `rows` juliet5 train rows, topped up so each class has at least 5 (the
    stratified split needs a train row of every class; CWE-469 is rare)."""
    if not JULIET.is_file():
        return {"format": "synthetic", "synthetic": {"n_per_class": rows // 5}}, "synthetic"
    out = workdir / "juliet_slice.jsonl"
    lines = JULIET.read_text().splitlines()
    chosen = lines[:rows]
    counts: dict[int, int] = {}
    for line in chosen:
        label = json.loads(line)["label"]
        counts[label] = counts.get(label, 0) + 1
    for line in lines[rows:]:
        label = json.loads(line)["label"]
        if counts.get(label, 0) < 5:
            chosen.append(line)
            counts[label] = counts.get(label, 0) + 1
    out.write_text("\n".join(chosen) + "\n")
    return {"format": "jsonl", "path": str(out)}, "juliet5 train slice"


def run(workdir: Path, quick: bool, device: str = "cpu") -> dict[str, Result]:
    cuda = device == "cuda"
    rows = (2000 if quick else 10000) if cuda else (800 if quick else 4000)
    model = ROBERTA_BASE if cuda else MODEL
    learning_rate = 1e-4 if cuda else 1e-3  # 1e-3 is too high for 12 layers
    data, source = _data(workdir, rows)
    run_dir = workdir / "train-bench"
    cfg = workdir / "train-bench.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(run_dir),
                "data": data,
                "models": [{"name": "m", "family": "codebert", "scratch": model}],
                "training": {
                    "epochs": 1,
                    "batch_size": 16,
                    "learning_rate": learning_rate,
                    "max_length": 512,
                    "save_steps": 0,
                    "device": device,
                    "amp": "bf16" if cuda else "off",
                },
            }
        )
    )
    hf = HF_CHILD.format(run=str(run_dir), lr=learning_rate, bf16=cuda, cpu=not cuda)
    ours, theirs = [], []
    for _ in range(2 if quick else 3):
        ours.append(run_measured(ENSTACK_CHILD.format(cfg=str(cfg), run=str(run_dir))))
        theirs.append(run_measured(hf))
    a = statistics.median(r["samples_per_s"] for r in ours)
    b = statistics.median(r["samples_per_s"] for r in theirs)
    extract = run_measured(
        EXTRACT_CHILD.format(run=str(run_dir), device=device, amp="bf16" if cuda else "off")
    )
    phases = ours[-1]["phases"]
    total = sum(phases.values())
    share = {k: f"{100 * v / total:.0f}%" for k, v in phases.items()}
    detail = {
        "data": source,
        "model": "roberta-base architecture, bf16 autocast" if cuda else "2-layer 128-wide",
        "train_rows": ours[0]["samples"],
        "batch_size": 16,
        "max_length": 512,
        "enstack_samples_per_s": round(a, 1),
        "hf_trainer_samples_per_s": round(b, 1),
        "enstack_time_by_phase": share,
    }
    results = {
        "train_throughput_vs_hf": Result(a / b, "x", ">= 1.3" if cuda else ">= 1.0", detail),
        "extract_speedup_vs_padded": Result(
            extract["ours_rows_per_s"] / extract["padded_rows_per_s"],
            "x",
            ">= 3",
            {
                "rows": extract["rows"],
                "batch_size": 64,
                "length_sorted_rows_per_s": round(extract["ours_rows_per_s"], 1),
                "padded_512_rows_per_s": round(extract["padded_rows_per_s"], 1),
            },
        ),
    }
    if cuda:
        best = max(ours, key=lambda r: r["samples_per_s"])
        results["train_mfu"] = mfu_result(best, model, "juliet5 rows, batch 16")
    return results


def model_flops(tokens: float, tokens_squared: float, scratch: dict, classes: int = 5) -> float:
    """Training FLOPs (forward and backward) of an encoder over rows of the given lengths:
    6 x matmul parameters x tokens, plus attention's 12 x layers x width x length per token
    (PaLM's appendix B). Embedding lookups and padding are not counted: useful work only."""
    d, ff, layers = scratch["hidden"], scratch["intermediate"], scratch["layers"]
    matmul_params = layers * (4 * d * d + 2 * d * ff) + d * d + d * classes
    return 6 * matmul_params * tokens + 12 * layers * d * tokens_squared


# bf16 dense tensor-core peaks from NVIDIA's datasheets (TFLOP/s, without sparsity)
BF16_DENSE_PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0}


def bf16_peak_tflops() -> tuple[str, float | None]:
    import torch

    name = torch.cuda.get_device_name()
    peak = next((v for k, v in BF16_DENSE_PEAK_TFLOPS.items() if k in name), None)
    return name, peak


def mfu_result(measured: dict, scratch: dict, what: str) -> Result:
    name, peak = bf16_peak_tflops()
    achieved = model_flops(measured["tokens"], measured["tokens_squared"], scratch)
    tflops = achieved / measured["train_seconds"] / 1e12
    return Result(
        tflops / peak if peak else float("nan"),
        "fraction of peak",
        ">= 0.40",
        {
            "what": what,
            "card": name,
            "bf16_dense_peak_tflops": peak,
            "achieved_tflops": round(tflops, 1),
            "mean_tokens_per_row": round(measured["tokens"] / measured["samples"], 1),
        },
    )
