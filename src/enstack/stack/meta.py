"""Meta-classifiers with the paper's hyperparameters (Table II), overridable from the config.

`MetaClassifier` wraps an estimator so that it always answers with one probability column per
class, even when a class is absent from the rows it was fitted on (a small validation split
often lacks the rarest class), and so that it persists without pickle: scikit-learn estimators
through skops, XGBoost through its own JSON model format.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from enstack.errors import UserError

META_NAMES = ("lr", "svm", "rf", "xgboost")
LABELS = {"lr": "LR", "svm": "SVM", "rf": "RF", "xgboost": "XGB"}

# The types a skops file written by enstack may contain; anything else is refused on load.
SKOPS_TRUSTED = {
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.svm._classes.SVC",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.multiclass._ConstantPredictor",
    "sklearn.preprocessing._label.LabelBinarizer",
    "numpy.random._mt19937.MT19937",
    "numpy.random.mtrand.RandomState",
}


def paper_estimator(name: str, seed: int, params: dict[str, Any]):
    """Table II's settings, updated with the user's `stacking.meta_params[name]`."""
    if name == "lr":
        # liblinear is binary; for five classes it always ran one-vs-rest (sklearn made that
        # implicit until 1.5, and now asks for the wrapper).
        settings = {"max_iter": 200, "solver": "liblinear", **params}
        return OneVsRestClassifier(LogisticRegression(**settings))
    if name == "svm":
        settings = {"kernel": "rbf", "probability": True, "random_state": 42, **params}
        return SVC(**settings)
    if name == "rf":
        settings = {
            "n_estimators": 200,
            "max_depth": 10,
            "random_state": seed,
            "n_jobs": 1,
            **params,
        }
        return RandomForestClassifier(**settings)
    if name == "xgboost":
        from xgboost import XGBClassifier

        settings = {
            "n_estimators": 100,
            "eval_metric": "mlogloss",
            "learning_rate": 0.1,
            "max_depth": 6,
            "random_state": seed,
            "n_jobs": 1,
            **params,
        }
        return XGBClassifier(**settings)
    raise UserError(
        f"stacking.meta: unknown meta-classifier {name!r} (known: {', '.join(META_NAMES)})"
    )


def check_params(name: str, params: dict[str, Any]) -> str | None:
    """What is wrong with `stacking.meta_params[name]`, or None: every key must be one of the
    estimator's parameters and every value one it accepts (checked by its own validation)."""
    estimator = paper_estimator(name, 0, {})
    inner = estimator.estimator if isinstance(estimator, OneVsRestClassifier) else estimator
    known = inner.get_params(deep=False)
    for key in params:
        if key not in known:
            return f"{key!r} is not a parameter of {type(inner).__name__}"
    if name == "xgboost":
        return None  # XGBoost checks its values only when fitting
    try:
        inner.set_params(**params)
        inner._validate_params()
    except (ValueError, TypeError) as exc:
        return str(exc).splitlines()[0]
    return None


class MetaClassifier:
    """fit / predict_proba / predict over all `n_classes`, whatever classes the fit rows had."""

    def __init__(
        self,
        name: str,
        n_classes: int,
        seed: int = 42,
        params: dict[str, Any] | None = None,
        scale: bool = False,
    ) -> None:
        self.name = name
        self.n_classes = n_classes
        self.scale = scale
        self.seed = seed
        self.params = params or {}
        estimator = paper_estimator(name, seed, self.params)
        self.estimator = (
            Pipeline([("scale", StandardScaler()), ("model", estimator)]) if scale else estimator
        )
        self.classes_: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> MetaClassifier:
        self.classes_ = np.unique(y)
        codes = np.searchsorted(self.classes_, y)  # contiguous ids, as XGBoost requires
        with warnings.catch_warnings():
            # SVC(probability=True) is the paper's setting; sklearn 1.9 deprecates the flag.
            warnings.filterwarnings(
                "ignore", message=".*probability.*deprecated", category=FutureWarning
            )
            if len(self.classes_) == 1:
                self.estimator = None  # one class: the answer is constant
            else:
                self.estimator = clone(self.estimator).fit(x, codes)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        assert self.classes_ is not None, "fit first"
        out = np.zeros((len(x), self.n_classes), dtype=np.float64)
        if self.estimator is None:
            out[:, self.classes_[0]] = 1.0
            return out
        out[:, self.classes_] = self.estimator.predict_proba(x)
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)

    # --- persistence without pickle -----------------------------------------------------------

    def save(self, directory: Path) -> list[str]:
        """Write the estimator and a JSON description; returns the file names written."""
        assert self.classes_ is not None
        info = {
            "name": self.name,
            "n_classes": self.n_classes,
            "scale": self.scale,
            "seed": self.seed,
            "params": self.params,
            "classes": self.classes_.tolist(),
        }
        files = ["meta.json"]
        if self.name == "xgboost" and self.estimator is not None:
            model = self.estimator.steps[-1][1] if self.scale else self.estimator
            model.save_model(str(directory / "meta.xgb.json"))
            files.append("meta.xgb.json")
            if self.scale:
                info["scaler"] = _scaler_to_json(self.estimator.steps[0][1])
        elif self.estimator is not None:
            import skops.io as sio

            sio.dump(self.estimator, directory / "meta.skops")
            files.append("meta.skops")
        (directory / "meta.json").write_text(json.dumps(info, indent=2) + "\n")
        return files

    @classmethod
    def load(cls, directory: Path) -> MetaClassifier:
        info = json.loads((directory / "meta.json").read_text())
        meta = cls(info["name"], info["n_classes"], info["seed"], info["params"], info["scale"])
        meta.classes_ = np.asarray(info["classes"])
        if len(meta.classes_) == 1:
            meta.estimator = None
        elif info["name"] == "xgboost":
            from xgboost import XGBClassifier

            model = XGBClassifier()
            model.load_model(str(directory / "meta.xgb.json"))
            if info["scale"]:
                meta.estimator = Pipeline(
                    [("scale", _scaler_from_json(info["scaler"])), ("model", model)]
                )
            else:
                meta.estimator = model
        else:
            meta.estimator = _load_skops(directory / "meta.skops")
        return meta


def _load_skops(path: Path):
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(file=path))
    unexpected = sorted(untrusted - SKOPS_TRUSTED)
    if unexpected:
        raise UserError(
            f"{path}: holds types enstack never writes ({unexpected[0]}); refusing to load it"
        )
    return sio.load(path, trusted=sorted(untrusted))


def _scaler_to_json(scaler: StandardScaler) -> dict:
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}


def _scaler_from_json(data: dict) -> StandardScaler:
    scaler = StandardScaler()
    scaler.mean_ = np.asarray(data["mean"])
    scaler.scale_ = np.asarray(data["scale"])
    scaler.var_ = scaler.scale_**2
    scaler.n_features_in_ = len(scaler.mean_)
    return scaler
