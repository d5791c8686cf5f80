"""The model families enstack knows: where their weights live and how their input looks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    hub_id: str | None
    pooling: str  # "cls" or "mean"
    # Tokens between <s> and the code. UniXcoder's encoder-only mode reads
    # `<s> <encoder-only> </s> code </s>`; the others read `<s> code </s>`.
    prefix: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    "codebert": Family("codebert", "microsoft/codebert-base", "cls"),
    "graphcodebert": Family("graphcodebert", "microsoft/graphcodebert-base", "cls"),
    "unixcoder": Family(
        "unixcoder", "microsoft/unixcoder-base", "mean", ("<encoder-only>", "</s>")
    ),
    "auto": Family("auto", None, "cls"),
}

# Architectures whose encoder and tokenizer conventions (<s>, </s>, <pad>, absolute positions)
# enstack handles: the BERT/RoBERTa family.
SUPPORTED_MODEL_TYPES = {"roberta", "bert", "xlm-roberta", "camembert", "electra", "deberta-v2"}
# Encoders whose positions start after the padding id, as GraphCodeBERT's graph input assumes
# (nodes at 0, padding at 1, code from 2).
GRAPH_ENCODER_TYPES = {"roberta", "xlm-roberta", "camembert"}

# The model types enstack gives exports that other tools must not read as plain encoders
# (train/export.py writes them, models/loading.read_hf_config reads them back): mean-pooled
# ones (equal to `hf_mean_pooled.MODEL_TYPE`, which the shipped file spells itself) and ones
# that read a data-flow graph (no code ships for those: transformers refuses them).
MEAN_POOLED_TYPE = "enstack-mean-pooled"
GRAPH_INPUT_TYPE = "enstack-graph-input"
ENSTACK_MODEL_TYPES = (MEAN_POOLED_TYPE, GRAPH_INPUT_TYPE)


def pooling_of(family: str, configured: str) -> str:
    return FAMILIES[family].pooling if configured == "auto" else configured
