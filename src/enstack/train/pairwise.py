"""The pairwise objective for fix pairs (`training.pairwise`): a flawed function should score
as more vulnerable than its own fix.

Cross-entropy sees a flawed function and its fix, which differ in a few lines, as two
unrelated rows. Beside it, a margin ranking term asks, for each (flawed, fix) of one pair,
that the flawed side's log-odds of being vulnerable exceed the fix's by `pair_margin`; a
function read in windows scores as its most vulnerable window, as the scanner reads it.

Both sides must be in one batch, so the batch order is drawn over *units* (all rows of a
pair's functions; a function outside any pair is a unit of its own): a pure function of the
seed and the epoch, as `batching.rank_batches` is, so resume stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from enstack.train.batching import ORDER_STREAM

NO_PAIR = -1


@dataclass(frozen=True)
class PairRows:
    """Per training row: its function, its function's pair (NO_PAIR: none), and whether the
    function is flawed; and the unit each row is batched with."""

    function: torch.Tensor  # int64
    pair: torch.Tensor  # int64
    flawed: torch.Tensor  # bool
    unit: np.ndarray  # int64

    @classmethod
    def of(
        cls, owner: torch.Tensor | None, rows: int, pairs: list, labels: list[int], benign_id: int
    ) -> PairRows:
        """`pairs` and `labels`: per function (the split's functions, in order)."""
        function = owner if owner is not None else torch.arange(rows)
        ids: dict[object, int] = {}
        pair_of = np.array(
            [NO_PAIR if p in (None, "") else ids.setdefault(p, len(ids)) for p in pairs],
            dtype=np.int64,
        )
        flawed_of = np.asarray(labels) != benign_id
        f = function.numpy()
        # a pair's functions share a unit; an unpaired function is a unit after the pairs
        unit_of = np.where(pair_of >= 0, pair_of, len(ids) + np.arange(len(pairs)))
        return cls(
            function=function.long(),
            pair=torch.from_numpy(pair_of[f]),
            flawed=torch.from_numpy(flawed_of[f]),
            unit=unit_of[f],
        )

    @property
    def pairs(self) -> int:
        """Pairs holding both a flawed function and a fix."""
        both = {int(p) for p in self.pair[self.flawed].tolist()} & {
            int(p) for p in self.pair[~self.flawed].tolist()
        }
        return len(both - {NO_PAIR})


def pair_batches(
    lengths: np.ndarray,
    units: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    pool: int = 200,
) -> list[np.ndarray]:
    """This rank's batches for `epoch`, each holding whole units: units shuffled, sorted by
    length inside pools (little padding), packed into batches of at most `batch_size` rows
    per rank (a unit larger is a batch of its own), batches shuffled. Under several ranks,
    each global batch's units are dealt round-robin; one with fewer units than ranks is
    dropped."""
    rng = np.random.default_rng([seed, ORDER_STREAM, epoch, 1])
    members = _unit_rows(units)
    order = rng.permutation(len(members))
    width = np.array([lengths[rows].max() for rows in members])
    size = np.array([len(rows) for rows in members])
    per_batch = batch_size * world
    batches: list[list[int]] = []
    span = max(per_batch * pool // max(int(size.mean()), 1), 1)
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(-width[chunk], kind="stable")]
        current: list[int] = []
        rows_in = 0
        for unit in chunk.tolist():
            if current and rows_in + size[unit] > per_batch:
                batches.append(current)
                current, rows_in = [], 0
            current.append(unit)
            rows_in += size[unit]
        if current:
            batches.append(current)
    shuffled = [batches[i] for i in rng.permutation(len(batches))]
    out = []
    for batch in shuffled:
        if len(batch) < world:
            continue
        mine = batch[rank::world]
        out.append(np.concatenate([members[u] for u in mine]))
    return out


def _unit_rows(units: np.ndarray) -> list[np.ndarray]:
    """Each unit's rows, by unit id order (ids need not be contiguous)."""
    order = np.argsort(units, kind="stable")
    sorted_units = units[order]
    cuts = np.flatnonzero(np.diff(sorted_units)) + 1
    return np.split(order, cuts)


def vulnerable_log_odds(logits: torch.Tensor, benign_id: int) -> torch.Tensor:
    """log P(vulnerable) - log P(benign) per row, from the class logits."""
    flawed = torch.cat([logits[:, :benign_id], logits[:, benign_id + 1 :]], dim=1)
    return torch.logsumexp(flawed, dim=1) - logits[:, benign_id]


def pair_margin_loss(
    logits: torch.Tensor, rows: torch.Tensor, index: PairRows, benign_id: int, margin: float
) -> torch.Tensor:
    """The mean hinge max(0, margin - (s_flawed - s_fix)) over the (flawed, fix) function pairs
    of one pair in the batch, s a function's most vulnerable row's log-odds; 0 (with a
    gradient path) when the batch holds no such pair."""
    score = vulnerable_log_odds(logits.float(), benign_id)
    function = index.function[rows]
    found, where = torch.unique(function, return_inverse=True)
    per_function = torch.full((len(found),), float("-inf"), device=score.device)
    per_function = per_function.scatter_reduce(
        0, where.to(score.device), score, reduce="amax", include_self=False
    )
    pair = torch.zeros(len(found), dtype=torch.long).scatter(0, where, index.pair[rows])
    flawed = torch.zeros(len(found), dtype=torch.bool).scatter(0, where, index.flawed[rows])
    matched = (pair[:, None] == pair[None, :]) & (pair[:, None] != NO_PAIR)
    matched &= flawed[:, None] & ~flawed[None, :]
    if not bool(matched.any()):
        return score.sum() * 0.0
    gap = per_function[:, None] - per_function[None, :]
    return F.relu(margin - gap[matched.to(gap.device)]).mean()
