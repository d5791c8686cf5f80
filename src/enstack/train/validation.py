"""Scoring a model on a split: logits in length-sorted batches, then the paper's metrics."""

from __future__ import annotations

import numpy as np
import torch

from enstack.models.classifier import Classifier
from enstack.train.batching import eval_batches
from enstack.train.distributed import Dist
from enstack.train.encode import EncodedSplit
from enstack.train.metrics import classification_metrics
from enstack.train.optim import autocast


def evaluate(
    model: Classifier,
    split: EncodedSplit,
    n_classes: int,
    batch_size: int,
    device: torch.device,
    amp: str,
    ranks: Dist | None = None,
) -> dict[str, float]:
    """Validation metrics; under several ranks each scores a share of the rows, then all
    ranks gather every logit and compute the same metrics."""
    ranks = ranks or Dist()
    if ranks.active:
        rows = np.arange(ranks.rank, len(split), ranks.world)
        part = predict_logits(model, split.subset(rows), batch_size, device, amp)
        logits = np.zeros((len(split), model.config.num_labels), dtype=np.float32)
        for r, piece in enumerate(ranks.gather(part)):
            logits[np.arange(r, len(split), ranks.world)] = piece
    else:
        logits = predict_logits(model, split, batch_size, device, amp)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    y = split.labels.numpy()
    return classification_metrics(y, logits.argmax(1), n_classes, probs)


def predict_logits(
    model: Classifier, split: EncodedSplit, batch_size: int, device: torch.device, amp: str
) -> np.ndarray:
    """Logits for every row, in row order; batches sorted by length, no autograd."""
    was_training = model.training
    model.eval()
    out = np.zeros((len(split), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for rows in eval_batches(split.lengths, batch_size):
            ids, mask, _ = split.collate(rows)
            with autocast(amp, device):
                logits = model(ids.to(device), mask.to(device))
            out[rows] = logits.float().cpu().numpy()
    model.train(was_training)
    return out
