"""Meta-classifiers with the paper's hyperparameters (Table II), overridable from the config.

`MetaClassifier` wraps an estimator so that it always answers with one probability column per
class, even when a class is absent from the rows it was fitted on (a small validation split
often lacks the rarest class), and so that it persists without pickle: scikit-learn estimators
through skops, XGBoost through its own JSON model format.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
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
from enstack.fsutil import read_untrusted_json
from enstack.registries.metas import COMBINERS, META_NAMES
from enstack.stack.xgb_file import read_xgb_model

MAX_SKOPS_SCHEMA = 64 << 20  # the schema of a 200-tree forest is a few MiB
MAX_SKOPS_ARRAYS = 1 << 30  # its arrays, about 5 MiB
# Plain containers and numbers a skops schema names beside the estimators.
SKOPS_PLAIN = {
    *(f"builtins.{t}" for t in ("dict", "list", "str", "tuple", "int", "float", "bool")),
    *(f"numpy.{t}" for t in ("ndarray", "dtype", "float64", "float32", "int64", "int32")),
    "numpy.bool_",
}
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


class ProbabilityMean:
    """The mean of the base models' probability blocks: equal weights (soft voting), or with
    `fit_weights` one non-negative weight per model, summing to 1, that minimises the log-loss
    on the rows it is fitted on. Input: the models' probabilities side by side (n, m * k)."""

    def __init__(self, n_classes: int, fit_weights: bool) -> None:
        self.n_classes = n_classes
        self.fit_weights = fit_weights
        self.weights: np.ndarray | None = None

    def _blocks(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] % self.n_classes:
            raise ValueError(f"{x.shape[1]} features are not blocks of {self.n_classes} classes")
        return x.reshape(len(x), -1, self.n_classes)  # (rows, models, classes)

    def fit(self, x: np.ndarray, y: np.ndarray) -> ProbabilityMean:
        blocks = self._blocks(x)
        models = blocks.shape[1]
        self.weights = np.full(models, 1.0 / models)
        if self.fit_weights and models > 1:
            self.weights = _log_loss_weights(blocks, y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        assert self.weights is not None, "fit first"
        return np.einsum("nmk,m->nk", self._blocks(x), self.weights)


def _log_loss_weights(blocks: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights on the simplex (a softmax of free parameters) minimising the mean log-loss."""
    from scipy.optimize import minimize
    from scipy.special import softmax

    truth = blocks[np.arange(len(y)), :, y]  # (rows, models): each model's P(true class)

    def loss(theta: np.ndarray) -> float:
        return float(-np.log(np.clip(truth @ softmax(theta), 1e-12, None)).mean())

    start = np.zeros(blocks.shape[1])
    return softmax(minimize(loss, start, method="L-BFGS-B").x)


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
    if name in COMBINERS:
        return f"{name} has no parameters" if params else None
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
        self.classes_: np.ndarray | None = None
        if name in COMBINERS:  # probabilities in, probabilities out: no scaling, all classes
            self.scale = False
            self.estimator = ProbabilityMean(n_classes, fit_weights=name == "wmean")
            return
        estimator = paper_estimator(name, seed, self.params)
        self.estimator = (
            Pipeline([("scale", StandardScaler()), ("model", estimator)]) if scale else estimator
        )

    def fit(self, x: np.ndarray, y: np.ndarray) -> MetaClassifier:
        self.classes_ = np.unique(y)
        if isinstance(self.estimator, ProbabilityMean):
            self.estimator.fit(x, y)
            return self
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
        if isinstance(self.estimator, ProbabilityMean):
            return self.estimator.predict_proba(x)
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
        if isinstance(self.estimator, ProbabilityMean):
            info["weights"] = self.estimator.weights.tolist()
        elif self.name == "xgboost" and self.estimator is not None:
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
        info = _meta_info(directory / "meta.json")
        meta = cls(info["name"], info["n_classes"], info["seed"], info["params"], info["scale"])
        meta.classes_ = np.asarray(info["classes"])
        if isinstance(meta.estimator, ProbabilityMean):
            meta.estimator.weights = _weights(info.get("weights"), directory)
        elif len(meta.classes_) == 1:
            meta.estimator = None
        elif info["name"] == "xgboost":
            model = _load_xgboost(directory / "meta.xgb.json", len(meta.classes_))
            if info["scale"]:
                scaler = _scaler_from_json(info.get("scaler"), directory / "meta.json")
                meta.estimator = Pipeline([("scale", scaler), ("model", model)])
            else:
                meta.estimator = model
        else:
            meta.estimator = _load_skops(directory / "meta.skops")
        meta._probe(directory)
        return meta

    def _probe(self, directory: Path) -> None:
        """One row of zeros through the loaded estimator: damaged or crafted weights (NaN in
        an SVM, a forest of the wrong width) are refused here, at load, not mid-scan."""
        width = getattr(self.estimator, "n_features_in_", None)
        if self.estimator is None or isinstance(self.estimator, ProbabilityMean) or not width:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                probs = self.predict_proba(np.zeros((1, int(width))))
        except (ValueError, TypeError, IndexError):
            probs = np.full((1, 1), np.nan)
        if probs.shape != (1, self.n_classes) or not np.isfinite(probs).all():
            raise UserError(
                f"{directory}: the meta-classifier gives no finite probabilities for "
                f"{self.n_classes} classes (its weights are damaged or crafted)"
            )


META_KEYS = {"name": str, "n_classes": int, "seed": int, "params": dict, "scale": bool,
             "classes": list}  # fmt: skip


def _meta_info(path: Path) -> dict:
    """meta.json, its keys and their types checked before anything is built from it."""
    info = read_untrusted_json(path, 16 << 20, str(path), "not a meta-classifier enstack wrote")
    if not isinstance(info, dict):
        raise UserError(f"{path}: not a JSON object; not a meta-classifier enstack wrote")
    for key, kind in META_KEYS.items():
        if not isinstance(info.get(key), kind):
            raise UserError(f"{path}: `{key}` missing or not a {kind.__name__}")
    if info["name"] not in META_NAMES:
        raise UserError(f"{path}: unknown meta-classifier {info['name']!r}")
    return info


def _weights(value: object, directory: Path) -> np.ndarray:
    """A combiner's weights as written: finite, non-negative numbers."""
    try:
        weights = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        weights = np.empty(0)
    if weights.ndim != 1 or not len(weights) or not np.all(np.isfinite(weights) & (weights >= 0)):
        raise UserError(f"{directory / 'meta.json'}: 'weights' is not a list of weights")
    return weights


def _load_skops(path: Path):
    """Only the types enstack writes, every one of them checked: skops itself trusts every
    scikit-learn type, so a DummyClassifier that calls everything benign would load."""
    import skops.io as sio

    unexpected = sorted(_skops_types(path) - SKOPS_TRUSTED - SKOPS_PLAIN)
    if unexpected:
        raise UserError(
            f"{path}: holds types enstack never writes ({unexpected[0]}); refusing to load it"
        )
    untrusted = set(sio.get_untrusted_types(file=path))
    unexpected = sorted(untrusted - SKOPS_TRUSTED)
    if unexpected:
        raise UserError(
            f"{path}: holds types enstack never writes ({unexpected[0]}); refusing to load it"
        )
    return sio.load(path, trusted=sorted(untrusted))


def _skops_types(path: Path) -> set[str]:
    """Every `module.Class` that a skops file's schema names, read with its size bounded
    (a zip bomb's 800 MB schema stops at MAX_SKOPS_SCHEMA) and walked without recursion."""
    try:
        with zipfile.ZipFile(path) as archive:
            with archive.open("schema.json") as handle:
                data = handle.read(MAX_SKOPS_SCHEMA + 1)
            if len(data) > MAX_SKOPS_SCHEMA:
                raise UserError(f"{path}: schema over {MAX_SKOPS_SCHEMA >> 20} MiB; refusing it")
            _check_skops_arrays(archive, path)
        schema = json.loads(data)
    except (OSError, KeyError, ValueError, RecursionError, zipfile.BadZipFile):
        raise UserError(f"{path}: not a skops file enstack wrote (unreadable schema)") from None
    found: set[str] = set()
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            module, name = item.get("__module__"), item.get("__class__")
            if isinstance(module, str) and isinstance(name, str):
                found.add(f"{module}.{name}")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _check_skops_arrays(archive: zipfile.ZipFile, path: Path) -> None:
    """Every array in the file, read as plain numbers (no pickle) with their total size
    bounded: NaN or infinite weights (an SVM's coefficients) are refused before loading."""
    arrays = [info for info in archive.infolist() if info.filename.endswith(".npy")]
    if sum(info.file_size for info in arrays) > MAX_SKOPS_ARRAYS:
        raise UserError(f"{path}: arrays over {MAX_SKOPS_ARRAYS >> 20} MiB; refusing it")
    for info in arrays:
        array = np.load(io.BytesIO(archive.read(info)), allow_pickle=False)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise UserError(f"{path}: holds weights that are not finite (damaged or crafted)")


def _scaler_to_json(scaler: StandardScaler) -> dict:
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}


def _load_xgboost(path: Path, classes: int):
    from xgboost import XGBClassifier
    from xgboost.core import XGBoostError

    model = XGBClassifier()
    try:
        # every tree is checked before XGBoost reads it
        model.load_model(read_xgb_model(path, classes))
    except XGBoostError as exc:
        reason = " ".join(str(exc).split())[:160]
        raise UserError(f"{path}: XGBoost cannot load it ({reason})") from None
    return model


def _scaler_from_json(data: object, where: Path) -> StandardScaler:
    try:
        mean = np.asarray(data["mean"], dtype=np.float64)  # type: ignore[index]
        scale = np.asarray(data["scale"], dtype=np.float64)  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        mean = scale = np.empty(0)
    if (
        mean.ndim != 1
        or mean.shape != scale.shape
        or not len(mean)
        or not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all())
    ):
        raise UserError(f"{where}: 'scaler' is not a mean and a positive scale per feature")
    scaler = StandardScaler()
    scaler.mean_ = mean
    scaler.scale_ = scale
    scaler.var_ = scaler.scale_**2
    scaler.n_features_in_ = len(scaler.mean_)
    return scaler
