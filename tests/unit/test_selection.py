"""Split, dedup and downsampling rules on plain arrays."""

from __future__ import annotations

import numpy as np

from enstack.data.selection import (
    SplitRules,
    StagedSource,
    downsample,
    first_occurrences,
    plan_splits,
    stratified_split,
)
from enstack.labels import PAPER_LABELS, TABLE_I


def test_stratified_split_keeps_class_proportions() -> None:
    labels = np.repeat(np.arange(5), [1000, 500, 50, 250, 2200]).astype(np.int16)
    parts = stratified_split(
        labels, {"train": 0.8, "val": 0.1, "test": 0.1}, np.random.default_rng(0)
    )
    assert sum(len(p) for p in parts.values()) == len(labels)
    assert len(np.unique(np.concatenate(list(parts.values())))) == len(labels)  # disjoint
    for cls, n in enumerate([1000, 500, 50, 250, 2200]):
        assert (labels[parts["val"]] == cls).sum() == round(n * 0.1)
        assert (labels[parts["test"]] == cls).sum() == round(n * 0.1)
        assert (labels[parts["train"]] == cls).sum() == n - 2 * round(n * 0.1)


def test_split_is_seeded_and_seed_matters() -> None:
    labels = np.repeat(np.arange(5), 40).astype(np.int16)
    fractions = {"train": 0.8, "val": 0.1, "test": 0.1}
    a = stratified_split(labels, fractions, np.random.default_rng(7))
    b = stratified_split(labels, fractions, np.random.default_rng(7))
    c = stratified_split(labels, fractions, np.random.default_rng(8))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["val"], c["val"])


def test_first_occurrences_keeps_first_in_file_order() -> None:
    hashes = np.array([5, 3, 5, 9, 3, 1], dtype=np.uint64)
    assert first_occurrences(hashes).tolist() == [0, 1, 3, 5]


def test_downsample_caps_each_class() -> None:
    labels = np.repeat(np.arange(3), [100, 10, 50]).astype(np.int16)
    kept = downsample(labels, np.arange(160), {0: 20, 1: 20, 2: 20}, np.random.default_rng(0))
    counts = np.bincount(labels[kept], minlength=3)
    assert counts.tolist() == [20, 10, 20]  # a class with fewer rows keeps all of them
    assert np.all(np.diff(kept) > 0)


def _source(counts: list[int], offset: int) -> StagedSource:
    labels = np.repeat(np.arange(5), counts).astype(np.int16)
    hashes = (np.arange(len(labels)) + offset).astype(np.uint64)
    return StagedSource(labels=labels, hashes=hashes)


def test_paper_downsampling_uses_table_one_per_split() -> None:
    sources = {
        "train": _source([7000, 6000, 300, 100, 9000], 0),
        "val": _source([2000, 1000, 60, 600, 2000], 10**6),
        "test": _source([2000, 2000, 10, 600, 2000], 2 * 10**6),
    }
    plan = plan_splits(sources, SplitRules(list(PAPER_LABELS), "paper", seed=1))
    for split, parts in plan.parts.items():
        ((key, positions),) = parts
        counts = np.bincount(sources[key].labels[positions], minlength=5)
        available = np.bincount(sources[key].labels, minlength=5)
        expected = [min(TABLE_I[split][n], int(available[i])) for i, n in enumerate(PAPER_LABELS)]
        assert counts.tolist() == expected


def test_max_per_class_applies_to_train_only() -> None:
    sources = {"all": _source([300, 300, 300, 300, 300], 0)}
    plan = plan_splits(sources, SplitRules(list(PAPER_LABELS), 100, seed=1))
    train = sources["all"].labels[plan.parts["train"][0][1]]
    val = sources["all"].labels[plan.parts["val"][0][1]]
    assert np.bincount(train).tolist() == [100] * 5
    assert np.bincount(val).tolist() == [30] * 5
    assert plan.downsampled == {"train": 5 * 140, "val": 0, "test": 0}


def test_val_is_halved_into_val_and_test_when_no_test_source() -> None:
    sources = {"train": _source([10] * 5, 0), "val": _source([20] * 5, 1000)}
    plan = plan_splits(sources, SplitRules(list(PAPER_LABELS), "none", seed=3))
    val = plan.parts["val"][0][1]
    test = plan.parts["test"][0][1]
    assert plan.parts["test"][0][0] == "val"
    assert len(val) == len(test) == 50 and not set(val) & set(test)
