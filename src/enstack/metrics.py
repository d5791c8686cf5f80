"""Classification metrics as the paper reports them (weighted averages, one-vs-rest AUC)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)


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
        # over the classes the split has: a class with no rows here (a rare class a small
        # split missed) has no F1 to average, not an F1 of 0
        "macro_f1": float(
            f1_score(
                y_true,
                y_pred,
                labels=present_classes(y_true, n_classes),
                average="macro",
                zero_division=0,
            )
        ),
    }
    if probs is not None:
        out["auc"] = one_vs_rest_auc(y_true, probs, n_classes)
    return out


def present_classes(y_true: np.ndarray, n_classes: int) -> list[int]:
    return [c for c in range(n_classes) if (y_true == c).any()]


def one_vs_rest_auc(y_true: np.ndarray, probs: np.ndarray, n_classes: int) -> float:
    """Macro one-vs-rest AUC over the classes present in y_true (NaN if fewer than two)."""
    present = present_classes(y_true, n_classes)
    if len(present) < 2:
        return float("nan")
    scores = [roc_auc_score(y_true == c, probs[:, c]) for c in present]
    return float(np.mean(scores))


# --- detection: vulnerable (any flaw class) vs benign ------------------------------------------

VD_S_MAX_FPR = 0.005  # PrimeVul's VD-S: the false-negative rate at a false-positive rate <= 0.5%


def vulnerable_scores(probs: np.ndarray, benign_id: int) -> np.ndarray:
    """P(vulnerable) = 1 - P(benign): the score detection, selection and scan threshold."""
    return 1.0 - probs[:, benign_id]


def detection_metrics(
    y_true: np.ndarray, probs: np.ndarray, benign_id: int, threshold: float = 0.5
) -> dict[str, float]:
    """Vulnerable vs benign, a function flagged when P(vulnerable) >= `threshold`.

    ROC-AUC, PR-AUC (average precision) and VD-S need both outcomes in `y_true`; NaN otherwise.
    """
    truth = y_true != benign_id
    scores = vulnerable_scores(probs, benign_id)
    flagged = scores >= threshold
    tp = int((flagged & truth).sum())
    fp = int((flagged & ~truth).sum())
    fn = int((~flagged & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    out = {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "fpr": fp / int((~truth).sum()) if (~truth).any() else float("nan"),
        "roc_auc": float("nan"),
        "pr_auc": float("nan"),
        "vd_s": float("nan"),
    }
    if truth.any() and (~truth).any():
        out["roc_auc"] = float(roc_auc_score(truth, scores))
        out["pr_auc"] = float(average_precision_score(truth, scores))
        out["vd_s"] = vd_s(truth, scores)
    return out


def vd_s(truth: np.ndarray, scores: np.ndarray, max_fpr: float = VD_S_MAX_FPR) -> float:
    """The lowest false-negative rate of any threshold whose false-positive rate <= max_fpr."""
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return float(1.0 - tpr[fpr <= max_fpr].max())


def pair_outcomes(
    y_true: np.ndarray,
    probs: np.ndarray,
    pairs: np.ndarray,
    benign_id: int,
    threshold: float = 0.5,
) -> dict[str, float]:
    """PrimeVul's pair-wise outcomes over the pairs holding a flawed row and a benign one.

    A pair (a flawed function and its fixes) is correct when every flawed row is flagged and
    no fix is; vulnerable when every row is flagged; benign when none is; reversed when no
    flawed row is flagged and every fix is. With one flaw and one fix these are PrimeVul's
    P-C, P-V, P-B and P-R, and they sum to 1; with several fixes some pairs are none of them.
    `pair_gain` is P-C minus P-R.
    Rows with an empty pair id (None or "") belong to no pair.
    """
    flagged = vulnerable_scores(probs, benign_id) >= threshold
    flawed = y_true != benign_id
    tally = dict.fromkeys(("pair_correct", "pair_vulnerable", "pair_benign", "pair_reversed"), 0)
    n = 0
    for pair in np.unique(pairs[[p not in (None, "") for p in pairs]]):
        rows = pairs == pair
        bad, good = flagged[rows & flawed], flagged[rows & ~flawed]
        if not len(bad) or not len(good):
            continue
        n += 1
        tally["pair_correct"] += bool(bad.all() and not good.any())
        tally["pair_vulnerable"] += bool(bad.all() and good.all())
        tally["pair_benign"] += bool(not bad.any() and not good.any())
        tally["pair_reversed"] += bool(not bad.any() and good.all())
    out = {k: (v / n if n else float("nan")) for k, v in tally.items()}
    # pair gain: right pairs beyond reversed ones; 0 for a model that tells flaw from fix no
    # better than chance (which gets as many pairs reversed as right)
    out["pair_gain"] = out["pair_correct"] - out["pair_reversed"]
    return {"n": n, **out}
