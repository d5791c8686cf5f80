"""The demo's synthetic data: deterministic, balanced, distinct, and not given away by a token."""

from __future__ import annotations

import re

import numpy as np

from enstack.data.synthetic import generate


def _rows(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    chunks = list(generate(n, seed, chunk_rows=97))
    return [c for ch in chunks for c in ch.codes], np.concatenate([ch.labels for ch in chunks])


def test_same_seed_same_functions_other_seed_others() -> None:
    a, la = _rows(50, 1)
    b, lb = _rows(50, 1)
    c, _ = _rows(50, 2)
    assert a == b and np.array_equal(la, lb)
    assert a != c


def test_balanced_and_distinct() -> None:
    codes, labels = _rows(100, 0)
    assert np.bincount(labels).tolist() == [100] * 5
    assert len({" ".join(c.split()) for c in codes}) == len(codes)


def test_no_single_token_gives_the_class_away() -> None:
    """For every class, the best rule "token t present => class" stays well below F1 0.75."""
    codes, labels = _rows(200, 3)
    token_sets = [set(re.findall(r"[A-Za-z_]\w*|\d+|<=|->|[-+*/%]", code)) for code in codes]
    vocabulary = set().union(*token_sets)
    for cls in range(5):
        in_class = labels == cls
        best = 0.0
        for token in vocabulary:
            has = np.fromiter((token in s for s in token_sets), bool, len(codes))
            tp = (has & in_class).sum()
            if tp == 0:
                continue
            precision, recall = tp / has.sum(), tp / in_class.sum()
            best = max(best, 2 * precision * recall / (precision + recall))
        assert best < 0.75, (cls, best)
