"""The batch order: a pure function of (seed, epoch), every row once, little padding."""

from __future__ import annotations

import numpy as np

from enstack.infer import ROWS_PER_BATCH_CAP, eval_batches
from enstack.train.batching import epoch_batches


def _lengths(n: int = 1000) -> np.ndarray:
    return np.random.default_rng(0).integers(10, 512, size=n)


def test_order_is_a_pure_function_of_seed_and_epoch() -> None:
    lengths = _lengths()
    a = epoch_batches(lengths, 16, seed=1, epoch=3)
    b = epoch_batches(lengths, 16, seed=1, epoch=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    other_epoch = epoch_batches(lengths, 16, seed=1, epoch=4)
    other_seed = epoch_batches(lengths, 16, seed=2, epoch=3)
    assert not np.array_equal(a[0], other_epoch[0]) and not np.array_equal(a[0], other_seed[0])


def test_every_row_exactly_once_and_only_the_last_batch_short() -> None:
    lengths = _lengths(1003)
    batches = epoch_batches(lengths, 16, seed=0, epoch=0)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1003))
    assert len(batches) == -(-1003 // 16)
    assert sum(len(b) < 16 for b in batches) == 1


def test_length_grouping_pads_far_less_than_random_batches() -> None:
    lengths = _lengths(4000)

    def padding(batches: list[np.ndarray]) -> int:
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    grouped = epoch_batches(lengths, 16, seed=0, epoch=0)
    order = np.random.default_rng(0).permutation(4000)
    random_batches = [order[i : i + 16] for i in range(0, 4000, 16)]
    assert padding(grouped) < 0.1 * padding(random_batches)


def test_eval_batches_longest_first() -> None:
    lengths = _lengths(100)
    batches = eval_batches(lengths, 10)
    maxima = [int(lengths[b].max()) for b in batches]
    assert maxima == sorted(maxima, reverse=True)
    assert sorted(np.concatenate(batches).tolist()) == list(range(100))


def test_eval_batches_keep_the_first_batchs_token_budget() -> None:
    """Short rows travel in bigger batches, but no batch holds more tokens, nor more
    attention cells (rows x width^2), than the first, longest one."""
    lengths = _lengths(3000)
    batches = eval_batches(lengths, 16)
    assert sorted(np.concatenate(batches).tolist()) == list(range(3000))
    widths = [int(lengths[b].max()) for b in batches]
    tokens = [len(b) * w for b, w in zip(batches, widths, strict=True)]
    cells = [len(b) * w * w for b, w in zip(batches, widths, strict=True)]
    assert max(tokens) == tokens[0] and max(cells) == cells[0]
    assert all(16 <= len(b) <= 16 * 8 for b in batches[:-1])
    assert len(batches[-1]) > 16  # the shortest rows share far fewer passes
    assert len(batches) < len(lengths) / 16


def test_eval_batches_take_the_budget_of_the_longest_a_row_can_be() -> None:
    """A scan scores its functions in chunks: a chunk of short functions still fills the
    model's budget (batch_size rows of max_length), not one set by its own longest row."""
    lengths = np.full(1000, 20)
    own = eval_batches(lengths, 16)
    model_wide = eval_batches(lengths, 16, longest=256)
    assert len(own) == -(-1000 // 16)  # the rows' own budget: 16 rows of 20
    assert len(model_wide) == -(-1000 // (16 * ROWS_PER_BATCH_CAP))
    assert all(len(b) * 20 <= 16 * 256 for b in model_wide)
    assert sorted(np.concatenate(model_wide).tolist()) == list(range(1000))
