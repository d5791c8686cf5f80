"""The ablation: every row, a selection that never looks at test, and both modes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from enstack.config import Config, DataConfig, ModelConfig, ScratchConfig, StackingConfig
from enstack.errors import UserError
from enstack.registries.metas import complexity
from enstack.stack.ablation import run_ablation, subsets
from enstack.stack.bundle import load_bundle, write_bundle
from enstack.stack.features import ModelFeatures
from enstack.stack.meta import MetaClassifier

NAMES = ["a", "b", "c"]


def _config(mode: str = "paper", metas: tuple[str, ...] = ("lr", "rf")) -> Config:
    models = [ModelConfig(name=n, family="codebert", scratch=ScratchConfig()) for n in NAMES]
    return Config(
        data=DataConfig(), models=models, stacking=StackingConfig(mode=mode, meta=list(metas))
    )


def _features(seed: int = 0, test_labels: np.ndarray | None = None) -> dict:
    """Model a is good, b is mediocre, c is noise; val and test drawn alike."""
    rng = np.random.default_rng(seed)
    out = {}
    ys = {split: rng.integers(0, 5, 200) for split in ("train", "val", "test")}
    if test_labels is not None:
        ys["test"] = test_labels
    for name, noise in zip(NAMES, (0.5, 2.0, 50.0), strict=True):
        splits = {}
        for split, y in ys.items():
            logits = np.eye(5)[y] * 3 + rng.normal(0, noise, (len(y), 5))
            probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            splits[split] = {"probs": probs, "logits": logits, "embedding": logits, "labels": y}
        out[name] = ModelFeatures(name, splits, fingerprint=name)
    return out


@pytest.mark.slow
def test_every_row_is_present() -> None:
    config = _config()
    result = run_ablation(config, _features(), progress=False)
    keys = {(tuple(r["models"]), r["meta"], r["split"]) for r in result["rows"]}
    expected = {((n,), None, s) for n in NAMES for s in ("val", "test")}
    expected |= {
        (combo, meta, split)
        for combo in subsets(NAMES)
        for meta in ("lr", "rf")
        for split in ("val", "test")
    }
    assert keys == expected and len(result["rows"]) == len(expected)
    assert len(subsets(NAMES)) == 7
    assert set(subsets(NAMES)) == {c for k in (1, 2, 3) for c in itertools.combinations(NAMES, k)}
    for row in result["rows"]:
        assert all(
            0 <= row[k] <= 1 for k in ("accuracy", "precision", "recall", "f1", "macro_f1", "auc")
        )
        assert row["recall"] == pytest.approx(row["accuracy"])  # weighted recall = accuracy


@pytest.mark.slow
def test_selection_never_looks_at_test() -> None:
    config = _config()
    honest = run_ablation(config, _features(), progress=False)["selected"]
    rng = np.random.default_rng(9)
    scrambled = run_ablation(
        config, _features(test_labels=rng.integers(0, 5, 200)), progress=False
    )["selected"]
    assert (honest.models, honest.meta) == (scrambled.models, scrambled.meta)
    assert "c" not in honest.models or len(honest.models) > 1  # the noise model alone loses


@pytest.mark.slow
def test_cv_mode_scores_out_of_fold() -> None:
    features = _features()
    paper = run_ablation(_config("paper"), features, progress=False)
    cv = run_ablation(_config("cv"), features, progress=False)

    def val_f1(result, models, meta):
        return next(
            r["f1"]
            for r in result["rows"]
            if r["models"] == models and r["meta"] == meta and r["split"] == "val"
        )

    # a random forest partly memorises its fit rows: in-sample it scores well above chance
    # (0.2) even on pure noise; out-of-fold it does not
    assert val_f1(paper, ["c"], "rf") > val_f1(cv, ["c"], "rf") + 0.2
    assert val_f1(cv, ["c"], "rf") < 0.35


@pytest.mark.slow
def test_bundle_round_trip_and_tamper_refusal(tmp_path: Path) -> None:
    features = _features()
    result = run_ablation(_config(), features, progress=False)
    chosen = result["selected"]
    exports = {}
    for name in chosen.models:
        export = tmp_path / "exports" / name
        export.mkdir(parents=True)
        (export / "config.json").write_text(json.dumps({"name": name}))
        exports[name] = export
    write_bundle(tmp_path / "bundle", exports, chosen.classifier, "probs", ["x"] * 5)
    bundle = load_bundle(tmp_path / "bundle")
    inputs = {m: features[m].splits["test"]["probs"] for m in chosen.models}
    assert np.allclose(bundle.predict_proba(inputs), chosen.test_probs)

    meta_file = next(p for p in (tmp_path / "bundle" / "meta").iterdir() if p.name != "meta.json")
    tampered = bytearray(meta_file.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    meta_file.write_bytes(bytes(tampered))
    with pytest.raises(UserError, match=f"{meta_file.name}: sha256 does not match the manifest"):
        load_bundle(tmp_path / "bundle")


def test_unknown_meta_classifier_is_rejected_by_the_config() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        StackingConfig(meta=["lr", "knn"])
    with pytest.raises(UserError, match="unknown meta-classifier"):
        MetaClassifier("knn", 5)


def _grouped_features(seed: int = 0) -> tuple[dict, dict]:
    """Rows in groups of 10, one class per group (as a Juliet family is one flaw). Model a is
    right 70% of the time whatever the group; model b knows nothing about the flaw but gives
    every group its own fixed output, a fingerprint a forest can map to the group's class."""
    rng = np.random.default_rng(seed)
    features: dict = {"a": {}, "b": {}}
    groups = {}
    for split, first_group in (("val", 0), ("test", 1000)):  # test: groups never seen
        group = np.repeat(np.arange(60) + first_group, 10)
        y = np.repeat(rng.integers(0, 5, 60), 10)
        right = rng.random(len(y)) < 0.7
        guess = np.where(right, y, rng.integers(0, 5, len(y)))
        a = np.full((len(y), 5), 0.1)
        a[np.arange(len(y)), guess] = 0.6
        fingerprints = rng.dirichlet(np.ones(5), 60)
        b = fingerprints[group - first_group] + rng.normal(0, 0.005, (len(y), 5))
        features["a"][split] = {"probs": a, "logits": a, "embedding": a, "labels": y}
        features["b"][split] = {"probs": b, "logits": b, "embedding": b, "labels": y}
        groups[split] = group
    models = {
        name: ModelFeatures(name, splits, fingerprint=name) for name, splits in features.items()
    }
    return models, groups


def _two_model_config(metas: list[str]) -> Config:
    models = [ModelConfig(name=n, family="codebert", scratch=ScratchConfig()) for n in ("a", "b")]
    return Config(
        data=DataConfig(), models=models, stacking=StackingConfig(mode="cv", meta=metas), seed=1
    )


@pytest.mark.slow
def test_grouped_folds_see_through_a_meta_classifier_that_memorises_groups(
    tmp_path: Path,
) -> None:
    features, groups = _grouped_features()
    config = _two_model_config(["rf"])
    rowwise = run_ablation(config, features, progress=False)["selected"]
    grouped_result = run_ablation(config, features, progress=False, groups=groups)
    grouped = grouped_result["selected"]
    # scored on rows of groups it was fitted on, the forest looks nearly perfect; scored on
    # unseen groups it is not, and the selection falls back to model a alone
    assert "b" in rowwise.models and rowwise.meta == "rf"
    assert (grouped.models, grouped.meta) == (("a",), None)
    y_test = features["a"].splits["test"]["labels"]

    def accuracy(combo) -> float:
        return float((combo.test_probs.argmax(1) == y_test).mean())

    assert accuracy(grouped) > accuracy(rowwise)  # on the unseen test groups
    cv = next(r["cv"] for r in grouped_result["rows"] if r["models"] == ["a", "b"])
    assert cv["folds"] == 5 and cv["std"] > 0 and cv["metric"] == "f1"

    # a single model selected ships as a bundle that answers with that model's probabilities
    exports = {"a": tmp_path / "a"}
    exports["a"].mkdir()
    (exports["a"] / "config.json").write_text("{}")
    write_bundle(tmp_path / "bundle", exports, grouped.classifier, "probs", ["x"] * 5)
    probs = features["a"].splits["test"]["probs"]
    np.testing.assert_allclose(load_bundle(tmp_path / "bundle").predict_proba({"a": probs}), probs)


def test_within_noise_the_simpler_candidate_wins() -> None:
    features, groups = _grouped_features(seed=3)
    # model b made as good as a, and independent of it: averaging them helps a little
    for split in ("val", "test"):
        y = features["a"].splits[split]["labels"]
        rng = np.random.default_rng(len(split))
        right = rng.random(len(y)) < 0.7
        guess = np.where(right, y, rng.integers(0, 5, len(y)))
        b = np.full((len(y), 5), 0.1)
        b[np.arange(len(y)), guess] = 0.6
        features["b"].splits[split].update(probs=b, logits=b, embedding=b)
    result = run_ablation(
        _two_model_config(["vote", "lr"]), features, progress=False, groups=groups
    )
    cv = {(tuple(r["models"]), r["meta"]): r["cv"] for r in result["rows"] if "cv" in r}
    chosen = result["selected"]
    best = max(cv.values(), key=lambda c: c["mean"])
    assert cv[(chosen.models, chosen.meta)]["mean"] >= best["mean"] - best["se"]
    simpler_than_chosen = [
        key
        for key, c in cv.items()
        if c["mean"] >= best["mean"] - best["se"]
        and (complexity(key[1]), len(key[0])) < (complexity(chosen.meta), len(chosen.models))
    ]
    assert not simpler_than_chosen
    assert chosen.meta != "lr"  # a fitted combiner never wins within noise of a vote


def test_fewer_folds_than_asked_are_said(capsys) -> None:
    from enstack.stack.ablation import _say_fewer_folds, val_folds

    y = np.array([0] * 20 + [1] * 2)  # the rarest class fills two folds, not five
    folds = val_folds(y, None, 5, 0)
    assert len(np.unique(folds)) == 2
    _say_fewer_folds(len(np.unique(folds)), 5, y, None)
    err = capsys.readouterr().err
    assert "stacking.cv_folds 5" in err and "rarest class 2 rows" in err and "2 folds" in err
    _say_fewer_folds(5, 5, y, None)
    assert capsys.readouterr().err == ""


def test_ties_are_not_bolded_as_best() -> None:
    from enstack.evaluate.tables import unique_best

    assert unique_best([0.5, 0.7, None, 0.6], max) == 0.7
    assert unique_best([0.333, 0.333, 0.333], max) is None  # three models at the majority F1
    assert unique_best([0.1, 0.1, 0.2], min) is None
    assert unique_best([None, None], max) is None


def test_a_model_that_answers_one_class_is_warned_about(tmp_path: Path, capsys) -> None:
    """On small real data a model can predict the same class for every val row; its F1 is
    that class's share and looks like a score. Training says so at the epoch's end."""
    from enstack.cli import main

    from support import tiny_config

    config = tiny_config(tmp_path / "c.yaml", tmp_path / "run", epochs=1, learning_rate=1e-7)
    assert main(["train", "--config", str(config), "--model", "m"]) == 0
    err = capsys.readouterr().err
    metrics = [json.loads(line) for line in (tmp_path / "run/models/m/metrics.jsonl").open()]
    evals = [m for m in metrics if m["event"] == "eval"]
    assert evals and all("predicted_classes" in m for m in evals)
    one_class = evals[-1]["predicted_classes"] == 1
    assert ("predicts one class for every val row" in err) == one_class
    assert one_class  # a learning rate of 1e-7 leaves the random head's favourite class
