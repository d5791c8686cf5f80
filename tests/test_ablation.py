"""The ablation: every row, a selection that never looks at test, and both modes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from enstack.config import Config, DataConfig, ModelConfig, ScratchConfig, StackingConfig
from enstack.errors import UserError
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


def test_selection_never_looks_at_test() -> None:
    config = _config()
    honest = run_ablation(config, _features(), progress=False)["selected"]
    rng = np.random.default_rng(9)
    scrambled = run_ablation(
        config, _features(test_labels=rng.integers(0, 5, 200)), progress=False
    )["selected"]
    assert (honest.models, honest.meta) == (scrambled.models, scrambled.meta)
    assert "c" not in honest.models or len(honest.models) > 1  # the noise model alone loses


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
