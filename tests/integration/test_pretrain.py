"""`enstack pretrain`: masked-language pretraining on a corpus of C the test writes.

The masking rule and the corpus (deduplicated, decontaminated, split by hash) are checked in
place; the command runs on a few hundred functions and a tiny encoder, and its checkpoint
promise is held the way training's is: SIGKILL anywhere, resume, and the final and best
weights and metrics equal an uninterrupted twin's byte for byte; SIGTERM saves and exits
130; under torchrun, two ranks train it. Its export loads in `pipeline("fill-mask")` and is
what fine-tuning starts from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from enstack import versions
from enstack.api import load_config
from enstack.encode import ModelInputs
from enstack.pretrain.corpus import build_corpus, iter_codes
from enstack.pretrain.tokens import IGNORED, Masking, mask_tokens, step_generator

from support import (
    assert_user_error,
    kill_repeatedly,
    run_cli,
    sigterm_then_resume,
    slow_saves,
)

ENCODER = {
    "layers": 1,
    "hidden": 32,
    "heads": 2,
    "intermediate": 64,
    "vocab_size": 400,
    "attention_dropout": 0,
}
PAUSE = slow_saves(0.08)  # keeps each save open long enough to be hit
TYPES = ("int", "long", "char *", "size_t", "unsigned")
CALLS = ("memcpy(dst, src, n)", "strlen(src)", "free(p)", 'printf("%d\\n", n)', "abs(n)")


def _function(i: int) -> str:
    """A C function of its own: names, types, a loop or a branch, chosen by `i`."""
    kind, call = TYPES[i % len(TYPES)], CALLS[(i // 5) % len(CALLS)]
    body = (
        f"  for (int k = 0; k < n; k++)\n    total += k * {i % 7 + 1};\n"
        if i % 2
        else f"  if (n > {i % 11})\n    return {call};\n"
    )
    return f"{kind} fn_{i}(char *dst, const char *src, int n)\n{{\n  int total = {i};\n{body}  return total;\n}}\n"  # noqa: E501


def write_corpus(root: Path, files: int = 6, per_file: int = 40) -> Path:
    """`files` C files of `per_file` functions each, one file again under another name (its
    functions are duplicates), and a binary file with a C suffix (skipped)."""
    root.mkdir(parents=True)
    for f in range(files):
        text = "#include <string.h>\n\n" + "\n".join(
            _function(f * per_file + i) for i in range(per_file)
        )
        (root / f"file{f}.c").write_text(text)
    (root / "copy.c").write_text((root / "file0.c").read_text())
    (root / "blob.c").write_bytes(b"\x7fELF\0\0\0" + bytes(range(256)))
    return root


def pretrain_yaml(root: Path, corpus: Path | list[Path], **training: object) -> Path:
    paths = [str(p) for p in corpus] if isinstance(corpus, list) else [str(corpus)]
    settings = {
        "run_dir": str(root / "run"),
        "seed": 3,
        "pretrain": {"corpus": paths, "model": ENCODER, "max_length": 64, "val_fraction": 0.1},
        "training": {
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "save_steps": 10,
            "device": "cpu",
            **training,
        },
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "c.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _args(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "enstack", "pretrain", "--config", str(config), *extra]


# --- the masking rule -------------------------------------------------------------------------


def _masking() -> Masking:
    return Masking(0.15, mask_id=4, vocab_size=300, special=torch.tensor([0, 1, 2]))


def test_masking_follows_bert_s_rule_and_never_touches_framing() -> None:
    rows, width = 64, 100
    ids = torch.randint(5, 300, (rows, width))
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>
    mask = torch.ones(rows, width, dtype=torch.long)
    mask[:8, 50:] = 0  # padded rows
    ids[:8, 50:] = 1
    inputs = ModelInputs(ids, mask)
    masked_inputs, labels = mask_tokens(inputs, _masking(), step_generator(1, 7, 0))
    masked = masked_inputs.input_ids
    assert torch.equal(masked_inputs.attention_mask, mask)
    chosen = labels != IGNORED
    assert torch.equal(labels[chosen], ids[chosen])  # the originals are what is predicted
    assert not chosen[:, 0].any() and not chosen[:, -1].any() and not chosen[:8, 50:].any()
    assert 0.12 < chosen.float().sum() / mask[:, 1:-1].sum() < 0.18
    as_mask = (masked == 4) & chosen
    assert 0.7 < as_mask.sum() / chosen.sum() < 0.9  # 80% <mask>
    kept = (masked == ids) & chosen
    assert 0.04 < kept.sum() / chosen.sum() < 0.2  # 10% themselves (plus random hits)
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes
    # the same step masks the same tokens; another step others
    again, labels_again = mask_tokens(inputs, _masking(), step_generator(1, 7, 0))
    assert torch.equal(again.input_ids, masked) and torch.equal(labels_again, labels)
    other, _ = mask_tokens(inputs, _masking(), step_generator(1, 8, 0))
    assert not torch.equal(other.input_ids, masked)


def test_a_short_row_still_predicts_one_token() -> None:
    ids = torch.tensor([[0, 17, 2, 1, 1]])
    inputs = ModelInputs(ids, torch.tensor([[1, 1, 1, 0, 0]]))
    _, labels = mask_tokens(
        inputs, Masking(0.01, 4, 300, torch.tensor([0, 1, 2])), step_generator(0, 0, 0)
    )
    assert labels.tolist() == [[IGNORED, 17, IGNORED, IGNORED, IGNORED]]


# --- the corpus ---------------------------------------------------------------------------------


def _val_test_config(root: Path, functions: list[str]) -> Path:
    """A fine-tuning config whose val and test splits hold `functions` (and train others)."""
    rows = [{"code": _function(10_000 + i), "label": ("none", "CWE-119")[i % 2]} for i in range(20)]
    table = {
        "train": rows,
        "val": [{"code": functions[0], "label": "none"}],
        "test": [{"code": f, "label": "none"} for f in functions[1:]],
    }
    paths = {}
    for split, split_rows in table.items():
        paths[split] = root / f"{split}.csv"
        pa_table = pa.Table.from_pylist(split_rows)
        import pyarrow.csv as pacsv

        pacsv.write_csv(pa_table, paths[split])
    settings = {
        "run_dir": str(root / "ft-run"),
        "data": {
            "format": "csv",
            "labels": ["CWE-119", "none"],
            **{k: str(v) for k, v in paths.items()},
        },
    }
    path = root / "ft.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_the_corpus_is_deduplicated_decontaminated_and_split_by_hash(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "src")
    # two corpus functions are in a fine-tuning config's val and test, reformatted
    held = [_function(3), _function(45)]
    reformatted = ["\n".join("  " + line for line in f.split("\n")) for f in held]
    ft = _val_test_config(tmp_path, reformatted)
    config = load_config(pretrain_yaml(tmp_path, corpus), [f"pretrain.decontaminate=[{ft}]"])
    built = build_corpus(config, tmp_path / "out", progress=False)
    m = built.manifest
    assert m["files"] == 7 and m["files skipped (binary)"] == 1  # 6 files and the copy
    # function 3 is in file0.c and its copy: two contaminated occurrences, not a duplicate
    assert m["duplicates"] == 39 and m["contaminated"] == 3
    kept = {*iter_codes(built.split("train")), *iter_codes(built.split("val"))}
    assert len(kept) == m["rows"]["train"] + m["rows"]["val"] == 240 - 2
    assert {f.rstrip() for f in held} & kept == set() and _function(4).rstrip() in kept
    assert 0 < m["rows"]["val"] < 60
    # the same sources: reused as they are; the files in another order: the same split
    stamp = built.split("train").stat().st_mtime_ns
    assert build_corpus(config, tmp_path / "out", progress=False).manifest == m
    assert built.split("train").stat().st_mtime_ns == stamp
    files = [corpus / "file5.c", corpus / "file[0-4].c", corpus / "copy.c"]  # a glob too
    reordered = load_config(
        pretrain_yaml(tmp_path / "again", files), [f"pretrain.decontaminate=[{ft}]"]
    )
    again = build_corpus(reordered, tmp_path / "other", progress=False)
    assert set(iter_codes(again.split("val"))) == set(iter_codes(built.split("val")))


def test_a_dataset_s_code_column_joins_the_corpus(tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    corpus = write_corpus(tmp_path / "src", files=1)
    rows = [{"code": _function(5000 + i), "label": "CWE-119"} for i in range(30)]
    rows.append({"code": _function(0), "label": "none"})  # also in the files: a duplicate
    pacsv.write_csv(pa.Table.from_pylist(rows), tmp_path / "extra.csv")
    config = load_config(
        pretrain_yaml(tmp_path, corpus),
        [
            f"pretrain.datasets=[{{format: csv, path: {tmp_path / 'extra.csv'}, "
            "labels: [CWE-119, none]}]"
        ],
    )
    built = build_corpus(config, tmp_path / "out", progress=False)
    # file0.c and its copy (40 each), then the dataset's 31 rows, one of them file0.c's
    assert built.manifest["functions_read"] == 80 + 31 and built.manifest["duplicates"] == 41
    kept = {*iter_codes(built.split("train")), *iter_codes(built.split("val"))}
    assert _function(5029) in kept  # the dataset's text as it is (no cutting)
    # a changed dataset file is read again
    pacsv.write_csv(pa.Table.from_pylist(rows[:10]), tmp_path / "extra.csv")
    again = build_corpus(config, tmp_path / "out", progress=False)
    assert again.manifest["functions_read"] == 80 + 10


def test_a_bump_of_the_corpus_version_reads_the_corpus_again(tmp_path: Path, monkeypatch) -> None:
    corpus = write_corpus(tmp_path / "src", files=2)
    config = load_config(pretrain_yaml(tmp_path, corpus))
    first = build_corpus(config, tmp_path / "out", progress=False)
    stamp = first.split("train").stat().st_mtime_ns
    monkeypatch.setattr(versions, "PRETRAIN_CORPUS", versions.PRETRAIN_CORPUS + 1)
    second = build_corpus(config, tmp_path / "out", progress=False)
    assert second.split("train").stat().st_mtime_ns != stamp
    assert second.manifest["data_fingerprint"] == first.manifest["data_fingerprint"]


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "src", files=2)
    config = load_config(pretrain_yaml(tmp_path, corpus))
    first = build_corpus(config, tmp_path / "out", progress=False)
    with (corpus / "file1.c").open("a") as handle:
        handle.write(_function(9999))
    second = build_corpus(config, tmp_path / "out", progress=False)
    assert second.manifest["rows"] != first.manifest["rows"]
    assert second.manifest["data_fingerprint"] != first.manifest["data_fingerprint"]


# --- the command ------------------------------------------------------------------------------


@pytest.mark.slow
def test_pretrain_then_fill_mask_and_fine_tune_from_it(tmp_path: Path) -> None:
    from transformers import pipeline

    config = pretrain_yaml(tmp_path, write_corpus(tmp_path / "src"))
    done = run_cli("pretrain", "--config", str(config))
    assert done.code == 0, done.stderr
    best = tmp_path / "run" / "pretrain" / "models" / "encoder" / "best"
    assert f"model: {best}" in done.stdout and "best val MLM loss" in done.stdout
    assert "val MLM loss" in done.stderr and "Writing model shards" not in done.stderr
    record = json.loads((best / "enstack-pretrain.json").read_text())
    assert record["corpus"]["duplicates"] == 40 and record["mask_probability"] == 0.15
    lines = (best.parent / "metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(line) for line in lines]
    train_lines = [m for m in metrics if m["event"] == "train"]
    assert train_lines and all(m["tokens_per_s"] > 0 for m in train_lines)
    evals = [m for m in metrics if m["event"] == "eval"]
    assert len(evals) == 2 and evals[-1]["loss"] < evals[0]["loss"] + 1.0
    assert any((best.parent / "tb").iterdir())
    # the export is a Hugging Face MLM model with its tokenizer
    fill = pipeline("fill-mask", model=str(best))
    guesses = fill("int fn_1(char *dst, const char *src, int n)\n{\n  <mask> total = 1;\n}")
    assert len(guesses) == 5 and all(0.0 <= g["score"] <= 1.0 for g in guesses)
    # fine-tuning starts from its encoder and tokenizer
    ft = yaml.safe_load(config.read_text())
    ft["run_dir"] = str(tmp_path / "ft")
    ft["data"] = {"format": "synthetic", "synthetic": {"n_per_class": 10}}
    ft["models"] = [{"name": "m", "family": "codebert", "pretrained": str(best)}]
    ft["training"].update(epochs=1, max_length=64)
    ft_path = tmp_path / "ft.yaml"
    ft_path.write_text(yaml.safe_dump(ft))
    tuned = run_cli("train", "--config", str(ft_path), "--model", "m")
    assert tuned.code == 0, tuned.stderr
    from safetensors.torch import load_file

    pretrained = load_file(str(best / "model.safetensors"))
    base = tmp_path / "ft" / "models" / "m" / "base"
    assert (
        json.loads((base / "config.json").read_text())["vocab_size"]
        == pretrained["roberta.embeddings.word_embeddings.weight"].shape[0]
    )
    # run again: the corpus is reused and the encoder already trained
    weights = best.parent / "final" / "model.safetensors"
    before = weights.read_bytes()
    again = run_cli("pretrain", "--config", str(config))
    assert again.code == 0 and "already trained" in again.stdout
    assert weights.read_bytes() == before
    # a damaged token cache (a file enstack did not leave so) is redone, never a traceback
    tokens = next((tmp_path / "run" / "pretrain" / "cache" / "tokens").glob("*/train.tokens"))
    whole = tokens.read_bytes()
    tokens.write_bytes(whole[: len(whole) // 2])
    redone = run_cli("pretrain", "--config", str(config))
    assert redone.code == 0, redone.stderr
    assert "token cache damaged (stale): redone" in redone.stderr
    assert tokens.read_bytes() == whole and weights.read_bytes() == before
    # continued pretraining from the export keeps its tokenizer
    more = run_cli(
        "pretrain",
        "--config",
        str(config),
        "--set",
        f"run_dir={tmp_path / 'more'}",
        "--set",
        f"pretrain.continue_from={best}",
        "--set",
        "training.epochs=1",
    )
    assert more.code == 0, more.stderr
    continued = tmp_path / "more" / "pretrain" / "models" / "encoder" / "best"
    assert (continued / "tokenizer.json").read_bytes() == (best / "tokenizer.json").read_bytes()


@pytest.mark.slow
def test_bad_input_is_one_error_naming_it_and_leaves_nothing(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "src", files=1)
    config = pretrain_yaml(tmp_path, corpus)
    empty, comments, binary = (tmp_path / n for n in ("empty", "comments", "binary"))
    for d in (empty, comments, binary):
        d.mkdir()
    (comments / "a.c").write_text("/* nothing but a comment */\n#define X 1\n")
    (binary / "a.c").write_bytes(b"\0\1\2" * 100)
    cases = [
        (empty, "no C or C++ function", "no C/C++ file read"),
        (comments, "no C or C++ function", str(comments)),
        (binary, "no C or C++ function", str(binary)),
        (tmp_path / "missing", str(tmp_path / "missing"), "no such file"),
        (tmp_path / "*.cpp", "no file matches", str(tmp_path / "*.cpp")),
    ]
    for path, *fragments in cases:
        bad = run_cli("pretrain", "--config", str(config), "--set", f"pretrain.corpus=[{path}]")
        assert_user_error(bad, "pretrain.corpus", *fragments)
        assert not (tmp_path / "run" / "pretrain" / "data").exists()
    # a model directory without an MLM head: a classifier's export
    done = run_cli("pretrain", "--config", str(config))
    assert done.code == 0, done.stderr
    best = tmp_path / "run" / "pretrain" / "models" / "encoder" / "best"
    from transformers import AutoModelForSequenceClassification

    headless = tmp_path / "classifier"
    AutoModelForSequenceClassification.from_pretrained(best).save_pretrained(headless)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (headless / name).write_bytes((best / name).read_bytes())
    other_run = ["--set", f"run_dir={tmp_path / 'cont'}"]
    bad = run_cli(
        "pretrain",
        "--config",
        str(config),
        *other_run,
        "--set",
        f"pretrain.continue_from={headless}",
    )
    assert_user_error(bad, "pretrain.continue_from", str(headless), "no masked-language head")
    # a tokenizer that does not belong to the model: more tokens than its embeddings
    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    for item in best.iterdir():
        (mismatched / item.name).write_bytes(item.read_bytes())
    settings = json.loads((mismatched / "config.json").read_text())
    settings["vocab_size"] = 100
    (mismatched / "config.json").write_text(json.dumps(settings))
    bad = run_cli(
        "pretrain",
        "--config",
        str(config),
        *other_run,
        "--set",
        f"pretrain.continue_from={mismatched}",
    )
    assert_user_error(bad, str(mismatched), "do not belong together")
    # both refused before anything of the model was written: the second saw no leftovers
    assert not (tmp_path / "cont" / "pretrain" / "models").exists()


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_is_bit_exact(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "src", files=3)
    settings = {"save_steps": 3, "grad_accum_steps": 2}
    ref = pretrain_yaml(tmp_path / "ref", corpus, **settings)
    subprocess.run(_args(ref), check=True, capture_output=True)
    twin = pretrain_yaml(tmp_path / "twin", corpus, **settings)
    encoder = tmp_path / "twin" / "run" / "pretrain" / "models" / "encoder"
    kills = kill_repeatedly(twin, encoder / "checkpoints", PAUSE, args=_args(twin))
    assert sum(kills.values()) >= 1
    final = subprocess.run(_args(twin), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    reference = tmp_path / "ref" / "run" / "pretrain" / "models" / "encoder"
    for name in ("final/model.safetensors", "best/model.safetensors", "metrics.jsonl"):
        if name == "metrics.jsonl":  # tokens/s is a measurement, not state: compare the rest
            strip = [
                {k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
                for line in (encoder / name).read_text().splitlines()
            ]
            expected = [
                {k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
                for line in (reference / name).read_text().splitlines()
            ]
            assert strip == expected
        else:
            assert (encoder / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.slow
def test_sigterm_saves_exits_130_and_the_same_command_resumes(tmp_path: Path) -> None:
    config = pretrain_yaml(tmp_path, write_corpus(tmp_path / "src", files=3), save_steps=1000)
    encoder = tmp_path / "run" / "pretrain" / "models" / "encoder"
    resumed = sigterm_then_resume(_args(config), encoder, PAUSE)
    assert "resuming encoder from" in resumed.stderr
    assert (encoder / "best" / "model.safetensors").is_file()


@pytest.mark.slow
def test_two_ranks_under_torchrun_pretrain_it(tmp_path: Path) -> None:
    config = pretrain_yaml(tmp_path, write_corpus(tmp_path / "src", files=2), num_threads=1)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launcher + _args(config)[1:], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x 2 ranks" in done.stderr
    encoder = tmp_path / "run" / "pretrain" / "models" / "encoder"
    state = json.loads(next((encoder / "checkpoints").glob("*/state.json")).read_text())
    assert state["config"]["world"] == 2
    assert (encoder / "best" / "model.safetensors").is_file()
    rows = pq.read_metadata(tmp_path / "run" / "pretrain" / "data" / "train.parquet").num_rows
    assert rows > 0
