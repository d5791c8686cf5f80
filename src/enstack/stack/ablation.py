"""Every base model alone, and every non-empty subset of base models with every
meta-classifier, scored on val and test; the selection looks at val only.

`mode: paper` fits each meta-classifier on the validation meta-features and scores it on the
same rows (the paper's Algorithm 1: in-sample). `mode: cv` scores it by stratified K-fold
out-of-fold predictions on validation, then refits on all of validation for test.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold
from tqdm import tqdm

from enstack.config import Config
from enstack.stack.meta import MetaClassifier
from enstack.train.metrics import classification_metrics


@dataclass
class Combo:
    models: tuple[str, ...]
    meta: str
    classifier: MetaClassifier
    val_probs: np.ndarray
    test_probs: np.ndarray


def subsets(names: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, smallest first, in config order."""
    return [c for k in range(1, len(names) + 1) for c in itertools.combinations(names, k)]


def meta_features(features: dict, models: tuple[str, ...], split: str, kind: str) -> np.ndarray:
    return np.concatenate([features[m].splits[split][kind] for m in models], axis=1)


def run_ablation(config: Config, features: dict, progress: bool | None = None) -> dict:
    names = [m.name for m in config.models]
    n_classes = len(config.data.labels)
    some = features[names[0]].splits
    y = {split: some[split]["labels"] for split in ("val", "test")}
    rows: list[dict] = []
    for name in names:
        for split in ("val", "test"):
            probs = features[name].splits[split]["probs"]
            rows.append(_row((name,), None, split, y[split], probs, n_classes))

    combos: list[Combo] = []
    st = config.stacking
    plan = [(s, m) for s in subsets(names) for m in st.meta]
    for models, meta in tqdm(
        plan, desc="stacking", leave=False, disable=True if progress is False else None
    ):
        x_val = meta_features(features, models, "val", st.features)
        x_test = meta_features(features, models, "test", st.features)

        def make(meta: str = meta) -> MetaClassifier:
            return MetaClassifier(
                meta, n_classes, config.seed, st.meta_params.get(meta, {}), st.scale
            )

        if st.mode == "cv":
            val_probs = out_of_fold(make, x_val, y["val"], st.cv_folds, config.seed)
            classifier = make().fit(x_val, y["val"])
        else:
            classifier = make().fit(x_val, y["val"])
            val_probs = classifier.predict_proba(x_val)
        test_probs = classifier.predict_proba(x_test)
        combos.append(Combo(models, meta, classifier, val_probs, test_probs))
        rows.append(_row(models, meta, "val", y["val"], val_probs, n_classes))
        rows.append(_row(models, meta, "test", y["test"], test_probs, n_classes))

    selected = select(combos, y["val"], n_classes)
    return {"rows": rows, "combos": combos, "selected": selected, "y": y}


def out_of_fold(make, x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold probabilities; a class rarer than `folds` caps the number of folds."""
    smallest = int(np.bincount(y)[np.bincount(y) > 0].min())
    k = max(2, min(folds, smallest))
    probs = np.zeros((len(y), make().n_classes))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train_idx, held_idx in splitter.split(x, y):
        probs[held_idx] = make().fit(x[train_idx], y[train_idx]).predict_proba(x[held_idx])
    return probs


def select(combos: list[Combo], y_val: np.ndarray, n_classes: int) -> Combo:
    """Best validation weighted F1; ties go to fewer models, then config and meta order."""

    def score(combo: Combo) -> float:
        return classification_metrics(y_val, combo.val_probs.argmax(1), n_classes)["f1"]

    best = max(range(len(combos)), key=lambda i: (score(combos[i]), -len(combos[i].models), -i))
    return combos[best]


def _row(
    models: tuple[str, ...],
    meta: str | None,
    split: str,
    y: np.ndarray,
    probs: np.ndarray,
    n_classes: int,
) -> dict:
    metrics = classification_metrics(y, probs.argmax(1), n_classes, probs)
    clean = {
        k: (None if isinstance(v, float) and math.isnan(v) else round(v, 6))
        for k, v in metrics.items()
    }
    return {"models": list(models), "meta": meta, "split": split, **clean}
