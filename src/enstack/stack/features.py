"""Per model, for val and test: class probabilities, logits and a pooled embedding, computed once.

Stored under `run_dir/features/NAME/` as `{split}.safetensors` (probs, logits, embedding,
labels) and `{split}_ids.parquet`, in the row order of `run_dir/data/{split}.parquet`, with a
fingerprint of the model export and the data; reused while both are unchanged. Train is not
extracted: the meta-classifiers are fitted on val (the paper's Algorithm 1), and train is
the largest split by far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file, save_file

from enstack import versions
from enstack.config import Config
from enstack.data.record import PreparedData
from enstack.errors import UserError
from enstack.fsutil import read_json_object, sha256_file, sha256_json
from enstack.models.contract import recorded_max_length, trained_length
from enstack.stages import Stage, run_stage
from enstack.windows import Expanded, aggregate, expand

FEATURE_SPLITS = ("val", "test")  # what stacking fits on and what the reports score


@dataclass
class ModelFeatures:
    name: str
    splits: dict[str, dict[str, np.ndarray]]  # split -> kind -> array (rows in data order)
    fingerprint: str
    # split -> {functions, long, lines, lines_seen}: what the model read of long functions
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)


def extract_all(config: Config, manifest: PreparedData, progress: bool | None = None) -> dict:
    return {m.name: extract_model(config, m.name, manifest, progress) for m in config.models}


def extract_model(
    config: Config, name: str, manifest: PreparedData, progress: bool | None = None
) -> ModelFeatures:
    return run_stage(Features(config, name, manifest, progress)).record


@dataclass(frozen=True)
class FeatureInputs:
    export: Path
    fingerprint: str  # of the export's weights, the data, the length and the windows


class Features(Stage[FeatureInputs, ModelFeatures]):
    """One trained model's export in, `run_dir/features/NAME/` out."""

    lock = None  # part of the stack stage, under its lock

    def __init__(
        self, config: Config, name: str, manifest: PreparedData, progress: bool | None
    ) -> None:
        super().__init__(config.run_dir, config.layout.features(name))
        self.config, self.name, self.manifest, self.progress = config, name, manifest, progress

    def inputs(self) -> FeatureInputs:
        config = self.config
        export = config.layout.model(self.name).best
        weights = export / "model.safetensors"
        if not weights.is_file():
            raise UserError(
                f"no trained model at {export} (run `enstack train --model {self.name}`)"
            )
        windows = config.training.long_functions == "windows"
        fingerprint = sha256_json(
            {
                "version": versions.STACK_FEATURES,
                "weights": sha256_file(weights),
                "data": self.manifest.data_fingerprint,
                # the length the export was trained at (the config's, for every export
                # enstack wrote: the key keeps its value, and features stay cached)
                "max_length": recorded_max_length(export) or config.training.max_length,
                # added with windows: truncated features keep the fingerprint they had
                **({"windows": versions.WINDOWS} if windows else {}),
            }
        )
        return FeatureInputs(export, fingerprint)

    def reuse(self, inputs: FeatureInputs) -> ModelFeatures | None:
        meta = read_json_object(self.output / "meta.json")
        if meta is None or meta.get("fingerprint") != inputs.fingerprint:
            return None
        try:  # safetensors raises its own errors and OSError alike: a damaged split is redone
            splits = {
                split: load_file(str(self.output / f"{split}.safetensors"))
                for split in FEATURE_SPLITS
            }
        except Exception:
            return None
        return ModelFeatures(self.name, splits, inputs.fingerprint, meta.get("coverage") or {})

    def build(self, inputs: FeatureInputs, tmp: Path) -> ModelFeatures:
        splits, coverage = _extract_to(
            tmp, self.config, inputs.export, self.manifest, inputs.fingerprint, self.progress
        )
        return ModelFeatures(self.name, splits, inputs.fingerprint, coverage)


def encode_as_trained(
    config: Config,
    export: Path,
    model,
    tokenizer,
    manifest: PreparedData,
    progress: bool | None = None,
) -> dict:
    """The run's prepared splits encoded as the export's model was trained on them: its
    family's framing, its max_length, and its data-flow graph if it reads one."""
    from enstack.encode import encode_splits

    return encode_splits(
        config.layout.data,
        manifest,
        export,
        tokenizer,
        model.config.enstack["family"],
        _length(export, model),
        config.layout.token_cache,
        progress,
        dfg_length=int(model.config.enstack.get("dfg_length", 0)),
    )


def _length(export: Path, model) -> int:
    """The export's encoding length (enstack.models.contract)."""
    from enstack.models.loading import usable_positions

    return trained_length(export, usable_positions(model.config))


def _windows(config: Config, length: int, split_file: Path, model, tokenizer) -> Expanded:
    """The split's functions as the windows the model reads (`training.long_functions`)."""
    from enstack.encode import code_room

    codes = pq.read_table(split_file, columns=["code"]).column("code").to_pylist()
    room = code_room(tokenizer, model.config.enstack["family"], length)
    return expand(codes, tokenizer, room, config.training.long_functions)


def _split_outputs(
    config: Config, length: int, model, tokenizer, split_file: Path, encoded, run
) -> tuple:
    """One row of outputs per function, and what was read of the long ones. Where no function
    is cut into windows, the training encoding is the input; else each window is scored and a
    function takes its most vulnerable window's outputs (with a benign class), else their
    mean. `run(encoded_split)` is the model's inference."""
    from enstack.encode import encode_texts

    rows = _windows(config, length, split_file, model, tokenizer)
    coverage = {"functions": len(encoded), "long": rows.long, "lines": rows.lines,
                "lines_seen": rows.lines_seen}  # fmt: skip
    if len(rows.windows) == len(encoded):
        return run(encoded), coverage
    windows = encode_texts(
        [w.text for w in rows.windows],
        tokenizer,
        model.config.enstack["family"],
        length,
        dfg_length=int(model.config.enstack.get("dfg_length", 0)),
        labels=encoded.labels[rows.owner],
    )
    outputs = run(windows)
    return aggregate(outputs, rows.owner, len(encoded), config.data.benign_id)[0], coverage


def _extract_to(
    tmp: Path,
    config: Config,
    export: Path,
    manifest: PreparedData,
    fingerprint: str,
    progress: bool | None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, int]]]:
    """Write the features into `tmp`; returns them (split -> kind -> array) and coverage."""
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
    length = _length(export, model)  # the export's encoding length, read once
    outputs, coverage = {}, {}
    for split in FEATURE_SPLITS:
        desc = f"features {export.parent.name} {split}"
        batch = config.stacking.extract_batch_size

        def run(encoded, desc=desc, batch=batch):
            return predict(model, encoded, batch, device, amp, desc, progress)

        split_file = data_dir / f"{split}.parquet"
        outputs[split], coverage[split] = _split_outputs(
            config, length, model, tokenizer, split_file, splits[split], run
        )
        save_file(outputs[split], str(tmp / f"{split}.safetensors"))
        ids = pq.read_table(data_dir / f"{split}.parquet", columns=["id"])
        pq.write_table(ids, tmp / f"{split}_ids.parquet")
    (tmp / "meta.json").write_text(
        json.dumps(
            {
                "fingerprint": fingerprint,
                "pooling": model.pooling,
                "family": family,
                "coverage": coverage,
            }
        )
        + "\n"
    )
    return outputs, coverage
