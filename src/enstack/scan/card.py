"""What a scan model is, read without loading it: its classes, its fingerprint (the cache's
key), whether it has a line ranker, and what it was trained on.

Reading this takes milliseconds and imports no torch, transformers or scikit-learn, so a
re-scan whose every function is in the cache answers without loading a model at all. The
models themselves are loaded (and verified against the manifest) only when something must be
scored: `enstack.scan.model.load_scan_model`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from enstack import versions
from enstack.errors import UserError
from enstack.fsutil import read_untrusted_json, sha256_file, sha256_json
from enstack.lines.features import HASH_FEATURES
from enstack.models.contract import (
    CONTRACT_FILE,
    INT8_WEIGHTS,
    is_int8_export,
    recorded_long_functions,
)
from enstack.registries.families import GRAPH_INPUT_TYPE

BENIGN_DEFAULT = "none"
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")  # as config model names are
MAX_JSON_BYTES = 16 << 20  # a manifest or config larger than this is not one enstack wrote
SYNTHETIC_WARNING = (
    "this model was trained on synthetic functions (the demo's data, not a benchmark): its "
    "findings on real code mean nothing"
)
FIVE_CLASS_WARNING = (
    "this model has no benign class (the paper's five-class task): it gives every function a "
    "flaw class and cannot tell safe code from unsafe"
)
UNKNOWN_WARNING = (
    "this bundle does not say what it was trained on (an enstack before 0.1 wrote it, or a "
    "single model's export): judge its findings with care"
)


@dataclass(frozen=True)
class ModelCard:
    source: Path
    kind: str  # "bundle" or "export"
    labels: list[str]
    benign_label: str | None  # None: the paper's five classes, no notion of safe code
    fingerprint: str  # changes whenever any file that decides a score does
    has_line_ranker: bool
    members: list[str]  # base model names
    meta: str | None  # the meta-classifier (bundles)
    trained_on: dict | None
    # members that read a data-flow graph after the code: attribution methods explain them
    # over the code tokens alone (localise.py), an input other than the one scored
    graph_members: tuple[str, ...] = ()
    # how its models were trained on functions longer than a window, where they all say the
    # same (`windows` or `truncate`): the scanner reads them that way unless told otherwise
    trained_long_functions: str | None = None
    # a student (`enstack distill`): its teacher, and how often their findings agree
    student: dict | None = None
    # int8: its weights are stored quantised (`enstack quantise`), so it runs as int8
    stored_precision: str = "fp32"

    @property
    def long_functions_read(self) -> str:
        """How a scan reads long functions unless told: as the models were trained on them,
        windows where they do not say."""
        return self.trained_long_functions or "windows"

    @property
    def benign_id(self) -> int | None:
        return self.labels.index(self.benign_label) if self.benign_label is not None else None

    def describe(self) -> dict:
        """For JSON and SARIF: names, not local paths."""
        return {
            "name": self.source.name,
            "kind": self.kind,
            "fingerprint": self.fingerprint[:16],
            "models": self.members,
            "meta": self.meta,
            "trained_on": self.trained_on,
            "student": self.student,
        }

    def _student_clause(self) -> str:
        """What a student is: whose, and how closely it follows its teacher on held-out data."""
        if not self.student:
            return ""
        teacher = self.student.get("teacher") or {}
        agree = (self.student.get("agreement") or {}).get("test") or {}
        share = agree.get("decisions_agree")
        close = (
            f", the same finding on {share:.1%} of {agree.get('functions')} held-out functions"
            if isinstance(share, (int, float))
            else ""
        )
        members = "+".join(map(str, teacher.get("models") or []))
        return f"; a student of {teacher.get('name', 'an ensemble')} ({members}){close}"

    def localisation_note(self, method: str) -> str | None:
        """What a finding's lines do not account for, with this method; None if nothing."""
        if method == "learned" or not self.graph_members:
            return None
        return (
            f"{', '.join(self.graph_members)} scored functions with their data-flow graph; "
            f"{method} explains its score over the code tokens alone, without the graph"
        )

    def warnings(self) -> list[str]:
        out = [] if self.benign_label is not None else [FIVE_CLASS_WARNING]
        if self.trained_on is None:
            out.append(UNKNOWN_WARNING)
        elif self.trained_on.get("synthetic"):
            out.append(SYNTHETIC_WARNING)
        return out

    def headline(self) -> str:
        """One line for the terminal: what is scoring the code."""
        what = f"{self.source} ({self.kind}: " + ", ".join(self.members)
        what += f" stacked by {self.meta}" if self.meta else ""
        what += "; int8 weights)" if self.stored_precision == "int8" else ")"
        return f"model: {what}; {self.training()}"

    def training(self) -> str:
        """What the models learned from, how they read long functions, whose student they
        are: for the terminal's model line and the HTML page alike."""
        read = {"windows": "; trained on long functions in windows",
                "truncate": "; trained on long functions truncated"}  # fmt: skip
        how = read.get(self.trained_long_functions or "", "")
        how += self._student_clause()
        info = self.trained_on
        if info is None:
            return f"training data unknown{how}"
        rows = info.get("rows", {})
        data = "synthetic data" if info.get("synthetic") else ", ".join(info.get("sources", []))
        size = f"{rows.get('train', 0):,} train functions" if rows else "size unknown"
        test = info.get("test", {})
        held = f"; held-out test macro-F1 {test['macro_f1']:.3f}" if "macro_f1" in test else ""
        return f"trained on {data or info.get('format')} ({size}){held}{how}"


def read_card(path: Path | str) -> ModelCard:
    """A bundle directory (`run_dir/stack/bundle`) or a model export (`models/NAME/best`)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such directory (give a bundle or a model export)")
    if (path / "manifest.json").is_file():
        return _bundle_card(path)
    if (path / "model.safetensors").is_file() or (path / INT8_WEIGHTS).is_file():
        return _export_card(path)
    raise UserError(
        f"{path}: neither an enstack bundle (manifest.json) nor a model export "
        "(model.safetensors); give run_dir/stack/bundle or run_dir/models/NAME/best"
    )


def _json(path: Path, what: str) -> dict:
    value = read_untrusted_json(path, MAX_JSON_BYTES, str(path), f"not {what} enstack wrote")
    if not isinstance(value, dict):
        raise UserError(f"{path}: not a JSON object; not {what} enstack wrote")
    return value


def _string_list(value: object, path: Path, key: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise UserError(f"{path}: `{key}` is not a list of names; not a bundle enstack wrote")
    return list(value)


def _bundle_card(path: Path) -> ModelCard:
    manifest_path = path / "manifest.json"
    manifest = _json(manifest_path, "a bundle")
    labels = _string_list(manifest.get("labels"), manifest_path, "labels")
    members = _string_list(manifest.get("models"), manifest_path, "models")
    for name in members:  # each names a directory inside the bundle, never one outside it
        if not PLAIN_NAME.fullmatch(name):
            raise UserError(
                f"{manifest_path}: model name {name!r} is not a plain directory name; "
                "not a bundle enstack wrote"
            )
    trained_on = manifest.get("trained_on")
    benign = manifest.get("benign_label", BENIGN_DEFAULT)
    return ModelCard(
        source=path,
        kind="bundle",
        labels=labels,
        benign_label=benign if isinstance(benign, str) and benign in labels else None,
        fingerprint=sha256_json(manifest),  # the manifest holds every file's sha256
        has_line_ranker=_has_line_ranker(path / "lines"),
        members=members,
        meta=str(manifest.get("meta")) if manifest.get("meta") is not None else None,
        trained_on=trained_on if isinstance(trained_on, dict) else None,
        graph_members=tuple(n for n in members if _reads_graph(path / "models" / n)),
        trained_long_functions=_common_mode([path / "models" / n for n in members]),
        stored_precision="int8" if manifest.get("precision") == "int8" else "fp32",
    )


def _export_card(path: Path) -> ModelCard:
    config = _json(path / "config.json", "an export")
    id2label = config.get("id2label")
    try:
        labels = [str(id2label[str(i)]) for i in range(len(id2label))]
    except (KeyError, TypeError):
        raise UserError(
            f"{path / 'config.json'}: no id2label; not an export enstack wrote"
        ) from None
    name = path.parent.name if path.name in ("best", "final") else path.name
    contract = _contract(path)
    student, trained_on = contract.get("student"), contract.get("trained_on")
    if isinstance(student, dict):
        name = "student"
    return ModelCard(
        source=path,
        kind="export",
        labels=labels,
        benign_label=BENIGN_DEFAULT if BENIGN_DEFAULT in labels else None,
        fingerprint=_export_fingerprint(path),
        has_line_ranker=False,
        members=[name],
        meta=None,
        trained_on=trained_on if isinstance(trained_on, dict) else None,
        graph_members=(name,) if config.get("model_type") == GRAPH_INPUT_TYPE else (),
        trained_long_functions=_common_mode([path]),
        student=student if isinstance(student, dict) else None,
        stored_precision="int8" if is_int8_export(path) else "fp32",
    )


def _contract(export: Path) -> dict:
    """An export's enstack.json, read as any file handed over is; {} where it has none or it
    is not an object (its max_length is then read as the model's positions allow)."""
    if not (export / CONTRACT_FILE).is_file():
        return {}
    try:
        return _json(export / CONTRACT_FILE, "an export")
    except UserError:
        return {}


def _common_mode(exports: list[Path]) -> str | None:
    """The long-function mode every export was trained with; None where one does not say or
    they differ."""
    modes = {recorded_long_functions(export) for export in exports}
    return modes.pop() if len(modes) == 1 else None


def _reads_graph(export: Path) -> bool:
    """Whether an export declares a data-flow graph input (train/export.py), read as every
    file a user hands over is (bounded, one error line)."""
    return _json(export / "config.json", "an export").get("model_type") == GRAPH_INPUT_TYPE


def _export_fingerprint(path: Path) -> str:
    """Every file inference reads (weights, config, enstack.json's max_length, tokenizer):
    a changed max_length must not repeat the old scores from the cache."""
    digests = {item.name: sha256_file(item) for item in sorted(path.iterdir()) if item.is_file()}
    return sha256_json({"export": digests})


def _has_line_ranker(directory: Path) -> bool:
    """A ranker this enstack reads (an older version's is ignored, as loading does)."""
    try:
        header = json.loads((directory / "ranker.json").read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return (
        isinstance(header, dict)
        and header.get("version") == versions.LINE_RANKER_FORMAT
        and header.get("hash_features") == HASH_FEATURES
    )


def resolve_method(card: ModelCard, method: str) -> str:
    """`auto`: the learned ranker when the model has one, else attention."""
    if method == "auto":
        return "learned" if card.has_line_ranker else "attention"
    if method == "learned" and not card.has_line_ranker:
        raise UserError(
            f"--localise learned: {card.source} has no line ranker this enstack reads "
            "(its training data had no fix pairs, or an older enstack fitted it: `enstack "
            "stack` fits it anew); use attention, gradient or occlusion"
        )
    return method
