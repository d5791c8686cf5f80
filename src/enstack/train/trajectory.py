"""What decides a model's training trajectory, and a decision for every training setting.

A checkpoint records the fingerprint of the settings that decide its weights; a resume under
another fingerprint is refused (or forced). So every setting a model's training reads has a
decision here, and a test fails when one is added without it:
- ON: it changes the weights; it is in the fingerprint.
- OFF: it changes where and how often things are written, or which hardware runs the same
  arithmetic, not the weights; it is left out, and a resume with it changed is exact.
- AddedLater(value): it changes the weights, but runs from before it existed trained as if it
  had `value`; at that value it is left out, so their fingerprints (and checkpoints) hold.
- DECIDED: the setting's effect is decided elsewhere and hashed as decided (the graph: on by
  default for graphcodebert, whose runs from before it had none).

Read without torch or transformers: `run` and `train` on a finished model answer in a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from enstack.config import Config, ModelConfig, TrainingConfig
from enstack.fsutil import sha256_json

ON = "on"
OFF = "off"
DECIDED = "decided"


@dataclass(frozen=True)
class AddedLater:
    old_value: object  # what runs from before the setting trained with


Decision = str | AddedLater

TRAINING: dict[str, Decision] = {
    "epochs": ON,
    "batch_size": ON,
    "learning_rate": ON,
    "weight_decay": ON,
    "scheduler": ON,
    "warmup_ratio": ON,
    "grad_accum_steps": ON,
    "max_grad_norm": ON,
    "max_length": ON,
    "amp": ON,
    "class_weights": ON,
    "early_stopping_patience": ON,
    "dfg_length": DECIDED,  # hashed only for a model that reads a graph
    "save_steps": OFF,
    "keep_checkpoints": OFF,
    "staging_dir": OFF,
    "log_steps": OFF,
    "device": OFF,
    "num_threads": OFF,
    # deterministic CUDA kernels: the same arithmetic on CPU, another on GPU
    "deterministic": AddedLater(False),
    # windows of long functions as training rows; runs from before trained on the first
    # window (truncation), and go on so unless the user sets it (`as_checkpoint_trained`)
    "long_functions": AddedLater("truncate"),
    # the pairwise term and its batch order; runs from before trained without it
    "pairwise": AddedLater(False),
    "pair_margin": AddedLater(1.0),
    "pair_weight": AddedLater(1.0),
}
MODEL: dict[str, Decision] = {
    "name": ON,
    "family": ON,
    "pretrained": ON,
    "scratch": ON,
    "pooling": ON,
    "dfg": DECIDED,  # as decided (`ModelConfig.uses_dfg`), not as written
}
SCRATCH: dict[str, Decision] = {
    "layers": ON,
    "hidden": ON,
    "heads": ON,
    "intermediate": ON,
    "vocab_size": ON,
    "dropout": ON,
    "attention_dropout": AddedLater(None),
}
OFF_TRAJECTORY_KEYS = frozenset(key for key, rule in TRAINING.items() if rule == OFF)
# What a run directory's record (run.json) leaves out: the settings that change no weights,
# and those added with a default other than what old runs trained with, which a checkpoint
# settles for itself (`as_checkpoint_trained`: an old run goes on truncated), so an old
# directory is not refused for a default added since
RUN_DIR_IGNORES = OFF_TRAJECTORY_KEYS | {
    key
    for key, rule in TRAINING.items()
    if isinstance(rule, AddedLater) and TrainingConfig.model_fields[key].default != rule.old_value
}


def trajectory_settings(config: Config, model: ModelConfig, world: int = 1) -> dict:
    """What decides the trajectory. The number of ranks is part of it (it sets the global
    batch); it is left out for one process so single-process checkpoints keep their hash."""
    training = _decided(config.training.model_dump(mode="json"), TRAINING)
    dumped = _decided(model.model_dump(mode="json"), MODEL)
    if dumped["scratch"] is not None:
        dumped["scratch"] = _decided(dumped["scratch"], SCRATCH)
    # the graph as decided, not as written (`dfg` unset means on for graphcodebert)
    del dumped["dfg"]
    if model.uses_dfg:
        dumped["dfg"] = True
    else:
        del training["dfg_length"]
    extra = {"world": world} if world > 1 else {}
    return {
        **extra,
        "seed": config.seed,
        "model": dumped,
        "training": training,
        "labels": config.data.labels,
    }


def run_fingerprint(config: Config, model: ModelConfig, world: int = 1) -> str:
    return sha256_json(trajectory_settings(config, model, world))


def _decided(values: dict, rules: dict[str, Decision]) -> dict:
    """`values` as the fingerprint reads them (the DECIDED ones are left to the caller)."""
    out = {}
    for key, value in values.items():
        rule = rules[key]  # a KeyError here is a setting nobody decided on: see the test
        if rule == OFF:
            continue
        if isinstance(rule, AddedLater) and value == rule.old_value:
            continue
        out[key] = value
    return out


def as_checkpoint_trained(config: Config, saved: dict | None) -> Config:
    """`config` with each training setting added to enstack after the checkpoint `saved` (its
    state) was written, and not set by the user, at the value that checkpoint trained with:
    an old run resumes (or is found finished) as it trained, while a new run gets the new
    default. A setting the user sets is theirs: a difference is then a changed setting."""
    if saved is None:
        return config
    recorded = saved.get("config")
    recorded = recorded.get("training") if isinstance(recorded, dict) else None
    recorded = recorded if isinstance(recorded, dict) else {}
    chosen = config.training.model_fields_set
    settled = {
        key: rule.old_value
        for key, rule in TRAINING.items()
        if isinstance(rule, AddedLater) and key not in recorded and key not in chosen
    }
    settled = {k: v for k, v in settled.items() if getattr(config.training, k) != v}
    if not settled:
        return config
    return config.model_copy(update={"training": config.training.model_copy(update=settled)})
