"""A scan's findings as a terminal table, JSON, CSV, or SARIF 2.1.0 (GitHub code scanning).

Learned and known findings are told apart in every format: the text report lists the known
ones in their own table; JSON keeps them under `known`; CSV marks each row's `kind` (`learned`
or `known`, columns added last); in SARIF a known finding's rule is its CVE id
(`properties.kind` is `known`), a learned one's `enstack/<class>`.

SARIF: one rule per flaw class (ids stable across runs: `enstack/<class>`), each result at the
function's top-ranked line with the function's span and its other top lines as related
locations, a `primaryLocationLineHash` computed from the function's name, class and text (so it
stays put when unrelated lines move), and the per-model probabilities in `properties`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from urllib.parse import quote

from enstack import __version__
from enstack.known.match import KnownFinding
from enstack.scan.api import ScanReport, Scored, count_of
from enstack.scan.card import FIVE_CLASS_WARNING
from enstack.scan.scope import IGNORE_FILE

INFORMATION_URI = "https://arxiv.org/abs/2411.16561"  # the EnStack paper this implements
AUTOMATION_ID = "enstack/"  # one analysis category: alerts carry over from scan to scan
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# GitHub's security-severity (CVSS-like, 0-10) per class: how bad the flaw class usually is
SEVERITY = {"119": "8.8", "120": "9.8", "469": "5.5", "476": "7.5"}
SEVERITY_OTHER = "6.5"
CWE_NUMBER = re.compile(r"CWE[-_ ]?(\d+)", re.IGNORECASE)


FORMATS = ("text", "json", "csv", "sarif")


def render(report: ScanReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(as_json(report), indent=2) + "\n"
    if fmt == "csv":
        return as_csv(report)
    if fmt == "sarif":
        return json.dumps(as_sarif(report), indent=2) + "\n"
    return as_text(report)


def escape_markdown(text: str) -> str:
    """Text that code scanning renders as Markdown, shown as written: a name like
    f<"`](https://x)[`"> stays text, not a link."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def printable(text: str) -> str:
    """A file or function name in a line-oriented format: control characters (a newline in a
    file name would forge a row) written as escapes."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _lines_text(item: Scored) -> str:
    return ", ".join(str(line) for line, _ in item.lines)


# --- text ------------------------------------------------------------------------------------


def as_text(report: ScanReport) -> str:
    out = _learned_text(report) if report.model is not None else []
    out += _known_text(report)
    out += _unscored_text(report)
    return "\n".join(out) + "\n"


def _learned_text(report: ScanReport) -> list[str]:
    rows = sorted(
        report.unsuppressed, key=lambda s: (-s.confidence, s.function.path, s.function.start_line)
    )
    header = (
        "location",
        "function",
        "class",
        "level",
        "P(vuln)" if report.detects else "P(class)",
        f"top lines ({report.localise})",  # which method ranked them, as JSON and SARIF say
        "damaged",  # the function overlaps C the parser could not read: its cut may be wrong
    )
    table = [
        (
            f"{printable(s.function.path)}:{s.function.start_line}",
            printable(s.function.name),
            printable(s.label),
            s.level,
            f"{s.confidence:.3f}",
            _lines_text(s),
            "yes" if s.function.damaged else "",
        )
        for s in rows
    ]
    out = []
    if not report.detects:
        out.append(f"note: {FIVE_CLASS_WARNING}")
    if table:
        out += _aligned(header, table)
    else:
        out.append(f"no findings at P(vulnerable) >= {report.threshold}")
    suppressed = len(report.findings) - len(rows)
    if suppressed:
        out.append(f"({suppressed} suppressed findings not shown: see --format json or sarif)")
    return out


def _aligned(header: tuple[str, ...], table: list[tuple]) -> list[str]:
    """A header and rows as columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *table]
    ]


def _known_text(report: ScanReport) -> list[str]:
    """Known vulnerabilities, apart from the model's findings: the CVE and what its fix did."""
    if report.known is None:
        return []
    rows = sorted(
        report.known.unsuppressed,
        key=lambda k: (k.level != "error", k.function.path, k.function.start_line),
    )
    base = printable(report.known.base)
    if not rows:
        return [f"no known vulnerability from {base} matched"]
    header = ("location", "function", "known vulnerability", "CWE", "level", "match", "lines")
    table = [
        (
            f"{printable(k.function.path)}:{k.function.start_line}",
            printable(k.function.name),
            printable(k.entry.vuln_id),
            printable(k.entry.cwe) or "-",
            k.level,
            k.how,
            ", ".join(map(str, k.lines)),
        )
        for k in rows
    ]
    out = [f"known vulnerabilities (from {base}):", *_aligned(header, table)]
    out += _fixes_text(rows)
    hidden = len(report.known.findings) - len(rows)
    if hidden:
        out.append(f"({hidden} suppressed known findings not shown: see --format json or sarif)")
    return out


def _fixes_text(rows: list[KnownFinding]) -> list[str]:
    """What each vulnerability's fix changed, once per CVE (a large fix changed many functions:
    its findings share one line), in the order the table first names them."""
    by_id: dict[str, list[KnownFinding]] = {}
    for k in rows:
        by_id.setdefault(k.entry.vuln_id, []).append(k)
    out = ["what each fix changed:"]
    for vuln_id, found in by_id.items():
        first = found[0]
        where = printable(first.entry.name or first.function.name)
        more = f"; and in {count_of(len(found) - 1, 'more function')}" if len(found) > 1 else ""
        out.append(
            f"  {printable(vuln_id)}: in {where} the fix {printable(first.entry.change)}{more}"
        )
    return out


def _unscored_text(report: ScanReport) -> list[str]:
    """Each file's lines the parser could not read: no function there was scored."""
    if not report.unscored:
        return []
    out = ["not scored (C the parser could not read; no function there has a score):"]
    for path, lost in sorted(report.unscored.items()):
        bodies = f", about {lost.functions} functions" if lost.functions else ""
        out.append(f"  {printable(path)}: {lost.lines} lines{bodies}")
    return out


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
        "fingerprint": s.fingerprint,
        "suppressed": None if s.suppression is None else s.suppression.as_json(),
    }


def _by_label(report: ScanReport, probs) -> dict[str, float]:
    return {label: round(float(p), 6) for label, p in zip(report.model.labels, probs, strict=True)}


def _known_json(report: ScanReport, k: KnownFinding) -> dict:
    return {
        "kind": "known",
        "path": k.function.path,
        "function": k.function.name,
        "start_line": k.function.start_line,
        "end_line": k.function.end_line,
        "vulnerability": k.entry.vuln_id,
        "cwe": k.entry.cwe.split(",") if k.entry.cwe else [],
        "class": k.entry.label,
        "level": k.level,
        "match": k.how,
        "containment": round(k.containment, 4),
        "lines": k.lines,
        "known_function": k.entry.name,
        "fix": k.entry.change,
        "learned_from": k.entry.source,
        "damaged": k.function.damaged,
        "fingerprint": k.fingerprint,
        "suppressed": None if k.suppression is None else k.suppression.as_json(),
    }


def _known_section(report: ScanReport) -> dict | None:
    known = report.known
    if known is None:
        return None
    return {
        "base": known.base,
        "about": known.about,
        "entries": known.entries,
        "functions_checked": known.checked,
        "findings": [_known_json(report, k) for k in known.findings],
    }


def as_json(report: ScanReport) -> dict:
    model = report.model
    return {
        "tool": {"name": "enstack", "version": __version__},
        "model": model.source.name if model else None,  # a name, never a local path
        "model_card": model.describe() if model else None,
        "labels": model.labels if model else [],
        "benign_label": model.benign_label if model else None,
        "threshold": report.threshold,
        "localisation": report.localise,
        "localisation_note": report.localisation_note,
        "summary": {
            "files": report.tally.files,
            "functions": report.functions,
            "damaged_functions": report.damaged_functions,
            "skipped_files": report.tally.skipped,
            "excluded_files": report.tally.excluded,  # by --exclude and ignore files
            "ignored_files": report.tally.ignored,  # of those, by an ignore file
            "unchanged_files": report.tally.unchanged,  # out of --changed-since's scope
            "non_utf8_files": report.tally.non_utf8,
            "findings": len(report.unsuppressed),
            "suppressed": len(report.findings) - len(report.unsuppressed),
            "changed_since": report.changed_since,
            "functions_in_changed_files": report.functions_seen,
            "unscored_lines": sum(u.lines for u in report.unscored.values()),
            "known_findings": len(report.known.unsuppressed) if report.known else None,
        },
        "unscored_files": [
            {"path": path, "lines": u.lines, "functions_estimate": u.functions}
            for path, u in report.unscored.items()
        ],
        "warning": None if report.detects else FIVE_CLASS_WARNING,
        "warnings": model.warnings() if model else [],  # about the model: synthetic data, ...
        "findings": [_finding_json(report, s) for s in report.findings],
        "known": _known_section(report),  # known vulnerabilities (--known), apart
    }


def as_csv(report: ScanReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    labels = report.model.labels if report.model else []
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
            "suppressed",
        ]
        + [f"p_{printable(label)}" for label in labels]
        + ["damaged", "unscored_lines"]  # added last, so readers by position keep working
        + ["kind", "vulnerability"]  # learned or known; the known one's CVE id
    )
    for s in report.findings:
        writer.writerow(
            [
                printable(s.function.path),
                printable(s.function.name),
                s.function.start_line,
                s.function.end_line,
                printable(s.label),
                s.level,
                "" if s.p_vulnerable is None else f"{s.p_vulnerable:.6f}",
                " ".join(str(line) for line, _ in s.lines),
                "" if s.suppression is None else s.suppression.kind,
            ]
            + [f"{p:.6f}" for p in s.probs]
            + ["true" if s.function.damaged else "false", "", "learned", ""]
        )
    for k in report.known.findings if report.known else []:
        writer.writerow(
            [
                printable(k.function.path),
                printable(k.function.name),
                k.function.start_line,
                k.function.end_line,
                printable(k.entry.cwe),
                k.level,
                "",
                " ".join(map(str, k.lines)),
                "" if k.suppression is None else k.suppression.kind,
            ]
            + [""] * len(labels)
            + ["true" if k.function.damaged else "false", "", "known", printable(k.entry.vuln_id)]
        )
    # a row per file with lines no function could be cut from: level `unscored`
    for path, lost in sorted(report.unscored.items()):
        where = [printable(path), "", "", "", "", "unscored", "", "", ""]
        writer.writerow(where + [""] * len(labels) + ["", lost.lines, "", ""])
    return buffer.getvalue()


# --- SARIF 2.1.0 ------------------------------------------------------------------------------


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
    lines = _lines_text(s)
    p_class = float(s.probs[report.model.labels.index(s.label)])
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
            "probabilities": _by_label(report, s.probs),
            "models": {name: _by_label(report, p) for name, p in s.per_model.items()},
            "damaged": f.damaged,
        },
    }
    if s.suppression is not None:
        result["suppressions"] = [s.suppression.as_sarif()]
    return result


def _notifications(report: ScanReport) -> list[dict]:
    """What the scan could not read or parse, for code scanning's tool status page."""
    warnings = report.model.warnings() if report.model else []
    out = [{"level": "warning", "message": {"text": text}} for text in warnings]
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
    rule_list, results = [], []
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
