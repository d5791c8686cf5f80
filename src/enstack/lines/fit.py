"""Fitting the line ranker on a training split's fix pairs (in `enstack stack`): every
statement of a flawed function that has a fixed variant is an example, positive where a fix
changed it (labels.py); a logistic regression over the hashed features (features.py), each
function's positives weighing one unit together."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from enstack import versions
from enstack.csyntax.statements import statement_spans
from enstack.lines.features import features, statement_text, vectorizer
from enstack.lines.labels import JULIET_RULES, fixed_lines
from enstack.lines.ranker import LineRanker
from enstack.progress import progress_bar

MAX_FUNCTIONS = 60_000  # flawed functions labelled at most (a fixed, seeded sample beyond)
MIN_FUNCTIONS = 20  # fewer labelled functions than this: no ranker


def fit_line_ranker(
    codes: Sequence[str],
    labels: Sequence[int],
    pairs: Sequence[str | None],
    label_names: Sequence[str],
    benign_id: int,
    seed: int,
    progress: bool | None = None,
    rules: frozenset[str] = JULIET_RULES,
) -> LineRanker | None:
    """Fit on the fix pairs of a training split; None when too few flawed functions have a
    fixed variant to learn from. `rules`: the Juliet-only labelling rules applied
    (enstack.lines.labels; all of them by default, measured on Juliet and on real fixes)."""
    flawed = _flawed_with_fixes(codes, labels, pairs, benign_id, seed)
    texts: list[str] = []
    targets: list[int] = []
    weights: list[float] = []
    functions = 0
    for row, fixes in progress_bar(flawed, enabled=progress, desc="line labels", leave=False):
        positives = fixed_lines(codes[row], fixes, rules) if fixes else set()
        if not positives:
            continue
        functions += 1
        lines = codes[row].split("\n")
        name = label_names[labels[row]]
        for i, span in statement_spans(codes[row]).items():
            texts.append(features(statement_text(lines, span), name))
            targets.append(int(i in positives))
            # each function's flaw is one unit of evidence, however many lines its fix
            # touched: a fix that replaces a whole block (a socket source) says less about
            # each of its lines than a one-line fix says about its one line
            weights.append(1.0 / len(positives) if i in positives else 1.0)
    if functions < MIN_FUNCTIONS:
        return None
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    weight = np.asarray(weights)
    classifier.fit(
        vectorizer().transform(texts), np.asarray(targets), sample_weight=weight / weight.mean()
    )
    info = {
        "labels_version": versions.LINE_LABELS,
        "statements_version": versions.STATEMENTS,
        "juliet_rules": sorted(rules),
        "functions": functions,
        "lines": len(texts),
        "flaw_lines": int(sum(targets)),
    }
    # float32 as stored: a loaded ranker scores exactly as the fitted one
    coef = classifier.coef_[0].astype(np.float32)
    return LineRanker(coef, float(np.float32(classifier.intercept_[0])), info)


def fit_on_split(
    path: Path,
    label_names: Sequence[str],
    benign_id: int,
    seed: int,
    progress: bool | None = None,
    rules: frozenset[str] = JULIET_RULES,
) -> LineRanker | None:
    """`fit_line_ranker` on a prepared split file (its code, label and pair columns); None
    when the split has no pairs."""
    import pyarrow.parquet as pq

    if "pair" not in pq.read_schema(path).names:
        return None
    table = pq.read_table(path, columns=["code", "label", "pair"])
    return fit_line_ranker(
        table.column("code").to_pylist(),
        table.column("label").to_pylist(),
        table.column("pair").to_pylist(),
        label_names,
        benign_id,
        seed,
        progress,
        rules,
    )


def _flawed_with_fixes(
    codes: Sequence[str],
    labels: Sequence[int],
    pairs: Sequence[str | None],
    benign_id: int,
    seed: int,
) -> list[tuple[int, list[str]]]:
    """Each flawed row that has a pair, with its pair's benign texts (a seeded sample of at
    most MAX_FUNCTIONS rows)."""
    variants: dict[str, list[int]] = defaultdict(list)
    for row, pair in enumerate(pairs):
        if pair is not None:
            variants[str(pair)].append(row)
    flawed = [
        (row, [codes[r] for r in rows if labels[r] == benign_id])
        for rows in variants.values()
        for row in rows
        if labels[row] != benign_id
    ]
    if len(flawed) > MAX_FUNCTIONS:
        rng = np.random.default_rng(seed)
        flawed = [flawed[i] for i in sorted(rng.choice(len(flawed), MAX_FUNCTIONS, replace=False))]
    return flawed
