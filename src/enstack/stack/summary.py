"""The stack stage's record, `run_dir/stack/ablation.json`: every candidate's scores, the
selection and how it was made. `enstack evaluate`, the pipeline's table and `es.run` read it;
only the stack stage writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from enstack import versions
from enstack.records import Record, read_record

SUMMARY_NAME = "ablation.json"


class Candidate(Record):
    """A stacked candidate: the models whose outputs it reads and its meta-classifier (None:
    one model's own probabilities)."""

    models: list[str]
    """The models whose outputs it reads, by their names in the config."""
    meta: str | None
    """The meta-classifier (lr, svm, rf, xgb), or None for one model's own probabilities."""


class StackSummary(Record):
    """What `enstack stack` found: every candidate's val and test scores, the one selected
    for the bundle and how it was chosen."""

    format_version: int = versions.STACK_SUMMARY_FORMAT
    """The record's format (absent from summaries written before it had one)."""
    fingerprint: str
    """Of the inputs: features, stacking settings, labels, seed."""
    mode: str
    """`stacking.mode`: paper or cv."""
    features: str
    """`stacking.features`: what the meta-classifiers read."""
    labels: list[str]
    """The classes, in the order of every probability column."""
    benign_label: str | None
    """The class that means no vulnerability, where there is one."""
    select_on: str
    """The val score the selection maximises."""
    selection: str
    """How the selection was made, in words."""
    rows: list[dict[str, Any]]
    """One per candidate and split: its scores (the contract's table)."""
    selected: Candidate
    """The candidate the bundle holds."""
    best_single: str
    """The model with the best val score alone."""
    line_ranker: dict[str, Any] | None
    """What the bundle's line ranker learned from."""
    long_functions: dict[str, Any]
    """Functions longer than max_length: the mode, the length, what each model read."""
    selected_test: dict[str, Any] | None = None
    """The selection's test metrics."""


def read_summary(stack_dir: Path) -> StackSummary | None:
    """The stack stage's record, or None where there is none or it is damaged (stale)."""
    return read_record(stack_dir / SUMMARY_NAME, StackSummary)
