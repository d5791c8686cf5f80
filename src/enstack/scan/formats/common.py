"""What every format shares: names made safe to print, scores by class, ranked lines."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from enstack.scan.api import ScanReport, Scored

MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")
CWE_NUMBER = re.compile(r"CWE[-_ ]?(\d+)", re.IGNORECASE)


def escape_markdown(text: str) -> str:
    """Text that code scanning renders as Markdown, shown as written: a name like
    f<"`](https://x)[`"> stays text, not a link."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def printable(text: str) -> str:
    """A file or function name in a line-oriented format: control characters (a newline in a
    file name would forge a row) written as escapes."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def lines_text(item: Scored) -> str:
    """A finding's ranked lines, best first: `12, 9, 30`."""
    return ", ".join(str(line) for line, _ in item.lines)


def labels_of(report: ScanReport) -> list[str]:
    """The model's class names; only reports with learned findings ask, and those have one."""
    assert report.model is not None, "learned findings without a model"
    return report.model.labels


def by_label(report: ScanReport, probs: np.ndarray) -> dict[str, float]:
    """Probabilities keyed by the model's class names."""
    return {label: round(float(p), 6) for label, p in zip(labels_of(report), probs, strict=True)}


def aligned(header: tuple[str, ...], table: list[tuple]) -> list[str]:
    """A header and rows as columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *table]
    ]
