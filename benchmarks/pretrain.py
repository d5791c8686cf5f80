"""Pretraining on real C, then fine-tuning on real CVE fixes: does it lift the models off chance?

The corpus is one a user's machine can get: Debian's glibc and binutils source packages
(`apt-get install glibc-source binutils-source`, tarballs under /usr/src), unpacked here,
decontaminated against configs/realvul.yaml's val and test functions (the functions under
test are never pretrained on).

- `pretrain_tokens_per_s_ratio`: pretraining throughput (code tokens per second) of
  `enstack pretrain` against the `transformers` Trainer with `DataCollatorForLanguageModeling`
  on the same model, the same rows, batch and length, side by side in this run.
- `pretrain_realvul_roc_auc` and `pretrain_realvul_pair_gain`: the same small encoder
  (configs/realvul.yaml's codebert size) fine-tuned with configs/realvul.yaml from (a) random
  weights, (b) the pretrained weights, (c) pretrained plus the pairwise term, each scored on
  realvul's held-out test split (CVEs and projects no choice was tuned on), reading long
  functions in windows: ROC-AUC, pair-correct, pair gain (P-C minus P-R, 0 at chance), F1,
  FPR; beside TF-IDF + logistic regression on the same split.

Reproduce: `pip install -e ".[bench]"` (the transformers Trainer needs accelerate), then
`python -m benchmarks --only pretrain [--workdir DIR] [--quick]`. The pretraining
run resumes exactly, so an interrupted benchmark goes on with the same `--workdir`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.common import SHARED_DATA, Result

REPO = Path(__file__).resolve().parents[1]
REALVUL = REPO / "configs" / "realvul.yaml"
SOURCES = (Path("/usr/src/glibc"), Path("/usr/src/binutils"))
# configs/realvul.yaml's codebert: the encoder every variant fine-tunes
ENCODER = {"layers": 2, "hidden": 128, "heads": 2, "intermediate": 256, "vocab_size": 4000,
           "attention_dropout": 0}  # fmt: skip
MAX_LENGTH = 256  # configs/realvul.yaml's
BATCH = 16
PRETRAIN_EPOCHS = 1  # the budget: about 30 minutes on a 2-core CPU (21M tokens)
THROUGHPUT_FUNCTIONS = 3000  # the side-by-side throughput run's share of the corpus


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    if not (SHARED_DATA / "realvul").is_dir():
        raise RuntimeError(f"{SHARED_DATA / 'realvul'} is not here")
    corpus = _unpack(workdir / "corpus")
    pretrain_cfg = _pretrain_config(workdir, corpus, quick)
    started = time.perf_counter()
    _enstack("pretrain", "--config", str(pretrain_cfg))
    pretrain_seconds = time.perf_counter() - started
    model = _pretrain_run(workdir) / "models" / "encoder" / "best"
    record = json.loads((model / "enstack-pretrain.json").read_text())
    throughput = _throughput(workdir, corpus, quick)
    variants = {
        "a: random weights": {},
        "b: pretrained": {"pretrained": str(model)},
        "c: pretrained + pairwise": {"pretrained": str(model), "pairwise": True},
    }
    rows = {name: _fine_tune(workdir, name, settings, quick) for name, settings in variants.items()}
    rows["TF-IDF + logistic regression"] = _baseline(workdir)
    pretrained = [rows["b: pretrained"], rows["c: pretrained + pairwise"]]
    detail = {
        "corpus": record["corpus"],
        "pretraining": {
            "seconds": round(pretrain_seconds, 1),
            "best_epoch": record["epoch"] + 1,
            "steps": record["global_step"],
            "val": record["val"],
        },
        "rows": rows,
    }
    return {
        "pretrain_tokens_per_s_ratio": Result(
            throughput["ratio"], "enstack / transformers Trainer", ">= 1.0", throughput
        ),
        "pretrain_realvul_roc_auc": Result(
            max(r["roc_auc"] for r in pretrained),
            "ROC-AUC, best of (b), (c)",
            ">= 0.60 where (a) is at chance",
            detail,
        ),
        "pretrain_realvul_pair_gain": Result(
            max(r["pair_gain"] for r in pretrained),
            "P-C minus P-R, best of (b), (c)",
            ">= +0.05",
            {},
        ),
    }


def _unpack(out: Path) -> list[Path]:
    """The source packages' trees, unpacked once."""
    trees = []
    for source in SOURCES:
        tarballs = sorted(source.glob("*.tar.xz"))
        if not tarballs:
            raise RuntimeError(
                f"no tarball under {source}: apt-get install glibc-source binutils-source"
            )
        tree = out / tarballs[0].name.removesuffix(".tar.xz")
        if not tree.is_dir():
            # tar, not Python's tarfile: its "data" filter copies each hard link by seeking
            # back in the xz stream, which takes glibc's tarball from seconds to many minutes
            staging = out / f".unpacking-{tree.name}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            subprocess.run(["tar", "-xf", str(tarballs[0]), "-C", str(staging), "--no-same-owner"],
                           check=True)  # fmt: skip
            (staging / tree.name).rename(tree)
            shutil.rmtree(staging)
        trees.append(tree)
    return trees


def _pretrain_config(workdir: Path, corpus: list[Path], quick: bool) -> Path:
    settings = {
        "run_dir": str(workdir / "pretrain"),
        "seed": 42,
        "pretrain": {
            "corpus": [str(t) for t in corpus],
            "decontaminate": [str(REALVUL)],
            "model": ENCODER,
            "max_length": MAX_LENGTH,
            "epochs": 1 if quick else PRETRAIN_EPOCHS,
            "learning_rate": 5e-4,
            **({"max_functions": 2000} if quick else {}),
        },
        "training": {"batch_size": BATCH, "warmup_ratio": 0.05, "save_steps": 500, "device": "cpu"},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "pretrain.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _pretrain_run(workdir: Path) -> Path:
    """Where `_pretrain_config(workdir, ...)`'s pretraining lives (run_dir/pretrain)."""
    return workdir / "pretrain" / "pretrain"


def _enstack(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "enstack", *args], cwd=REPO, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"enstack {args[0]} failed:\n{proc.stderr[-3000:]}")
    return proc


# --- throughput, side by side -------------------------------------------------------------------


def _throughput(workdir: Path, corpus: list[Path], quick: bool) -> dict:
    """Code tokens per second over one epoch of the same rows: `enstack pretrain` (its
    metrics.jsonl) against the transformers Trainer (its train_runtime)."""
    functions = 500 if quick else THROUGHPUT_FUNCTIONS
    cfg = _pretrain_config(workdir / "throughput", corpus, quick)
    settings = yaml.safe_load(cfg.read_text())
    settings["pretrain"].update(max_functions=functions, decontaminate=[])
    settings["training"].update(save_steps=0, log_steps=10)  # no mid-epoch saves: HF saves none
    cfg.write_text(yaml.safe_dump(settings))
    _enstack("pretrain", "--config", str(cfg), "--resume", "never")
    encoder = _pretrain_run(workdir / "throughput") / "models" / "encoder"
    lines = [json.loads(x) for x in (encoder / "metrics.jsonl").read_text().splitlines()]
    rates = [x["tokens_per_s"] for x in lines if x["event"] == "train"][1:]  # after warm-up
    ours = float(np.mean(rates))
    theirs = _transformers_rate(_pretrain_run(workdir / "throughput"), encoder / "base")
    return {"enstack": round(ours), "transformers": round(theirs["rate"]),
            "ratio": round(ours / theirs["rate"], 3), "functions": functions,
            "rows": theirs["rows"], "tokens": theirs["tokens"]}  # fmt: skip


HF_CHILD = """
import json, sys, time
import numpy as np, torch
from pathlib import Path
from transformers import (AutoConfig, AutoModelForMaskedLM, AutoTokenizer,
                          DataCollatorForLanguageModeling, Trainer, TrainingArguments)
run, base = Path(sys.argv[1]), Path(sys.argv[2])
cache = next((run / "cache" / "tokens").iterdir())
offsets = np.load(cache / "train.offsets.npy")
flat = np.fromfile(cache / "train.tokens", dtype=np.int32)
rows = [{"input_ids": flat[offsets[i]:offsets[i + 1]].tolist()} for i in range(len(offsets) - 1)]
torch.manual_seed(42)
tokenizer = AutoTokenizer.from_pretrained(base)
model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(base))
batch = int(sys.argv[3])
warmup = int(0.05 * -(-len(rows) // batch))  # enstack's warmup_ratio 0.05, in steps
args = TrainingArguments(output_dir=str(run / "hf"), per_device_train_batch_size=batch,
    num_train_epochs=1, learning_rate=5e-4, warmup_steps=warmup, save_strategy="no",
    report_to=[], logging_steps=10**9, use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
    seed=42)
collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator)
out = trainer.train()
tokens = int(offsets[-1])
print(json.dumps({"rate": tokens / out.metrics["train_runtime"], "rows": len(rows),
                  "tokens": tokens}))
"""


def _transformers_rate(run: Path, base: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", HF_CHILD, str(run), str(base), str(BATCH)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"transformers Trainer failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- fine-tuning on realvul -----------------------------------------------------------------------


def _fine_tune(workdir: Path, name: str, settings: dict, quick: bool) -> dict:
    """configs/realvul.yaml's codebert alone, from `settings`' weights, scored on test."""
    from benchmarks.realvul import _figures

    config = yaml.safe_load(REALVUL.read_text())
    run_dir = workdir / "finetune" / name.split(":")[0]
    model = {"name": "codebert", "family": "codebert"}
    if "pretrained" in settings:
        model["pretrained"] = settings["pretrained"]
    else:
        model["scratch"] = ENCODER
    config.update(run_dir=str(run_dir), models=[model])
    # the shipped config names the data as ../shared/data/...: here, wherever it is
    config["data"]["sources"] = [
        {**s, "path": str(SHARED_DATA / Path(s["path"]).relative_to("../shared/data"))}
        for s in config["data"]["sources"]
    ]
    config["training"]["pairwise"] = bool(settings.get("pairwise"))
    if quick:
        config["training"]["epochs"] = 1
    path = workdir / f"finetune-{name.split(':')[0]}.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    _enstack("train", "--config", str(path), "--model", "codebert")
    seconds = time.perf_counter() - started
    test = _split(run_dir, "test")
    labels = json.loads((run_dir / "data" / "manifest.json").read_text())["labels"]
    probs = _probabilities(run_dir / "models" / "codebert" / "best", test["code"])
    figures = _figures(np.asarray(test["label"]), probs, np.asarray(test["pair"]),
                       labels.index("none"))  # fmt: skip
    return {**figures, "train_seconds": round(seconds, 1)}


def _probabilities(export: Path, codes: list[str]) -> np.ndarray:
    from enstack.distill.targets import probabilities
    from enstack.scan.model import load_scan_model

    return probabilities(load_scan_model(export, long_functions="windows"), codes, False, "test")


def _baseline(workdir: Path) -> dict:
    from benchmarks.realvul import _as_probs, _figures, _tfidf

    run_dir = workdir / "finetune" / "a"
    test, train = _split(run_dir, "test"), _split(run_dir, "train")
    labels = json.loads((run_dir / "data" / "manifest.json").read_text())["labels"]
    benign = labels.index("none")
    scores = _as_probs(_tfidf(train, test["code"], benign), labels, benign)
    return _figures(np.asarray(test["label"]), scores, np.asarray(test["pair"]), benign)


def _split(run_dir: Path, name: str) -> dict[str, list]:
    import pyarrow.parquet as pq

    return pq.read_table(run_dir / "data" / f"{name}.parquet").to_pydict()
