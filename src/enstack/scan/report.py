"""A scan's findings as a terminal table, JSON, CSV, or SARIF 2.1.0 (GitHub code scanning).

SARIF: one rule per flaw class (ids stable across runs: `enstack/<class>`), each result at the
function's top-ranked line with the function's span and its other top lines as related
locations, a `primaryLocationLineHash` computed from the function's name, class and text (so it
stays put when unrelated lines move), and the per-model probabilities in `properties`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re

from enstack import __version__
from enstack.scan.api import ScanReport, Scored

INFORMATION_URI = "https://github.com/enstack/enstack"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# GitHub's security-severity (CVSS-like, 0-10) per class: how bad the flaw class usually is
SEVERITY = {"119": "8.8", "120": "9.8", "469": "5.5", "476": "7.5"}
SEVERITY_OTHER = "6.5"
CWE_NUMBER = re.compile(r"CWE[-_ ]?(\d+)", re.IGNORECASE)
FIVE_CLASS_WARNING = (
    "this model has no benign class (the paper's five-class task): it gives every function a "
    "flaw class and cannot tell safe code from unsafe"
)


def render(report: ScanReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(as_json(report), indent=2) + "\n"
    if fmt == "csv":
        return as_csv(report)
    if fmt == "sarif":
        return json.dumps(as_sarif(report), indent=2) + "\n"
    return as_text(report)


def _lines_text(item: Scored) -> str:
    return ", ".join(str(line) for line, _ in item.lines)


# --- text ------------------------------------------------------------------------------------


def as_text(report: ScanReport) -> str:
    rows = sorted(
        report.findings, key=lambda s: (-s.confidence, s.function.path, s.function.start_line)
    )
    header = (
        "location",
        "function",
        "class",
        "level",
        "P(vuln)" if report.detects else "P(class)",
        f"top lines ({report.localise})",  # which method ranked them, as JSON and SARIF say
    )
    table = [
        (
            f"{s.function.path}:{s.function.start_line}",
            s.function.name,
            s.label,
            s.level,
            f"{s.confidence:.3f}",
            _lines_text(s),
        )
        for s in rows
    ]
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    out = []
    if not report.detects:
        out.append(f"note: {FIVE_CLASS_WARNING}")
    if table:
        out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        out += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
        ]
    else:
        out.append(f"no findings at P(vulnerable) >= {report.threshold}")
    return "\n".join(out) + "\n"


# --- JSON and CSV ------------------------------------------------------------------------------


def _finding_json(report: ScanReport, s: Scored) -> dict:
    return {
        "path": s.function.path,
        "function": s.function.name,
        "start_line": s.function.start_line,
        "end_line": s.function.end_line,
        "class": s.label,
        "level": s.level,
        "p_vulnerable": s.p_vulnerable,
        "class_probability": float(s.probs[report.model.labels.index(s.label)]),
        "probabilities": _by_label(report, s.probs),
        "models": {name: _by_label(report, p) for name, p in s.per_model.items()},
        "top_lines": [{"line": line, "score": round(score, 4)} for line, score in s.lines],
        "damaged": s.function.damaged,
    }


def _by_label(report: ScanReport, probs) -> dict[str, float]:
    return {label: round(float(p), 6) for label, p in zip(report.model.labels, probs, strict=True)}


def as_json(report: ScanReport) -> dict:
    return {
        "tool": {"name": "enstack", "version": __version__},
        "model": str(report.model.source),
        "labels": report.model.labels,
        "benign_label": report.model.benign_label,
        "threshold": report.threshold,
        "localisation": report.localise,
        "summary": {
            "files": report.tally.files,
            "functions": len(report.scored),
            "damaged_functions": report.damaged_functions,
            "skipped_files": report.tally.skipped,
            "non_utf8_files": report.tally.non_utf8,
            "findings": len(report.findings),
        },
        "warning": None if report.detects else FIVE_CLASS_WARNING,
        "findings": [_finding_json(report, s) for s in report.findings],
    }


def as_csv(report: ScanReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    labels = report.model.labels
    writer.writerow(
        [
            "path",
            "function",
            "start_line",
            "end_line",
            "class",
            "level",
            "p_vulnerable",
            "top_lines",
        ]
        + [f"p_{label}" for label in labels]
    )
    for s in report.findings:
        writer.writerow(
            [
                s.function.path,
                s.function.name,
                s.function.start_line,
                s.function.end_line,
                s.label,
                s.level,
                "" if s.p_vulnerable is None else f"{s.p_vulnerable:.6f}",
                " ".join(str(line) for line, _ in s.lines),
            ]
            + [f"{p:.6f}" for p in s.probs]
        )
    return buffer.getvalue()


# --- SARIF 2.1.0 ------------------------------------------------------------------------------


def rule_id(label: str) -> str:
    return "enstack/" + re.sub(r"[^A-Za-z0-9_.-]+", "-", label)


def _rule(label: str) -> dict:
    match = CWE_NUMBER.search(label)
    number = match.group(1) if match else None
    rule = {
        "id": rule_id(label),
        "name": re.sub(r"[^A-Za-z0-9]", "", label.title()) or "Flaw",
        "shortDescription": {"text": f"Function resembles {label} flaws"},
        "fullDescription": {
            "text": f"enstack's stacked code models classify this function's code as {label}. "
            "A model's prediction, not a proof: review the function and its top lines."
        },
        "defaultConfiguration": {"level": "warning"},
        "properties": {
            "tags": ["security"] + ([f"external/cwe/cwe-{number}"] if number else []),
            "security-severity": SEVERITY.get(number or "", SEVERITY_OTHER),
        },
    }
    if number:
        url = f"https://cwe.mitre.org/data/definitions/{number}.html"
        rule["helpUri"] = url
        rule["help"] = {
            "text": f"{label}: see {url}",
            "markdown": f"[{label}]({url}) on MITRE's CWE list.",
        }
    else:
        rule["help"] = {"text": f"{label}: a flaw class of the training data, not one CWE entry."}
    return rule


def _region(start: int, end: int | None = None) -> dict:
    region = {"startLine": start}
    if end is not None:
        region["endLine"] = end
    return region


def _location(
    path: str, region: dict, message: str | None = None, index: int | None = None
) -> dict:
    location: dict = {
        "physicalLocation": {
            "artifactLocation": _artifact(path),
            "region": region,
        }
    }
    if index is not None:
        location["id"] = index
    if message:
        location["message"] = {"text": message}
    return location


def _artifact(path: str) -> dict:
    if path.startswith("/"):
        return {"uri": "file://" + path}
    return {"uri": path, "uriBaseId": "%SRCROOT%"}


def line_hash(s: Scored) -> str:
    """Stable while the function's own text, name and class are: moving it changes nothing."""
    text = " ".join(s.function.code.split())
    digest = hashlib.sha256(f"{s.function.name}\0{s.label}\0{text}".encode()).hexdigest()
    return f"{digest[:16]}:1"


def _lines_lead(method: str) -> str:
    if method == "learned":
        return "Lines most likely to hold the flaw"
    return "Lines that drive the prediction most"


def _result(report: ScanReport, s: Scored) -> dict:
    f = s.function
    top = s.lines[0][0] if s.lines else f.start_line
    lines = _lines_text(s)
    p_class = float(s.probs[report.model.labels.index(s.label)])
    score = (
        f"P(vulnerable) {s.p_vulnerable:.2f}, P({s.label}) {p_class:.2f}"
        if s.p_vulnerable is not None
        else f"P({s.label}) {s.confidence:.2f}"
    )
    message = (
        f"Function `{f.name}` (lines {f.start_line}-{f.end_line}) resembles {s.label} ({score})."
        + (f" {_lines_lead(report.localise)}: {lines}." if lines else "")
    )
    related = [_location(f.path, _region(f.start_line, f.end_line), f"function {f.name}", 1)]
    related += [
        _location(f.path, _region(line), f"top line {rank + 2}", rank + 2)
        for rank, (line, _) in enumerate(s.lines[1:])
    ]
    return {
        "ruleId": rule_id(s.label),
        "level": s.level,
        "message": {"text": message},
        "locations": [_location(f.path, _region(top))],
        "relatedLocations": related,
        "partialFingerprints": {"primaryLocationLineHash": line_hash(s)},
        "properties": {
            "function": f.name,
            "p_vulnerable": s.p_vulnerable,
            "probabilities": _by_label(report, s.probs),
            "models": {name: _by_label(report, p) for name, p in s.per_model.items()},
            "damaged": f.damaged,
        },
    }


def as_sarif(report: ScanReport) -> dict:
    flaw_labels = [lb for lb in report.model.labels if lb != report.model.benign_label]
    run = {
        "tool": {
            "driver": {
                "name": "enstack",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [_rule(label) for label in flaw_labels],
            }
        },
        "originalUriBaseIds": {
            "%SRCROOT%": {"description": {"text": "the scan's working directory"}}
        },
        "results": [_result(report, s) for s in report.findings],
        "properties": {
            "model": str(report.model.source),
            "threshold": report.threshold,
            "localisation": report.localise,
            "functions": len(report.scored),
        },
    }
    if not report.detects:
        run["invocations"] = [
            {
                "executionSuccessful": True,
                "toolExecutionNotifications": [
                    {"level": "warning", "message": {"text": FIVE_CLASS_WARNING}}
                ],
            }
        ]
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
