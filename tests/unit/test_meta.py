"""Meta-classifiers: separable cases, missing classes, and persistence without pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from enstack.errors import UserError
from enstack.registries.metas import PAPER_METAS
from enstack.stack.meta import MetaClassifier


def _separable(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five well-separated clusters, like five confident base models agreeing."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    x = np.eye(5)[y] * 4 + rng.normal(0, 0.3, (n, 5))
    return x, y


@pytest.mark.parametrize("name", PAPER_METAS)
@pytest.mark.parametrize("scale", [False, True])
def test_separable_features_are_learnt(name: str, scale: bool) -> None:
    x, y = _separable()
    x_test, y_test = _separable(seed=1)
    meta = MetaClassifier(name, 5, seed=0, scale=scale).fit(x, y)
    probs = meta.predict_proba(x_test)
    assert probs.shape == (len(x_test), 5)
    assert np.allclose(probs.sum(1), 1.0)
    assert (probs.argmax(1) == y_test).mean() > 0.97


@pytest.mark.parametrize("name", PAPER_METAS)
def test_a_class_missing_from_the_fit_rows_gets_zero_probability(name: str) -> None:
    x, y = _separable()
    keep = y != 2
    meta = MetaClassifier(name, 5).fit(x[keep], y[keep])
    probs = meta.predict_proba(x)
    assert probs.shape[1] == 5 and np.all(probs[:, 2] == 0)
    assert (probs.argmax(1)[y != 2] == y[y != 2]).mean() > 0.97


def test_paper_hyperparameters_are_the_defaults_and_overridable() -> None:
    lr = MetaClassifier("lr", 5).estimator
    assert lr.estimator.solver == "liblinear" and lr.estimator.max_iter == 200
    svm = MetaClassifier("svm", 5).estimator
    assert svm.kernel == "rbf" and svm.probability and svm.random_state == 42
    rf = MetaClassifier("rf", 5).estimator
    assert rf.n_estimators == 200 and rf.max_depth == 10
    xgb = MetaClassifier("xgboost", 5).estimator
    assert xgb.n_estimators == 100 and xgb.learning_rate == 0.1 and xgb.max_depth == 6
    assert MetaClassifier("rf", 5, params={"n_estimators": 7}).estimator.n_estimators == 7


@pytest.mark.parametrize("name", PAPER_METAS)
@pytest.mark.parametrize("scale", [False, True])
def test_save_and_load_give_the_same_answers(tmp_path: Path, name: str, scale: bool) -> None:
    x, y = _separable()
    meta = MetaClassifier(name, 5, scale=scale).fit(x, y)
    files = meta.save(tmp_path)
    assert not any(f.endswith((".pkl", ".pickle", ".joblib")) for f in files)
    loaded = MetaClassifier.load(tmp_path)
    assert np.allclose(loaded.predict_proba(x), meta.predict_proba(x))


def test_a_skops_file_with_foreign_types_is_refused(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _separable()
    MetaClassifier("lr", 5).fit(x, y).save(tmp_path)
    sio.dump(KNeighborsClassifier().fit(x, y), tmp_path / "meta.skops")
    with pytest.raises(UserError, match="types enstack never writes"):
        MetaClassifier.load(tmp_path)


def test_a_pickle_in_place_of_the_skops_file_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    x, y = _separable()
    MetaClassifier("svm", 5).fit(x, y).save(tmp_path)
    (tmp_path / "meta.skops").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(Exception):  # noqa: B017 (skops' own error for a non-skops file)
        MetaClassifier.load(tmp_path)
    assert not marker.exists()


def _three_models(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three base models' probabilities side by side: good, mediocre, noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    blocks = []
    for noise in (0.5, 2.0, 50.0):
        logits = np.eye(5)[y] * 3 + rng.normal(0, noise, (n, 5))
        blocks.append(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
    return np.concatenate(blocks, axis=1), y


def test_soft_voting_is_the_mean_of_the_probabilities() -> None:
    x, y = _three_models()
    vote = MetaClassifier("vote", 5).fit(x[:10], y[:10])  # fitting learns nothing
    expected = (x[:, :5] + x[:, 5:10] + x[:, 10:]) / 3
    np.testing.assert_allclose(vote.predict_proba(x), expected, rtol=1e-12)


def test_weighted_mean_weights_the_good_model_and_stays_a_distribution(tmp_path: Path) -> None:
    x, y = _three_models()
    wmean = MetaClassifier("wmean", 5).fit(x, y)
    weights = wmean.estimator.weights
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0)
    assert weights[0] > weights[1] > weights[2]  # good > mediocre > noise
    x_test, y_test = _three_models(seed=1)
    probs = wmean.predict_proba(x_test)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    vote = MetaClassifier("vote", 5).fit(x, y).predict_proba(x_test)
    assert (probs.argmax(1) == y_test).mean() > (vote.argmax(1) == y_test).mean()
    files = wmean.save(tmp_path)
    assert files == ["meta.json"]  # weights in JSON, nothing else
    np.testing.assert_allclose(MetaClassifier.load(tmp_path).predict_proba(x_test), probs)


@pytest.mark.parametrize("weights", ["[-1, 2]", '"x"', "[]", "[NaN]"])
def test_hostile_combiner_weights_are_refused(tmp_path: Path, weights: str) -> None:
    x, y = _three_models()
    MetaClassifier("wmean", 5).fit(x, y).save(tmp_path)
    text = (tmp_path / "meta.json").read_text()
    start = text.index('"weights"')
    end = text.index("]", start) + 1
    (tmp_path / "meta.json").write_text(text[:start] + f'"weights": {weights}' + text[end:])
    with pytest.raises(UserError, match="weights"):
        MetaClassifier.load(tmp_path)
