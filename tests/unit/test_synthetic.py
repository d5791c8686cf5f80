"""The demo's synthetic data: deterministic, balanced, distinct, and not given away by a token."""

from __future__ import annotations

import difflib
import re

import numpy as np

from enstack.config import DataConfig
from enstack.data.synthetic import generate
from enstack.labels import PAPER_LABELS


def _data(n: int, benign: bool = False) -> DataConfig:
    labels = [*PAPER_LABELS, "none"] if benign else list(PAPER_LABELS)
    return DataConfig(synthetic={"n_per_class": n}, chunk_rows=97, labels=labels)


def _rows(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    chunks = list(generate(_data(n), seed))
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


def test_benign_twins_differ_from_their_flaw_only_at_the_flaw() -> None:
    """Each flawed function has one fixed twin (class none, same pair id) of the same shape."""
    chunks = list(generate(_data(40, benign=True), 5))
    codes = [c for ch in chunks for c in ch.codes]
    labels = np.concatenate([ch.labels for ch in chunks])
    pairs = [p for ch in chunks for p in ch.pairs]
    assert np.bincount(labels).tolist() == [40] * 5 + [200]
    by_pair: dict[str, list[int]] = {}
    for row, pair in enumerate(pairs):
        by_pair.setdefault(pair, []).append(row)
    assert len(by_pair) == 200
    for rows in by_pair.values():
        assert sorted(labels[rows] == 5) == [False, True]  # one flawed, one benign
        flawed, fixed = (codes[r] for r in sorted(rows, key=lambda r: labels[r] == 5))
        changed = [
            line
            for line in difflib.unified_diff(flawed.splitlines(), fixed.splitlines(), n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        assert 1 <= len(changed) <= 4, changed  # a bound, a check, a size: not a new function


def test_paper_classes_unchanged_without_a_benign_label() -> None:
    chunks = list(generate(_data(30), 7))
    assert all(ch.pairs is None for ch in chunks)
    assert np.concatenate([ch.labels for ch in chunks]).max() == 4
