"""Whether a model's training run is already done: read from the config and the checkpoints'
JSON, without torch or transformers, so that `run` and `train` on a finished model answer in a
second or two instead of loading every library first. Imports the trainer only to train.
"""

from __future__ import annotations

import os

from enstack.ckpt.layout import newest_valid
from enstack.config import Config
from enstack.data.record import TrainingData
from enstack.run_layout import staging_path
from enstack.train.records import TrainResult, TrainState
from enstack.train.trajectory import as_checkpoint_trained, run_fingerprint


def finished_training(config: Config, name: str, manifest: TrainingData) -> TrainResult | None:
    """The finished run of model `name`, when its newest valid checkpoint is finished, was
    written for this config and this prepared data, and its export is in place; else None (the
    trainer then decides: resume, refuse a changed config, or re-export)."""
    paths = config.layout.model(name)
    if not (paths.final / "model.safetensors").is_file():
        return None
    staging = config.training.staging_dir
    places = [paths.checkpoints]
    if staging:
        places.append(staging_path(staging, config.run_dir, name))
    found, _ = newest_valid(places)
    if found is None or not found.state.get("finished"):
        return None
    saved = found.state
    settled = as_checkpoint_trained(config, saved)
    if saved.get("config_hash") != run_fingerprint(settled, settled.model(name)):
        return None
    if saved.get("data_hash") != manifest.data_fingerprint:
        return None
    state = TrainState(**{k: saved[k] for k in TrainState.__dataclass_fields__ if k in saved})
    return TrainResult(paths, state, found.path, True)


def nothing_asked_beyond_done(resume: str, force_resume: bool) -> bool:
    """Whether a finished model answers "already trained" without the trainer: the default
    resume, nothing forced, one process (under torchrun every rank takes the trainer's path,
    which agrees on it collectively)."""
    return resume == "auto" and not force_resume and int(os.environ.get("WORLD_SIZE", "1")) <= 1


def train_unless_done(
    config: Config,
    name: str,
    resume: str = "auto",
    progress: bool | None = None,
    force_resume: bool = False,
    manifest: TrainingData | None = None,
) -> TrainResult:
    """Train model `name`, or, when nothing asks for more and it is finished, say so without
    loading torch or transformers: the entry the CLI, the pipeline and the API share.
    `manifest`: prepared data the caller already checked."""
    config.model(name)  # a bad name is reported before any work
    if nothing_asked_beyond_done(resume, force_resume):
        if manifest is None:
            from enstack.data.prepare import prepare

            manifest = prepare(config, progress).manifest
        done = finished_training(config, name, manifest)
        if done is not None:
            print(f"{name}: already trained ({done.resumed_from})")
            return done
    from enstack.train.trainer import train_model

    return train_model(config, name, resume, progress, force_resume, manifest=manifest)
