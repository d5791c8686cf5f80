"""`enstack pretrain`: masked-language pretraining with every guarantee `enstack train` gives.

`MaskedLMTrainer` is enstack's Trainer with another model, batch and loss: mid-epoch
checkpoints, exact resume after a SIGKILL, SIGTERM saves and exits 130, progress (with
tokens/s), TensorBoard and metrics.jsonl, and torchrun data-parallel all come from it
unchanged. What differs:
- the model: `RobertaForMaskedLM`-style (`AutoModelForMaskedLM`), new or continued from a
  local directory;
- a batch: rows of the corpus with tokens masked by a generator seeded from the step
  (`tokens.step_generator`), so a resumed step masks what the uninterrupted one did;
- validation: the MLM loss on the held-out functions under one fixed masking; the best
  epoch is the lowest (kept in the state as 1 / perplexity, a score in [0, 1]);
- exports: `save_pretrained` of the MLM model with its tokenizer, which
  `transformers.pipeline("fill-mask")` loads and `models.N.pretrained` fine-tunes from.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from enstack import log
from enstack.encode import EncodedSplit, ModelInputs
from enstack.errors import UserError
from enstack.fsutil import staged_dir
from enstack.models.loading import (
    check_max_length,
    check_tokenizer,
    load_base,
    scratch_config,
    train_scratch_tokenizer,
)
from enstack.pretrain.corpus import iter_codes
from enstack.pretrain.tokens import (
    MaskedSplit,
    Masking,
    encode_corpus,
    mask_tokens,
    step_generator,
)
from enstack.train.trainer import Trainer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

LOG = log.get(__name__)

PRETRAIN_FILE = "enstack-pretrain.json"  # what the export was pretrained on, and how far


class MaskedLMTrainer(Trainer):
    def __init__(
        self, *args: Any, continue_from: Path | None, probability: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.continue_from = continue_from
        self.probability = probability
        self._tokens_since = 0  # code tokens trained on since the last log line
        self._since = time.perf_counter()

    # --- data and model -------------------------------------------------------------------

    def _base_and_tokens(self, data_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
        """base/: the tokenizer (trained on the corpus, or the continued model's) and the
        encoder's config; then the corpus's rows."""
        if not (self.paths.base / "config.json").is_file():
            self._write_base(data_dir)
        hf_config, tokenizer = load_base(self.paths.base)
        splits = encode_corpus(
            data_dir,
            self.manifest["corpus_fingerprint"],
            self.paths.base,
            tokenizer,
            self.model_cfg.family,
            self.tc.max_length,
            self.config.layout.token_cache,
            self.progress,
        )
        return hf_config, tokenizer, splits

    def _rows(self, split: str) -> MaskedSplit:
        """A split of the corpus (what `_base_and_tokens` encoded: rows without labels)."""
        session = self.session
        return cast(MaskedSplit, session.train_split if split == "train" else session.val_split)

    @functools.cached_property
    def masking(self) -> Masking:
        """BERT's masking rule over base/'s tokenizer (read once, when the first batch is)."""
        hf_config, tokenizer = load_base(self.paths.base)
        return Masking.of(tokenizer, self.model_cfg.family, self.probability, hf_config.vocab_size)

    def _write_base(self, data_dir: Path) -> None:
        if self.continue_from is not None:
            config, tokenizer = _continued(self.continue_from, self.tc.max_length)
        else:
            self._say(f"{self.model_cfg.name}: training a BPE tokenizer on the corpus")
            codes = iter_codes(data_dir / "train.parquet")
            tokenizer = train_scratch_tokenizer(self.model_cfg, codes)
            config = scratch_config(self.model_cfg, ["code"], self.tc.max_length, len(tokenizer))
        config.enstack = {"family": self.model_cfg.family, "pooling": "cls", "source": "pretrain"}
        with staged_dir(self.paths.base) as tmp:
            config.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)

    def _new_model(self, hf_config: Any, fresh: bool) -> torch.nn.Module:
        """A masked-language model: the continued one's weights on a fresh start, else random
        (a checkpoint's are about to replace them)."""
        from transformers import AutoModelForMaskedLM

        if fresh and self.continue_from is not None:
            return _load_mlm(self.continue_from, hf_config)
        return AutoModelForMaskedLM.from_config(hf_config)

    def _class_weights(self, train_split: EncodedSplit) -> torch.Tensor | None:
        return None  # no classes: every masked token counts once

    # --- a step ---------------------------------------------------------------------------

    def _batch(self, rows: np.ndarray, micro: int) -> tuple[ModelInputs, torch.Tensor]:
        generator = step_generator(self.seed + self.ranks.rank, self.state.global_step, micro)
        inputs, labels = mask_tokens(self._rows("train").collate(rows), self.masking, generator)
        self._tokens_since += int(inputs.attention_mask.sum())
        return inputs.to(self.device), labels.to(self.device)

    def _loss(self, inputs: ModelInputs, targets: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return self.session.forward(
            input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, labels=targets
        ).loss.float()

    def _train_scalars(self) -> dict[str, float]:
        now = time.perf_counter()
        rate = self._tokens_since * self.ranks.world / max(now - self._since, 1e-9)
        self._tokens_since, self._since = 0, now
        return {"tokens_per_s": rate}

    # --- validation -----------------------------------------------------------------------

    def _validate(self) -> dict:
        """The mean loss over the val rows' masked tokens, under one masking for every
        epoch (seeded by the run's seed): epochs are compared on the same questions."""
        model, val_split = self.session.model, self._rows("val")
        model.eval()
        generator = step_generator(self.seed, -1, 0)
        order = np.argsort(val_split.lengths, kind="stable")
        total, counted = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(order), self.tc.batch_size * 2):
                rows = order[start : start + self.tc.batch_size * 2]
                inputs, labels = mask_tokens(val_split.collate(rows), self.masking, generator)
                out = model(
                    input_ids=inputs.input_ids.to(self.device),
                    attention_mask=inputs.attention_mask.to(self.device),
                    labels=labels.to(self.device),
                )
                n = int((labels != -100).sum())
                total += float(out.loss) * n
                counted += n
        model.train()
        loss = total / max(counted, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "masked_tokens": counted}

    def _selection_score(self, metrics: dict) -> float:
        """1 / perplexity (a checkpoint's best score is in [0, 1]): the lowest val MLM loss
        is the best epoch."""
        return math.exp(-metrics["loss"])

    def _epoch_report(self, metrics: dict, improved: bool) -> None:
        self._say(
            f"{self.model_cfg.name} epoch {self.state.epoch + 1}: val MLM loss "
            f"{metrics['loss']:.4f}, perplexity {metrics['perplexity']:.2f} over "
            f"{metrics['masked_tokens']} masked tokens{' (best)' if improved else ''}"
        )

    # --- exports --------------------------------------------------------------------------

    def _export(self, out_dir: Path) -> None:
        """A Hugging Face model directory: the MLM model, its tokenizer, and what it was
        pretrained on (`enstack-pretrain.json`)."""
        s = self.state
        record = {
            "epoch": s.epoch,
            "global_step": s.global_step,
            "val": s.last_eval,
            "family": self.model_cfg.family,
            "max_length": self.tc.max_length,
            "mask_probability": self.probability,
            "continued_from": str(self.continue_from) if self.continue_from else None,
            "corpus": self.manifest["corpus"],
        }
        with staged_dir(out_dir) as tmp, _without_transformers_bars():
            model = cast("PreTrainedModel", self.session.model)
            model.save_pretrained(tmp, safe_serialization=True)
            for path in self.paths.base.iterdir():
                if path.is_file() and path.name != "config.json":
                    shutil.copy2(path, tmp / path.name)
            (tmp / PRETRAIN_FILE).write_text(json.dumps(record, indent=2) + "\n")

    def _windows_note(self) -> str:
        split = self._rows("train")
        return f" (windows of {split.functions} functions), {split.token_count} tokens"


@contextlib.contextmanager
def _without_transformers_bars() -> Iterator[None]:
    """transformers draws a bar for each save and load; enstack's own progress is the one
    shown (a save mid-epoch would otherwise break the training bar's line)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _continued(directory: Path, max_length: int) -> tuple[Any, Any]:
    """The config and tokenizer of a local model directory to continue pretraining."""
    from transformers import AutoTokenizer

    from enstack.models.loading import read_hf_config

    if not (directory / "config.json").is_file():
        raise UserError(
            f"pretrain.continue_from: {directory} is not a Hugging Face model directory "
            "(no config.json)"
        )
    config = read_hf_config(directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"pretrain.continue_from: {directory}: no tokenizer ({exc})") from None
    source = f"pretrain.continue_from ({directory})"
    check_tokenizer(tokenizer, source)
    if tokenizer.mask_token_id is None:
        raise UserError(f"{source}: its tokenizer has no mask token, so it cannot pretrain")
    if len(tokenizer) > config.vocab_size:
        raise UserError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens but the model's embeddings "
            f"{config.vocab_size}: they do not belong together"
        )
    check_max_length(config, max_length, source)
    _check_mlm_head(directory)
    return config, tokenizer


MLM_HEAD_PREFIXES = ("lm_head.", "cls.predictions.")  # RoBERTa-type, BERT-type


def _check_mlm_head(directory: Path) -> None:
    """Refuse, before anything is written, weights without a masked-language head (an
    encoder or a classifier export): read from the safetensors header alone. Other weight
    files are checked as they load (`_load_mlm`)."""
    from safetensors import SafetensorError, safe_open

    weights = directory / "model.safetensors"
    if not weights.is_file():
        return
    try:
        with safe_open(str(weights), framework="pt") as handle:
            names = list(handle.keys())
    except (OSError, SafetensorError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise UserError(f"pretrain.continue_from: {weights}: unreadable ({reason})") from None
    if not any(name.startswith(MLM_HEAD_PREFIXES) for name in names):
        raise UserError(
            f"pretrain.continue_from: {directory}: no masked-language head in its weights; "
            "continue from a model saved with its MLM head (AutoModelForMaskedLM)"
        )


def _load_mlm(directory: Path, config: Any) -> torch.nn.Module:
    """The continued model with its MLM head; a directory whose weights lack the head (an
    encoder or classifier export) is refused rather than given a random one."""
    import pickle

    from safetensors import SafetensorError
    from transformers import AutoModelForMaskedLM

    try:
        with _without_transformers_bars():
            model, info = AutoModelForMaskedLM.from_pretrained(
                directory, config=config, output_loading_info=True
            )
    except pickle.UnpicklingError:
        raise UserError(
            f"pretrain.continue_from: {directory}: its weights are a pickle holding more than "
            "tensors; refused (nothing in it ran). Use model.safetensors"
        ) from None
    except (OSError, ValueError, RuntimeError, EOFError, SafetensorError) as exc:
        reason = " ".join(str(exc).split())[:200]
        message = f"pretrain.continue_from: {directory}: unreadable weights ({reason})"
        raise UserError(message) from None
    missing = list(info.get("missing_keys") or []) + list(info.get("mismatched_keys") or [])
    head = [k for k in missing if "lm_head" in str(k) or "predictions" in str(k)]
    if head:
        raise UserError(
            f"pretrain.continue_from: {directory}: no masked-language head ({head[0]} missing); "
            "continue from a model saved with its MLM head (AutoModelForMaskedLM)"
        )
    if missing:
        raise UserError(
            f"pretrain.continue_from: {directory}: the weights lack {len(missing)} tensor(s) "
            f"(first: {missing[0]}); the file is damaged or for another model"
        )
    return model
