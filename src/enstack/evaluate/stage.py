"""`enstack evaluate`: `run_dir/reports/` from what `enstack stack` wrote.

results.json (the contract's rows and selection, plus per-class reports and confusion
matrices), results.md (the Table III layout), results.csv, plots/*.png, and report.html (the
tables and plots in one page). Deterministic, so a
pipeline killed anywhere and run again ends with the same results.json.
"""

from __future__ import annotations

import json
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
from enstack.fsutil import clean_debris, read_json_object, stage_lock, staged_dir


def run_evaluate(config: Config) -> tuple[Path, dict, bool]:
    """Write the reports; returns (reports dir, stack summary, skipped)."""
    with stage_lock(config.run_dir, "evaluate"):
        return _run_evaluate(config)


def _run_evaluate(config: Config) -> tuple[Path, dict, bool]:
    stack_dir = config.layout.stack
    summary = read_json_object(stack_dir / "ablation.json")
    if summary is None or "fingerprint" not in summary:
        raise UserError(f"no stacking results in {stack_dir} (run `enstack stack` first)")
    out = config.layout.reports
    clean_debris(out.parent, out.name)  # what a killed run left (under this stage's lock)
    done = out / "results.json"
    previous = read_json_object(done)  # damaged or foreign: stale, so redone
    current = previous is not None and previous.get("stack_fingerprint") == summary["fingerprint"]
    if current and (out / "report.html").is_file():  # reports of an older enstack: redone
        return out, summary, True
    try:
        arrays = load_file(str(stack_dir / "arrays.safetensors"))
    except (OSError, SafetensorError):
        raise UserError(
            f"{stack_dir / 'arrays.safetensors'}: missing or unreadable; delete {stack_dir} "
            "and run `enstack stack` again"
        ) from None
    _write_reports(config, summary, arrays, out)
    return out, summary, False


def _write_reports(config: Config, summary: dict, arrays: dict, out: Path) -> None:
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
    with staged_dir(out) as tmp:
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
                    else {
                        f"best single: {summary['best_single']}": arrays["best_single_test_probs"]
                    }
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
