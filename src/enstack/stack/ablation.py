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
from enstack.train.metrics import classification_metrics, detection_metrics, pair_outcomes


@dataclass
class Combo:
    models: tuple[str, ...]
    meta: str
    classifier: MetaClassifier
    val_probs: np.ndarray
    test_probs: np.ndarray
    val_row: dict  # the val metrics selection reads (out-of-fold in cv mode)


def subsets(names: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, smallest first, in config order."""
    return [c for k in range(1, len(names) + 1) for c in itertools.combinations(names, k)]


def meta_features(features: dict, models: tuple[str, ...], split: str, kind: str) -> np.ndarray:
    return np.concatenate([features[m].splits[split][kind] for m in models], axis=1)


@dataclass
class Scorer:
    """Turns a split's probabilities into a results row: the class metrics, and with a benign
    class the detection metrics (and the pair outcomes where the split has pair ids)."""

    n_classes: int
    benign_id: int | None
    pairs: dict[str, np.ndarray | None]  # split -> pair id per row

    def row(
        self, models: tuple[str, ...], meta: str | None, split: str, y: np.ndarray, probs
    ) -> dict:
        metrics = classification_metrics(y, probs.argmax(1), self.n_classes, probs)
        row = {"models": list(models), "meta": meta, "split": split, **_clean(metrics)}
        if self.benign_id is not None:
            row["detection"] = _clean(detection_metrics(y, probs, self.benign_id))
            pairs = self.pairs.get(split)
            if pairs is not None:
                row["pairs"] = _clean(pair_outcomes(y, probs, pairs, self.benign_id))
        return row


def selection_score(row: dict, select_on: str) -> float:
    """The val metric selection maximises (`stacking.select_on`); a missing value scores -1."""
    if select_on in ("detection_f1", "pr_auc"):
        value = row.get("detection", {}).get("f1" if select_on == "detection_f1" else "pr_auc")
    elif select_on == "pair_correct":
        value = row.get("pairs", {}).get("pair_correct")
    else:
        value = row[select_on]
    return -1.0 if value is None else float(value)


def run_ablation(
    config: Config,
    features: dict,
    progress: bool | None = None,
    pairs: dict[str, np.ndarray | None] | None = None,
) -> dict:
    names = [m.name for m in config.models]
    scorer = Scorer(len(config.data.labels), config.data.benign_id, pairs or {})
    n_classes = scorer.n_classes
    some = features[names[0]].splits
    y = {split: some[split]["labels"] for split in ("val", "test")}
    rows: list[dict] = []
    for name in names:
        for split in ("val", "test"):
            probs = features[name].splits[split]["probs"]
            rows.append(scorer.row((name,), None, split, y[split], probs))

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
        val_row = scorer.row(models, meta, "val", y["val"], val_probs)
        combos.append(Combo(models, meta, classifier, val_probs, test_probs, val_row))
        rows += [val_row, scorer.row(models, meta, "test", y["test"], test_probs)]

    selected = select(combos, st.select_on)
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


def select(combos: list[Combo], select_on: str = "f1") -> Combo:
    """Best val score on `select_on`; ties go to fewer models, then config and meta order."""

    def key(i: int) -> tuple:
        return (selection_score(combos[i].val_row, select_on), -len(combos[i].models), -i)

    return combos[max(range(len(combos)), key=key)]


def _clean(metrics: dict[str, float]) -> dict:
    """Rounded for the JSON rows; NaN (undefined on this split) becomes null."""
    return {
        k: (None if isinstance(v, float) and math.isnan(v) else round(v, 6))
        for k, v in metrics.items()
    }
