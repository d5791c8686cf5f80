"""Output formats: one registry, one module each, and a golden file per format.

The golden files hold what a fixed report (learned and known findings, a suppressed one, a
damaged function, lines not scored, a skipped file) renders to. A change in any format's output
fails here until the golden file is rewritten and the diff reviewed:

    ENSTACK_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_formats.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from enstack import __version__
from enstack.csyntax.functions import Function, Unscored
from enstack.errors import UserError
from enstack.known.match import KnownFinding, KnownReport
from enstack.known.signature import Entry, Signature
from enstack.scan import formats
from enstack.scan.api import ScanReport, Scored
from enstack.scan.card import ModelCard
from enstack.scan.files import FileTally
from enstack.scan.suppress import Suppression

from support import TESTS_DATA

GOLDEN = TESTS_DATA / "golden"
UPDATE = os.environ.get("ENSTACK_UPDATE_GOLDEN") == "1"
HOSTILE_NAME = "f<script>alert(1)</script>\"'<img src=x onerror=alert(2)>"
HOSTILE_CODE = "int g(void) {\n  /* </pre><script>alert(3)</script> */\n  return 0;\n}\n"

COPY_CODE = """static int copy(char *dst, const char *src, int n)
{
    int i;
    for (i = 0; i <= n; i++)
        dst[i] = src[i];
    return i;
}
"""
PARSE_CODE = """int parse(const char *s)
{
    char buf[16];
    strcpy(buf, s);
    return atoi(buf);
}
"""


def _card() -> ModelCard:
    return ModelCard(
        source=Path("/home/someone/runs/demo/stack/bundle"),
        kind="bundle",
        labels=["CWE-119", "CWE-120", "CWE-other", "benign"],
        benign_label="benign",
        fingerprint="0123456789abcdef0123",
        has_line_ranker=True,
        members=["codebert", "unixcoder"],
        meta="lr",
        trained_on={"sources": ["juliet5"], "rows": {"train": 1200}, "test": {"macro_f1": 0.91}},
    )


def _scored(function: Function, probs: list[float], level: str, lines, suppression=None):
    probs = np.array(probs)
    return Scored(
        function,
        probs,
        {"codebert": probs, "unixcoder": probs},
        label=["CWE-119", "CWE-120", "CWE-other"][int(np.argmax(probs[:3]))],
        p_vulnerable=float(1 - probs[3]),
        level=level,
        lines=lines,
        suppression=suppression,
    )


def _known(function: Function) -> KnownFinding:
    entry = Entry(
        vuln_id="CVE-2022-0001",
        cwe="CWE-787",
        label="CWE-119",
        name="copy",
        source="fixes.csv row 3",
        vulnerable_key=1,
        fixed_key=2,
        vulnerable_keys=frozenset({1}),
        fixed_keys=frozenset({2}),
        sketched=frozenset({1}),
        signature=Signature(deleted=(1,), added=(2,), context=()),
        change="replaced `i <= n` with `i < n`",
    )
    return KnownFinding(function, entry, "signature", [13, 14], 0.875)


def fixed_report() -> ScanReport:
    """One of everything a report can hold; names as an attacker would choose them."""
    copy = Function("src/copy.c", "copy", 10, 16, COPY_CODE, False)
    parse = Function("src/parse.cpp", "parse", 3, 8, PARSE_CODE, True)
    hostile = Function(f"src/{HOSTILE_NAME}.c", HOSTILE_NAME, 1, 4, HOSTILE_CODE, False)
    quiet = Function("src/ok.c", "ok", 1, 3, "int ok(void)\n{\n  return 1;\n}\n", False)
    tally = FileTally(files=4, skipped={"binary": 1}, skipped_files=[("blob.c", "binary")])
    known = KnownReport("kb", "1 entry from fixes.csv", 1, checked=4, findings=[_known(copy)])
    return ScanReport(
        model=_card(),
        scored=[
            _scored(copy, [0.80, 0.10, 0.05, 0.05], "error", [(14, 0.61), (15, 0.22)]),
            _scored(parse, [0.10, 0.55, 0.05, 0.30], "warning", [(6, 0.5)]),
            _scored(
                hostile,
                [0.20, 0.20, 0.30, 0.30],
                "warning",
                [(2, 0.4)],
                Suppression("inSource", "<b>reviewed</b> by [me](https://evil)"),
            ),
            _scored(quiet, [0.01, 0.01, 0.01, 0.97], "none", []),
        ],
        tally=tally,
        damaged_functions=1,
        damaged_files=1,
        threshold=0.5,
        localise="learned",
        damaged_paths=["src/parse.cpp"],
        functions_seen=4,
        unscored={"src/macro.c": Unscored(functions=2, lines=17)},
        known=known,
    )


def _stable(text: str) -> str:
    """The output without what changes with each release."""
    return text.replace(__version__, "<version>")


@pytest.mark.parametrize("fmt", formats.names())
def test_each_format_matches_its_golden_file(fmt: str) -> None:
    suffix = formats.FORMATS[fmt].suffixes[0]
    golden = GOLDEN / f"scan{suffix}"
    out = _stable(formats.render(fixed_report(), fmt)).encode("utf-8")
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(out)
    assert golden.exists(), f"no golden file {golden}: run with ENSTACK_UPDATE_GOLDEN=1"
    assert out == golden.read_bytes(), (
        f"{fmt} output changed: review the diff, then ENSTACK_UPDATE_GOLDEN=1 to accept it"
    )


def test_the_registry_is_what_the_cli_offers_and_each_module_renders() -> None:
    from enstack.cli import build_parser

    scan = build_parser()._subparsers._group_actions[0].choices["scan"]
    offered = next(a for a in scan._actions if a.dest == "format").choices
    assert tuple(offered) == formats.names() == ("text", "json", "csv", "sarif", "html")
    report = fixed_report()
    for name in formats.names():
        assert formats.render(report, name) == report.render(name)
    with pytest.raises(UserError, match="'xml' is not one of text, json, csv, sarif, html"):
        formats.render(report, "xml")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("r.sarif", "sarif"), ("r.JSON", "json"), ("r.csv", "csv"), ("r.html", "html"),
     ("r.htm", "html"), ("r.txt", "text"), ("report", "text")],
)  # fmt: skip
def test_an_output_file_suffix_chooses_its_format(tmp_path: Path, name: str, fmt: str) -> None:
    assert formats.for_path(Path(name)) == fmt
    written = fixed_report().write(tmp_path / name)
    assert written.read_bytes() == fixed_report().render(fmt).encode("utf-8")


class _Page(HTMLParser):
    """What a browser would make of the page: elements, attributes, and the text of scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag) -> None:
        self._in_script = False

    def handle_data(self, data) -> None:
        if self._in_script:
            self.scripts.append(data)


def test_html_escapes_hostile_names_code_and_justifications() -> None:
    page = formats.render(fixed_report(), "html")
    parsed = _Page()
    parsed.feed(page)
    # the only script is enstack's own sorter; no element carries an event handler or a link
    # that the scanned tree or the bundle chose
    assert len(parsed.scripts) == 1 and "alert" not in parsed.scripts[0]
    assert [t for t, _ in parsed.tags].count("script") == 1
    assert not any(k.startswith("on") for _, attrs in parsed.tags for k in attrs)
    assert not any(t == "img" for t, _ in parsed.tags)
    assert not any(a.get("href", "#").lstrip("#") == "" or "evil" in a.get("href", "")
                   for t, a in parsed.tags if t == "a")  # fmt: skip
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;reviewed&lt;/b&gt;" in page  # the justification, shown as written
    # and the page fetches nothing: the policy forbids it, and no URL points off the page
    assert "default-src 'none'" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_html_marks_the_ranked_lines_in_each_function() -> None:
    page = formats.render(fixed_report(), "html")
    listing = page[page.index('id="f0"') :]
    listing = listing[: listing.index("</div>")]
    marked = re.findall(r'<span class="hll">.*?(\d+)</span>', listing)
    assert marked == ["14", "15"], marked  # file lines 14 and 15 of copy(), numbered as the file
    assert "Suppressed findings" in page and "CVE-2022-0001" in page
    assert "src/macro.c" in page and "blob.c" in page  # not scored; skipped
    assert "/home/someone" not in page  # the model's local path stays on the machine


def _chromium() -> str | None:
    return next((p for n in ("chromium", "chromium-browser") if (p := shutil.which(n))), None)


# CI installs Chromium and sets this, so the browser test fails there rather than skip
CHROMIUM_REQUIRED = os.environ.get("ENSTACK_REQUIRE_CHROMIUM") == "1"


@pytest.mark.skipif(
    _chromium() is None and not CHROMIUM_REQUIRED,
    reason="Chromium is absent (Debian: apt-get install chromium; .ci/run installs it)",
)
def test_html_report_renders_in_a_real_browser(tmp_path: Path) -> None:
    """Headless Chromium loads the page offline, runs its script, and draws it."""
    assert _chromium() is not None, "ENSTACK_REQUIRE_CHROMIUM=1 but no chromium on PATH"
    page = tmp_path / "report.html"
    fixed_report().write(page)
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert "<h1>enstack scan report</h1>" in dom
    assert dom.count('class="listing"') == 3  # two open learned findings, one known
    assert "alert(1)</script>" not in dom.replace("&lt;/script&gt;", "")
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_json_golden_is_valid_json_with_the_report_s_counts() -> None:
    data = json.loads((GOLDEN / "scan.json").read_text(encoding="utf-8"))
    assert data["summary"]["findings"] == 2 and data["summary"]["suppressed"] == 1
    assert data["known"]["findings"][0]["vulnerability"] == "CVE-2022-0001"


def test_the_evaluation_page_escapes_names_and_embeds_the_plots(tmp_path: Path) -> None:
    """Model and class names come from the config and the data: shown as written."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from enstack.evaluate.page import evaluation_page

    plots = tmp_path / "plots"
    plots.mkdir()
    plt.plot([0, 1], [0, 1])
    plt.savefig(plots / "roc_selected.png")
    plt.close()
    md = (
        "# Results (test set, %)\n\n| model | F1 |\n|---|---|\n"
        "| <img src=x onerror=alert(1)> | **77.50** |\n| [x](javascript:alert(2)) | 1.00 |\n"
    )
    html = evaluation_page(md, plots, "run<1>")
    parsed = _Page()
    parsed.feed(html)
    tags = [t for t, _ in parsed.tags]
    assert tags.count("img") == 1 and "a" not in tags and tags.count("script") == 1
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<strong>77.50</strong>" in html
    assert "<td>&#91;x&#93;(javascript:alert(2))</td>" in html
    assert "run&lt;1&gt;" in html and "ROC, one-vs-rest, selected model" in html
    assert "confusion" not in html.lower()  # a plot not drawn is not announced


@pytest.mark.skipif(
    _chromium() is None and not CHROMIUM_REQUIRED,
    reason="Chromium is absent (Debian: apt-get install chromium; .ci/run installs it)",
)
def test_the_page_of_a_real_scan_loads_in_a_browser(bundle: Path, tmp_path: Path) -> None:
    """A scan with a trained bundle (synthetic data, as the demo's), written by the CLI as a
    user would, then loaded by Chromium: every finding of the JSON report is on the page,
    and the browser reports no script error."""
    from enstack.cli import main

    (tmp_path / "copy.c").write_text(
        "#include <string.h>\nvoid copy(char *s)\n{\n  char b[8];\n  strcpy(b, s);\n}\n"
        "int twice(int x)\n{\n  return 2 * x;\n}\n"
    )
    args = ["scan", str(tmp_path / "copy.c"), "--bundle", str(bundle), "--threshold", "0",
            "--no-cache", "-q"]  # fmt: skip
    assert main([*args, "-o", str(tmp_path / "r.html")]) == 0
    assert main([*args, "-o", str(tmp_path / "r.json")]) == 0
    names = [f["function"] for f in json.loads((tmp_path / "r.json").read_text())["findings"]]
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--enable-logging=stderr", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    run = subprocess.run(
        [*flags, "--dump-dom", (tmp_path / "r.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sorted(names) == ["copy", "twice"]
    for name in names:
        assert f"<code>{name}</code>" in run.stdout
    assert "Uncaught" not in run.stderr and "Content Security Policy" not in run.stderr


def test_a_json_report_is_the_declared_document_and_reads_back_typed(tmp_path: Path) -> None:
    """Every JSON report is checked against `ScanDocument` as it is written: a key renamed or
    added in the code, or a value of another type, fails here rather than in a user's script;
    `read_scan_report` reads a report back, and a file that is not one is one error."""
    from pydantic import ValidationError

    from enstack.scan.formats.document import check_document, read_scan_report

    golden = json.loads((GOLDEN / "scan.json").read_text())
    check_document(golden)
    renamed = json.loads(json.dumps(golden))
    renamed["findings"][0]["p_vuln"] = renamed["findings"][0].pop("p_vulnerable")
    with pytest.raises(ValidationError, match="p_vulnerable"):
        check_document(renamed)
    added = json.loads(json.dumps(golden))
    added["known"]["findings"][0]["extra_key"] = 1
    with pytest.raises(AssertionError, match=r"known\.findings\.extra_key"):
        check_document(added)
    report = read_scan_report(GOLDEN / "scan.json")
    assert [f.label for f in report.findings] == [f["class"] for f in golden["findings"]]
    assert report.summary.findings == golden["summary"]["findings"]
    assert report.known is not None and report.known.findings[0].vulnerability == "CVE-2022-0001"
    (tmp_path / "x.json").write_text('{"tool": {"name": "enstack"}}')
    with pytest.raises(UserError, match=r"x\.json: not an enstack JSON report"):
        read_scan_report(tmp_path / "x.json")
