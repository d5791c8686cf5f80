"""A scan report's output formats, one module each, behind one interface.

A format module has one function, `render(report: ScanReport) -> str`: the whole file it
writes. `FORMATS` below is the registry: the CLI's `--format` choices, `ScanReport.render` and
`ScanReport.write` (a file's suffix choosing its format) all read it, and a format's module is
imported only when a report is written in it (the CLI lists the choices without loading them).

To add a format: a module here with `render`, one `Format` line in `FORMATS`, and a golden file
in `tests/data/golden/` (the golden-file test renders a fixed report in every format).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from enstack.errors import UserError

if TYPE_CHECKING:
    from enstack.scan.api import ScanReport


@dataclass(frozen=True)
class Format:
    name: str  # what --format takes; its module is enstack.scan.formats.<name>
    suffixes: tuple[str, ...]  # an --output file with one of these is written in this format
    about: str  # one line for --help and the docs

    def render(self, report: ScanReport) -> str:
        return import_module(f"{__name__}.{self.name}").render(report)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("text", (".txt",), "a table for people (the default)"),
        Format("json", (".json",), "every score, class, ranked line and suppression"),
        Format("csv", (".csv",), "one row per finding, for spreadsheets"),
        Format("sarif", (".sarif",), "SARIF 2.1.0, for GitHub code scanning and other viewers"),
        Format("html", (".html", ".htm"), "one self-contained page to open in a browser"),
    )
}


def names() -> tuple[str, ...]:
    return tuple(FORMATS)


def render(report: ScanReport, fmt: str) -> str:
    """The report in format `fmt` (one of `names()`)."""
    if fmt not in FORMATS:
        raise UserError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    return FORMATS[fmt].render(report)


def for_path(path: Path) -> str:
    """The format an output file's suffix names; text for any other."""
    suffix = path.suffix.lower()
    return next((f.name for f in FORMATS.values() if suffix in f.suffixes), "text")
