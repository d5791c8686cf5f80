"""Classification metrics as the paper reports them (weighted averages, one-vs-rest AUC)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, probs: np.ndarray | None = None
) -> dict[str, float]:
    labels = list(range(n_classes))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="weighted", zero_division=0
    )
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
    }
    if probs is not None:
        out["auc"] = one_vs_rest_auc(y_true, probs, n_classes)
    return out


def one_vs_rest_auc(y_true: np.ndarray, probs: np.ndarray, n_classes: int) -> float:
    """Macro one-vs-rest AUC over the classes present in y_true (NaN if fewer than two)."""
    present = [c for c in range(n_classes) if (y_true == c).any()]
    if len(present) < 2:
        return float("nan")
    scores = [roc_auc_score(y_true == c, probs[:, c]) for c in present]
    return float(np.mean(scores))
