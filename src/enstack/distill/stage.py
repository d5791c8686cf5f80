"""`enstack distill --config CFG`: targets, then the student, then its bundle and card.

The student's run lives in `run_dir/distill/` with the layout of any run (data/, cache/,
models/student/), so its checkpoints resume as every model's do. Its bundle,
`run_dir/distill/bundle`, is the student's best export with a model card in `enstack.json`:
that it is a student, of which teacher, trained on what, and how often its findings agree
with the teacher's on the run's held-out functions. `enstack scan --bundle` takes it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from enstack.config import Config, ModelConfig
from enstack.data.record import TrainedOn
from enstack.distill.targets import Targets, probabilities, teacher_targets
from enstack.encode import read_split
from enstack.fsutil import read_json_object, sha256_json, staged_dir
from enstack.models.contract import CONTRACT_FILE
from enstack.scan import DEFAULT_THRESHOLD
from enstack.train.records import TrainResult

STUDENT = "student"  # the student's name under run_dir/distill/models/


@dataclass(frozen=True)
class DistillResult:
    bundle: Path
    train: TrainResult
    agreement: dict  # per held-out split: functions, decisions and classes agreeing
    targets: Targets


def student_config(config: Config) -> Config:
    """The student's own run: under run_dir/distill, one model, distill's epochs and rate."""
    d = config.distill
    training = config.training.model_copy(
        update={
            "epochs": d.epochs or config.training.epochs,
            "learning_rate": d.learning_rate or config.training.learning_rate,
            "pairwise": False,  # the student learns the teacher's probabilities, not pairs
        }
    )
    model = ModelConfig(name=STUDENT, family=d.family, scratch=d.student, dfg=False)
    return config.model_copy(
        update={"run_dir": config.layout.distill, "models": [model], "training": training}
    )


def run_distill(
    config: Config, progress: bool | None = None, resume: str = "auto", force_resume: bool = False
) -> DistillResult:
    from enstack.distill.student import StudentTrainer

    student = student_config(config)
    targets = teacher_targets(config, student.layout.data, progress)  # under the distill lock
    # the loss's temperature is part of what the student learns: a checkpoint trained at
    # another one does not resume (the trainer compares this fingerprint)
    manifest = TrainedOn.model_validate(
        {
            **targets.manifest,
            "data_fingerprint": sha256_json(
                {
                    "targets": targets.manifest["targets_key"],
                    "temperature": config.distill.temperature,
                }
            ),
        }
    )
    trainer = StudentTrainer(
        student,
        student.model(STUDENT),
        manifest,
        progress,
        teacher=targets.probs["train"],
        temperature=config.distill.temperature,
    )
    with trainer.lock():
        result = trainer.run(trainer.select_checkpoint(resume), force_resume)
    agreement = _agreement(config, result.paths.best, targets)
    bundle = config.layout.distill / "bundle"
    _write_bundle(config, result.paths.best, bundle, targets, agreement)
    return DistillResult(bundle, result, agreement, targets)


def _agreement(config: Config, export: Path, targets: Targets) -> dict:
    """How often the student's finding (P(vulnerable) at the scan's default threshold, or its
    class without a benign class) and its class are the teacher's, on the run's val and test
    functions; and the student's own macro-F1 there, measured as every model's is."""
    from enstack.metrics import classification_metrics, vulnerable_scores
    from enstack.scan.model import load_scan_model

    labels = targets.manifest["labels"]
    benign = labels.index(config.data.benign_label) if config.data.benign_label in labels else None
    model = load_scan_model(export, long_functions=config.training.long_functions)
    out = {}
    for split in ("val", "test"):
        codes, truth = read_split(targets.data_dir / f"{split}.parquet")
        if not codes:
            continue
        student = probabilities(model, codes, None, f"student on {split}")
        teacher = targets.probs[split]
        if benign is None:
            decided = student.argmax(1) == teacher.argmax(1)
        else:
            flagged = [
                vulnerable_scores(p, benign) >= DEFAULT_THRESHOLD for p in (student, teacher)
            ]
            decided = flagged[0] == flagged[1]
        scores = classification_metrics(np.asarray(truth), student.argmax(1), len(labels))
        out[split] = {
            "functions": len(codes),
            "decisions_agree": round(float(decided.mean()), 4),
            "classes_agree": round(float((student.argmax(1) == teacher.argmax(1)).mean()), 4),
            "macro_f1": round(scores["macro_f1"], 4),  # the card's held-out figure
        }
    return out


def _write_bundle(
    config: Config, export: Path, bundle: Path, targets: Targets, agreement: dict
) -> None:
    """The student's best export, its card added to enstack.json: the teacher's training
    data stands as the student's (it learned that data's labels, through the teacher)."""
    with staged_dir(bundle) as tmp:
        for item in export.iterdir():
            shutil.copy2(item, tmp / item.name)
        contract = read_json_object(tmp / CONTRACT_FILE) or {}
        contract["student"] = {
            "teacher": targets.manifest["teacher"],
            "temperature": config.distill.temperature,
            "trained_on_functions": targets.manifest["rows"]["train"],
            "unlabelled_functions": targets.manifest["unlabelled"],
            "agreement": agreement,
        }
        # what the teacher learned from is the student's data too (through the teacher);
        # the held-out figures are the student's own
        trained_on = dict(targets.teacher.trained_on or {})
        if "test" in agreement:
            trained_on["test"] = {"macro_f1": agreement["test"]["macro_f1"]}
        else:
            trained_on.pop("test", None)
        contract["trained_on"] = trained_on or None
        (tmp / CONTRACT_FILE).write_text(json.dumps(contract, indent=2) + "\n")
