"""What scanning scores functions with: a stacked bundle, or a single model's export.

Both answer `predict_proba(codes)` with one probability column per class (the bundle's
meta-classifier over its base models' features, or the export's own softmax), plus each base
model's probabilities for the report. Nothing is kept between calls but the loaded weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from enstack.device import amp_mode, fit_cpu_threads, pick_device
from enstack.encode import EncodedSplit, code_room, encode_texts
from enstack.errors import UserError
from enstack.infer import predict
from enstack.lines.ranker import LineRanker, load_line_ranker
from enstack.models.classifier import Classifier
from enstack.models.contract import is_int8_export, trained_length
from enstack.models.int8 import quantise_int8
from enstack.models.loading import load_classifier, usable_positions
from enstack.scan import PRECISIONS
from enstack.scan.card import ModelCard, read_card
from enstack.stack.bundle import Bundle, bundle_lines_dir, bundle_model_dir, load_bundle
from enstack.windows import LongFunctions, aggregate, expand


@dataclass
class BaseModel:
    """One fine-tuned model, ready to score code."""

    name: str
    model: Classifier
    tokenizer: object
    family: str
    max_length: int
    export: Path  # the directory it was loaded from

    @property
    def dfg_length(self) -> int:
        """Graph nodes it reads after the code (GraphCodeBERT's data-flow graph); 0: none."""
        return int(self.model.config.enstack.get("dfg_length", 0))

    @property
    def room(self) -> int:
        """Tokens of code one window holds: max_length less the family's framing."""
        return code_room(self.tokenizer, self.family, self.max_length)

    @property
    def labels(self) -> list[str]:
        """Its classes, in output order (config.json's id2label)."""
        config = self.model.config
        return [config.id2label[i] for i in range(config.num_labels)]

    def encode(self, codes: list[str]) -> EncodedSplit:
        return encode_texts(
            codes, self.tokenizer, self.family, self.max_length, dfg_length=self.dfg_length
        )


@dataclass
class ScanModel:
    """The models behind a scan, and how their outputs become class probabilities."""

    card: ModelCard  # what it is: source, classes, fingerprint (read before loading)
    models: list[BaseModel]
    bundle: Bundle | None  # None: a single export, its own probabilities
    device: torch.device
    amp: str
    batch_size: int = 32
    line_ranker: LineRanker | None = None  # from the bundle, when its data had fix pairs
    precision: str = "fp32"  # int8: linear layers dynamically quantised (CPU inference)
    long_functions: LongFunctions = "windows"  # or "truncate": the first window only
    last_coverage: np.ndarray | None = None  # the last call's (long, lines, seen) per function
    last_windows: int = 0  # the last call's windows, each scored by every base model

    @property
    def source(self) -> Path:
        return self.card.source

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    @property
    def benign_label(self) -> str | None:
        """None: the paper's five classes, no notion of safe code."""
        return self.card.benign_label

    @property
    def benign_id(self) -> int | None:
        return self.card.benign_id

    @property
    def fingerprint(self) -> str:
        """Changes whenever any file that affects a prediction does."""
        return self.card.fingerprint

    def predict_proba(self, codes: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Class probabilities for each function, and each base model's own."""
        if not codes:
            empty = np.zeros((0, len(self.labels)))
            return empty, {m.name: empty for m in self.models}
        outputs = {m.name: self._outputs(m, codes, count=i == 0) for i, m in enumerate(self.models)}
        per_model = {name: out["probs"] for name, out in outputs.items()}
        if self.bundle is None:
            return per_model[self.models[0].name], per_model
        kind = self.bundle.manifest["features"]
        with untrusted_files(self.source / "meta"):
            probs = self.bundle.predict_proba({name: out[kind] for name, out in outputs.items()})
        if not np.isfinite(probs).all():
            raise UserError(
                f"{self.source / 'meta'}: the meta-classifier gives probabilities that are not "
                "finite (its weights are damaged or crafted)"
            )
        return probs, per_model

    def _outputs(self, model: BaseModel, codes: list[str], count: bool) -> dict[str, np.ndarray]:
        """One row of outputs per function: a long function's from the window that drove it
        (each base model cuts its own windows, with its own tokenizer)."""
        rows = expand(codes, model.tokenizer, model.room, self.long_functions)
        split = model.encode([w.text for w in rows.windows])
        # a scan scores its functions in several calls: the budget is the model's, not the call's
        longest = model.max_length + model.dfg_length
        out = predict(  # the scan shows its own progress, by functions and windows
            model.model,
            split,
            self.batch_size,
            self.device,
            self.amp,
            progress=False,
            longest=longest,
        )
        if count:  # per function of this call: the scanner keeps it in its cache
            self.last_coverage = rows.per_function
            self.last_windows = len(rows.windows)
        if len(rows.windows) == len(codes):
            return out
        return aggregate(out, rows.owner, len(codes), self.benign_id)[0]


def load_scan_model(
    path: Path | str,
    device: str = "auto",
    amp: str = "auto",
    precision: str = "fp32",
    card: ModelCard | None = None,
    long_functions: LongFunctions = "windows",
) -> ScanModel:
    """A bundle directory (`run_dir/stack/bundle`) or a model export (`models/NAME/best`).
    `precision="int8"` quantises every linear layer's weights to int8 (dynamic quantisation,
    CPU only): about a quarter of the memory and several times the speed on a CPU runner."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    card = card or read_card(path)  # notebooks pass strings
    precision = "int8" if card.stored_precision == "int8" else precision  # stored so
    torch_device = pick_device(device)
    if precision == "int8" and torch_device.type != "cpu":
        raise UserError("--precision int8: quantised inference runs on the CPU (use --device cpu)")
    mode = amp_mode(amp, torch_device) if precision == "fp32" else "off"
    if torch_device.type == "cpu":
        fit_cpu_threads()
    if card.kind == "bundle":
        model = _from_bundle(card, torch_device, mode, precision)
    else:
        model = _from_export(card, torch_device, mode, precision)
    model.long_functions = long_functions
    return model


def _from_bundle(card: ModelCard, device: torch.device, amp: str, precision: str) -> ScanModel:
    path = card.source
    with untrusted_files(path):
        bundle = load_bundle(path)  # verifies every file against the manifest first
    labels = card.labels
    models = [
        _base_model(bundle_model_dir(path, name), name, device, precision) for name in bundle.models
    ]
    for model in models:
        _check_labels(model, labels, path)
    return ScanModel(
        card=card,
        models=models,
        bundle=bundle,
        device=device,
        amp=amp,
        line_ranker=load_line_ranker(bundle_lines_dir(path)),
        precision=precision,
    )


def _from_export(card: ModelCard, device: torch.device, amp: str, precision: str) -> ScanModel:
    model = _base_model(card.source, card.members[0], device, precision)
    return ScanModel(
        card=card,
        models=[model],
        bundle=None,
        device=device,
        amp=amp,
        precision=precision,
    )


def _base_model(export: Path, name: str, device: torch.device, precision: str) -> BaseModel:
    with untrusted_files(export):
        model, tokenizer = load_classifier(export, str(device))
        family = model.config.enstack["family"]
        if precision == "int8" and not is_int8_export(export):
            model = quantise_int8(model)
        length = trained_length(export, usable_positions(model.config))
        return BaseModel(name, model, tokenizer, family, length, export)


@contextlib.contextmanager
def untrusted_files(where: Path) -> Iterator[None]:
    """Loading files someone handed us: whatever the libraries underneath raise on a crafted
    file (a tokenizer whose regex panics in Rust, a config asking for remote code, a header
    that overflows) is one `UserError` naming where, never a traceback. Checks enstack makes
    itself raise UserError already and pass through."""
    try:
        yield
    except (UserError, KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{where}: cannot load it ({type(exc).__name__}: {reason})") from None


def _check_labels(model: BaseModel, labels: list[str], bundle: Path) -> None:
    own = model.labels
    if own != labels:
        raise UserError(
            f"{bundle}: model {model.name} has classes {own}, the bundle {labels}; "
            "the bundle is not one enstack wrote"
        )
