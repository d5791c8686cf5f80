"""Every base model alone, and every non-empty subset of base models with every
meta-classifier, scored on val and test; the selection looks at val only.

`mode: paper` fits each meta-classifier on the validation meta-features and scores it on the
same rows, and picks the best score (the paper's Algorithm 1: in-sample).

`mode: cv` scores every candidate by K-fold out-of-fold predictions on val, the same folds for
all, then refits on all of val for test. The folds are stratified by class and keep groups
(`data.group_column`; else pairs) whole, so a candidate is scored on groups it was not fitted
on, as test will score it. Single models are candidates too. The selection takes the simplest
candidate whose mean fold score is within one standard error of the best one (the
one-standard-error rule): single models and soft voting fit nothing, a weighted mean fits one
weight per model, then linear meta-classifiers, then trees; fewer models first. An ensemble is
chosen only when it beats the simpler ones by more than the folds' noise.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from enstack import log
from enstack.config import Config
from enstack.metrics import classification_metrics, detection_metrics, pair_outcomes
from enstack.progress import progress_bar
from enstack.registries.metas import COMBINERS, complexity
from enstack.stack.meta import MetaClassifier

LOG = log.get(__name__)


@dataclass
class Combo:
    """A candidate: base models and how they are combined (meta None: a single model alone)."""

    models: tuple[str, ...]
    meta: str | None
    classifier: MetaClassifier  # for a single model, a vote over that one model
    val_probs: np.ndarray
    test_probs: np.ndarray
    val_row: dict  # the val metrics selection reads (out-of-fold in cv mode, with "cv")


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

    def selection_only(self, y: np.ndarray, probs: np.ndarray, pairs, select_on: str) -> float:
        """`selection_score` of the row `row` would give, computing only that metric (fold
        scores need nothing else, and the AUCs cost most of a row)."""
        if select_on in ("detection_f1", "pr_auc", "pair_correct") and self.benign_id is None:
            return -1.0
        if select_on in ("detection_f1", "pr_auc"):
            row = {"detection": _clean(detection_metrics(y, probs, self.benign_id))}
        elif select_on == "pair_correct":
            outcomes = {} if pairs is None else pair_outcomes(y, probs, pairs, self.benign_id)
            row = {"pairs": _clean(outcomes)}
        else:
            row = _clean(classification_metrics(y, probs.argmax(1), self.n_classes))
        return selection_score(row, select_on)


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
    groups: dict[str, np.ndarray | None] | None = None,
) -> dict:
    """Every row; `pairs` and `groups`: per split, the rows' pair and group ids (or None)."""
    names = [m.name for m in config.models]
    pairs, groups = pairs or {}, groups or {}
    scorer = Scorer(len(config.data.labels), config.data.benign_id, pairs)
    st = config.stacking
    some = features[names[0]].splits
    y = {split: some[split]["labels"] for split in ("val", "test")}
    folds = None
    if st.mode == "cv":
        units = groups.get("val") if groups.get("val") is not None else pairs.get("val")
        folds = val_folds(y["val"], units, st.cv_folds, config.seed)
        _say_fewer_folds(len(np.unique(folds)), st.cv_folds, y["val"], units)

    rows: list[dict] = []
    combos: list[Combo] = []
    for name in names:
        single = _single(name, features, scorer, y, folds, st.select_on)
        rows += [single.val_row, scorer.row((name,), None, "test", y["test"], single.test_probs)]
        if folds is not None:
            combos.append(single)  # in cv mode a single model competes with the ensembles

    plan = [(s, m) for s in subsets(names) for m in st.meta if len(s) > 1 or m not in COMBINERS]
    for models, meta in progress_bar(plan, enabled=progress, desc="stacking", leave=False):
        kind = "probs" if meta in COMBINERS else st.features
        x_val = meta_features(features, models, "val", kind)
        x_test = meta_features(features, models, "test", kind)

        def make(meta: str = meta) -> MetaClassifier:
            return MetaClassifier(
                meta, scorer.n_classes, config.seed, st.meta_params.get(meta, {}), st.scale
            )

        classifier = make().fit(x_val, y["val"])
        if folds is not None:
            val_probs = out_of_fold(make, x_val, y["val"], folds)
        else:
            val_probs = classifier.predict_proba(x_val)
        test_probs = classifier.predict_proba(x_test)
        val_row = scorer.row(models, meta, "val", y["val"], val_probs)
        if folds is not None:
            val_row["cv"] = fold_scores(scorer, y["val"], val_probs, folds, st.select_on)
        combos.append(Combo(models, meta, classifier, val_probs, test_probs, val_row))
        rows += [val_row, scorer.row(models, meta, "test", y["test"], test_probs)]

    selected = select_within_noise(combos) if folds is not None else select(combos, st.select_on)
    return {"rows": rows, "combos": combos, "selected": selected, "y": y}


def _single(
    name: str, features: dict, scorer: Scorer, y: dict, folds: np.ndarray | None, select_on: str
) -> Combo:
    """A base model alone: its own probabilities (nothing fitted), as a one-model vote."""
    val_probs = features[name].splits["val"]["probs"]
    test_probs = features[name].splits["test"]["probs"]
    vote = MetaClassifier("vote", scorer.n_classes).fit(val_probs, y["val"])
    val_row = scorer.row((name,), None, "val", y["val"], val_probs)
    if folds is not None:
        val_row["cv"] = fold_scores(scorer, y["val"], val_probs, folds, select_on)
    return Combo((name,), None, vote, val_probs, test_probs, val_row)


def val_folds(y: np.ndarray, units: np.ndarray | None, folds: int, seed: int) -> np.ndarray:
    """The fold of each val row: stratified by class, groups (or pairs) kept whole. Fewer folds
    when the rarest class (or the number of groups) cannot fill them."""
    counts = np.bincount(y)
    k = max(2, min(folds, int(counts[counts > 0].min())))
    out = np.empty(len(y), np.int64)
    if units is None:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(y)), y)
    else:
        k = max(2, min(k, len(np.unique(units))))
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(y)), y, units)
    with warnings.catch_warnings():  # its note on a class smaller than the folds: said above
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, held) in enumerate(parts):
            out[held] = fold
    return out


def _say_fewer_folds(used: int, asked: int, y: np.ndarray, units: np.ndarray | None) -> None:
    if used >= asked:
        return
    counts = np.bincount(y)
    rarest = int(counts[counts > 0].min())
    groups = f", {len(np.unique(units))} groups" if units is not None else ""
    LOG.warning(
        f"stacking.cv_folds {asked}: val has too few rows to fill them (rarest class "
        f"{rarest} rows{groups}); scoring with {used} folds"
    )


def out_of_fold(make, x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each val row's probabilities from a meta-classifier fitted on the other folds."""
    probs = np.zeros((len(y), make().n_classes))
    for fold in np.unique(folds):
        held = folds == fold
        probs[held] = make().fit(x[~held], y[~held]).predict_proba(x[held])
    return probs


def fold_scores(
    scorer: Scorer, y: np.ndarray, probs: np.ndarray, folds: np.ndarray, select_on: str
) -> dict:
    """The selection metric on each held-out fold: its mean, spread and standard error."""
    pairs = scorer.pairs.get("val")
    values = []
    for fold in np.unique(folds):
        held = folds == fold
        fold_pairs = None if pairs is None else pairs[held]
        values.append(scorer.selection_only(y[held], probs[held], fold_pairs, select_on))
    scores = np.asarray(values)
    std = float(scores.std(ddof=1)) if len(scores) > 1 else 0.0
    return {
        "metric": select_on,
        "folds": len(scores),
        "mean": round(float(scores.mean()), 6),
        "std": round(std, 6),
        "se": round(std / math.sqrt(len(scores)), 6),
    }


def select_within_noise(combos: list[Combo]) -> Combo:
    """The one-standard-error rule over the candidates' fold scores (see the module's doc)."""
    best = max(combos, key=lambda c: c.val_row["cv"]["mean"])
    bar = best.val_row["cv"]["mean"] - best.val_row["cv"]["se"]
    near = [c for c in combos if c.val_row["cv"]["mean"] >= bar]
    return min(
        near,
        key=lambda c: (complexity(c.meta), len(c.models), -c.val_row["cv"]["mean"]),
    )


def select(combos: list[Combo], select_on: str = "f1") -> Combo:
    """Best val score on `select_on` (in-sample, the paper's rule); ties go to fewer models,
    then config and meta order."""

    def key(i: int) -> tuple:
        return (selection_score(combos[i].val_row, select_on), -len(combos[i].models), -i)

    return combos[max(range(len(combos)), key=key)]


def _clean(metrics: dict[str, float]) -> dict:
    """Rounded for the JSON rows; NaN (undefined on this split) becomes null."""
    return {
        k: (None if isinstance(v, float) and math.isnan(v) else round(v, 6))
        for k, v in metrics.items()
    }
