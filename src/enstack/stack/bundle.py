"""The selected ensemble as a self-contained, verifiable bundle.

  bundle/manifest.json         what it is, and the size and sha256 of every file
  bundle/models/NAME/          each base model's `best` export (Hugging Face format)
  bundle/meta/                 the meta-classifier: meta.json + meta.skops or meta.xgb.json
  bundle/lines/                the line ranker, when the training data had fix pairs
                               (ranker.json + ranker.safetensors: see enstack.lines)
Loading checks every file against the manifest first, and the skops file is loaded only with
the types enstack writes: a tampered or crafted file is refused, never unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from enstack import versions
from enstack.errors import UserError
from enstack.fsutil import staged_dir
from enstack.lines.ranker import LineRanker
from enstack.manifest import MANIFEST, describe_files, manifest_bytes, verify_files
from enstack.models.contract import INT8_WEIGHTS
from enstack.stack.meta import MetaClassifier


def bundle_model_dir(bundle: Path, name: str) -> Path:
    """Where a bundle keeps base model `name`'s export (a copy of its `best/`)."""
    return bundle / "models" / name


def bundle_lines_dir(bundle: Path) -> Path:
    """Where a bundle keeps its line ranker (absent when it has none)."""
    return bundle / "lines"


def write_bundle(
    out_dir: Path,
    model_exports: dict[str, Path],
    classifier: MetaClassifier,
    features: str,
    labels: list[str],
    benign_label: str | None = None,
    line_ranker: LineRanker | None = None,
    trained_on: dict | None = None,
) -> None:
    """`trained_on`: what the bundle learned from (data format and source names, split sizes,
    base models, held-out test metrics), so that whoever scans with it knows what it is."""
    with staged_dir(out_dir) as tmp:
        for name, export in model_exports.items():
            target = bundle_model_dir(tmp, name)
            target.mkdir(parents=True)
            for f in export.iterdir():
                _link_or_copy(f, target / f.name)
        (tmp / "meta").mkdir()
        classifier.save(tmp / "meta")
        if line_ranker is not None:
            line_ranker.save(bundle_lines_dir(tmp))
        manifest = manifest_bytes(
            versions.BUNDLE_FORMAT,
            describe_files(tmp),
            models=list(model_exports),
            meta=classifier.name,
            features=features,
            labels=labels,
            benign_label=benign_label,  # the class of safe code; None for the paper's task
            trained_on=trained_on,
        )
        (tmp / MANIFEST).write_bytes(manifest)


def write_int8_bundle(source: Path, out: Path) -> dict[str, int]:
    """`source` (a bundle, verified first) with every base model stored as int8 in `out`, a
    new directory: the meta-classifier and line ranker as they are, the manifest saying
    `precision: int8`. Returns the bytes of the base models' weights before and after."""
    bundle = load_bundle(source)
    if bundle.manifest.get("precision") == "int8":
        raise UserError(f"{source}: already int8 (its manifest says so)")
    sizes = {"fp32": 0, "int8": 0}
    with staged_dir(out) as tmp:
        for name in bundle.models:
            written = write_int8_export(bundle_model_dir(source, name), bundle_model_dir(tmp, name))
            sizes = {k: sizes[k] + written[k] for k in sizes}
        for part in ("meta", "lines"):
            if (source / part).is_dir():
                shutil.copytree(source / part, tmp / part)
        kept = {k: v for k, v in bundle.manifest.items() if k not in ("format_version", "files")}
        manifest = manifest_bytes(
            versions.BUNDLE_FORMAT, describe_files(tmp), **kept, precision="int8"
        )
        (tmp / MANIFEST).write_bytes(manifest)
    return sizes


def write_int8_export(export: Path, out: Path) -> dict[str, int]:
    """An export's int8 twin in `out` (new or empty): `model.int8.safetensors` in place of
    `model.safetensors`, every other file (config, tokenizer, enstack.json) as it is.
    Returns the bytes of its weights before and after."""
    from enstack.models.int8 import save_int8
    from enstack.models.loading import load_classifier

    model, _ = load_classifier(export, "cpu")
    out.mkdir(parents=True, exist_ok=True)
    save_int8(model, out / INT8_WEIGHTS)
    for item in export.iterdir():
        if item.is_file() and item.name != "model.safetensors":
            shutil.copy2(item, out / item.name)
    return {
        "fp32": (export / "model.safetensors").stat().st_size,
        "int8": (out / INT8_WEIGHTS).stat().st_size,
    }


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # exports are never modified in place, so a hard link is safe
    except OSError:
        shutil.copy2(source, target)


@dataclass
class Bundle:
    path: Path
    manifest: dict
    meta: MetaClassifier

    @property
    def models(self) -> list[str]:
        return self.manifest["models"]

    def predict_proba(self, per_model_features: dict[str, np.ndarray]) -> np.ndarray:
        x = np.concatenate([per_model_features[m] for m in self.models], axis=1)
        return self.meta.predict_proba(x)


def load_bundle(path: Path) -> Bundle:
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{manifest_path}: missing or not JSON; not an enstack bundle") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path}: not a JSON object; not an enstack bundle")
    verify_files(path, manifest.get("files"))
    return Bundle(path, manifest, MetaClassifier.load(path / "meta"))
