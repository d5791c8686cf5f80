"""Exports read the same way by other tools: Hugging Face's `pipeline("text-classification")`
on every family's export answers as enstack does, long functions included (truncated, not
crashing). A mean-pooled (UniXcoder) export is refused unless the caller allows its shipped
code (`trust_remote_code=True`), and then agrees too: never silently read as CLS-pooled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from enstack.cli import main
from enstack.data.synthetic import generate
from enstack.scan.model import load_scan_model

from support import TINY_MODEL, write_config

FAMILIES = ("codebert", "graphcodebert", "unixcoder")
MEAN_POOLED = {"unixcoder"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("exports")
    cfg = write_config(
        root / "c.yaml",
        {
            "run_dir": str(root / "run"),
            "data": {"format": "synthetic", "synthetic": {"n_per_class": 20}},
            # graphcodebert without its data-flow graph: an export that reads the graph is
            # refused by transformers on purpose (tests/unit/test_dfg.py)
            "models": [
                {"name": f, "family": f, "scratch": TINY_MODEL, "dfg": False} for f in FAMILIES
            ],
            "training": {
                "epochs": 1,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "max_length": 64,
                "save_steps": 0,
                "device": "cpu",
            },
        },
    )
    for family in FAMILIES:
        assert main(["train", "--config", str(cfg), "--model", family]) == 0
    from enstack.config import load_config

    return root / "run", load_config(cfg)


@pytest.mark.parametrize("family", FAMILIES)
def test_pipeline_on_an_export_agrees_with_enstack(run, family: str, capfd) -> None:
    from transformers import pipeline

    run_dir, config = run
    export = run_dir / "models" / family / "best"
    chunk = next(generate(config.data, seed=7))
    codes = [*chunk.codes[:30], "int f(void) {\n" + "  x = x + 1;\n" * 200 + "}\n"]  # > 64
    # the pipeline truncates a long function to its first max_length tokens: compare with
    # enstack reading it the same way (its default scores every window)
    ours = load_scan_model(export, device="cpu", long_functions="truncate").predict_proba(codes)[0]
    seen = capfd.readouterr()
    assert "custom code" not in seen.out + seen.err  # enstack never offers to run it

    mean_pooled = family in MEAN_POOLED
    if mean_pooled:  # the shipped file spells the type itself: it cannot import enstack
        from enstack.models import hf_mean_pooled
        from enstack.registries.families import MEAN_POOLED_TYPE

        saved = json.loads((export / "config.json").read_text())
        assert saved["model_type"] == hf_mean_pooled.MODEL_TYPE == MEAN_POOLED_TYPE
        # loading it as a plain RoBERTa classifier must fail, not answer wrongly
        with pytest.raises(ValueError, match="trust_remote_code"):
            pipeline("text-classification", model=str(export), device=-1, top_k=None)
    classify = pipeline(
        "text-classification",
        model=str(export),
        device=-1,
        top_k=None,
        trust_remote_code=mean_pooled,
    )
    settings = json.loads((export / "tokenizer_config.json").read_text())
    assert settings["model_max_length"] == 64
    theirs = np.zeros_like(ours)
    labels = json.loads((export / "config.json").read_text())["label2id"]
    for i, answer in enumerate(classify(codes, truncation=True)):
        for entry in answer:
            theirs[i, labels[entry["label"]]] = entry["score"]
    assert (theirs.argmax(1) == ours.argmax(1)).all()
    np.testing.assert_allclose(theirs, ours, atol=1e-4)


def test_the_encoding_length_is_read_from_the_export(tmp_path: Path) -> None:
    """Stack features, evaluation and the scanner encode at the length the export was trained
    at (its enstack.json), not at a config's that may have changed since."""
    from enstack.errors import UserError
    from enstack.models.contract import recorded_max_length, trained_length

    export = tmp_path / "best"
    export.mkdir()
    assert recorded_max_length(export) is None and trained_length(export, 510) == 510
    (export / "enstack.json").write_text('{"family": "codebert", "max_length": 128}')
    assert recorded_max_length(export) == 128 and trained_length(export, 510) == 128
    with pytest.raises(UserError, match="exceeds the model's 100 positions"):
        trained_length(export, 100)
    for hostile in ('{"max_length": true}', '{"max_length": "128"}', "[1, 2]", "{"):
        (export / "enstack.json").write_text(hostile)
        assert recorded_max_length(export) is None and trained_length(export, 510) == 510
