"""SARIF 2.1.0, as GitHub code scanning and other viewers read it.

One rule per flaw class (ids stable across runs: `enstack/<class>`), each result at the
function's top-ranked line with the function's span and its other top lines as related
locations, a `primaryLocationLineHash` computed from the function's name, class and text (so it
stays put when unrelated lines move), and the per-model probabilities in `properties`. A known
vulnerability's rule is its CVE id (`properties.kind` is `known`).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from enstack import __version__
from enstack.scan.formats.common import (
    CWE_NUMBER,
    by_label,
    escape_markdown,
    labels_of,
    lines_text,
    printable,
)
from enstack.scan.scope import IGNORE_FILE

if TYPE_CHECKING:
    from enstack.known.match import KnownFinding
    from enstack.scan.api import ScanReport, Scored

INFORMATION_URI = "https://arxiv.org/abs/2411.16561"  # the EnStack paper this implements
AUTOMATION_ID = "enstack/"  # one analysis category: alerts carry over from scan to scan
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# GitHub's security-severity (CVSS-like, 0-10) per class: how bad the flaw class usually is
SEVERITY = {"119": "8.8", "120": "9.8", "469": "5.5", "476": "7.5"}
SEVERITY_OTHER = "6.5"


def render(report: ScanReport) -> str:
    return json.dumps(as_sarif(report), indent=2) + "\n"


def rule_id(label: str) -> str:
    return "enstack/" + re.sub(r"[^A-Za-z0-9_.-]+", "-", label)


def _rule(label: str) -> dict:
    match = CWE_NUMBER.fullmatch(label.strip())
    number = match.group(1) if match else None
    plain = printable(label)  # a class name comes from the bundle: untrusted
    shown = escape_markdown(plain)
    full = (
        "enstack's stacked code models classify this function's code as {}. A model's "
        "prediction, not a proof: review the function and its top lines."
    )
    rule = {
        "id": rule_id(label),
        "name": re.sub(r"[^A-Za-z0-9]", "", label.title()) or "Flaw",
        "shortDescription": {
            "text": f"Function resembles {plain} flaws",
            "markdown": f"Function resembles {shown} flaws",
        },
        "fullDescription": {"text": full.format(plain), "markdown": full.format(shown)},
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
            "text": f"CWE-{number}: see {url}",
            "markdown": f"[CWE-{number}]({url}) on MITRE's CWE list.",
        }
    else:
        help_text = "{}: a flaw class of the training data, not one CWE entry."
        rule["help"] = {"text": help_text.format(plain), "markdown": help_text.format(shown)}
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
    """An RFC 3986 reference: `#`, `?`, `%`, spaces and non-ASCII percent-encoded, so
    `hash#frag?q=1.c` names that file and not another."""
    raw = path.encode("utf-8", "surrogateescape")  # a name that is not UTF-8: its own bytes
    if path.startswith("/"):
        return {"uri": "file://" + quote(raw, safe="/")}
    return {"uri": quote(raw, safe="/"), "uriBaseId": "%SRCROOT%"}


def _lines_lead(method: str) -> str:
    if method == "learned":
        return "Lines most likely to hold the flaw"
    return "Lines that drive the prediction most"


def _known_properties(report: ScanReport) -> dict | None:
    known = report.known
    if known is None:
        return None
    return {"name": known.base, "about": known.about, "entries": known.entries,
            "functionsChecked": known.checked}  # fmt: skip


def _result(report: ScanReport, s: Scored) -> dict:
    f = s.function
    top = s.lines[0][0] if s.lines else f.start_line
    lines = lines_text(s)
    p_class = float(s.probs[labels_of(report).index(s.label)])
    name, label = printable(f.name), printable(s.label)

    def say(name: str, label: str) -> str:
        score = (
            f"P(vulnerable) {s.p_vulnerable:.2f}, P({label}) {p_class:.2f}"
            if s.p_vulnerable is not None
            else f"P({label}) {s.confidence:.2f}"
        )
        return f"Function {name} (lines {f.start_line}-{f.end_line}) resembles {label} " + (
            f"({score})." + (f" {_lines_lead(report.localise)}: {lines}." if lines else "")
        )

    # `text` is plain (a viewer shows it as written); `markdown` has the names escaped, so a
    # name like f<"`](https://x)[`"> renders as text, not as a link
    message = {
        "text": say(name, label),
        "markdown": say(escape_markdown(name), escape_markdown(label)),
    }
    related = [_location(f.path, _region(f.start_line, f.end_line), f"function {name}", 1)]
    related += [
        _location(f.path, _region(line), f"top line {rank + 2}", rank + 2)
        for rank, (line, _) in enumerate(s.lines[1:])
    ]
    result = {
        "ruleId": rule_id(s.label),
        "level": s.level,
        "message": message,
        "locations": [_location(f.path, _region(top))],
        "relatedLocations": related,
        "partialFingerprints": {"primaryLocationLineHash": s.fingerprint},
        "properties": {
            "function": f.name,
            "p_vulnerable": s.p_vulnerable,
            "probabilities": by_label(report, s.probs),
            "models": {name: by_label(report, p) for name, p in s.per_model.items()},
            "damaged": f.damaged,
        },
    }
    if s.suppression is not None:
        result["suppressions"] = [s.suppression.as_sarif()]
    return result


def _notifications(report: ScanReport) -> list[dict]:
    """What the scan could not read or parse, for code scanning's tool status page."""
    warnings = report.model.warnings() if report.model else []
    out: list[dict] = [{"level": "warning", "message": {"text": text}} for text in warnings]
    tally = report.tally
    if tally.excluded or tally.unchanged:
        text = (
            f"left out of the scan: {tally.excluded} files by --exclude and ignore files "
            f"({tally.ignored} by {IGNORE_FILE}), {tally.unchanged} files not changed"
        )
        out.append({"level": "note", "message": {"text": text}})
    if report.every_file_excluded:
        out.append({"level": "warning", "message": {"text": report.every_file_excluded}})
    if report.localisation_note:
        out.append({"level": "note", "message": {"text": report.localisation_note}})
    for path, reason in report.tally.skipped_files:
        out.append(
            {
                "level": "note",
                "message": {"text": f"skipped: {printable(reason)}"},
                "locations": [_location(path, _region(1))] if path != "<stdin>" else [],
            }
        )
    for path in report.damaged_paths:
        lost = report.unscored.get(path)
        text = (
            f"{lost.lines} lines of this file did not parse into functions (about "
            f"{lost.functions} functions; a macro or #if tree-sitter cannot read without a "
            "preprocessor) and were not scored"
            if lost
            else "parts of this file did not parse (a macro or #if tree-sitter cannot read "
            "without a preprocessor); every line of it lies in a function that was scored, "
            "some read around parse errors"
        )
        out.append(
            {
                "level": "warning" if lost else "note",
                "message": {"text": text},
                "locations": [_location(path, _region(1))],
            }
        )
    return out


def _known_rule(finding: KnownFinding) -> dict:
    """A known vulnerability's rule: its CVE id, the CWE in tags and properties."""
    entry = finding.entry
    vuln = printable(entry.vuln_id)
    cwes = [c for c in entry.cwe.split(",") if c]
    numbers = [m.group(1) for c in cwes if (m := CWE_NUMBER.fullmatch(c))]
    is_cve = vuln.upper().startswith("CVE-")
    text = (
        f"{vuln}: a function known to be vulnerable (fixed by {printable(entry.source)}); a copy "
        "or version of it that lacks the fix."
    )
    rule = {
        "id": entry.vuln_id,
        "name": "KnownVulnerability",
        "shortDescription": {"text": f"Known vulnerability {vuln}"},
        "fullDescription": {"text": text, "markdown": escape_markdown(text)},
        "defaultConfiguration": {"level": "error"},
        "properties": {
            "kind": "known",
            "cwe": cwes,
            "class": entry.label,
            "tags": ["security", "known-vulnerability"]
            + [f"external/cwe/cwe-{n}" for n in numbers],
            "security-severity": SEVERITY.get(numbers[0] if numbers else "", SEVERITY_OTHER),
        },
    }
    if is_cve:
        url = f"https://www.cve.org/CVERecord?id={quote(vuln)}"
        rule["helpUri"] = url
        rule["help"] = {"text": f"{vuln}: see {url}", "markdown": f"[{vuln}]({url})"}
    return rule


def _known_result(report: ScanReport, k: KnownFinding, rule_index: int) -> dict:
    f = k.function
    lines = k.lines or [f.start_line]
    text = k.message
    markdown = escape_markdown(printable(text))
    result = {
        "ruleId": k.entry.vuln_id,
        "ruleIndex": rule_index,
        "level": k.level,
        "message": {"text": printable(text), "markdown": markdown},
        "locations": [_location(f.path, _region(lines[0], lines[-1]))],
        "relatedLocations": [
            _location(f.path, _region(f.start_line, f.end_line), f"function {printable(f.name)}", 1)
        ],
        "partialFingerprints": {"primaryLocationLineHash": k.fingerprint},
        "properties": {
            "kind": "known",
            "function": f.name,
            "cwe": k.entry.cwe.split(",") if k.entry.cwe else [],
            "match": k.how,
            "containment": round(k.containment, 4),
            "knownFunction": k.entry.name,
            "learnedFrom": k.entry.source,
            "knowledgeBase": report.known.base if report.known else None,
            "damaged": f.damaged,
        },
    }
    if k.suppression is not None:
        result["suppressions"] = [k.suppression.as_sarif()]
    return result


def _known_rules_and_results(report: ScanReport, first_index: int) -> tuple[list, list]:
    if report.known is None:
        return [], []
    rules: dict[str, int] = {}
    rule_list: list[dict] = []
    results: list[dict] = []
    for k in report.known.findings:
        if k.entry.vuln_id not in rules:
            rules[k.entry.vuln_id] = first_index + len(rule_list)
            rule_list.append(_known_rule(k))
        results.append(_known_result(report, k, rules[k.entry.vuln_id]))
    return rule_list, results


def as_sarif(report: ScanReport) -> dict:
    model = report.model
    flaw_labels = [lb for lb in model.labels if lb != model.benign_label] if model else []
    known_rules, known_results = _known_rules_and_results(report, len(flaw_labels))
    run = {
        "tool": {
            "driver": {
                "name": "enstack",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [_rule(label) for label in flaw_labels] + known_rules,
            }
        },
        "originalUriBaseIds": {
            "%SRCROOT%": {"description": {"text": "the scan's working directory"}}
        },
        "automationDetails": {"id": AUTOMATION_ID},
        "invocations": [
            {"executionSuccessful": True, "toolExecutionNotifications": _notifications(report)}
        ],
        "results": [_result(report, s) for s in report.findings] + known_results,
        "properties": {
            "model": model.source.name if model else None,
            "modelCard": model.describe() if model else None,
            "threshold": report.threshold,
            "localisation": report.localise,
            "functions": report.functions,
            "changedSince": report.changed_since,
            "knowledgeBase": _known_properties(report),
        },
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
