"""`enstack distill`: a student trained on the selected bundle's probabilities.

The loss and the card are checked in place; the command itself runs on a copy of the scan
tests' run (its bundle is the teacher), and its checkpoint promise is held the way training's
is: SIGKILL anywhere, resume, and the final weights and metrics equal an uninterrupted twin's
byte for byte; SIGTERM saves and exits 130.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from enstack.cli import main
from enstack.distill.student import SoftTargetLoss
from enstack.scan.card import read_card

from support import (
    assert_user_error,
    kill_repeatedly,
    run_cli,
    sigterm_then_resume,
    slow_saves,
)

STUDENT = {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64, "vocab_size": 400}
PAUSE = slow_saves(0.08)  # keeps each save open long enough to be hit


def test_the_loss_is_cross_entropy_on_softened_teacher_probabilities() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    at_one = SoftTargetLoss(1.0)(logits, teacher)
    expected = -(teacher * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(at_one, expected)
    # at T, both sides are softened and the loss is scaled by T^2
    t = 3.0
    soft = torch.softmax(torch.log(teacher) / t, -1)
    expected = -(soft * torch.log_softmax(logits / t, -1)).sum(-1).mean() * t * t
    assert torch.allclose(SoftTargetLoss(t)(logits, teacher), expected)
    # validation's true labels: plain cross-entropy
    labels = torch.tensor([0, 2])
    assert torch.allclose(
        SoftTargetLoss(t)(logits, labels), torch.nn.functional.cross_entropy(logits, labels)
    )
    # the loss is least where the student's softened distribution is the teacher's
    best = torch.log(teacher)
    assert SoftTargetLoss(t)(best, teacher) < SoftTargetLoss(t)(logits, teacher)


def test_a_student_s_card_says_whose_student_it_is(tmp_path: Path) -> None:
    export = tmp_path / "bundle"
    export.mkdir()
    (export / "model.safetensors").write_bytes(b"")  # read by the card only by name
    labels = ["CWE-119", "none"]
    (export / "config.json").write_text(
        json.dumps({"id2label": {str(i): x for i, x in enumerate(labels)}, "model_type": "x"})
    )
    student = {
        "teacher": {"name": "bundle", "models": ["a", "b"], "fingerprint": "f", "meta": "lr"},
        "agreement": {"test": {"functions": 200, "decisions_agree": 0.985}},
    }
    trained_on = {"sources": ["realvul"], "rows": {"train": 3895}}
    (export / "enstack.json").write_text(json.dumps({"student": student, "trained_on": trained_on}))
    card = read_card(export)
    assert card.student == student and card.members == ["student"]
    assert "a student of bundle (a+b), the same finding on 98.5% of 200 held-out functions" in (
        card.headline()
    )
    assert card.describe()["student"] == student
    (export / "enstack.json").write_text('{"student": [1], "trained_on": "x"}')  # not a card
    assert read_card(export).student is None and read_card(export).trained_on is None


def _teacher_run(bundle: Path, root: Path, **training: object) -> Path:
    """A copy of the scan tests' run (never that run itself: it is shared) and its config,
    with a student small enough to train in seconds."""
    shutil.copytree(bundle.parents[1], root / "run")
    config = yaml.safe_load((bundle.parents[2] / "c.yaml").read_text())
    config["run_dir"] = str(root / "run")
    config["training"].update(training)
    config["distill"] = {"student": STUDENT, "epochs": 2, "temperature": 2.0}
    path = root / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _train_rows(root: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(root / "run" / "data" / "train.parquet").num_rows


def _distill_args(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "enstack", "distill", "--config", str(config), *extra]


@pytest.mark.slow
def test_distill_writes_a_student_bundle_that_scans(bundle: Path, tmp_path: Path, capsys) -> None:
    config = _teacher_run(bundle, tmp_path)
    assert main(["distill", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "student vs teacher on test" in out and "the same finding for" in out
    student_bundle = tmp_path / "run" / "distill" / "bundle"
    card = read_card(student_bundle)
    assert card.student["teacher"]["name"] == "bundle" and card.student["teacher"]["models"] == [
        "m"
    ]
    agreement = card.student["agreement"]["test"]
    assert agreement["functions"] > 0 and 0.0 <= agreement["decisions_agree"] <= 1.0
    assert card.trained_on["synthetic"] is True  # the teacher's data, said as such
    assert card.trained_on["test"] == {"macro_f1": agreement["macro_f1"]}  # the student's own
    data = tmp_path / "run" / "distill" / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["rows"]["train"] == _train_rows(tmp_path) and manifest["unlabelled"] == 0
    # a scan takes it as it takes any bundle, and the model line says what it is
    (tmp_path / "a.c").write_text(
        "int f(char *s)\n{\n  char b[4];\n  strcpy(b, s);\n  return 0;\n}\n"
    )
    assert main(["scan", str(tmp_path / "a.c"), "--bundle", str(student_bundle), "--no-cache"]) in (
        0,
        1,
    )
    err = capsys.readouterr().err
    assert "a student of bundle (m)" in err
    # run again: the teacher is not asked again and the student is already trained
    weights = tmp_path / "run" / "distill" / "models" / "student" / "final" / "model.safetensors"
    before = weights.read_bytes()
    assert main(["distill", "--config", str(config)]) == 0
    assert "already trained" in capsys.readouterr().out and weights.read_bytes() == before


@pytest.mark.slow
def test_unlabelled_code_joins_the_targets_and_bad_input_is_one_error(
    bundle: Path, tmp_path: Path
) -> None:
    config = _teacher_run(bundle, tmp_path)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "x.c").write_text(
        "int one(void)\n{\n  return 1;\n}\nint two(void)\n{\n  return 2;\n}\n"
    )
    done = run_cli("distill", "--config", str(config), "--set", f"distill.unlabelled=[{tree}]")
    assert done.code == 0, done.stderr
    manifest = json.loads((tmp_path / "run" / "distill" / "data" / "manifest.json").read_text())
    assert manifest["unlabelled"] == 2 and manifest["rows"]["train"] == _train_rows(tmp_path) + 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no code")
    bad = run_cli(
        "distill", "--config", str(config), "--set", f"distill.unlabelled=[{tmp_path / 'empty'}]"
    )
    assert_user_error(bad, "distill.unlabelled")
    # before `enstack stack` there is no teacher: one line naming what to run
    config_text = yaml.safe_load(config.read_text())
    config_text["run_dir"] = str(tmp_path / "fresh")
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(yaml.safe_dump(config_text))
    assert_user_error(run_cli("distill", "--config", str(fresh)), "no bundle yet")


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_is_bit_exact(bundle: Path, tmp_path: Path) -> None:
    settings = {"save_steps": 2, "grad_accum_steps": 2}
    ref = _teacher_run(bundle, tmp_path / "ref", **settings)
    subprocess.run(_distill_args(ref), check=True, capture_output=True)
    twin = _teacher_run(bundle, tmp_path / "twin", **settings)
    student = tmp_path / "twin" / "run" / "distill" / "models" / "student"
    kill_repeatedly(twin, student / "checkpoints", PAUSE, args=_distill_args(twin))
    final = subprocess.run(_distill_args(twin), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    reference = tmp_path / "ref" / "run" / "distill" / "models" / "student"
    for name in ("final/model.safetensors", "best/model.safetensors", "metrics.jsonl"):
        assert (student / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.slow
def test_sigterm_saves_exits_130_and_the_same_command_resumes(bundle: Path, tmp_path: Path) -> None:
    config = _teacher_run(bundle, tmp_path, save_steps=1000)
    student = tmp_path / "run" / "distill" / "models" / "student"
    sigterm_then_resume(_distill_args(config), student, PAUSE)
    assert (tmp_path / "run" / "distill" / "bundle" / "model.safetensors").is_file()
    assert np.isfinite(json.loads((student / "metrics.jsonl").read_text().splitlines()[-1])["loss"])
