"""Length-grouped batch order: a pure function of (lengths, batch size, seed, epoch).

Rows are shuffled, cut into pools of `pool` batches, sorted by length inside each pool and cut
into batches, and the batches are shuffled. Batches of similar length waste little on padding,
and the order is random enough for SGD. On juliet5's lengths, pools of 200 batches pad to
1.008x the real tokens, pools of 50 (Hugging Face's LengthGroupedSampler's size) to 1.030x.
Because the order is recomputed from the seed, resuming
at batch k costs O(1) in k: nothing before k is loaded, tokenised or collated.
"""

from __future__ import annotations

import numpy as np


def epoch_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, pool: int = 200
) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, 7919, epoch])
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Longest first, so padding is minimal and a too-large batch fails at once."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
