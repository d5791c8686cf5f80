"""The report as one self-contained page a reviewer opens in a browser.

A summary (files, functions, findings by class and level, what was not scored, which model
and how far to trust it), a table of findings that sorts by file, class or probability, and
each finding's function highlighted by Pygments with its ranked lines marked. Suppressed
findings are listed apart, with the reason someone gave. Every name and every line of code is
escaped (file and function names come from the scanned tree; class names from the bundle).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import CLexer, CppLexer

from enstack.htmlpage import esc, page, table
from enstack.log import count_of
from enstack.scan.formats.common import printable

if TYPE_CHECKING:
    from enstack.csyntax.functions import Function
    from enstack.known.match import KnownFinding
    from enstack.scan.api import ScanReport, Scored

# a page stays openable on a scan of a whole tree: the table lists every finding, and this
# many of them (most probable first) also show their function's code
MAX_LISTINGS = 300
CPP_SUFFIXES = (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++")
# what the field measures on real code that no one tuned on (docs/limits.md)
REAL_CODE_NOTE = (
    "Learned models in this field, this one included, score close to chance on real "
    "vulnerabilities no one tuned on (ROC-AUC about 0.5 on the realvul split by CVE): treat a "
    "learned finding as a lead to review, not a verdict. A known-vulnerability finding is a "
    "match with a published fix."
)
CODE_CSS = """
.listing { margin: 1.2em 0 2em; } .listing pre { margin: 0; }
.code { border: 1px solid #d0d7de; border-radius: 6px; overflow-x: auto; background: #fff; }
.code .hll { background: #fff1a8; display: block; }
.code .linenos, .code span.linenos { color: #8c959f; padding-right: 1em; user-select: none; }
"""


def render(report: ScanReport) -> str:
    learned = sorted(report.findings, key=lambda s: (-s.confidence, s.function.path))
    known = report.known.findings if report.known is not None else []
    open_learned = [s for s in learned if s.suppression is None]
    open_known = [k for k in known if k.suppression is None]
    parts = [
        "<h1>enstack scan report</h1>",
        f'<p class="muted">{esc(report.summary())}</p>',
        _summary(report, open_learned, open_known),
        _model(report),
        _findings_table(report, open_learned),
        _known_table(open_known),
        _listings(report, open_learned, open_known),
        _suppressed(report, learned, known),
        _unscored(report),
    ]
    css = HtmlFormatter(cssclass="code").get_style_defs(".code") + CODE_CSS
    return page("enstack scan report", "\n".join(p for p in parts if p), css)


# --- summary and model card ---------------------------------------------------------------------


def _summary(report: ScanReport, learned: list[Scored], known: list[KnownFinding]) -> str:
    tally = report.tally
    counts: list[list[str] | None] = [
        ["files scanned", str(tally.files)],
        ["functions", str(report.functions)],
        ["findings (learned)", str(len(learned))] if report.model is not None else None,
        ["findings (known vulnerabilities)", str(len(known))] if report.known else None,
        ["suppressed", str(_suppressed_count(report))],
        ["functions in damaged regions", str(report.damaged_functions)],
        ["lines not scored", str(sum(u.lines for u in report.unscored.values()))],
        ["files skipped", str(sum(tally.skipped.values()))],
        ["files excluded", str(tally.excluded)],
    ]
    rows = [r for r in counts if r is not None]
    out = ["<h2>Summary</h2>", table(["", "count"], rows, numeric=(1,))]
    by_class = Counter((s.label, s.level) for s in learned)
    by_class.update((k.entry.vuln_id, k.level) for k in known)
    if by_class:
        levels = ("error", "warning", "note")
        rows = [
            [esc(label), *(str(by_class[(label, lv)]) for lv in levels)]
            for label in sorted({label for label, _ in by_class})
        ]
        out += ["<h3>Findings by class and level</h3>",
                table(["class", *levels], rows, numeric=(1, 2, 3))]  # fmt: skip
    return "\n".join(out)


def _suppressed_count(report: ScanReport) -> int:
    learned = len(report.findings) - len(report.unsuppressed)
    known = report.known
    return learned + (len(known.findings) - len(known.unsuppressed) if known else 0)


def _model(report: ScanReport) -> str:
    out = ["<h2>What scored the code</h2>", '<div class="card">']
    model = report.model
    if model is not None:
        card = model.describe()  # names, never local paths: the page may be shared
        what = ", ".join(card["models"]) + (f" stacked by {card['meta']}" if card["meta"] else "")
        out.append(f"<p><b>Model</b>: {esc(card['name'])} ({esc(card['kind'])}: {esc(what)}); "
                   f"fingerprint <code>{esc(card['fingerprint'])}</code></p>")  # fmt: skip
        out.append(f"<p><b>Training</b>: {esc(model.training())}</p>")
        out.append(f"<p><b>How far to trust it</b>: {esc(REAL_CODE_NOTE)}</p>")
        out += [f'<p class="warn">warning: {esc(w)}</p>' for w in model.warnings()]
        if report.localisation_note:
            out.append(f'<p class="muted">lines: {esc(report.localisation_note)}</p>')
    if report.known is not None:
        known = report.known
        out.append(f"<p><b>Known vulnerabilities</b>: {esc(known.base)} ({esc(known.about)}); "
                   f"{count_of(known.checked, 'function')} checked</p>")  # fmt: skip
    out.append("</div>")
    return "\n".join(out)


# --- tables -------------------------------------------------------------------------------------


def _level(level: str) -> str:
    return f'<span class="level level-{esc(level)}">{esc(level)}</span>'


def _where(path: str, line: int, anchor: str | None) -> str:
    text = esc(f"{printable(path)}:{line}")
    return f'<a href="#{anchor}">{text}</a>' if anchor else text


def _findings_table(report: ScanReport, learned: list[Scored]) -> str:
    if report.model is None:
        return ""
    if not learned:
        return f"<h2>Findings</h2>\n<p>No finding at P(vulnerable) &ge; {report.threshold}.</p>"
    score = "P(vulnerable)" if report.detects else "P(class)"
    rows = []
    for index, s in enumerate(learned):
        f = s.function
        rows.append(
            [
                _level(s.level),
                _where(f.path, f.start_line, f"f{index}" if index < MAX_LISTINGS else None),
                esc(printable(f.name)),
                esc(printable(s.label)),
                f"{s.confidence:.3f}",
                esc(", ".join(str(line) for line, _ in s.lines)),
            ]
        )
    header = ["level", "location", "function", "class", score, f"top lines ({report.localise})"]
    return "<h2>Findings</h2>\n" + table(header, rows, sortable=True, numeric=(4,))


def _known_table(known: list[KnownFinding]) -> str:
    if not known:
        return ""
    rows = [
        [
            _level(k.level),
            _where(k.function.path, k.function.start_line, f"k{index}"),
            esc(printable(k.function.name)),
            esc(printable(k.entry.vuln_id)),
            esc(printable(k.entry.cwe) or "-"),
            esc(k.how),
        ]
        for index, k in enumerate(known)
    ]
    header = ["level", "location", "function", "known vulnerability", "CWE", "match"]
    return "<h2>Known vulnerabilities</h2>\n" + table(header, rows, sortable=True)


# --- each finding in its function ---------------------------------------------------------------


def _listings(report: ScanReport, learned: list[Scored], known: list[KnownFinding]) -> str:
    out = []
    for index, s in enumerate(learned[:MAX_LISTINGS]):
        ranked = ", ".join(f"{line} ({score:.2f})" for line, score in s.lines)
        about = (
            f"{_level(s.level)} {esc(printable(s.label))}, "
            f"{'P(vulnerable)' if report.detects else 'P(class)'} {s.confidence:.3f}"
            + (f"; ranked lines (best first): {esc(ranked)}" if ranked else "")
        )
        out.append(_listing(f"f{index}", s.function, [line for line, _ in s.lines], about))
    for index, k in enumerate(known):
        about = f"{_level(k.level)} {esc(printable(k.message))}"
        out.append(_listing(f"k{index}", k.function, k.lines, about))
    if not out:
        return ""
    more = len(learned) - MAX_LISTINGS
    tail = (
        f'<p class="muted">{more} more learned findings are in the table above; their code is '
        f"not shown (the page shows the {MAX_LISTINGS} most probable).</p>"
        if more > 0
        else ""
    )
    return "<h2>Each finding in its function</h2>\n" + "\n".join(out) + tail


def _listing(anchor: str, f: Function, lines: list[int], about: str) -> str:
    lexer = CppLexer() if f.path.lower().endswith(CPP_SUFFIXES) else CLexer()
    marked = [line - f.start_line + 1 for line in lines if f.start_line <= line <= f.end_line]
    formatter = HtmlFormatter(
        cssclass="code", linenos="inline", linenostart=f.start_line, hl_lines=marked, wrapcode=True
    )
    damaged = (
        ' <span class="level level-unscored">damaged: cut around C the parser could not read</span>'
        if f.damaged
        else ""
    )
    return (
        f'<div class="listing" id="{anchor}"><h3>{esc(printable(f.path))}:{f.start_line}-'
        f"{f.end_line} <code>{esc(printable(f.name))}</code>{damaged}</h3>\n<p>{about}</p>\n"
        f"{highlight(f.code, lexer, formatter)}</div>"
    )


# --- what nobody needs to act on now, and what was not read ------------------------------------


def _suppressed(report: ScanReport, learned: list[Scored], known: list[KnownFinding]) -> str:
    rows = [
        [_where(s.function.path, s.function.start_line, None), esc(printable(s.function.name)),
         esc(printable(s.label)), esc(s.suppression.kind), esc(s.suppression.justification)]
        for s in learned if s.suppression is not None
    ]  # fmt: skip
    rows += [
        [_where(k.function.path, k.function.start_line, None), esc(printable(k.function.name)),
         esc(printable(k.entry.vuln_id)), esc(k.suppression.kind),
         esc(k.suppression.justification)]
        for k in known if k.suppression is not None
    ]  # fmt: skip
    if not rows:
        return ""
    header = ["location", "function", "class", "suppressed by", "justification"]
    return (
        '<h2>Suppressed findings</h2>\n<p class="muted">Judged before (an enstack-ignore '
        "comment or the baseline): not counted by --fail-on.</p>\n" + table(header, rows)
    )


def _unscored(report: ScanReport) -> str:
    out = []
    if report.unscored:
        rows = [
            [esc(printable(path)), str(lost.lines), str(lost.functions)]
            for path, lost in sorted(report.unscored.items())
        ]
        out += [
            "<h2>Not scored</h2>\n<p>C the parser could not read without a preprocessor: no "
            "function in these lines has a score.</p>",
            table(["file", "lines", "functions (about)"], rows, numeric=(1, 2)),
        ]
    if report.tally.skipped_files:
        rows = [[esc(printable(p)), esc(printable(r))] for p, r in report.tally.skipped_files]
        out += ["<h2>Skipped files</h2>", table(["file", "reason"], rows)]
    return "\n".join(out)
