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


def pooling_of(family: str, configured: str) -> str:
    return FAMILIES[family].pooling if configured == "auto" else configured
