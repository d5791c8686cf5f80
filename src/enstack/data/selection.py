"""Which staged rows go to which split: pure functions over label and hash arrays.

Kept apart from file handling so that the rules (dedup, leakage, stratified split, downsample)
can be read and tested on small arrays. Positions always index the rows a source kept after
filtering, in file order, and every result is returned in file order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from enstack.labels import TABLE_I

SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


@dataclass
class StagedSource:
    """The rows one source kept after filtering: class ids and whitespace-normalised hashes."""

    labels: np.ndarray  # int16
    hashes: np.ndarray  # uint64
    pairs: np.ndarray | None = None  # int64 pair ids (a row without one has its own)
    groups: np.ndarray | None = None  # int64 group ids (data.group_column), the same way

    @property
    def split_units(self) -> np.ndarray | None:
        """What a split must keep whole: groups when there are any (a group holds its pairs),
        else pairs, else nothing (rows split one by one)."""
        return self.groups if self.groups is not None else self.pairs


@dataclass
class SplitPlan:
    """For each split, (source key, positions into that source's staged rows)."""

    parts: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)  # per source
    cross_split_duplicates: dict[str, int] = field(default_factory=dict)  # per split
    downsampled: dict[str, int] = field(default_factory=dict)  # per split
    # texts that occur with more than one label (a fixed function identical to a flawed one,
    # one pair under two CWEs): kept once, with the first row's label; counted per source
    conflicting_labels: dict[str, int] = field(default_factory=dict)


def first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """Positions of the first row of each distinct hash, in file order."""
    _, first = np.unique(hashes, return_index=True)
    return np.sort(first)


def conflicting_labels(hashes: np.ndarray, labels: np.ndarray) -> int:
    """How many distinct texts occur with more than one label."""
    if not len(hashes):
        return 0
    pairs = np.unique(np.stack([hashes, labels.astype(np.uint64)], axis=1), axis=0)
    _, per_text = np.unique(pairs[:, 0], return_counts=True)
    return int((per_text > 1).sum())


def stratified_split(
    labels: np.ndarray, fractions: dict[str, float], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Split positions per class by `fractions` (the first split takes the rounding remainder).

    Counts per class are rounded half up, so small classes go to the first split first.
    """
    names = list(fractions)
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n = len(members)
        counts = [math.floor(n * fractions[name] + 0.5) for name in names[1:]]
        counts = [n - sum(counts), *counts]
        if counts[0] < 0:  # only possible with fractions that do not sum to 1
            raise ValueError(f"fractions {fractions} do not leave rows for {names[0]}")
        start = 0
        for name, count in zip(names, counts, strict=True):
            out[name].append(members[start : start + count])
            start += count
    return {
        name: np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)
        for name, parts in out.items()
    }


def grouped_split(
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: dict[str, float],
    rng: np.random.Generator,
    benign_id: int | None,
) -> dict[str, np.ndarray]:
    """`stratified_split` over whole groups: a group's rows all land in one split.

    A group is stratified by its first vulnerable row's class (its first row's when it has
    none), so a flawed function and its fixes count where the flaw's class does.
    """
    benign = labels == benign_id if benign_id is not None else np.zeros(len(labels), bool)
    order = np.lexsort((np.arange(len(labels)), benign, groups))
    group_ids, first = np.unique(groups[order], return_index=True)
    pieces = stratified_split(labels[order[first]], fractions, rng)
    out = {}
    for name, chosen in pieces.items():
        out[name] = np.flatnonzero(np.isin(groups, group_ids[chosen]))
    return out


def split_rows(
    source: StagedSource,
    rows: np.ndarray,
    fractions: dict[str, float],
    rng: np.random.Generator,
    benign_id: int | None,
) -> dict[str, np.ndarray]:
    """Split `rows` of `source` by class, keeping groups (or pairs) whole where it has them."""
    units = source.split_units
    if units is None:
        pieces = stratified_split(source.labels[rows], fractions, rng)
    else:
        pieces = grouped_split(source.labels[rows], units[rows], fractions, rng, benign_id)
    return {name: rows[idx] for name, idx in pieces.items()}


def downsample(
    labels: np.ndarray, positions: np.ndarray, caps: dict[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Keep at most caps[class] rows of each class among `positions`, chosen at random."""
    kept = []
    for cls in np.unique(labels[positions]):
        members = positions[labels[positions] == cls]
        cap = caps.get(int(cls), len(members))
        kept.append(rng.choice(members, size=cap, replace=False) if len(members) > cap else members)
    return np.sort(np.concatenate(kept)) if kept else positions[:0]


@dataclass
class SplitRules:
    """What `plan_splits` needs from the config beyond the arrays."""

    class_names: list[str]
    downsample: str | int  # "none", "paper" or a cap per class
    seed: int
    benign_id: int | None = None
    benign_ratio: float | None = None  # benign train rows per vulnerable train row, at most


def plan_splits(sources: dict[str, StagedSource], rules: SplitRules) -> SplitPlan:
    """Dedup within each source, remove leakage, split what is not pre-split, downsample.

    `sources` has one of the key sets {"all"}, {"train", "val"} or {"train", "val", "test"}.
    With {"train", "val"}, val is split 50/50 by class into val and test.
    """
    plan = SplitPlan()
    unique: dict[str, np.ndarray] = {}
    for key, source in sources.items():
        unique[key] = first_occurrences(source.hashes)
        plan.duplicates[key] = len(source.hashes) - len(unique[key])
        plan.conflicting_labels[key] = conflicting_labels(source.hashes, source.labels)

    # Leakage: a val/test row whose code is in train (or a test row in val) is removed.
    for key, earlier in (("val", ["train"]), ("test", ["train", "val"])):
        if key not in sources:
            continue
        seen = np.concatenate([sources[k].hashes[unique[k]] for k in earlier])
        leaked = np.isin(sources[key].hashes[unique[key]], seen)
        plan.cross_split_duplicates[key] = int(leaked.sum())
        unique[key] = unique[key][~leaked]

    rng = np.random.default_rng([rules.seed, 1])
    if set(sources) == {"all"}:
        pieces = split_rows(sources["all"], unique["all"], SPLIT_FRACTIONS, rng, rules.benign_id)
        plan.parts = {name: [("all", rows)] for name, rows in pieces.items()}
    elif set(sources) == {"train", "val"}:
        halves = split_rows(
            sources["val"], unique["val"], {"val": 0.5, "test": 0.5}, rng, rules.benign_id
        )
        plan.parts = {
            "train": [("train", unique["train"])],
            "val": [("val", halves["val"])],
            "test": [("val", halves["test"])],
        }
    else:
        plan.parts = {name: [(name, unique[name])] for name in ("train", "val", "test")}

    _apply_downsample(plan, sources, rules)
    return plan


def _caps(split: str, parts: list, sources: dict, rules: SplitRules) -> dict[int, int]:
    """Rows allowed per class in `split` (absent: no cap)."""
    rule = rules.downsample
    if rule == "paper":
        return {i: TABLE_I[split][name] for i, name in enumerate(rules.class_names)}
    if split != "train":
        return {}
    caps = dict.fromkeys(range(len(rules.class_names)), rule) if isinstance(rule, int) else {}
    if rules.benign_ratio is not None and rules.benign_id is not None:
        counts = np.bincount(
            np.concatenate([sources[key].labels[pos] for key, pos in parts]),
            minlength=len(rules.class_names),
        )
        capped = np.minimum(counts, [caps.get(i, c) for i, c in enumerate(counts)])
        vulnerable = int(capped.sum() - capped[rules.benign_id])
        ratio_cap = max(1, int(rules.benign_ratio * vulnerable))
        caps[rules.benign_id] = min(caps.get(rules.benign_id, ratio_cap), ratio_cap)
    return caps


def _apply_downsample(plan: SplitPlan, sources: dict[str, StagedSource], rules: SplitRules) -> None:
    for split_index, (split, parts) in enumerate(plan.parts.items()):
        caps = _caps(split, parts, sources, rules)
        if not caps:
            plan.downsampled[split] = 0
            continue
        rng = np.random.default_rng([rules.seed, 2, split_index])
        before = sum(len(pos) for _, pos in parts)
        # One source per split in every layout above, so the cap applies to the split as a whole.
        new_parts = []
        for key, positions in parts:
            new_parts.append((key, downsample(sources[key].labels, positions, caps, rng)))
        plan.parts[split] = new_parts
        plan.downsampled[split] = before - sum(len(pos) for _, pos in new_parts)
