"""Known vulnerabilities: `enstack known build` (a dataset, a repository's fixing commits) and
`enstack scan --known`: copies of a fixed CVE's vulnerable function are found and named as a
user would meet them (renamed, reformatted, recommented, a statement added, an older or later
version), a function holding the fix is not, every output format tells known findings from
learned ones, suppressions and baselines apply, and every bad base, fixes file or repository
ends in one `error:` line with nothing half-written."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from enstack.cli import main

from support import REPO, TESTS_DATA, git, shared_file

SCHEMA = TESTS_DATA / "sarif-schema-2.1.0.json"

VULNERABLE = """\
static int parse_header(struct conn *c, const char *src, size_t len)
{
    char tmp[64];
    int n = 0;

    if (c == NULL)
        return -1;
    /* copy the header out of the packet */
    memcpy(tmp, src, len);
    n = decode_header(c->state, tmp, len);
    c->count += n;
    log_header(c, n);
    return n;
}
"""
FIXED = VULNERABLE.replace(
    "        return -1;\n    /* copy",
    "        return -1;\n    if (len > sizeof(tmp))\n        return -EINVAL;\n    /* copy",
)
# a replacing fix: the deleted statement is the vulnerability's mark
VULNERABLE_2 = """\
int copy_name(struct entry *e, const char *name)
{
    size_t size = e->size;
    if (!name)
        return 0;
    strcpy(e->name, name);
    e->flags |= NAME_SET;
    notify_change(e, size);
    return 1;
}
"""
FIXED_2 = VULNERABLE_2.replace("strcpy(e->name, name);", "strlcpy(e->name, name, sizeof(e->name));")
CVE, CVE_2 = "CVE-2099-0001", "CVE-2099-0002"

# the same function as a vendored copy would arrive: names changed, reformatted, comments
# changed, and a statement added away from the fix
COPY = """\
/* third_party/hdr.c: imported 2019 */
static int vendor_parse_header(struct conn *conn, const char *data, size_t size) {
  char buffer[64]; int count = 0;
  trace_enter(__func__);
  if (conn == NULL) return -1;
  memcpy(buffer, data, size);   // fast path
  count = decode_header(conn->state, buffer, size);
  conn->count += count;
  log_header(conn, count);
  return count;
}
"""
COPY_FIXED = COPY.replace(
    "  memcpy(buffer,", "  if (size > sizeof(buffer)) return -EINVAL;\n  memcpy(buffer,"
)
UNRELATED = """\
int add(int a, int b)
{
    int sum = a + b;
    if (sum < a)
        return -1;
    return sum;
}
"""


def _dataset(tmp_path: Path, rows: list[dict] | None = None) -> Path:
    """Fix pairs in PairVul's published layout (one JSON array)."""
    rows = rows or [
        {"cve_id": CVE, "cwe": ["CWE-787"], "code_before_change": VULNERABLE,
         "code_after_change": FIXED, "id": 1},
        {"cve_id": CVE_2, "cwe": ["CWE-120"], "code_before_change": VULNERABLE_2,
         "code_after_change": FIXED_2, "id": 2},
    ]  # fmt: skip
    path = tmp_path / "fixes" / "pairs.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(rows))
    return path


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _assert_error(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])


@pytest.fixture
def base(tmp_path: Path, capsys) -> Path:
    out = tmp_path / "kb"
    code, _, err = _cli(capsys, "known", "build", "--preset", "pairvul", _dataset(tmp_path),
                        "--out", out)  # fmt: skip
    assert code == 0, err
    assert "2 entries added" in err
    return out


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "tree"
    root.mkdir(exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def _scan_json(capsys, *args) -> dict:
    code, out, err = _cli(capsys, "scan", *args, "--format", "json", "--no-cache")
    assert code == 0, err
    return json.loads(out)


def _known_ids(report: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in report["known"]["findings"]:
        found.setdefault(item["function"], []).append(item["vulnerability"])
    return found


# --- matching ------------------------------------------------------------------------------------


def test_a_changed_copy_is_named_and_the_fixed_one_is_not(tmp_path, capsys, base) -> None:
    tree = _tree(tmp_path, {"copy.c": COPY, "fixed.c": COPY_FIXED, "other.c": UNRELATED,
                            "orig.c": VULNERABLE, "orig_fixed.c": FIXED})  # fmt: skip
    report = _scan_json(capsys, tree, "--known", base)
    found = _known_ids(report)
    assert found == {"vendor_parse_header": [CVE], "parse_header": [CVE]}
    # the fixed copy and the fixed original hold the same names: only the unfixed ones match
    paths = {(f["path"].rsplit("/", 1)[-1], f["match"]) for f in report["known"]["findings"]}
    assert paths == {("copy.c", "signature"), ("orig.c", "clone")}
    assert report["known"]["functions_checked"] == 5
    copy = next(f for f in report["known"]["findings"] if f["path"].endswith("copy.c"))
    # the finding points at the statements around the missing check (two informative ones on
    # each side), in the copy's own lines
    assert copy["lines"] == [3, 5, 6, 7]
    assert "sizeof(tmp)" in copy["fix"] and copy["cwe"] == ["CWE-787"]
    assert report["model"] is None and report["findings"] == []
    # the text report says each CVE's fix once, with the other functions it was found in
    code, text, _ = _cli(capsys, "scan", tree, "--known", base, "--no-cache")
    assert code == 0
    fixes = text[text.index("what each fix changed:") :].splitlines()[1:]
    assert fixes == [
        f"  {CVE}: in parse_header the fix added `if (len > sizeof(tmp))`; `return -EINVAL;`"
        "; and in 1 more function"
    ]


def test_a_replaced_statement_is_the_signature(tmp_path, capsys, base) -> None:
    later = VULNERABLE_2.replace("notify_change(e, size);", "notify_change(e, size);\n"
                                 "    audit_log(e->owner, AUDIT_NAME);")  # fmt: skip
    later_fixed = FIXED_2.replace("notify_change(e, size);", "notify_change(e, size);\n"
                                  "    audit_log(e->owner, AUDIT_NAME);")  # fmt: skip
    tree = _tree(tmp_path, {"later.c": later, "later_fixed.c": later_fixed})
    report = _scan_json(capsys, tree, "--known", base)
    flagged = [(f["path"].rsplit("/", 1)[-1], f["vulnerability"], f["lines"])
               for f in report["known"]["findings"]]  # fmt: skip
    strcpy_line = later.splitlines().index("    strcpy(e->name, name);") + 1
    assert flagged == [("later.c", CVE_2, [strcpy_line])]


def test_real_fix_pairs_find_their_own_vulnerable_functions(tmp_path, capsys) -> None:
    """PairVul as published: a base from one CWE file; each vulnerable function of the file is
    found under its CVE, and its fixed version is not."""
    source = shared_file("realvul", "pairvul", "train", "linux_kernel_CWE-416_data.json")
    rows = json.loads(source.read_text())[:40]
    path = _dataset(tmp_path, rows)
    out = tmp_path / "kb"
    code, _, err = _cli(capsys, "known", "build", "--preset", "pairvul", path, "--out", out)
    assert code == 0, err
    from enstack.csyntax.functions import Function
    from enstack.known.base import KnownBase
    from enstack.known.match import KnownMatcher

    matcher = KnownMatcher(KnownBase(out))
    hits = fixed_hits = 0
    for row in rows:
        vulnerable = Function("x.c", "f", 1, 2, row["code_before_change"], False)
        fixed = Function("x.c", "f", 1, 2, row["code_after_change"], False)
        hits += row["cve_id"] in [k.entry.vuln_id for k in matcher.match(vulnerable)]
        fixed_hits += row["cve_id"] in [k.entry.vuln_id for k in matcher.match(fixed)]
    assert hits >= 0.9 * len(rows)
    assert fixed_hits == 0


# --- formats -------------------------------------------------------------------------------------


def test_every_format_tells_known_findings_apart(tmp_path, capsys, base) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    tree = _tree(tmp_path, {"copy.c": COPY, "other.c": UNRELATED})
    outputs = {}
    for fmt in ("text", "csv", "sarif"):
        code, out, err = _cli(capsys, "scan", tree, "--known", base, "--format", fmt)
        assert code == 0, err
        outputs[fmt] = out
    assert (
        "known vulnerabilities: 2 functions checked against 2 entries of kb, 1 matched "
        "(1 finding of 1 vulnerability)"
    ) in err
    text = outputs["text"]
    assert "known vulnerabilities (from kb):" in text and CVE in text
    assert "vendor_parse_header" in text and "P(vuln)" not in text  # no model: no model table
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    assert [(r["kind"], r["vulnerability"], r["function"]) for r in rows] == [
        ("known", CVE, "vendor_parse_header")
    ]
    sarif = json.loads(outputs["sarif"])
    jsonschema.validate(sarif, json.loads(SCHEMA.read_text()))
    run = sarif["runs"][0]
    (result,) = run["results"]
    rule = run["tool"]["driver"]["rules"][result["ruleIndex"]]
    assert result["ruleId"] == rule["id"] == CVE
    assert result["properties"]["kind"] == "known" and result["level"] == "warning"
    assert "external/cwe/cwe-787" in rule["properties"]["tags"]
    assert rule["helpUri"].endswith(CVE)
    assert CVE in result["message"]["text"] and "sizeof(tmp)" in result["message"]["text"]
    assert result["properties"]["learnedFrom"] == "pairs.json:1"
    region = result["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["endLine"]) == (3, 7)


def test_a_model_and_a_base_together(tmp_path, capsys, base, bundle) -> None:
    tree = _tree(tmp_path, {"copy.c": COPY, "other.c": UNRELATED})
    code, out, err = _cli(capsys, "scan", tree, "--bundle", bundle, "--known", base,
                          "--format", "sarif", "--threshold", "0", "--no-cache")  # fmt: skip
    assert code == 0, err
    results = json.loads(out)["runs"][0]["results"]
    kinds = {(r["ruleId"].startswith("enstack/"), r["properties"].get("kind")) for r in results}
    assert kinds == {(True, None), (False, "known")}  # learned: enstack/<class>; known: the CVE
    assert sum(r["ruleId"] == CVE for r in results) == 1


# --- what users already do with findings -------------------------------------------------------


def test_suppressions_baselines_and_fail_on(tmp_path, capsys, base) -> None:
    tree = _tree(tmp_path, {"copy.c": COPY})
    code, _, _ = _cli(capsys, "scan", tree, "--known", base, "--fail-on", "warning")
    assert code == 1
    sarif = tmp_path / "before.sarif"
    code, _, _ = _cli(capsys, "scan", tree, "--known", base, "--format", "sarif",
                      "--output", sarif)  # fmt: skip
    assert code == 0
    code, out, _ = _cli(capsys, "scan", tree, "--known", base, "--baseline", sarif,
                        "--fail-on", "warning", "--format", "json")  # fmt: skip
    assert code == 0
    (item,) = json.loads(out)["known"]["findings"]
    assert item["suppressed"]["kind"] == "external"
    mark = "// enstack-ignore: " + CVE + " only fed by our own packets\n"
    head, _, rest = COPY.partition("static int")
    (tree / "copy.c").write_text(head + mark + "static int" + rest)
    code, out, _ = _cli(capsys, "scan", tree, "--known", base, "--fail-on", "warning",
                        "--format", "json")  # fmt: skip
    assert code == 0
    (item,) = json.loads(out)["known"]["findings"]
    assert item["suppressed"] == {"kind": "inSource", "status": "accepted",
                                  "justification": "only fed by our own packets"}  # fmt: skip
    (tree / "copy.c").write_text(head + "// enstack-ignore: CVE-2000-0001 no\nstatic int" + rest)
    code, _, _ = _cli(capsys, "scan", tree, "--known", base, "--fail-on", "warning")
    assert code == 1  # a mark naming another CVE suppresses nothing


def _git(repo: Path, *args: str) -> str:
    return git(repo, *args).strip()


def test_changed_since_and_the_cache(tmp_path, capsys, base, monkeypatch) -> None:
    repo = _tree(tmp_path, {"copy.c": COPY, "other.c": UNRELATED})
    monkeypatch.chdir(repo)  # as in a pull request's CI job: the scan runs in the checkout
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "vendored")
    (repo / "other.c").write_text(UNRELATED.replace("a + b", "b + a"))
    cache = tmp_path / "cache"
    args = ("scan", ".", "--known", base, "--changed-since", "HEAD", "--format", "json",
            "--cache-dir", cache)  # fmt: skip
    code, out, _ = _cli(capsys, *args)
    assert code == 0 and json.loads(out)["known"]["findings"] == []  # the copy is unchanged
    (repo / "copy.c").write_text(COPY.replace("return count;", "return count; /* ok */"))
    db = sqlite3.connect(cache / "scan.sqlite")
    for poison in (None, '[[999999, "clone", [1], 1.0]]', '[[1, "bad"]]', "{"):
        if poison is not None:  # a stale or damaged verdict is judged again, never believed
            db.execute("UPDATE known SET found = ?", (poison,))
            db.commit()
        code, out, _ = _cli(capsys, *args)  # cold, then from the cache's verdicts
        found = json.loads(out)["known"]["findings"]
        assert [(f["function"], f["vulnerability"], f["lines"]) for f in found] == [
            ("vendor_parse_header", CVE, [3, 5, 6, 7])
        ]
    (count,) = db.execute("SELECT count(*) FROM known").fetchone()
    assert count == 2  # a verdict for each function in scope: the copy and the edited `add`


def test_a_known_only_scan_imports_no_model(tmp_path, base) -> None:
    tree = _tree(tmp_path, {"copy.c": COPY})
    code = (
        "import sys\nfrom enstack.cli import main\n"
        f"rc = main(['scan', {str(tree)!r}, '--known', {str(base)!r}, '--no-cache'])\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'tokenizers', 'sklearn') "
        "if m in sys.modules)\n"
        "print('RC', rc, 'HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)  # fmt: skip
    assert "RC 0 HEAVY []" in done.stdout, done.stdout + done.stderr


def test_the_python_api(tmp_path, base) -> None:
    import enstack.api as es

    report = es.scan(_tree(tmp_path, {"copy.c": COPY}), known=base)
    assert [k.entry.vuln_id for k in report.known.findings] == [CVE]
    assert report.model is None and "1 matched" in report.summary()


# --- building: append, inspect, a repository's fixing commits -----------------------------------


def test_append_adds_and_keeps_one_copy(tmp_path, capsys, base) -> None:
    more = tmp_path / "more"
    more.mkdir()
    (more / "pairs.json").write_text(json.dumps([
        {"cve_id": CVE_2, "cwe": ["CWE-120"], "code_before_change": VULNERABLE_2,
         "code_after_change": FIXED_2, "id": 9},
        {"cve_id": "CVE-2099-0003", "cwe": [], "code_before_change": VULNERABLE_2.replace(
            "copy_name", "copy_title"), "code_after_change": FIXED_2.replace(
            "copy_name", "copy_title"), "id": 10},
    ]))  # fmt: skip
    code, _, err = _cli(capsys, "known", "build", "--preset", "pairvul", more / "pairs.json",
                        "--out", base, "--append")  # fmt: skip
    assert code == 0, err
    assert "1 entries added; skipped 1 (1 already in the base)" in err
    code, out, _ = _cli(capsys, "known", "inspect", base)
    assert code == 0 and "3 known vulnerable functions" in out and "vulnerabilities: 3" in out


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository: the vulnerable file, then the commit that fixes it, then more work."""
    repo = tmp_path / "project"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "src").mkdir()
    (repo / "src" / "hdr.c").write_text(UNRELATED + "\n" + VULNERABLE)
    (repo / "README").write_text("x\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "start")
    vulnerable = _git(repo, "rev-parse", "HEAD")
    (repo / "src" / "hdr.c").write_text(UNRELATED + "\n" + FIXED)
    (repo / "README").write_text("y\n")
    _git(repo, "commit", "-qam", "check the header's length")
    fix = _git(repo, "rev-parse", "HEAD")
    return repo, vulnerable, fix


def _fixes(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "fixes.csv"
    path.write_text("cve_id,commit,cwe\n" + rows)
    return path


@pytest.mark.parametrize("bare", [False, True])
def test_from_git_takes_each_changed_function(tmp_path, capsys, history, bare) -> None:
    repo, _, fix = history
    if bare:
        subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(tmp_path / "bare.git")],
                       check=True)  # fmt: skip
        repo = tmp_path / "bare.git"
    out = tmp_path / "kb"
    code, _, err = _cli(capsys, "known", "build", "--from-git", repo,
                        "--fixes", _fixes(tmp_path, f"{CVE},{fix[:10]},CWE-787\n"),
                        "--out", out)  # fmt: skip
    assert code == 0, err
    assert "1 entries added" in err  # parse_header; `add` did not change
    report = _scan_json(capsys, _tree(tmp_path, {"copy.c": COPY, "fixed.c": COPY_FIXED}),
                        "--known", out)  # fmt: skip
    (item,) = report["known"]["findings"]
    assert (
        item["vulnerability"] == CVE
        and item["learned_from"] == f"{repo.name.removesuffix('.git')}@{fix[:12]}:src/hdr.c"
    )
    assert item["cwe"] == ["CWE-787"]


def test_from_git_runs_nothing_the_repository_configures(tmp_path, capsys, history, marker):
    repo, _, fix = history
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("*.c diff=evil filter=evil\n")
    settings = {"core.fsmonitor": marker, "diff.evil.textconv": marker,
                "diff.evil.command": marker, "diff.external": marker,
                "filter.evil.clean": marker, "filter.evil.smudge": marker,
                "filter.evil.process": marker, "filter.evil.required": "true",
                "core.hooksPath": tmp_path, "core.pager": marker, "alias.diff-tree": f"!{marker}",
                "alias.ls-tree": f"!{marker}", "alias.cat-file": f"!{marker}",
                "pager.diff-tree": marker, "gpg.program": marker,
                "log.showSignature": "true"}  # fmt: skip
    for key, value in settings.items():
        _git(repo, "config", key, str(value))
    code, _, err = _cli(capsys, "known", "build", "--from-git", repo,
                        "--fixes", _fixes(tmp_path, f"{CVE},{fix}\n"),
                        "--out", tmp_path / "kb")  # fmt: skip
    assert code == 0 and "1 entries added" in err, err


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "fragments"),
    [
        ("CVE-2099-0001,0123456789abcdef\n", ["line 2", "0123456789abcdef", "is not in"]),
        ("CVE-99-1,HEAD\n", ["line 2", "'CVE-99-1' is not a CVE id"]),
        ("CVE-2099-0001,--output=/tmp/x\n", ["line 2", "is not a commit"]),
        ("CVE-2099-0001,HEAD\nCVE-2099-0002,nope\n", ["line 3", "'nope'", "is not in"]),
    ],
)
def test_a_bad_fixes_file_writes_nothing(tmp_path, capsys, history, rows, fragments) -> None:
    repo, _, _ = history
    out = tmp_path / "kb"
    code, _, err = _cli(capsys, "known", "build", "--from-git", repo,
                        "--fixes", _fixes(tmp_path, rows), "--out", out)  # fmt: skip
    _assert_error(code, err, "fixes.csv", *fragments)
    assert not out.exists() and not list(tmp_path.glob(".kb*"))


def test_not_a_repository_and_missing_halves(tmp_path, capsys) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    fixes = _fixes(tmp_path, f"{CVE},HEAD\n")
    code, _, err = _cli(capsys, "known", "build", "--from-git", plain, "--fixes", fixes,
                        "--out", tmp_path / "kb")  # fmt: skip
    _assert_error(code, err, "--from-git", "plain")
    code, _, err = _cli(capsys, "known", "build", "--from-git", plain, "--out", tmp_path / "kb")
    _assert_error(code, err, "--from-git and --fixes go together")
    code, _, err = _cli(capsys, "known", "build", "--out", tmp_path / "kb")
    _assert_error(code, err, "name a source")
    code, _, err = _cli(capsys, "scan", plain)
    _assert_error(code, err, "--known")
    assert not (tmp_path / "kb").exists()


def test_a_dataset_without_pairs_and_an_occupied_out(tmp_path, capsys) -> None:
    rows = tmp_path / "functions.jsonl"
    rows.write_text(json.dumps({"func": VULNERABLE, "target": 1, "cwe": ["CWE-787"],
                                "project": "p", "idx": 1}) + "\n")  # fmt: skip
    code, _, err = _cli(capsys, "known", "build", "--preset", "primevul", rows,
                        "--out", tmp_path / "kb")  # fmt: skip
    _assert_error(code, err, "holds no fix pairs")
    occupied = tmp_path / "results"
    occupied.mkdir()
    (occupied / "mine.txt").write_text("keep me")
    code, _, err = _cli(capsys, "known", "build", "--preset", "pairvul", _dataset(tmp_path),
                        "--out", occupied)  # fmt: skip
    _assert_error(code, err, "is not a knowledge base")
    assert (occupied / "mine.txt").read_text() == "keep me"


def _rewrite_manifest(base: Path, **changes) -> None:
    manifest = json.loads((base / "manifest.json").read_text())
    manifest.update(changes)
    (base / "manifest.json").write_text(json.dumps(manifest))


def _resign(base: Path) -> None:
    """What an attacker who rewrites both files does: the manifest matches the database."""
    from enstack.fsutil import sha256_file

    db = base / "known.sqlite"
    _rewrite_manifest(base, database={"file": "known.sqlite", "bytes": db.stat().st_size,
                                      "sha256": sha256_file(db)})  # fmt: skip


def _truncate(base: Path) -> None:
    db = base / "known.sqlite"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])


def _flip(base: Path) -> None:
    db = base / "known.sqlite"
    data = bytearray(db.read_bytes())
    data[len(data) // 2] ^= 0xFF
    db.write_bytes(bytes(data))


def _rewritten(statement: str):
    """A damage: `statement` run on the database, the manifest re-signed to match."""

    def damage(base: Path) -> None:
        db = sqlite3.connect(base / "known.sqlite")
        db.execute(statement)
        db.commit()
        db.close()
        _resign(base)

    return damage


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        (lambda b: _rewrite_manifest(b, version=99), ["a base of format 99", "build it again"]),
        (lambda b: _rewrite_manifest(b, level="tokens-v0"), ["level 'tokens-v0'"]),
        (lambda b: _rewrite_manifest(b, format="other"), ["not an enstack knowledge base"]),
        (lambda b: (b / "manifest.json").write_text("{not json"), ["manifest.json"]),
        (lambda b: (b / "manifest.json").unlink(), ["manifest.json"]),
        (lambda b: (b / "known.sqlite").unlink(), ["known.sqlite", "missing"]),
        (_truncate, ["known.sqlite", "does not match its manifest"]),
        (_flip, ["known.sqlite", "does not match its manifest"]),
        (lambda b: _rewrite_manifest(b, probe_bands=[1, 2]), ["another MinHash"]),
        (
            _rewritten("UPDATE entries SET deleted = x'0102', marks = 'x', vulnerable_key = 'k'"),
            ["known.sqlite", "not a readable base"],
        ),
        (_rewritten("DROP TABLE keys"), ["known.sqlite", "not a readable base"]),
    ],
)
def test_a_bad_base_is_one_error(tmp_path, capsys, base, damage, fragments) -> None:
    damage(base)
    tree = _tree(tmp_path, {"copy.c": COPY})
    code, _, err = _cli(capsys, "scan", tree, "--known", base, "--format", "sarif",
                        "--output", tmp_path / "out.sarif")  # fmt: skip
    _assert_error(code, err, *fragments)
    assert not (tmp_path / "out.sarif").exists()


def test_a_failed_append_keeps_the_base(tmp_path, capsys, base, history) -> None:
    before = {p.name: p.read_bytes() for p in base.iterdir()}
    repo, _, _ = history
    code, _, err = _cli(capsys, "known", "build", "--append", "--out", base,
                        "--preset", "pairvul", _dataset(tmp_path), "--from-git", repo,
                        "--fixes", _fixes(tmp_path, f"{CVE},deadbeef\n"))  # fmt: skip
    _assert_error(code, err, "deadbeef")
    assert {p.name: p.read_bytes() for p in base.iterdir()} == before


@pytest.mark.slow
def test_the_pre_commit_hook_checks_staged_files(pre_commit_project, base) -> None:
    """The `enstack-known` hook of this repository's .pre-commit-hooks.yaml, run by pre-commit
    on a project whose staged file holds a copy of a known vulnerable function."""
    project = pre_commit_project
    project.use({"id": "enstack-known", "args": ["--known", str(base), "--no-cache"]})
    project.stage("vendor.c", COPY)
    done = project.run()
    assert done.returncode == 1, done.stdout + done.stderr
    assert CVE in done.stdout and "vendor.c:2" in done.stdout
    project.stage("vendor.c", COPY_FIXED)
    done = project.run()
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_a_build_killed_anywhere_leaves_a_whole_base(tmp_path, capsys, base) -> None:
    """SIGKILL at random moments of an `--append` build (reading PairVul, writing entries,
    publishing): the base at --out is always the old one or the new one, whole; the next
    build cleans what the killed one left and ends as an uninterrupted one."""
    import random
    import signal
    import time

    from enstack.known.base import KnownBase

    source = shared_file("realvul", "pairvul", "train", "linux_kernel_CWE-416_data.json").parent
    before = KnownBase(base).entries_count
    command = [sys.executable, "-m", "enstack", "known", "build", "--append", "--out",
               str(base), "--preset", "pairvul", str(source)]  # fmt: skip
    rng = random.Random(42)
    for _ in range(6):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        opened = KnownBase(base)  # verified against its manifest, or this raises
        assert opened.entries_count == before or opened.entries_count > before + 2000
        opened.close()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not [p for p in base.parent.iterdir() if p.name.startswith(".kb.")]
    final = KnownBase(base).entries_count
    assert final > before + 2000
    twin = tmp_path / "twin"  # the same two builds, never killed
    code, _, _ = _cli(capsys, "known", "build", "--preset", "pairvul", _dataset(tmp_path),
                      "--out", twin)  # fmt: skip
    code, _, _ = _cli(capsys, "known", "build", "--append", "--out", twin,
                      "--preset", "pairvul", source)  # fmt: skip
    assert code == 0 and KnownBase(twin).entries_count == final


def test_a_base_set_aside_by_a_killed_publish_is_put_back(tmp_path, capsys, base) -> None:
    """Killed between moving the old base aside and moving the new one in: the next build
    puts the old one back before anything else (it is never cleaned away as debris)."""
    manifest = (base / "manifest.json").read_bytes()
    aside = base.parent / f".{base.name}.old-0badf00d"
    base.rename(aside)
    (base.parent / f".{base.name}.tmp-1234abcd").mkdir()  # the new one, half-written
    code, _, err = _cli(capsys, "known", "build", "--append", "--out", base,
                        "--preset", "pairvul", _dataset(tmp_path))  # fmt: skip
    assert code == 0, err
    assert "skipped 2 (2 already in the base)" in err  # the old entries were there
    assert not aside.exists() and not (base.parent / f".{base.name}.tmp-1234abcd").exists()
    assert (
        json.loads((base / "manifest.json").read_bytes())["entries"]
        == json.loads(manifest)["entries"]
    )


def test_a_fixes_file_that_is_not_csv(tmp_path, capsys, history) -> None:
    repo, _, _ = history
    for body in ('cve_id,commit\n"' + "a" * 200_000 + '",x\n', "cve_id,commit\nCVE-2099-1,\x00x\n"):
        path = tmp_path / "fixes.csv"
        path.write_text(body)
        code, _, err = _cli(capsys, "known", "build", "--from-git", repo, "--fixes", path,
                            "--out", tmp_path / "kb")  # fmt: skip
        _assert_error(code, err, "fixes.csv", "line 2")
    path.write_bytes(b"cve_id,commit\nCVE-2099-1,\xff\n")
    code, _, err = _cli(capsys, "known", "build", "--from-git", repo, "--fixes", path,
                        "--out", tmp_path / "kb")  # fmt: skip
    _assert_error(code, err, "fixes.csv", "not UTF-8")


def test_bigvul_names_its_cves_in_their_own_column(tmp_path, capsys) -> None:
    """Big-Vul's CSV as published: the CVE in `CVE ID` (the group is the project), `vul` 0
    rows are functions no fix changed."""
    path = tmp_path / "MSR_data_cleaned.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["CVE ID", "CWE ID", "project", "func_before", "func_after", "vul"])
        writer.writerow([CVE, "CWE-787", "netio", VULNERABLE, FIXED, 1])
        writer.writerow(["", "", "netio", UNRELATED, UNRELATED, 0])
    out = tmp_path / "kb"
    code, _, err = _cli(capsys, "known", "build", "--preset", "bigvul", path, "--out", out)
    assert code == 0, err
    assert "1 entries added; skipped 1 (1 not changed by the fix (target not 1))" in err
    report = _scan_json(capsys, _tree(tmp_path, {"copy.c": COPY}), "--known", out)
    assert _known_ids(report) == {"vendor_parse_header": [CVE]}


def test_the_cve_column_leaves_existing_runs_alone(tmp_path) -> None:
    """`data.cve_column` (new in the presets) is read by the knowledge base only: a run
    prepared before it existed keeps its identity and its prepared data."""
    from enstack.config import load_config_dict
    from enstack.pipeline import _identity

    data = {"preset": "pairvul", "path": str(tmp_path / "x.json"),
            "labels": ["CWE-416", "CWE-other", "none"]}  # fmt: skip
    config = load_config_dict({"data": data}, "test")
    assert config.data.cve_column == "cve_id"
    assert "cve_column" not in _identity(config)["data"]


def test_huge_rows_are_skipped_or_compared_in_bounded_time(tmp_path, capsys) -> None:
    """What a dataset row can be made to be: 30,000 statements (skipped, said), and a single
    statement of 50,000 tokens in a fix (built and matched, compared exactly)."""
    import time

    many = "int f(int a)\n{\n" + "    a = a + 1;\n" * 30_000 + "    return a;\n}\n"
    long_call = "g(" + ", ".join(f"x{i}" for i in range(25_000)) + ");"
    wide = VULNERABLE.replace("log_header(c, n);", long_call)
    rows = [
        {"cve_id": "CVE-2099-0009", "cwe": [], "code_before_change": many,
         "code_after_change": many.replace("return a;", "return -a;"), "id": 1},
        {"cve_id": CVE, "cwe": [], "code_before_change": wide,
         "code_after_change": wide.replace(long_call, long_call.replace("x1,", "MAX_X,")),
         "id": 2},
    ]  # fmt: skip
    started = time.perf_counter()
    code, _, err = _cli(capsys, "known", "build", "--preset", "pairvul",
                        _dataset(tmp_path, rows), "--out", tmp_path / "kb")  # fmt: skip
    assert code == 0, err
    assert "1 entries added" in err and "1 over 20000 statements (too long to compare)" in err
    tree = _tree(tmp_path, {"wide.c": wide.replace("x2,", "z2,")})
    report = _scan_json(capsys, tree, "--known", tmp_path / "kb")
    assert time.perf_counter() - started < 60
    assert report["known"]["functions_checked"] == 1
    assert _known_ids(report) == {"parse_header": [CVE]}  # a copy, variables renamed


def test_a_later_version_between_the_old_and_the_new_line_is_not_flagged(tmp_path, capsys):
    """A fix that replaced `markold(g, g->survival, ...)` with `markold(g, g->allgc, ...)`: a
    later version that reads `markold(g, g->firstold1, ...)` is as like the fix as the flaw
    (no evidence either way: not flagged); an older version still holding the old line is."""
    body = """\
static void youngcollection (lua_State *L, global_State *g) {
  GCObject **psurvival;
  lua_assert(g->gcstate == GCSpropagate);
  markold(g, g->survival, g->reallyold);
  markold(g, g->finobj, g->finobjrold);
  atomic(L);
  sweepgen(L, g, &g->allgc, g->survival);
  finishgencycle(L, g);
}
"""
    fixed = body.replace("markold(g, g->survival, g->reallyold);",
                         "markold(g, g->allgc, g->reallyold);")  # fmt: skip
    rows = [{"cve_id": "CVE-2099-0042", "cwe": ["CWE-125"], "code_before_change": body,
             "code_after_change": fixed, "id": 1}]  # fmt: skip
    out = tmp_path / "kb"
    code, _, err = _cli(capsys, "known", "build", "--preset", "pairvul",
                        _dataset(tmp_path, rows), "--out", out)  # fmt: skip
    assert code == 0, err
    later = body.replace("markold(g, g->survival, g->reallyold);",
                         "markold(g, g->firstold1, g->reallyold);")  # fmt: skip
    older = body.replace("  atomic(L);\n", "  atomic(L);\n  checkSizes(L, g);\n")
    report = _scan_json(capsys, _tree(tmp_path, {"later.c": later, "older.c": older}),
                        "--known", out)  # fmt: skip
    flagged = [f["path"].rsplit("/", 1)[-1] for f in report["known"]["findings"]]
    assert flagged == ["older.c"]


@pytest.mark.slow
def test_two_builds_at_once_the_second_is_refused(tmp_path, capsys, base) -> None:
    """A second build of the same base while one runs is one error naming the first's PID; the
    first ends whole (the second never touches its staging)."""
    import time

    from enstack.known.base import KnownBase

    source = shared_file("realvul", "pairvul", "train", "linux_kernel_CWE-416_data.json").parent
    command = [sys.executable, "-m", "enstack", "known", "build", "--append", "--out",
               str(base), "--preset", "pairvul", str(source)]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = base.parent / f".{base.name}.lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lock.exists(), "the first build never took its lock"
    code, _, err = _cli(capsys, "known", "build", "--append", "--out", base,
                        "--preset", "pairvul", _dataset(tmp_path))  # fmt: skip
    _assert_error(code, err, f"--out {base} is in use by process {first.pid}")
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    assert KnownBase(base).entries_count > 2000 and not lock.exists()
