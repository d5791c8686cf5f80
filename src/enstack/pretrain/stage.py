"""`enstack pretrain --config CFG`: the corpus, then the encoder's masked-language training.

The run lives in `run_dir/pretrain/` with the layout of any run (data/: the corpus; cache/;
models/encoder/: base/, checkpoints/, best/, final/, tb/, metrics.jsonl), so its checkpoints
resume as every model's do. `models/encoder/best` is the model to fine-tune from
(`models.N.pretrained`); it also loads in `transformers.pipeline("fill-mask")`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from enstack.config import Config, ModelConfig
from enstack.data.record import TrainedOn
from enstack.device import pick_device
from enstack.fsutil import read_json_object, sha256_json
from enstack.pretrain.corpus import Corpus, build_corpus
from enstack.train.distributed import Dist, process_group
from enstack.train.records import TrainResult

ENCODER = "encoder"  # the model's name under run_dir/pretrain/models/


@dataclass(frozen=True)
class PretrainResult:
    model: Path  # the best export: what fine-tuning takes
    train: TrainResult
    corpus: Corpus


def pretrain_config(config: Config) -> Config:
    """The pretraining run: under run_dir/pretrain, one encoder, pretrain's epochs, rate and
    length where it sets them."""
    p = config.pretrain
    update = {
        key: value
        for key, value in (
            ("epochs", p.epochs),
            ("learning_rate", p.learning_rate),
            ("max_length", p.max_length),
            ("long_functions", "windows"),
        )
        if value is not None
    }
    training = config.training.model_copy(update={**update, "pairwise": False})
    if p.continue_from is not None:
        model = ModelConfig(name=ENCODER, family=p.family, pretrained=str(p.continue_from))
    else:
        model = ModelConfig(name=ENCODER, family=p.family, scratch=p.model)
    return config.model_copy(
        update={"run_dir": config.layout.pretrain, "models": [model], "training": training}
    )


def run_pretrain(
    config: Config, progress: bool | None = None, resume: str = "auto", force_resume: bool = False
) -> PretrainResult:
    """Build (or reuse) the corpus, then pretrain; under torchrun, rank 0 builds the corpus
    and every rank trains on it."""
    run = pretrain_config(config)
    with process_group(pick_device(run.training.device).type == "cuda") as ranks:
        if ranks.main:  # under the pretrain lock
            corpus = build_corpus(config, run.layout.data, progress)
        ranks.barrier()
        if not ranks.main:
            manifest = read_json_object(run.layout.data / "manifest.json") or {}
            corpus = Corpus(run.layout.data, manifest)
        return _train(config, run, corpus, ranks, progress, resume, force_resume)


def _train(
    config: Config,
    run: Config,
    corpus: Corpus,
    ranks: Dist,
    progress: bool | None,
    resume: str,
    force_resume: bool,
) -> PretrainResult:
    from enstack.pretrain.trainer import MaskedLMTrainer

    p = config.pretrain
    manifest = TrainedOn.model_validate(
        {
            "labels": ["code"],
            "corpus": {k: v for k, v in corpus.manifest.items() if k != "sources_key"},
            "corpus_fingerprint": corpus.manifest["data_fingerprint"],
            # the masking rule is part of what is learned: a checkpoint trained under another
            # one does not resume (the trainer compares this fingerprint)
            "data_fingerprint": sha256_json(
                {"corpus": corpus.manifest["data_fingerprint"], "mask": p.mask_probability}
            ),
        }
    )
    trainer = MaskedLMTrainer(
        run,
        run.model(ENCODER),
        manifest,
        progress if ranks.main else False,
        ranks,
        continue_from=p.continue_from,
        probability=p.mask_probability,
    )
    with trainer.lock() if ranks.main else contextlib.nullcontext():
        result = trainer.run(trainer.select_checkpoint(resume), force_resume)
    return PretrainResult(result.paths.best, result, corpus)
