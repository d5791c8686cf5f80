"""One self-contained HTML page: what the scan report and the evaluation report share.

Self-contained means the page loads nothing: its CSS and script are inline, pictures are data
URIs, and a Content-Security-Policy forbids every fetch and every script but its own, so the
page opens the same offline, in a CI artifact viewer or from a mail attachment, and markup
that slipped past escaping could neither load nor run anything. Everything that comes from the
scanned code, the model or the data goes through `esc`.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from pathlib import Path

from enstack import __version__

BASE_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 0 1.5em 3em; color: #1f2328; background: #fff; }
h1 { font-size: 1.6em; margin: 1em 0 .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid
#d0d7de; padding-bottom: .2em; } h3 { margin: 1.4em 0 .4em; font-size: 1.05em; }
.muted { color: #59636e; } code, pre { font: 12.5px/1.4 ui-monospace, Menlo, Consolas, monospace; }
table.data { border-collapse: collapse; margin: .6em 0; }
table.data th, table.data td { border: 1px solid #d0d7de; padding: .25em .6em; text-align: left;
       vertical-align: top; }
table.data th { background: #f6f8fa; } table.data td.num { text-align: right; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #8c959f; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: .6em 1em; background: #f6f8fa; }
.warn { border-left: 4px solid #d4a72c; background: #fff8c5; padding: .4em .8em; margin: .4em 0; }
.level { border-radius: 1em; padding: 0 .55em; font-size: .85em; white-space: nowrap; }
.level-error { background: #ffebe9; color: #a40e26; } .level-warning { background: #fff8c5;
       color: #7d4e00; } .level-note { background: #ddf4ff; color: #0550ae; }
.level-unscored { background: #eaeef2; color: #424a53; }
img.plot { max-width: 100%; border: 1px solid #d0d7de; margin: .4em 0; }
footer { margin-top: 3em; font-size: .85em; color: #59636e; }
"""

# Click a column's header to sort by it (numbers as numbers, a second click reverses): so the
# findings can be read by file, class or probability without a server or a library.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var numeric = th.dataset.type === "num", down = th.dataset.dir !== "asc";
      th.dataset.dir = down ? "asc" : "desc";
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return down ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _csp() -> str:
    """Nothing from the network, ever: inline styles, data: pictures, and of scripts only the
    sorter below, by its hash (so no event handler or javascript: link can run, even one that
    slipped into the page)."""
    digest = base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
        "img-src data:"
    )


CSP = _csp()


def esc(value: object) -> str:
    """Any text as HTML text: `<`, `>`, `&` and both quotes escaped (safe in attributes too)."""
    return escape(str(value), quote=True)


def page(title: str, body: str, css: str = "") -> str:
    """A whole document around `body` (already HTML), titled `title` (plain text)."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="enstack {esc(__version__)}">\n'
        f"<title>{esc(title)}</title>\n<style>{BASE_CSS}{css}</style>\n</head>\n<body>\n"
        f"{body}\n<footer>Written by enstack {esc(__version__)}. This page loads nothing from the "
        f"network.</footer>\n<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n"
    )


def table(
    header: list[str], rows: list[list[str]], *, sortable: bool = False, numeric: tuple = ()
) -> str:
    """A table of cells that are already HTML; header names are plain text. `numeric`: the
    columns (by index) that sort as numbers and align right."""
    cls = "data sortable" if sortable else "data"
    head = "".join(
        f'<th data-type="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>\n"
        for row in rows
    )
    return f'<table class="{cls}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>'


def png(path: Path, alt: str) -> str:
    """A picture embedded in the page (a data URI), so the one file carries it."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'
