"""GraphCodeBERT's data-flow graph as an input: the same scratch model with and without it.

For Juliet-5 and Juliet-6 (`../shared/data/`), one GraphCodeBERT-architecture model (2 layers,
128 wide, random weights: a scratch model was never pre-trained with graphs, so this measures
the graph as an input, not GraphCodeBERT's pre-training) is trained twice in this run, with
`dfg: true` and `dfg: false`, same seed, rows, epochs and batch size. Figures: weighted F1 on val
(and on Juliet-6 detection F1, flawed vs `none`), and training samples/s (the graph adds up to
`dfg_length` positions per row and a full attention mask).
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from benchmarks.common import SHARED_DATA, Result

MODEL = {"layers": 2, "hidden": 128, "heads": 4, "intermediate": 256, "vocab_size": 8000}
DATASETS = {
    "juliet5": ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other"],
    "juliet6": ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other", "none"],
}


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    per_class = 150 if quick else 400
    results: dict[str, Result] = {}
    for dataset, labels in DATASETS.items():
        if not (SHARED_DATA / dataset / "train.jsonl").is_file():
            continue
        scores = {
            graph: _train_and_score(workdir, dataset, labels, graph, per_class)
            for graph in (False, True)
        }
        plain, graph = scores[False], scores[True]
        detail = {
            "rows_per_class": per_class,
            "with_graph": graph,
            "without_graph": plain,
            "model": "graphcodebert architecture, scratch (not pre-trained with graphs)",
        }
        results[f"dfg_f1_gain_{dataset}"] = Result(
            graph["weighted_f1"] - plain["weighted_f1"], "F1 points", "report", detail
        )
        results[f"dfg_train_speed_{dataset}"] = Result(
            graph["samples_per_s"] / plain["samples_per_s"], "x", "report", detail
        )
    return results


def _train_and_score(
    workdir: Path, dataset: str, labels: list[str], graph: bool, per_class: int
) -> dict:
    from enstack.config import load_config
    from enstack.data.record import read_prepared
    from enstack.device import pick_device
    from enstack.infer import predict
    from enstack.metrics import classification_metrics, detection_metrics
    from enstack.models.loading import load_classifier
    from enstack.stack.features import encode_as_trained
    from enstack.train.trainer import train_model

    run_dir = workdir / f"dfg-{dataset}-{'graph' if graph else 'plain'}"
    data = SHARED_DATA / dataset
    config_path = workdir / f"{run_dir.name}.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(run_dir),
                "seed": 7,
                "data": {
                    "format": "jsonl",
                    "train": str(data / "train.jsonl"),
                    "val": str(data / "val.jsonl"),
                    "labels": labels,
                    "group_column": "family",
                    "downsample": {"max_per_class": per_class},
                },
                "models": [
                    {"name": "m", "family": "graphcodebert", "dfg": graph, "scratch": MODEL}
                ],
                "training": {
                    "epochs": 2,
                    "batch_size": 32,
                    "learning_rate": 1e-3,
                    "warmup_ratio": 0.05,
                    "max_length": 256,
                    "save_steps": 0,
                    "device": "cpu",
                },
            }
        )
    )
    config = load_config(config_path)
    started = time.perf_counter()
    result = train_model(config, "m", resume="never", progress=False)
    seconds = time.perf_counter() - started
    train_rows = read_prepared(config.layout.data)["table"]["total"]["train"]
    loop = sum(v for k, v in result.phase_seconds.items() if k != "checkpoint")

    export = config.layout.model("m").best
    model, tokenizer = load_classifier(export)
    dfg_length = int(model.config.enstack.get("dfg_length", 0))
    manifest = read_prepared(config.layout.data)
    split = encode_as_trained(config, export, model, tokenizer, manifest)["val"]
    out = predict(model, split, 64, pick_device("cpu"), "off")
    y = out["labels"]
    scores = classification_metrics(y, out["probs"].argmax(1), len(labels), out["probs"])
    row = {
        "weighted_f1": round(scores["f1"], 4),
        "macro_f1": round(scores["macro_f1"], 4),
        "val_rows": len(y),
        "train_rows": train_rows,
        "samples_per_s": round(train_rows * 2 / loop, 1),
        "train_seconds": round(seconds, 1),
        "dfg_length": dfg_length,
    }
    if "none" in labels:
        detection = detection_metrics(y, out["probs"], labels.index("none"))
        row["detection_f1"] = round(detection["f1"], 4)
    return row
