"""The meta-classifiers enstack knows, by config name: one entry each, read by the config's
validation, the ablation, the reports and `stack.meta` (which builds them). Light on purpose:
the config and the reports read it without importing scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetaKind:
    label: str  # how the tables name it: "codebert + unixcoder (LR)"
    # How much it can fit to its val rows, for the one-standard-error rule (stack/ablation.py):
    # soft voting fits nothing, a weighted mean one weight per model, and so on.
    complexity: int
    # a mean of the base models' probabilities (probabilities in, whatever the configured
    # meta-features), which over one model is that model itself
    combiner: bool = False


META_KINDS: dict[str, MetaKind] = {
    "lr": MetaKind("LR", 2),
    "svm": MetaKind("SVM", 2),
    "rf": MetaKind("RF", 3),
    "xgboost": MetaKind("XGB", 3),
    "vote": MetaKind("vote", 0, combiner=True),
    "wmean": MetaKind("wmean", 1, combiner=True),
}
META_NAMES = tuple(META_KINDS)
PAPER_METAS = tuple(name for name, kind in META_KINDS.items() if not kind.combiner)
COMBINERS = tuple(name for name, kind in META_KINDS.items() if kind.combiner)


def complexity(meta: str | None) -> int:
    """A single model (no meta-classifier) fits nothing."""
    return 0 if meta is None else META_KINDS[meta].complexity
