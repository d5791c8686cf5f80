"""The one inference path: a model's outputs for encoded rows, in length-sorted batches under
`inference_mode`, with the device's autocast. Validation, stacking features and scanning all
read their predictions from here."""

from __future__ import annotations

import numpy as np
import torch

from enstack.device import autocast
from enstack.encode import EncodedSplit
from enstack.models.classifier import Classifier
from enstack.progress import progress_bar

ROWS_PER_BATCH_CAP = 8  # inference batches hold at most this many times batch_size rows


def predict(
    model: Classifier,
    split: EncodedSplit,
    batch_size: int,
    device: torch.device,
    amp: str,
    desc: str = "",
    progress: bool | None = None,
    longest: int | None = None,
) -> dict[str, np.ndarray]:
    """Logits, probabilities and pooled embeddings for every row, in row order (batches
    sorted by length, no autograd; the model is left in the mode it was in). `longest`: the
    longest a row can be (see `eval_batches`)."""
    n, hidden = len(split), model.config.hidden_size
    was_training = model.training
    logits = np.zeros((n, model.config.num_labels), dtype=np.float32)
    embedding = np.zeros((n, hidden), dtype=np.float32)
    batches = eval_batches(split.lengths, batch_size, longest)
    model.eval()
    with torch.inference_mode():
        for rows in progress_bar(batches, enabled=progress, desc=desc, leave=False):
            inputs, _ = split.collate(rows)
            with autocast(amp, device):
                pooled = model.embed(*inputs.to(device))
                out = model.classifier(pooled)
            logits[rows] = out.float().cpu().numpy()
            embedding[rows] = pooled.float().cpu().numpy()
    model.train(was_training)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    return {
        "probs": probs,
        "logits": logits,
        "embedding": embedding,
        "labels": split.labels.numpy(),
    }


def eval_batches(
    lengths: np.ndarray, batch_size: int, longest: int | None = None
) -> list[np.ndarray]:
    """Longest first, so padding is minimal and a too-large batch fails at once.

    A token budget of `batch_size` rows of `longest` tokens (by default the longest row here;
    the model's max_length when rows come in several calls, as a scan's do) bounds every
    batch: shorter rows fill it with more rows per batch (up to `ROWS_PER_BATCH_CAP` x
    `batch_size`). No batch asks more memory than `batch_size` rows of `longest`, for the
    activations or the attention (rows x width^2 falls as width does), and short functions,
    most of a scan, take far fewer forward passes: on CPU a small batch's fixed cost is most
    of its time."""
    order = np.argsort(-lengths, kind="stable")
    if not len(order):
        return []
    longest = max(int(lengths[order[0]]), longest or 0, 1)
    budget = batch_size * longest
    batches, start = [], 0
    while start < len(order):
        width = max(int(lengths[order[start]]), 1)  # the longest row of this batch
        size = min(max(batch_size, budget // width), batch_size * ROWS_PER_BATCH_CAP)
        batches.append(order[start : start + size])
        start += size
    return batches
