"""The scan report as JSON (`enstack scan --format json`), typed: what a CI step or a script
reads. `formats.json` builds it; under the tests (`ENSTACK_CHECK_DOCUMENTS=1`, which
`tests/conftest.py` sets) every report is checked against `ScanDocument` on its way out, so a
key renamed or retyped in the code fails the tests rather than a user's script;
`read_scan_report` reads one back. Keys are only ever added (docs/CONTRACT), and
`tool.version` names the enstack that wrote it. Its JSON schema is on the Records page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from enstack.errors import UserError
from enstack.records import Record


class ScanRecord(Record):
    """A part of the scan document: `class` is a field (`label` in Python)."""

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())


class Tool(ScanRecord):
    """The tool that wrote the report."""

    name: str
    version: str


class Suppressed(ScanRecord):
    """Why a finding is not counted: an enstack-ignore comment or the baseline."""

    kind: str
    """`inSource` (an enstack-ignore comment) or `external` (the baseline)."""
    status: str
    justification: str | None


class TopLine(ScanRecord):
    """A line of the function, ranked by how much of the finding it carries."""

    line: int
    score: float
    """The line's share of the finding (the ranker's or attribution's score)."""


class Finding(ScanRecord):
    """A function the model flags."""

    path: str
    function: str
    start_line: int
    end_line: int
    label: str = Field(alias="class")
    """The class the function is given."""
    level: str
    """SARIF's level: error, warning or note."""
    p_vulnerable: float
    """P(vulnerable): one minus the benign class's probability (or the top class's)."""
    class_probability: float
    probabilities: dict[str, float]
    models: dict[str, dict[str, float]]
    """Each model's own probabilities."""
    top_lines: list[TopLine]
    damaged: bool
    """The parse had to recover inside the function: its text may be incomplete."""
    fingerprint: str
    """What baselines and code-scanning tools match the finding by."""
    suppressed: Suppressed | None


class KnownFinding(ScanRecord):
    """A function that matches a known vulnerability's vulnerable side (`--known`)."""

    kind: str
    path: str
    function: str
    start_line: int
    end_line: int
    vulnerability: str
    cwe: list[str]
    label: str | None = Field(alias="class")
    """The class its CWE maps to (None where the source names no CWE the classes hold)."""
    level: str
    match: str
    """How it matched: clone (the vulnerable function, normalised) or signature."""
    containment: float
    lines: list[int]
    known_function: str | None
    """The vulnerable function's name, where the source gives it."""
    fix: str
    learned_from: str
    damaged: bool
    fingerprint: str
    suppressed: Suppressed | None


class KnownSection(ScanRecord):
    """The knowledge base a `--known` scan checked against, and what matched."""

    base: str
    about: str
    entries: int
    functions_checked: int
    findings: list[KnownFinding]


class ScanSummary(ScanRecord):
    """The counts a CI step gates on."""

    files: int
    functions: int
    damaged_functions: int
    skipped_files: dict[str, int]
    """Files not read, by reason (binary, too large, unreadable, ...)."""
    excluded_files: int
    ignored_files: int
    unchanged_files: int
    non_utf8_files: int
    findings: int
    suppressed: int
    changed_since: str | None
    functions_in_changed_files: int
    unscored_lines: int
    known_findings: int | None


class UnscoredFile(ScanRecord):
    """A file with code outside any function the parse found (often macro-heavy C)."""

    path: str
    lines: int
    functions_estimate: int


class ScanDocument(ScanRecord):
    """One scan: the model that scored it, what was read and skipped, every finding (the
    model's) and every known vulnerability matched (`--known`)."""

    tool: Tool
    model: str | None
    """The bundle's name (never a local path); None for a scan with `--known` alone."""
    model_card: dict[str, Any] | None
    labels: list[str]
    benign_label: str | None
    threshold: float
    localisation: str
    localisation_note: str | None
    summary: ScanSummary
    unscored_files: list[UnscoredFile]
    """Files whose code the parse could not turn into functions, so was not scored."""
    warning: str | None
    warnings: list[str]
    findings: list[Finding]
    known: KnownSection | None


def check_document(report_json: dict[str, Any]) -> None:
    """Raise where the JSON report has a key `ScanDocument` does not declare, or lacks or
    mistypes one it does (a programming error, not a user's)."""
    undeclared = _undeclared(ScanDocument.model_validate(report_json))
    if undeclared:
        raise AssertionError(f"JSON report keys not in ScanDocument: {undeclared}")


def _undeclared(record: Record, where: str = "") -> list[str]:
    """Keys the record was given that its type does not declare, at any depth."""
    found = [f"{where}{key}" for key in record.model_extra or {}]
    for name in record.model_fields_set:
        value = getattr(record, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Record):
                found += _undeclared(item, f"{where}{name}.")
    return found


def read_scan_report(path: Path) -> ScanDocument:
    """A JSON report `enstack scan` wrote, typed; one error naming the file where it is not."""
    from enstack.fsutil import read_untrusted_json

    raw = read_untrusted_json(path, 256 << 20, str(path), "a report of `enstack scan -f json`")
    from pydantic import ValidationError

    try:
        return ScanDocument.model_validate(raw)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise UserError(f"{path}: not an enstack JSON report ({where}: invalid)") from None
