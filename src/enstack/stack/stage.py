"""`enstack stack`: features from each trained model, the ablation, the selected bundle.

Writes `run_dir/stack/` atomically: `ablation.json` (every row, the selection), `arrays.
safetensors` (what the reports plot) and `bundle/`. Skipped when its inputs (the features'
fingerprints, the stacking settings, the labels) are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import save_file

from enstack import log, versions
from enstack.config import Config
from enstack.data.record import PreparedData, read_prepared
from enstack.errors import UserError
from enstack.fsutil import sha256_json
from enstack.lines.fit import fit_on_split
from enstack.records import write_record
from enstack.stack.features import ModelFeatures, extract_all
from enstack.stack.summary import SUMMARY_NAME, Candidate, StackSummary, read_summary
from enstack.stages import Stage, StageResult, run_stage

LOG = log.get(__name__)


@dataclass(frozen=True)
class StackResult(StageResult[StackSummary]):
    """`directory` is `run_dir/stack`, `record` its summary (also as `stack_dir`, `summary`)."""

    @property
    def stack_dir(self) -> Path:
        return self.directory

    @property
    def summary(self) -> StackSummary:
        return self.record


def _warn_one_class(chosen, labels: list[str]) -> None:
    """A selection that answers one class for every val row scores the majority class's F1:
    on small real data every candidate can be that, and the table alone would not say so."""
    answers = np.unique(chosen.val_probs.argmax(1))
    if len(answers) == 1 and len(chosen.val_probs) > 1:
        LOG.warning(
            f"the selection predicts {labels[int(answers[0])]} for every val row: no "
            "candidate learned to tell the classes apart on this data"
        )


def selected_bundle(config: Config) -> Path:
    """The bundle `enstack stack` saved for this run; an error if it has not run yet."""
    bundle = config.layout.bundle
    if not bundle.is_dir():
        raise UserError(f"{bundle}: no bundle yet (run `enstack stack` with this config)")
    return bundle


def run_stack(config: Config, progress: bool | None = None) -> StackResult:
    done = run_stage(Stack(config, progress))
    return StackResult(done.directory, done.record, done.skipped)


@dataclass(frozen=True)
class StackInputs:
    manifest: PreparedData
    features: dict[str, ModelFeatures]
    fingerprint: str


class Stack(Stage[StackInputs, StackSummary]):
    """Features in (extracted here where missing), the ablation and the bundle out."""

    lock = "stack"

    def __init__(self, config: Config, progress: bool | None) -> None:
        super().__init__(config.run_dir, config.layout.stack)
        self.config = config
        self.progress = progress

    def inputs(self) -> StackInputs:
        config = self.config
        manifest = read_prepared(config.layout.data)
        features = extract_all(config, manifest, self.progress)
        inputs = {
            "version": versions.STACK_RESULTS,
            "seed": config.seed,
            "labels": manifest.labels,
            "stacking": config.stacking.model_dump(mode="json", exclude={"extract_batch_size"}),
            "features": {name: f.fingerprint for name, f in features.items()},
        }
        if _learns_lines(config):  # only then: other runs' stacks keep their fingerprint
            inputs["line_ranker"] = versions.LINE_RANKING
        return StackInputs(manifest, features, sha256_json(inputs))

    def reuse(self, inputs: StackInputs) -> StackSummary | None:
        previous = read_summary(self.output)
        return previous if previous and previous.fingerprint == inputs.fingerprint else None

    def build(self, inputs: StackInputs, tmp: Path) -> StackSummary:
        # scikit-learn and XGBoost load only when there is work: a rerun that finds the stack
        # up to date answers in about a second
        from enstack.metrics import classification_metrics
        from enstack.stack.ablation import meta_features, run_ablation
        from enstack.stack.bundle import write_bundle

        config, features, progress = self.config, inputs.features, self.progress
        result = run_ablation(
            config, features, progress, _split_ids(config, "pair"), _split_ids(config, "group")
        )
        chosen = result["selected"]
        labels = inputs.manifest.labels
        ranker = _fit_line_ranker(config, labels, progress) if _learns_lines(config) else None
        select_on = config.stacking.select_on
        best_single = max(
            config.models, key=lambda m: _val_score(result["rows"], m.name, select_on)
        )
        y_test = result["y"]["test"]
        summary = StackSummary(
            format_version=versions.STACK_SUMMARY_FORMAT,
            fingerprint=inputs.fingerprint,
            mode=config.stacking.mode,
            features=config.stacking.features,
            labels=labels,
            benign_label=config.data.benign_label if config.data.benign_id is not None else None,
            select_on=select_on,
            selection=_selection_text(config, chosen),
            rows=result["rows"],
            selected=Candidate(models=list(chosen.models), meta=chosen.meta),
            best_single=best_single.name,
            line_ranker=ranker.info if ranker else None,
            long_functions={
                "mode": config.training.long_functions,
                "max_length": config.training.max_length,
                "coverage": {name: f.coverage for name, f in features.items()},
            },
            selected_test=classification_metrics(y_test, chosen.test_probs.argmax(1), len(labels)),
        )
        best = features[best_single.name].splits["test"]
        arrays = {
            "y_val": result["y"]["val"],
            "y_test": y_test,
            "selected_test_probs": chosen.test_probs,
            "selected_test_meta_features": meta_features(
                features, chosen.models, "test", config.stacking.features
            ),
            "best_single_test_probs": best["probs"],
            "best_single_test_embedding": best["embedding"],
        }
        _warn_one_class(chosen, labels)
        save_file(
            # copies: with a single model selected, two entries are one array, which
            # safetensors refuses to write twice
            {k: np.array(v, copy=True, order="C") for k, v in arrays.items()},
            str(tmp / "arrays.safetensors"),
        )
        write_bundle(
            tmp / config.layout.bundle.name,
            {m: config.layout.model(m).best for m in chosen.models},
            chosen.classifier,
            config.stacking.features,
            labels,
            summary.benign_label,
            ranker,
            _provenance(config, inputs.manifest, summary),
        )
        write_record(tmp / SUMMARY_NAME, summary)
        return summary


def _provenance(config: Config, manifest: PreparedData, summary: StackSummary) -> dict:
    """What the bundle was trained on, for `enstack scan` to say: source file names only (no
    local paths leave the machine inside a shared bundle)."""
    sources = sorted(
        Path(str(info["path"])).name if "path" in info else "synthetic"
        for info in manifest.sources.values()
    )
    test = summary.selected_test or {}
    return {
        "format": manifest.format,
        "synthetic": manifest.format == "synthetic",
        "sources": sources,
        "rows": {split: info.total for split, info in manifest.splits.items()},
        "labels": summary.labels,
        "models": {
            m.name: {
                "family": m.family,
                "init": "scratch" if m.scratch is not None else Path(str(m.pretrained)).name,
            }
            for m in config.models
            if m.name in summary.selected.models
        },
        "meta": summary.selected.meta,
        "test": {k: test[k] for k in ("accuracy", "macro_f1") if k in test},
    }


def line_ranker_text(summary: StackSummary) -> str:
    """What the bundle ranks a finding's lines with, for the stage's one-line report."""
    info = summary.line_ranker
    if not info:
        return "lines ranked by attribution (no fix pairs to learn a line ranker from)"
    return (
        f"line ranker learned from the fixes of {info['functions']:,} flawed functions "
        f"({info['flaw_lines']:,} changed lines)"
    )


def _learns_lines(config: Config) -> bool:
    """A line ranker needs fixed variants to compare flaws with: pairs and a benign class."""
    return config.data.has_pairs and config.data.benign_id is not None


def _fit_line_ranker(config: Config, labels: list[str], progress: bool | None):
    """Fitted on the train split alone: val and test stay unseen by every part of the bundle."""
    return fit_on_split(
        config.layout.split("train"), labels, config.data.benign_id, config.seed, progress
    )


def _val_score(rows: list[dict], name: str, select_on: str) -> float:
    from enstack.stack.ablation import selection_score

    row = next(
        r for r in rows if r["models"] == [name] and r["meta"] is None and r["split"] == "val"
    )
    return selection_score(row, select_on)


def _selection_text(config: Config, chosen) -> str:
    if config.stacking.mode == "paper":
        return "in-sample on val (the paper's Algorithm 1)"
    folds = chosen.val_row["cv"]["folds"]
    kept = "groups" if config.data.has_groups else "pairs" if config.data.has_pairs else None
    whole = f", {kept} kept whole" if kept else ""
    return (
        f"{folds}-fold cross-validation on val{whole}; the simplest candidate within one "
        "standard error of the best, refit on all of val"
    )


def _split_ids(config: Config, column: str) -> dict[str, np.ndarray | None]:
    """Each scored split's `pair` or `group` ids in row order (the features' order), when it
    has that column; a row without one is a unit of its own."""
    out: dict[str, np.ndarray | None] = {}
    for split in ("val", "test"):
        path = config.layout.split(split)
        if column not in pq.read_schema(path).names:
            out[split] = None
            continue
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
        out[split] = np.asarray(
            [f"row:{i}" if v is None else f"id:{v}" for i, v in enumerate(values)], object
        )
    return out
