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
    meta: str | None


class StackSummary(Record):
    """`run_dir/stack/ablation.json`."""

    format_version: int = versions.STACK_SUMMARY_FORMAT
    fingerprint: str  # of the inputs: features, stacking settings, labels, seed
    mode: str  # stacking.mode: paper or cv
    features: str  # stacking.features: what the meta-classifiers read
    labels: list[str]
    benign_label: str | None
    select_on: str  # the val score the selection maximises
    selection: str  # how the selection was made, in words
    rows: list[dict[str, Any]]  # one per candidate and split: its scores (the contract's table)
    selected: Candidate
    best_single: str  # the model with the best val score alone
    line_ranker: dict[str, Any] | None  # what the bundle's line ranker learned from
    long_functions: dict[str, Any]  # the mode, max_length and what each model read of them
    selected_test: dict[str, Any] | None = None  # the selection's test metrics


def read_summary(stack_dir: Path) -> StackSummary | None:
    """The stack stage's record, or None where there is none or it is damaged (stale)."""
    return read_record(stack_dir / SUMMARY_NAME, StackSummary)
