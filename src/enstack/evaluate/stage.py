"""`enstack evaluate`: `run_dir/reports/` from what `enstack stack` wrote.

results.json (the contract's rows and selection, plus per-class reports and confusion
matrices), results.md (the Table III layout), results.csv, plots/*.png, and report.html (the
tables and plots in one page). Deterministic, so a
pipeline killed anywhere and run again ends with the same results.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from safetensors.numpy import load_file

from enstack.config import Config
from enstack.errors import UserError
from enstack.evaluate.page import evaluation_page
from enstack.evaluate.tables import (
    candidate_name,
    csv_text,
    markdown,
    per_class_markdown,
    results_json,
)
from enstack.fsutil import read_json_object
from enstack.stack.summary import StackSummary, read_summary
from enstack.stages import Stage, run_stage


def run_evaluate(config: Config) -> tuple[Path, StackSummary, bool]:
    """Write the reports; returns (reports dir, stack summary, skipped)."""
    done = run_stage(Evaluate(config))
    return done.directory, done.record, done.skipped


@dataclass(frozen=True)
class EvaluateInputs:
    summary: StackSummary

    @property
    def fingerprint(self) -> str:  # the reports are a function of the stack's output
        return self.summary.fingerprint


class Evaluate(Stage[EvaluateInputs, StackSummary]):
    """The stack's summary and arrays in, `run_dir/reports/` out."""

    lock = "evaluate"

    def __init__(self, config: Config) -> None:
        super().__init__(config.run_dir, config.layout.reports)
        self.config = config

    def inputs(self) -> EvaluateInputs:
        stack_dir = self.config.layout.stack
        summary = read_summary(stack_dir)
        if summary is None:
            raise UserError(f"no stacking results in {stack_dir} (run `enstack stack` first)")
        return EvaluateInputs(summary)

    def reuse(self, inputs: EvaluateInputs) -> StackSummary | None:
        previous = read_json_object(self.output / "results.json")  # damaged or foreign: stale
        current = previous is not None and previous.get("stack_fingerprint") == inputs.fingerprint
        # reports of an older enstack (no page) are redone
        return inputs.summary if current and (self.output / "report.html").is_file() else None

    def build(self, inputs: EvaluateInputs, tmp: Path) -> StackSummary:
        arrays_file = self.config.layout.stack / "arrays.safetensors"
        try:
            arrays = load_file(str(arrays_file))
        except (OSError, SafetensorError):
            raise UserError(
                f"{arrays_file}: missing or unreadable; delete {arrays_file.parent} "
                "and run `enstack stack` again"
            ) from None
        _write_reports(self.config, inputs.summary.as_json(), arrays, tmp)
        return inputs.summary


def _write_reports(config: Config, summary: dict, arrays: dict, tmp: Path) -> None:
    """Every report into `tmp`, from the summary's JSON form (what results.json holds)."""
    # matplotlib and scikit-learn load only when there are reports to write
    from enstack.evaluate import plots

    labels = summary["labels"]
    y = arrays["y_test"]
    extra = {
        "best_single": summary["best_single"],
        "test_reports": {
            "selected": _report(y, arrays["selected_test_probs"], labels),
            "best_single": _report(y, arrays["best_single_test_probs"], labels),
        },
        "stack_fingerprint": summary["fingerprint"],
    }
    sel = summary["selected"]
    sel_name = candidate_name(sel)
    (tmp / "results.json").write_text(json.dumps(results_json(summary, extra), indent=2) + "\n")
    results_md = markdown(summary) + per_class_markdown(extra, labels)
    (tmp / "results.md").write_text(results_md)
    (tmp / "results.csv").write_text(csv_text(summary["rows"]))
    pics = tmp / "plots"
    pics.mkdir()
    plots.confusion(
        pics / "confusion_selected.png",
        y,
        arrays["selected_test_probs"],
        labels,
        f"selected: {sel_name} (test)",
    )
    # where the selection is the best single model, one plot says so (two would be one
    # curve under another)
    same = sel["models"] == [summary["best_single"]] and sel["meta"] is None
    if same:
        sel_name = f"{sel_name} (selected; the best single model)"
    else:
        plots.confusion(
            pics / "confusion_best_single.png",
            y,
            arrays["best_single_test_probs"],
            labels,
            f"best single model: {summary['best_single']} (test)",
        )
        plots.roc(
            pics / "roc_best_single.png",
            y,
            arrays["best_single_test_probs"],
            labels,
            f"ROC, one-vs-rest: {summary['best_single']} (test)",
        )
    plots.roc(
        pics / "roc_selected.png",
        y,
        arrays["selected_test_probs"],
        labels,
        f"ROC, one-vs-rest: {sel_name} (test)",
    )
    plots.tsne_pair(
        pics / "tsne.png",
        y,
        arrays["best_single_test_embedding"],
        arrays["selected_test_meta_features"],
        (f"{summary['best_single']} embeddings", f"{sel_name} meta-features"),
        labels,
        config.seed,
    )
    plots.ablation(pics / "ablation.png", summary["rows"], sel)
    if summary.get("benign_label"):
        plots.precision_recall(
            pics / "pr_detection.png",
            y,
            {f"selected: {sel_name}": arrays["selected_test_probs"]}
            | (
                {}
                if same
                else {f"best single: {summary['best_single']}": arrays["best_single_test_probs"]}
            ),
            labels.index(summary["benign_label"]),
            "Detection, vulnerable vs benign (test)",
        )
    page = evaluation_page(results_md, pics, config.run_dir.name)
    (tmp / "report.html").write_text(page, encoding="utf-8")


def _report(y, probs, labels: list[str]) -> dict:
    from sklearn.metrics import classification_report, confusion_matrix

    pred = probs.argmax(1)
    ids = list(range(len(labels)))
    report = classification_report(
        y, pred, labels=ids, target_names=labels, output_dict=True, zero_division=0
    )
    return {
        "per_class": {name: report[name] for name in labels},
        "confusion_matrix": confusion_matrix(y, pred, labels=ids).tolist(),
    }
