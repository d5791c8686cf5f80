"""The results tables: JSON (the contract), Markdown in the Table III layout, CSV."""

from __future__ import annotations

import csv
import io

from enstack.stack.meta import LABELS as META_LABELS

COLUMNS = ("accuracy", "precision", "recall", "f1", "macro_f1", "auc")
HEADERS = ("acc", "prec", "rec", "F1", "macro F1", "AUC")


def results_json(summary: dict, extra: dict) -> dict:
    return {
        "rows": summary["rows"],
        "selected": summary["selected"],
        "mode": summary["mode"],
        "selection": summary["selection"],
        "features": summary["features"],
        "labels": summary["labels"],
        **extra,
    }


def _name(row: dict) -> str:
    models = " + ".join(row["models"])
    return models if row["meta"] is None else f"{models} ({META_LABELS[row['meta']]})"


def _groups(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    return [
        ("Individual models", [r for r in rows if r["meta"] is None]),
        ("Stacking single models", [r for r in rows if r["meta"] and len(r["models"]) == 1]),
        ("Ensembles", [r for r in rows if r["meta"] and len(r["models"]) > 1]),
    ]


def markdown(summary: dict, split: str = "test") -> str:
    rows = [r for r in summary["rows"] if r["split"] == split]
    best = {c: max((r[c] for r in rows if r[c] is not None), default=None) for c in COLUMNS}
    sel = summary["selected"]
    lines = [
        f"# Results ({split} set, %)",
        "",
        f"Selected on validation: **{' + '.join(sel['models'])} "
        f"({META_LABELS[sel['meta']]})**; selection: {summary['selection']}; "
        f"meta-features: {summary['features']}. Best value per column in bold.",
        "",
    ]
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
            lines.append(f"| {_name(row)}{marker} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: float | None, best: float | None) -> str:
    if value is None:
        return "n/a"
    text = f"{100 * value:.2f}"
    return f"**{text}**" if best is not None and abs(value - best) < 1e-12 else text


def plain_table(summary: dict, split: str = "test") -> str:
    """The same table for a terminal."""
    rows = [r for r in summary["rows"] if r["split"] == split]
    width = max(len(_name(r)) for r in rows) + 12
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
            out.append(f"  {_name(row) + marker:<{width - 2}}{cells}")
    out.append("* selected on validation")
    return "\n".join(out)


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["models", "meta", "split", *COLUMNS])
    for row in rows:
        writer.writerow(
            [
                "+".join(row["models"]),
                row["meta"] or "",
                row["split"],
                *("" if row[c] is None else f"{row[c]:.6f}" for c in COLUMNS),
            ]
        )
    return buffer.getvalue()
