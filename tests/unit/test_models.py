"""Model families load local pretrained directories the way hub models load on a user's machine.

Each test saves a tiny model with `save_pretrained` (and a tokenizer trained on the fly) to a
temporary directory and points `pretrained:` at it: the same code path that loads
microsoft/codebert-base, minus the download.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from enstack.config import ModelConfig, ScratchConfig, load_config
from enstack.encode import tokenize
from enstack.models.loading import load_classifier, train_scratch_tokenizer
from enstack.train.trainer import train_model

from support import assert_user_error, run_cli, write_config

CODES = [f"int f{i}(char *p) {{ return p[{i}] + strlen(p); }}" for i in range(200)]


def _save_tiny_roberta(directory: Path, family: str) -> Path:
    from transformers import RobertaConfig, RobertaModel

    tokenizer = train_scratch_tokenizer(
        ModelConfig(name="t", family=family, scratch=ScratchConfig(vocab_size=400)), CODES
    )
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _save_tiny_bert(directory: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer()
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(
        CODES,
        trainers.WordPieceTrainer(
            vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _config(tmp_path: Path, family: str, pretrained: Path) -> Path:
    return write_config(
        tmp_path / "c.yaml",
        {
            "run_dir": str(tmp_path / "run"),
            "data": {"format": "synthetic", "synthetic": {"n_per_class": 12}},
            "models": [{"name": "m", "family": family, "pretrained": str(pretrained)}],
            "training": {
                "epochs": 1,
                "batch_size": 8,
                "max_length": 96,
                "save_steps": 0,
                "device": "cpu",
                "learning_rate": 1e-4,
            },
        },
    )


def test_a_graph_on_a_bert_encoder_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    """GraphCodeBERT's graph input (positions from 2, nodes at 0) needs RoBERTa's position
    scheme: a BERT directory with `dfg: true` ends in one error naming the model."""
    from enstack.cli import main

    cfg = _config(tmp_path, "auto", _save_tiny_bert(tmp_path / "pretrained"))
    code = main(["train", "--config", str(cfg), "--model", "m", "--set", "models.0.dfg=true"])
    assert code == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "models: m reads a data-flow graph" in errors[0]
    assert "'bert'" in errors[0] and "dfg: false" in errors[0]


@pytest.mark.parametrize("family", ["codebert", "graphcodebert", "unixcoder", "auto", "bert"])
def test_each_family_fine_tunes_from_a_local_directory(tmp_path: Path, family: str) -> None:
    pretrained = tmp_path / "pretrained"
    if family == "bert":
        _save_tiny_bert(pretrained)
    else:
        _save_tiny_roberta(pretrained, family)
    config = load_config(_config(tmp_path, "auto" if family == "bert" else family, pretrained))
    result = train_model(config, "m", progress=False)
    assert result.state.finished

    # the encoder started from the saved weights: the embeddings barely moved in 1 epoch,
    # while a random init would differ completely
    model, _ = load_classifier(result.paths.final)
    start = AutoModel.from_pretrained(pretrained).embeddings.position_embeddings.weight
    trained = model.encoder_module.embeddings.position_embeddings.weight
    assert torch.allclose(start, trained, atol=5e-3)
    assert not torch.allclose(start, torch.zeros_like(start))

    expected_pooling = "mean" if family == "unixcoder" else "cls"
    assert model.pooling == expected_pooling
    assert model.config.id2label[3] == "CWE-476"


def test_unixcoder_reads_its_encoder_only_format(tmp_path: Path) -> None:
    directory = _save_tiny_roberta(tmp_path / "ux", "unixcoder")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokens, offsets, _ = tokenize(["int x;"], tokenizer, "unixcoder", max_length=64)
    row = tokenizer.convert_ids_to_tokens(tokens[: int(offsets[1])].tolist())
    assert row[:3] == ["<s>", "<encoder-only>", "</s>"] and row[-1] == "</s>"
    tokens, offsets, _ = tokenize(["int x;"], tokenizer, "codebert", max_length=64)
    row = tokenizer.convert_ids_to_tokens(tokens[: int(offsets[1])].tolist())
    assert row[0] == "<s>" and row[1] != "<encoder-only>" and row[-1] == "</s>"


def test_truncation_respects_max_length(tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(_save_tiny_roberta(tmp_path / "ux", "unixcoder"))
    tokens, offsets, _ = tokenize([" ".join(CODES)], tokenizer, "unixcoder", max_length=40)
    assert int(offsets[1]) == 40 and int(tokens[39]) == tokenizer.sep_token_id


def test_cls_export_loads_in_transformers_with_identical_logits(trained_run: Path) -> None:
    export = trained_run / "run" / "models" / "m" / "final"
    ours, tokenizer = load_classifier(export)
    theirs = AutoModelForSequenceClassification.from_pretrained(export).eval()
    batch = tokenizer(CODES[:4], padding=True, return_tensors="pt")
    with torch.inference_mode():
        a = ours(batch["input_ids"], batch["attention_mask"])
        b = theirs(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits
    assert torch.allclose(a, b, atol=1e-6)
    weights = load_file(str(export / "model.safetensors"))
    assert (
        any(k.startswith("roberta.") for k in weights) and "classifier.out_proj.weight" in weights
    )


@pytest.mark.slow
def test_unreachable_hub_id_says_how_to_use_a_local_directory(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "run_dir": str(tmp_path / "run"),
            "data": {"format": "synthetic", "synthetic": {"n_per_class": 12}},
            "models": [
                {"name": "m", "family": "codebert", "pretrained": "microsoft/codebert-base"}
            ],
        },
    )
    os.environ["HF_HUB_OFFLINE"] = "1"  # what a machine without the hub sees, without waiting
    try:
        result = run_cli("train", "--config", str(cfg), "--model", "m")
    finally:
        del os.environ["HF_HUB_OFFLINE"]
    assert_user_error(result, "microsoft/codebert-base", "local", "pretrained")
    assert "note: loading 'microsoft/codebert-base' from the Hugging Face hub" in result.stderr


@pytest.mark.slow
def test_directory_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cfg = _config(tmp_path, "codebert", tmp_path / "empty")
    assert_user_error(
        run_cli("train", "--config", str(cfg), "--model", "m"),
        str(tmp_path / "empty"),
        "no config.json",
    )


@pytest.mark.slow
def test_unknown_model_name(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "codebert", tmp_path)
    assert_user_error(run_cli("train", "--config", str(cfg), "--model", "nope"), "'nope'")


def test_resume_does_not_touch_batches_before_its_position(
    trained_run: Path, tmp_path: Path, monkeypatch
) -> None:
    """O(1) resume: only the batches still to train are collated, none is thrown away."""
    import json
    import shutil

    from enstack import encode

    from support import tiny_config

    shutil.copytree(trained_run / "run", tmp_path / "run")
    cfg = load_config(
        tiny_config(tmp_path / "c.yaml", tmp_path / "run", save_steps=4, keep_checkpoints=3)
    )
    ckpts = sorted((tmp_path / "run" / "models" / "m" / "checkpoints").iterdir())
    states = {p: json.loads((p / "state.json").read_text()) for p in ckpts}
    first, state = next((p, s) for p, s in states.items() if s["step"] > 0)  # mid-epoch

    train_rows = []
    original = encode.EncodedSplit.collate

    def counting(self, rows: np.ndarray):
        if len(self) == 160:  # the train split (val and test have 20 rows each)
            train_rows.append(len(rows))
        return original(self, rows)

    monkeypatch.setattr(encode.EncodedSplit, "collate", counting)
    train_model(cfg, "m", resume=str(first), progress=False)
    per_epoch = state["total_batches"]
    assert len(train_rows) == (2 - state["epoch"]) * per_epoch - state["step"]
