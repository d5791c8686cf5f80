"""The teacher's class probabilities, written once as the student's data.

`run_dir/distill/data/` holds train.parquet (the run's train functions, then functions cut
from `distill.unlabelled`), val.parquet and test.parquet (the run's own), teacher.safetensors
(the teacher's probabilities per function of each split) and manifest.json, whose
`targets_key` covers the teacher, the run's data and the unlabelled functions: the same
inputs skip the teacher's work, and training resumes on the very same targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file, save_file

from enstack import versions
from enstack.config import Config
from enstack.encode import read_split
from enstack.errors import UserError
from enstack.fsutil import atomic_write_json, read_json_object, sha256_json
from enstack.progress import progress_bar
from enstack.scan.card import ModelCard
from enstack.stages import Stage, run_stage

if TYPE_CHECKING:
    from enstack.scan.model import ScanModel

TARGETS_FILE = "teacher.safetensors"
SPLITS = ("train", "val", "test")
BATCH = 256  # functions the teacher scores per step (the progress bar's unit)


@dataclass(frozen=True)
class Targets:
    data_dir: Path
    manifest: dict
    probs: dict[str, np.ndarray]  # per split: (functions, classes), the teacher's
    teacher: ModelCard


def teacher_targets(config: Config, out: Path, progress: bool | None) -> Targets:
    """The targets for `config`'s selected bundle, from `out` when the same inputs made
    them, else written there (atomically) by running the teacher."""
    return run_stage(TeacherTargets(config, out, progress)).record


@dataclass(frozen=True)
class TargetsInputs:
    card: ModelCard  # the teacher's
    labels: list[str]
    splits: dict[str, tuple[list[str], list[int]]]  # the run's prepared splits
    extra: list[str]  # functions cut from distill.unlabelled
    fingerprint: str  # the targets key: the teacher, the run's data, the unlabelled code


class TeacherTargets(Stage[TargetsInputs, Targets]):
    """The selected bundle and the prepared data in, `run_dir/distill/data/` out."""

    lock = "distill"

    def __init__(self, config: Config, out: Path, progress: bool | None) -> None:
        super().__init__(config.run_dir, out)
        self.config, self.progress = config, progress

    def inputs(self) -> TargetsInputs:
        from enstack.data.record import read_prepared
        from enstack.scan.card import read_card
        from enstack.stack.stage import selected_bundle

        config = self.config
        teacher = selected_bundle(config)
        card = read_card(teacher)
        run_manifest = read_prepared(config.layout.data)
        if card.labels != run_manifest.labels:
            raise UserError(
                f"{teacher}: its classes {card.labels} are not the prepared data's "
                f"{run_manifest.labels} (run `enstack stack` again)"
            )
        splits = {name: read_split(config.layout.split(name)) for name in SPLITS}
        extra = _unlabelled(config, splits["train"][0])
        key = sha256_json(
            {
                "version": versions.DISTILL_TARGETS,
                "teacher": card.fingerprint,
                "data": run_manifest.data_fingerprint,
                "unlabelled": sha256_json(extra),
            }
        )
        return TargetsInputs(card, run_manifest.labels, splits, extra, key)

    def reuse(self, inputs: TargetsInputs) -> Targets | None:
        return _load(self.output, inputs.fingerprint, inputs.card)

    def build(self, inputs: TargetsInputs, tmp: Path) -> Targets:
        card, extra = inputs.card, inputs.extra
        probs = _ask_teacher(card, inputs.splits, extra, self.progress)
        for name, (codes, labels) in inputs.splits.items():
            if name == "train":  # unlabelled functions take the teacher's class as theirs
                codes = codes + extra
                labels = labels + [int(i) for i in probs["train"][len(labels) :].argmax(1)]
            _write(tmp / f"{name}.parquet", codes, labels)
        # float32, as stored: a run that finds them on disk later reads the very same numbers
        probs = {k: v.astype(np.float32) for k, v in probs.items()}
        save_file(probs, str(tmp / TARGETS_FILE))
        manifest = {
            "labels": inputs.labels,
            "targets_key": inputs.fingerprint,
            "teacher": {
                "name": card.source.name,
                "fingerprint": card.fingerprint[:16],
                "models": card.members,
                "meta": card.meta,
            },
            "rows": {name: len(p) for name, p in probs.items()},
            "unlabelled": len(extra),
        }
        atomic_write_json(tmp / "manifest.json", manifest)
        # what training reads: the directory it will be once published
        return Targets(self.output, manifest, probs, card)


def _write(path: Path, codes: list[str], labels: list[int]) -> None:
    ids = [f"{path.stem}-{i}" for i in range(len(codes))]
    table = pa.table({"id": ids, "code": codes, "label": pa.array(labels, pa.int64())})
    pq.write_table(table, path)


def _unlabelled(config: Config, train: list[str]) -> list[str]:
    """Functions cut from `distill.unlabelled` (files or trees), each text once and none of
    the train split's, in a fixed order, at most `distill.max_unlabelled` of them."""
    from enstack.csyntax.functions import extract_functions
    from enstack.csyntax.parser import language_of
    from enstack.scan.files import FileTally, check_paths, selection_for, source_files

    paths = [str(p) for p in config.distill.unlabelled]
    if not paths:
        return []
    check_paths(paths, None)
    codes: list[str] = []
    taken = set(train)
    for source in source_files(paths, FileTally(), selection_for(paths)):
        found = extract_functions(source.data, source.display, language_of(source.language_path))
        for function in found.functions:
            if function.code not in taken:
                taken.add(function.code)
                codes.append(function.code)
    if not codes:
        raise UserError(f"distill.unlabelled: no C or C++ function in {', '.join(paths)}")
    return codes[: config.distill.max_unlabelled]


def _ask_teacher(
    card: ModelCard, splits: dict, extra: list[str], progress: bool | None
) -> dict[str, np.ndarray]:
    """The teacher's probabilities for every function of every split, long functions read
    as the teacher's models were trained on them."""
    from enstack.scan.model import load_scan_model

    model = load_scan_model(card.source, card=card, long_functions=card.long_functions_read)
    texts = {
        name: codes + extra if name == "train" else codes for name, (codes, _) in splits.items()
    }
    return {
        name: probabilities(model, t, progress, f"teacher on {name}") for name, t in texts.items()
    }


def probabilities(
    model: ScanModel, texts: list[str], progress: bool | None, desc: str
) -> np.ndarray:
    """A model's class probabilities for each text, scored BATCH at a time with progress."""
    bar = progress_bar(enabled=progress, total=len(texts), desc=desc, unit=" functions",
                       leave=False)  # fmt: skip
    parts = [np.zeros((0, len(model.labels)))]
    for start in range(0, len(texts), BATCH):
        probs, _ = model.predict_proba(texts[start : start + BATCH])
        parts.append(np.asarray(probs, dtype=np.float64))
        bar.update(len(parts[-1]))
    bar.close()
    return np.concatenate(parts)


def _load(out: Path, key: str, teacher: ModelCard) -> Targets | None:
    manifest = read_json_object(out / "manifest.json")
    if manifest is None or manifest.get("targets_key") != key:
        return None
    try:
        arrays = load_file(str(out / TARGETS_FILE))
        probs = {name: arrays[name] for name in SPLITS}
    except (OSError, KeyError, ValueError):
        return None  # damaged: derived data, redone
    return Targets(out, manifest, probs, teacher)
