"""Scoring a model on a split: logits in length-sorted batches, then the paper's metrics."""

from __future__ import annotations

import numpy as np
import torch

from enstack.encode import EncodedSplit
from enstack.infer import predict
from enstack.metrics import classification_metrics
from enstack.models.classifier import Classifier
from enstack.train.distributed import Dist
from enstack.windows import aggregate


def evaluate(
    model: Classifier,
    split: EncodedSplit,
    n_classes: int,
    batch_size: int,
    device: torch.device,
    amp: str,
    ranks: Dist | None = None,
    benign_id: int | None = None,
) -> dict[str, float]:
    """Validation metrics; under several ranks each scores a share of the rows, then all
    ranks gather every logit and compute the same metrics. Rows that are windows of longer
    functions are scored per function, as stacking and the scanner read them (`aggregate`)."""
    ranks = ranks or Dist()
    if ranks.active:
        rows = np.arange(ranks.rank, len(split), ranks.world)
        part = predict_logits(model, split.subset(rows), batch_size, device, amp)
        logits = np.zeros((len(split), model.config.num_labels), dtype=np.float32)
        for r, piece in enumerate(ranks.gather(part)):
            logits[np.arange(r, len(split), ranks.world)] = piece
    else:
        logits = predict_logits(model, split, batch_size, device, amp)
    y = split.labels.numpy()
    if split.owner is not None:
        probs = torch.softmax(torch.from_numpy(logits).float(), dim=1).numpy()
        rows = {"logits": logits, "probs": probs, "labels": y}
        out, _ = aggregate(rows, split.owner.numpy(), split.functions, benign_id)
        logits, y = out["logits"], out["labels"]
    scores = torch.from_numpy(logits).float()
    probs = torch.softmax(scores, dim=1).numpy()
    # the validation loss (mean cross-entropy, unweighted): beside the metrics, it shows
    # overfitting before F1 does
    loss = float(torch.nn.functional.cross_entropy(scores, torch.from_numpy(y).long()))
    predicted = logits.argmax(1)
    metrics = classification_metrics(y, predicted, n_classes, probs)
    # a model that answers one class for everything scores the majority's F1 and looks alive
    return {**metrics, "loss": loss, "predicted_classes": len(np.unique(predicted))}


def predict_logits(
    model: Classifier, split: EncodedSplit, batch_size: int, device: torch.device, amp: str
) -> np.ndarray:
    """Logits for every row, in row order."""
    return predict(model, split, batch_size, device, amp, progress=False)["logits"]
