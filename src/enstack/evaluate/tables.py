"""The results tables: JSON (the contract), Markdown in the Table III layout, CSV."""

from __future__ import annotations

import csv
import io
import textwrap

from enstack.registries.metas import META_KINDS

COLUMNS = ("accuracy", "precision", "recall", "f1", "macro_f1", "auc")
HEADERS = ("acc", "prec", "rec", "F1", "macro F1", "AUC")
# With a benign class: vulnerable vs benign at P(vulnerable) >= 0.5, then PrimeVul's pairs.
DETECTION = ("precision", "recall", "f1", "fpr", "roc_auc", "pr_auc", "vd_s")
DETECTION_HEADERS = ("prec", "rec", "F1", "FPR", "ROC-AUC", "PR-AUC", "VD-S")
PAIRS = ("pair_correct", "pair_vulnerable", "pair_benign", "pair_reversed", "pair_gain")
PAIR_HEADERS = ("P-C", "P-V", "P-B", "P-R", "gain")
LOWER_IS_BETTER = {"fpr", "vd_s", "pair_vulnerable", "pair_benign", "pair_reversed"}


def results_json(summary: dict, extra: dict) -> dict:
    return {
        "rows": summary["rows"],
        "selected": summary["selected"],
        "mode": summary["mode"],
        "selection": summary["selection"],
        "features": summary["features"],
        "labels": summary["labels"],
        "benign_label": summary.get("benign_label"),
        "select_on": summary.get("select_on", "f1"),
        # val and test functions longer than max_length, and how they were read
        **({"long_functions": summary["long_functions"]} if "long_functions" in summary else {}),
        **extra,
    }


def candidate_name(row: dict) -> str:
    """`a + b (LR)` for an ensemble, `a` for a single model (a row or the selection)."""
    models = " + ".join(row["models"])
    return models if row["meta"] is None else f"{models} ({META_KINDS[row['meta']].label})"


def _groups(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    return [
        ("Individual models", [r for r in rows if r["meta"] is None]),
        ("Stacking single models", [r for r in rows if r["meta"] and len(r["models"]) == 1]),
        ("Ensembles", [r for r in rows if r["meta"] and len(r["models"]) > 1]),
    ]


def long_functions_text(summary: dict) -> str:
    """How many val and test functions were longer than the window, and what was read."""
    info = summary.get("long_functions")
    if not info or not info.get("coverage"):
        return ""
    first = next(iter(info["coverage"].values()))  # the data is the same for every model
    if not first:
        return ""
    parts = [f"{s} {c['long']} of {c['functions']}" for s, c in first.items()]
    lines = sum(c["lines"] for c in first.values())
    seen = sum(c["lines_seen"] for c in first.values())
    how = "scored in windows" if info["mode"] == "windows" else "truncated"
    return (
        f"functions longer than max_length {info['max_length']}: {', '.join(parts)} ({how}; "
        f"{seen} of their {lines} lines read)"
    )


def markdown(summary: dict, split: str = "test") -> str:
    rows = [r for r in summary["rows"] if r["split"] == split]
    best = {c: unique_best([r[c] for r in rows], max) for c in COLUMNS}
    sel = summary["selected"]
    lines = [
        f"# Results ({split} set, %)",
        "",
        f"Selected on validation: **{candidate_name(sel)}**; selection: {summary['selection']}; "
        f"meta-features: {summary['features']}. Best value per column in bold (none where rows "
        "tie).",
        "",
    ]
    long = long_functions_text(summary)
    if long:
        lines += [f"{long[0].upper()}{long[1:]}.", ""]
    lines.append("| model | " + " | ".join(HEADERS) + " |")
    lines.append("|---|" + "---|" * len(HEADERS))
    for title, group in _groups(rows):
        if not group:
            continue
        lines.append(f"| *{title}* |" + " |" * len(HEADERS))
        for row in group:
            marker = (
                " (selected)"
                if row["models"] == sel["models"] and row["meta"] == sel["meta"]
                else ""
            )
            cells = [_cell(row[c], best[c]) for c in COLUMNS]
            lines.append(f"| {candidate_name(row)}{marker} | " + " | ".join(cells) + " |")
    if "detection" in rows[0]:
        lines += ["", *_detection_markdown(rows, sel)]
    val_rows = [r for r in summary["rows"] if r["split"] == "val" and "cv" in r]
    if val_rows:
        lines += ["", *_selection_markdown(val_rows, sel)]
    return "\n".join(lines) + "\n"


def per_class_markdown(extra: dict, labels: list[str]) -> str:
    """Per-class precision, recall and F1 on test, the selection beside the best single model."""
    reports = extra["test_reports"]
    lines = [
        "",
        "## Per class (test set, %)",
        "",
        f"Selected ensemble vs the best single model ({extra['best_single']}).",
        "",
        "| class | support | selected prec | rec | F1 | best single prec | rec | F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in labels:
        ours, single = (
            reports["selected"]["per_class"][name],
            reports["best_single"]["per_class"][name],
        )
        cells = [
            f"{100 * report[key]:.2f}"
            for report in (ours, single)
            for key in ("precision", "recall", "f1-score")
        ]
        lines.append(f"| {name} | {int(ours['support'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


SELECTION_SHOWN = 10


def _selection_markdown(val_rows: list[dict], sel: dict) -> list[str]:
    """The candidates' cross-validated scores on val: how sure the choice is."""
    ranked = sorted(val_rows, key=lambda r: -r["cv"]["mean"])
    best = ranked[0]["cv"]
    metric, folds = best["metric"], best["folds"]
    lines = [
        f"## Selection: {metric} on val, {folds}-fold cross-validated (%)",
        "",
        f"Mean and standard deviation over the folds; the selection takes the simplest candidate "
        f"within one standard error of the best ({100 * best['mean']:.2f} - "
        f"{100 * best['se']:.2f}). The {SELECTION_SHOWN} best shown, and the selection.",
        "",
        "| candidate | mean | std |",
        "|---|---|---|",
    ]
    shown = ranked[:SELECTION_SHOWN]
    chosen = [r for r in ranked if r["models"] == sel["models"] and r["meta"] == sel["meta"]]
    shown += [r for r in chosen if r not in shown]
    for row in shown:
        marker = " (selected)" if row in chosen else ""
        cv = row["cv"]
        lines.append(
            f"| {candidate_name(row)}{marker} | {100 * cv['mean']:.2f} | {100 * cv['std']:.2f} |"
        )
    return lines


def _detection_values(row: dict) -> list[float | None]:
    pairs = row.get("pairs")
    values = [row["detection"][c] for c in DETECTION]
    return values + ([pair_value(pairs, c) for c in PAIRS] if pairs else [])


def pair_value(pairs: dict, name: str) -> float | None:
    """A pair outcome; the gain derived for results written before it was recorded."""
    if name == "pair_gain" and name not in pairs:
        correct, reversed_ = pairs.get("pair_correct"), pairs.get("pair_reversed")
        return None if correct is None or reversed_ is None else correct - reversed_
    return pairs.get(name)


def _detection_markdown(rows: list[dict], sel: dict) -> list[str]:
    with_pairs = "pairs" in rows[0]
    keys = DETECTION + (PAIRS if with_pairs else ())
    headers = DETECTION_HEADERS + (PAIR_HEADERS if with_pairs else ())
    table = [_detection_values(r) for r in rows]
    best = []
    for j, key in enumerate(keys):
        column = [v[j] for v in table if v[j] is not None]
        best.append(unique_best(column, min if key in LOWER_IS_BETTER else max))
    lines = [
        "## Detection: vulnerable vs benign (%)",
        "",
        "A function is flagged when P(vulnerable) = 1 - P(benign) >= 0.5. FPR: false-positive "
        "rate; VD-S: false-negative rate at a false-positive rate <= 0.5% (lower is better)."
        + (
            " Pairs (a flawed function and its fixes): P-C all right, P-V all flagged, P-B none "
            f"flagged, P-R reversed, gain P-C minus P-R (0 at chance); over "
            f"{rows[0]['pairs']['n']} pairs."
            if with_pairs
            else ""
        ),
        "",
        "| model | " + " | ".join(headers) + " |",
        "|---|" + "---|" * len(headers),
    ]
    for row, values in zip(rows, table, strict=True):
        selected = row["models"] == sel["models"] and row["meta"] == sel["meta"]
        cells = [_cell(v, b) for v, b in zip(values, best, strict=True)]
        marker = " (selected)" if selected else ""
        lines.append(f"| {candidate_name(row)}{marker} | " + " | ".join(cells) + " |")
    return lines


def unique_best(values: list[float | None], pick) -> float | None:
    """The column's best value, or None where several rows share it: a tie (every model at
    the majority class's F1) has no best to bold."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    best = pick(present)
    return best if sum(abs(v - best) < 1e-12 for v in present) == 1 else None


def _cell(value: float | None, best: float | None) -> str:
    if value is None:
        return "n/a"
    text = f"{100 * value:.2f}"
    return f"**{text}**" if best is not None and abs(value - best) < 1e-12 else text


def selection_note(summary: dict) -> str | None:
    """Why a single model was selected, with the best ensemble's figures beside it: a reader
    of the table expects the ensemble to be the point. None when an ensemble was selected."""
    sel = summary["selected"]
    if len(sel["models"]) > 1:
        return None
    metric = summary.get("select_on", "f1")
    val = [r for r in summary["rows"] if r["split"] == "val" and len(r["models"]) > 1]
    scored = [r for r in val if _metric(r, metric) is not None]
    if not scored:
        return None
    best = max(scored, key=lambda r: _metric(r, metric))
    test = next(
        (r for r in summary["rows"] if r["split"] == "test" and r["models"] == best["models"]
         and r["meta"] == best["meta"]),
        None,
    )  # fmt: skip
    chosen_val = next(
        (r for r in summary["rows"] if r["split"] == "val" and r["models"] == sel["models"]
         and r["meta"] == sel["meta"]),
        None,
    )  # fmt: skip
    ours = _metric(chosen_val, metric) if chosen_val else None
    versus = f" (val {metric} {100 * ours:.2f}%)" if ours is not None else ""
    figures = (
        ", ".join(f"{h} {100 * test[c]:.2f}%" for h, c in zip(HEADERS, COLUMNS, strict=True)
                  if test.get(c) is not None)
        if test else "n/a"
    )  # fmt: skip
    return (
        f"selected: {candidate_name(sel)} alone{versus}: no ensemble beat it by more than one "
        f"standard error on validation, and the rule keeps the simplest candidate. The best "
        f"ensemble, {candidate_name(best)} (val {metric} {100 * _metric(best, metric):.2f}%), "
        f"scores on test: {figures}."
    )


def _metric(row: dict | None, name: str) -> float | None:
    if row is None:
        return None
    value = row.get(name)
    if value is None and name.startswith("detection_"):
        value = (row.get("detection") or {}).get(name.removeprefix("detection_"))
    if value is None and name == "pair_correct":
        value = (row.get("pairs") or {}).get("pair_correct")
    return value


def plain_table(summary: dict, split: str = "test") -> str:
    """The same table for a terminal."""
    rows = [r for r in summary["rows"] if r["split"] == split]
    width = max(len(candidate_name(r)) for r in rows) + 12
    out = [f"{'model (' + split + ', %)':<{width}}" + "".join(f"{h:>10}" for h in HEADERS)]
    sel = summary["selected"]
    for title, group in _groups(rows):
        if group:
            out.append(title)
        for row in group:
            marker = " *" if row["models"] == sel["models"] and row["meta"] == sel["meta"] else ""
            cells = "".join(
                f"{'n/a' if row[c] is None else f'{100 * row[c]:.2f}':>10}" for c in COLUMNS
            )
            out.append(f"  {candidate_name(row) + marker:<{width - 2}}{cells}")
    out.append(f"* selected on validation ({summary.get('select_on', 'f1')})")
    note = selection_note(summary)
    if note:
        out += ["", *textwrap.wrap(note, 100)]
    if "detection" in rows[0]:
        out += ["", *_detection_plain(rows, sel, width)]
    return "\n".join(out)


def _detection_plain(rows: list[dict], sel: dict, width: int) -> list[str]:
    """The detection columns for the base models and the selected ensemble only."""
    headers = DETECTION_HEADERS + (PAIR_HEADERS if "pairs" in rows[0] else ())
    out = [
        f"{'detection (vulnerable vs benign, %)':<{width}}" + "".join(f"{h:>9}" for h in headers)
    ]
    for row in rows:
        selected = row["models"] == sel["models"] and row["meta"] == sel["meta"]
        if row["meta"] is not None and not selected:
            continue
        cells = "".join(
            f"{'n/a' if v is None else f'{100 * v:.2f}':>9}" for v in _detection_values(row)
        )
        out.append(f"  {candidate_name(row) + (' *' if selected else ''):<{width - 2}}{cells}")
    return out


def csv_text(rows: list[dict]) -> str:
    """One line per row; with a benign class, `detection_*` and `pairs_*` columns follow, and
    in cv mode `cv_mean` and `cv_std` (val rows: the selection metric over the folds)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    detection = [f"detection_{c}" for c in DETECTION] if "detection" in rows[0] else []
    pairs = ["pairs_n", *(f"pairs_{c}" for c in PAIRS)] if "pairs" in rows[0] else []
    cv = ["cv_mean", "cv_std"] if any("cv" in row for row in rows) else []
    writer.writerow(["models", "meta", "split", *COLUMNS, *detection, *pairs, *cv])
    for row in rows:
        values = [row[c] for c in COLUMNS]
        if detection:
            values += [row["detection"][c] for c in DETECTION]
        if pairs:
            values += [row["pairs"]["n"], *(pair_value(row["pairs"], c) for c in PAIRS)]
        if cv:  # the selection's cross-validated estimate, on val rows in cv mode
            values += [row["cv"]["mean"], row["cv"]["std"]] if "cv" in row else [None, None]
        writer.writerow(
            [
                "+".join(row["models"]),
                row["meta"] or "",
                row["split"],
                *(
                    "" if v is None else (str(v) if isinstance(v, int) else f"{v:.6f}")
                    for v in values
                ),
            ]
        )
    return buffer.getvalue()
