"""Per model, for val and test: class probabilities, logits and a pooled embedding, computed once.

Stored under `run_dir/features/NAME/` as `{split}.safetensors` (probs, logits, embedding,
labels) and `{split}_ids.parquet`, in the row order of `run_dir/data/{split}.parquet`, with a
fingerprint of the model export and the data; reused while both are unchanged. Train is not
extracted: the meta-classifiers are fitted on val (the paper's Algorithm 1), and train is
the largest split by far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file, save_file

from enstack.config import Config
from enstack.errors import UserError
from enstack.fsutil import read_json_object, sha256_file, sha256_json, staged_dir

FEATURE_VERSION = 2  # 2: val and test only
KINDS = ("probs", "logits", "embedding")
FEATURE_SPLITS = ("val", "test")  # what stacking fits on and what the reports score


@dataclass
class ModelFeatures:
    name: str
    splits: dict[str, dict[str, np.ndarray]]  # split -> kind -> array (rows in data order)
    fingerprint: str


def extract_all(config: Config, manifest: dict, progress: bool | None = None) -> dict:
    return {m.name: extract_model(config, m.name, manifest, progress) for m in config.models}


def extract_model(
    config: Config, name: str, manifest: dict, progress: bool | None = None
) -> ModelFeatures:
    export = config.layout.model(name).best
    weights = export / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"no trained model at {export} (run `enstack train --model {name}`)")
    fingerprint = sha256_json(
        {
            "version": FEATURE_VERSION,
            "weights": sha256_file(weights),
            "data": manifest["data_fingerprint"],
            "max_length": config.training.max_length,
        }
    )
    out_dir = config.layout.features(name)
    if _cached(out_dir) != fingerprint:
        _extract_to(out_dir, config, export, manifest, fingerprint, progress)
    return ModelFeatures(name, {s: _load(out_dir, s) for s in FEATURE_SPLITS}, fingerprint)


def encode_as_trained(
    config: Config, export: Path, model, tokenizer, manifest: dict, progress: bool | None = None
) -> dict:
    """The run's prepared splits encoded as the export's model was trained on them: its
    family's framing, the run's max_length, and its data-flow graph if it reads one."""
    from enstack.encode import encode_splits

    return encode_splits(
        config.layout.data,
        manifest,
        export,
        tokenizer,
        model.config.enstack["family"],
        config.training.max_length,
        config.layout.token_cache,
        progress,
        dfg_length=int(model.config.enstack.get("dfg_length", 0)),
    )


def _cached(out_dir: Path) -> str | None:
    meta = read_json_object(out_dir / "meta.json")
    return meta.get("fingerprint") if meta is not None else None


def _load(out_dir: Path, split: str) -> dict[str, np.ndarray]:
    path = out_dir / f"{split}.safetensors"
    try:
        return load_file(str(path))
    except Exception:
        raise UserError(
            f"{path}: missing or unreadable features; run `enstack stack` again"
        ) from None


def _extract_to(
    out_dir: Path,
    config: Config,
    export: Path,
    manifest: dict,
    fingerprint: str,
    progress: bool | None,
) -> None:
    # torch and transformers load only here: features found up to date need neither
    from enstack.device import amp_mode, pick_device
    from enstack.infer import predict
    from enstack.models.loading import load_classifier

    device = pick_device(config.training.device)
    amp = amp_mode(config.training.amp, device)
    model, tokenizer = load_classifier(export, str(device))
    family = model.config.enstack["family"]
    data_dir = config.layout.data
    splits = encode_as_trained(config, export, model, tokenizer, manifest, progress)
    with staged_dir(out_dir) as tmp:
        for split in FEATURE_SPLITS:
            arrays = predict(
                model,
                splits[split],
                config.stacking.extract_batch_size,
                device,
                amp,
                f"features {export.parent.name} {split}",
                progress,
            )
            save_file(arrays, str(tmp / f"{split}.safetensors"))
            ids = pq.read_table(data_dir / f"{split}.parquet", columns=["id"])
            pq.write_table(ids, tmp / f"{split}_ids.parquet")
        (tmp / "meta.json").write_text(
            json.dumps(
                {
                    "fingerprint": fingerprint,
                    "pooling": model.pooling,
                    "family": family,
                }
            )
            + "\n"
        )
