"""A statement as the ranker reads it: hashed tokens, token bigrams and a length, each also
crossed with the function's class (a CWE-476 flaw looks like a dereference, a CWE-120 one like
a copy). Stateless: the same vectoriser is rebuilt at scan time from these settings alone."""

from __future__ import annotations

import re
from itertools import pairwise

HASH_FEATURES = 2**18
MAX_LENGTH_FEATURE = 12  # statements of this many tokens or more share one length feature
C_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|==|!=|<=|>=|->|\+\+|--|&&|\|\||<<|>>|[^\s\w]")


def normal(line: str) -> str:
    """A line with its whitespace runs made one space."""
    return " ".join(line.split())


def statement_text(lines: list[str], span: list[int]) -> str:
    return " ".join(normal(lines[i]) for i in span)


def features(statement: str, class_name: str) -> str:
    tokens = C_TOKEN.findall(statement)
    # its length in tokens: each statement's features are scaled to unit length, so without
    # it a short line of common tokens (`fn0(&data);`) outscores a longer one holding the flaw
    length = f"LEN{min(len(tokens), MAX_LENGTH_FEATURE)}"
    plain = [*tokens, *(f"{a}_{b}" for a, b in pairwise(tokens)), length]
    return " ".join(plain + [f"{class_name}|{t}" for t in plain])


def vectorizer():
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=HASH_FEATURES,
        token_pattern=r"\S+",
        lowercase=False,
        alternate_sign=False,
        norm="l2",
    )
