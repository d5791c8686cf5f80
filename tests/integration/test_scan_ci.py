"""`enstack scan` in a CI job: --changed-since on a real git repository, excludes and the
ignore file, both kinds of suppression (validated against the SARIF schema), notifications, a
re-scan the cache answers without loading the model, int8 agreement, the pre-commit hook and
the GitHub Actions example, and bad input ending in one `error:` line."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from enstack.cli import build_parser, main
from enstack.scan.api import Scanner

from support import REPO, TESTS_DATA

SCHEMA = TESTS_DATA / "sarif-schema-2.1.0.json"


def _fn(name: str, body: str = "return x + 1;") -> str:
    return f"int {name}(int x)\n{{\n    {body}\n}}\n"


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    """A repository with one commit, then a working tree that modifies one function, adds
    one (in a new file), renames a file with a change, deletes a file, and leaves the rest."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "a.c").write_text(_fn("kept") + "\n" + _fn("edited"))
    (root / "old.c").write_text(_fn("deleted"))
    (root / "mv.c").write_text(_fn("moved_same") + "\n" + _fn("moved_edited"))
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "base")
    (root / "a.c").write_text(_fn("kept") + "\n" + _fn("edited", "return x * 2;"))
    (root / "old.c").unlink()
    _git(root, "mv", "mv.c", "moved.c")
    (root / "moved.c").write_text(_fn("moved_same") + "\n" + _fn("moved_edited", "return x - 1;"))
    (root / "new.c").write_text(_fn("added"))
    monkeypatch.chdir(root)
    return root


def _scan_json(bundle: Path, capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(["scan", "--bundle", str(bundle), "--format", "json", "--threshold", "0.01",
                 "--no-cache", *args])  # fmt: skip
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code != 2 else None), err


def _names(report: dict) -> set[str]:
    return {f["function"] for f in report["findings"]}


def test_changed_since_scans_only_changed_functions(bundle: Path, repo: Path, capsys) -> None:
    code, report, err = _scan_json(bundle, capsys, "--changed-since", "HEAD")
    assert code == 0, err
    # threshold 0.01: every function in scope is a finding
    assert _names(report) == {"edited", "moved_edited", "added"}
    assert {f["path"] for f in report["findings"]} == {"a.c", "moved.c", "new.c"}
    assert report["summary"]["changed_since"] == "HEAD"
    assert report["summary"]["functions_in_changed_files"] == 5
    assert "3 of their 5 functions in scope (changed since HEAD)" in err
    # a deleted file named by hand (as a hook passes it) is not an error with --changed-since
    code, report, err = _scan_json(bundle, capsys, "--changed-since", "HEAD", "old.c", "a.c")
    assert code == 0, err
    assert _names(report) == {"edited"}


def test_an_empty_change_is_a_clean_scan(bundle: Path, repo: Path, capsys) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "all")
    code, report, err = _scan_json(bundle, capsys, "--changed-since", "HEAD", "--fail-on", "note")
    assert code == 0, err
    assert report["findings"] == [] and report["summary"]["functions"] == 0


def test_changed_since_in_a_shallow_clone(bundle: Path, repo: Path, tmp_path, capsys) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "second")
    clone = tmp_path / "shallow"
    _git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    os.chdir(clone)
    code, _, err = _scan_json(bundle, capsys, "--changed-since", "HEAD~1")
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err
    assert "HEAD~1: not a commit in this repository" in err and "git fetch" in err
    _git(clone, "fetch", "-q", "--deepen", "1")  # what the message says to do
    code, report, err = _scan_json(bundle, capsys, "--changed-since", "HEAD~1")
    assert code == 0, err
    assert _names(report) == {"edited", "moved_edited", "added"}


@pytest.mark.parametrize(
    ("rev", "fragment"),
    [("no-such-branch", "not a commit"), ("HEAD:a.c", "not a commit"), ("-x", "not a commit")],
)
def test_a_revision_that_is_not_a_commit(bundle: Path, repo: Path, capsys, rev, fragment) -> None:
    output = repo / "out.json"
    output.write_text("kept")
    # --changed-since=REV: an option-like revision ("-x") reaches git as a revision, not a flag
    code = main(["scan", "--bundle", str(bundle), f"--changed-since={rev}", "--output",
                 str(output)])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2 and err.count("error:") == 1 and fragment in err
    assert output.read_text() == "kept"  # nothing half-written


def test_changed_since_outside_a_repository(bundle: Path, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.c").write_text(_fn("f"))
    code, _, err = _scan_json(bundle, capsys, "--changed-since", "HEAD")
    assert code == 2 and err.count("error:") == 1 and "git rev-parse failed" in err


def test_excludes_ignore_file_and_include(bundle: Path, tmp_path, monkeypatch, capsys) -> None:
    tree = tmp_path / "tree"
    for rel in ("src/a.c", "src/a.h", "vendor/lib.c", "tests/t.c", "gen/big.c"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(_fn(Path(rel).stem.replace(".", "_")))
    (tree / ".enstackignore").write_text("# third-party code\nvendor/\n")
    monkeypatch.chdir(tmp_path)
    code, report, err = _scan_json(
        bundle, capsys, "tree", "--exclude", "tests/", "--exclude", "**/gen/*.c"
    )
    assert code == 0, err
    assert {f["path"] for f in report["findings"]} == {"tree/src/a.c", "tree/src/a.h"}
    code, report, _ = _scan_json(bundle, capsys, "tree", "--include", ".h")
    assert {f["path"] for f in report["findings"]} == {"tree/src/a.h"}
    # the patterns apply to files named by hand too (a hook passes every staged file)
    code, report, err = _scan_json(bundle, capsys, "tree/src/a.c", "--exclude", "*.c")
    assert code == 0 and report["findings"] == [] and "1 file excluded" in err


SUPPRESSED_C = """int plain(int *p)
{
    return p[4];
}

// enstack-ignore: reviewed in #12, callers pass 8 elements
int above(int *p)
{
    return p[4];
}

int inside(int *p)
{
    /* enstack-ignore: CWE-NOPE only this class */
    return p[4];
}
"""


def test_inline_and_baseline_suppressions(bundle: Path, tmp_path, monkeypatch, capsys) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    monkeypatch.chdir(tmp_path)
    Path("s.c").write_text(SUPPRESSED_C)
    args = ["scan", "s.c", "--bundle", str(bundle), "--threshold", "0.01", "--no-cache"]
    assert main([*args, "--format", "sarif", "--output", "first.sarif"]) == 0
    capsys.readouterr()
    sarif = json.loads(Path("first.sarif").read_text())
    jsonschema.validate(sarif, schema)
    results = {r["properties"]["function"]: r for r in sarif["runs"][0]["results"]}
    assert "suppressions" not in results["plain"]
    reason = "reviewed in #12, callers pass 8 elements"
    assert results["above"]["suppressions"] == [
        {"kind": "inSource", "status": "accepted", "justification": reason}
    ]
    # a comment naming another class leaves this one's finding standing
    assert "suppressions" not in results["inside"]
    # --fail-on counts the two unsuppressed findings; the baseline then suppresses them
    assert main([*args, "--fail-on", "note"]) == 1
    capsys.readouterr()
    base = [*args, "--baseline", "first.sarif"]
    assert main([*base, "--fail-on", "note", "--format", "sarif", "--output", "b.sarif"]) == 0
    _, err = capsys.readouterr()
    assert "0 findings" in err and "3 suppressed" in err
    second = json.loads(Path("b.sarif").read_text())
    jsonschema.validate(second, schema)
    kinds = {r["properties"]["function"]: r["suppressions"][0]["kind"]
             for r in second["runs"][0]["results"]}  # fmt: skip
    assert kinds == {"plain": "external", "above": "inSource", "inside": "external"}
    # a changed function is new again
    Path("s.c").write_text(SUPPRESSED_C.replace("return p[4];\n}\n\n//", "return p[5];\n}\n\n//"))
    assert main([*base, "--fail-on", "note"]) == 1
    out, _ = capsys.readouterr()
    assert "plain" in out and "inside" not in out  # the text table leaves suppressed out


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"not json", "not JSON"),
        (b'{"version": "2.1.0"}', "not a SARIF 2.x file"),
        (b"[" * 100_000, "not JSON"),
        (b'{"runs": [], "version": "1.0"}', "not a SARIF 2.x file"),
    ],
)
def test_a_baseline_that_is_not_sarif(bundle: Path, tmp_path, capsys, content, fragment) -> None:
    (tmp_path / "a.c").write_text(_fn("f"))
    baseline = tmp_path / "base.sarif"
    baseline.write_bytes(content)
    code = main(["scan", str(tmp_path / "a.c"), "--bundle", str(bundle), "--baseline",
                 str(baseline)])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err
    assert "base.sarif" in err and fragment in err


def test_sarif_for_code_scanning(bundle: Path, tmp_path, monkeypatch, capsys) -> None:
    """Notifications for what was skipped or damaged, the run's status, a category, paths
    relative to %SRCROOT% and percent-encoded, no local path, names that stay text."""
    jsonschema = pytest.importorskip("jsonschema")
    monkeypatch.chdir(tmp_path)
    tree = Path("t")
    tree.mkdir()
    (tree / "hash#frag?q=1 é.c").write_text(_fn("f"))
    (tree / "bin.c").write_bytes(b"\x7fELF\0\0binary")
    (tree / "broken.c").write_text("void broken( { int x = ; }\n" + _fn("g"))
    evil = 'template <typename T> int h<"`](https://evil.example/x)[`">(T v) { return 1; }\n'
    (tree / "evil.cpp").write_text(evil)
    os.symlink("/etc", tree / "etc")  # a link out of the tree is not followed
    args = ["scan", "t", "--bundle", str(bundle), "--threshold", "0.01", "--no-cache"]
    assert main([*args, "--format", "sarif"]) == 0
    out, err = capsys.readouterr()
    assert "1 symlink out of the tree" in err
    sarif = json.loads(out)
    jsonschema.validate(sarif, json.loads(SCHEMA.read_text()))
    run = sarif["runs"][0]
    assert run["automationDetails"]["id"] == "enstack/"
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is True
    notes = [n["message"]["text"] for n in invocation["toolExecutionNotifications"]]
    assert "skipped: binary" in notes and "skipped: symlink out of the tree" in notes
    assert any("did not parse" in n for n in notes)
    assert any("synthetic functions" in n for n in notes)  # the fixture's data is synthetic
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in run["results"]}  # fmt: skip
    assert "t/hash%23frag%3Fq%3D1%20%C3%A9.c" in uris
    assert str(tmp_path) not in out and str(bundle) not in out
    assert run["tool"]["driver"]["informationUri"].startswith("https://arxiv.org/")
    for result in run["results"]:  # text is plain, as written; markdown escapes the name
        assert "](https://evil" not in result["message"]["markdown"]
        assert "\\" not in result["message"]["text"]
    evil_result = next(r for r in run["results"] if "evil" in r["properties"]["function"])
    assert evil_result["properties"]["function"] in evil_result["message"]["text"]
    adler = next(r for r in run["results"] if r["properties"]["function"] == "f")
    assert adler["message"]["text"].startswith("Function f (lines")


def test_the_model_says_what_it_is(bundle: Path, tmp_path, capsys) -> None:
    (tmp_path / "a.c").write_text(_fn("f"))
    assert main(["scan", str(tmp_path / "a.c"), "--bundle", str(bundle), "--no-cache"]) == 0
    _, err = capsys.readouterr()
    assert f"model: {bundle} (bundle: m stacked by lr); trained on synthetic data (" in err
    assert "warning: this model was trained on synthetic functions" in err
    manifest = json.loads((bundle / "manifest.json").read_text())
    trained_on = manifest["trained_on"]
    assert trained_on["synthetic"] and trained_on["rows"]["train"] > 0
    assert set(trained_on["labels"]) >= {"none", "CWE-119"} and "macro_f1" in trained_on["test"]


def test_a_cached_rescan_loads_no_model(bundle: Path, tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "a.c").write_text(_fn("f") + "\n" + _fn("g", "char b[4]; b[x] = 0; return 0;"))
    args = ["scan", str(tmp_path / "a.c"), "--bundle", str(bundle), "--threshold", "0.01",
            "--cache-dir", str(tmp_path / "cache"), "--format", "json"]  # fmt: skip
    assert main(args) == 0
    cold = json.loads(capsys.readouterr()[0])

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded although the cache held every answer")

    monkeypatch.setattr("enstack.scan.model.load_scan_model", refuse)
    assert main(args) == 0
    warm = json.loads(capsys.readouterr()[0])
    assert warm["findings"] == cold["findings"] and len(warm["findings"]) == 2
    # a new function needs the model: the same refusal now fires
    (tmp_path / "a.c").write_text(_fn("f") + "\n" + _fn("h", "return -x;"))
    with pytest.raises(AssertionError, match="the model was loaded"):
        main(args)


def test_int8_agrees_with_full_precision(bundle: Path) -> None:
    import pyarrow.parquet as pq

    codes = pq.read_table(bundle.parents[1] / "data" / "test.parquet").column("code").to_pylist()
    full = Scanner(bundle).predict_proba(codes)
    int8 = Scanner(bundle, precision="int8")
    assert int8.model.precision == "int8"
    quantised = int8.predict_proba(codes)
    benign = int8.card.benign_id
    assert np.abs(full - quantised).max() < 0.02
    same = ((1 - full[:, benign]) >= 0.5) == ((1 - quantised[:, benign]) >= 0.5)
    assert same.mean() >= 0.99
    assert int8.cache_key != Scanner(bundle).cache_key  # their scores are cached apart


def test_output_never_replaces_what_was_scanned(
    bundle: Path, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "a.c"
    source.write_text(_fn("f"))
    code = main(["scan", str(source), "--bundle", str(bundle), "--output", str(source)])
    _, err = capsys.readouterr()
    assert code == 2 and "is one of the files scanned" in err
    assert source.read_text() == _fn("f")
    assert main(["scan", str(source), "--bundle", str(bundle), "--no-cache"]) == 0
    table = capsys.readouterr()[0]
    assert main(["scan", str(source), "--bundle", str(bundle), "--no-cache", "--output", "-"]) == 0
    assert capsys.readouterr()[0] == table  # standard output, not a file named -
    assert not (tmp_path / "-").exists()
    code = main(["scan", str(source), "--bundle", str(bundle), "--set", "seed=1"])
    assert code == 2 and "--set: only with --config" in capsys.readouterr()[1]


# --- integrations ------------------------------------------------------------------------------


@pytest.mark.slow  # two pre-commit runs, each starting enstack in a fresh process
def test_the_pre_commit_hook_runs_on_staged_files(bundle: Path, pre_commit_project) -> None:
    """pre-commit, as a user runs it: this repository's .pre-commit-hooks.yaml, at a commit,
    on a project with a staged C file."""
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} >= {"enstack-scan", "enstack-scan-changed", "enstack-known"}
    project = pre_commit_project
    hook = {
        "id": "enstack-scan",
        "args": [
            *("--bundle", str(bundle), "--threshold", "0.01"),
            *("--no-cache", "--fail-on", "note"),  # the last --fail-on counts
        ],
    }
    project.use(hook)
    project.stage("a.c", _fn("f"))
    project.stage("notes.txt", "not code")
    done = project.run()
    # threshold 0.01 makes the staged function a finding: the hook fails
    assert done.returncode == 1, done.stdout + done.stderr
    assert "enstack" in done.stdout and "a.c:1" in done.stdout
    assert "notes.txt" not in done.stdout
    # above every score, the same hook passes
    hook["args"][3] = "1.0"
    project.use(hook)
    done = project.run()
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_github_actions_example_uses_real_flags() -> None:
    workflow = yaml.safe_load((REPO / "examples" / "github-code-scanning.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    scans = [s["run"] for s in steps if "enstack scan" in s.get("run", "")]
    assert scans, "the workflow runs enstack scan"
    command = " ".join(scans[0].replace("\\\n", " ").split())
    command = command[command.index("enstack scan") :].replace("${{", "").replace("}}", "")
    argv = shlex.split(command)
    args = build_parser().parse_args(argv[1:])
    assert args.changed_since and args.format == "sarif" and args.output
    # every scan the workflow runs parses; one checks the whole tree against known CVEs
    parsed = []
    for scan in scans:
        line = " ".join(scan.split())
        line = line[line.index("enstack scan") :].replace("${{", "").replace("}}", "")
        parsed.append(build_parser().parse_args(shlex.split(line)[1:]))
    known = [a for a in parsed if a.known is not None]
    assert known and known[0].changed_since is None and known[0].bundle is None
    uploads = [s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload")]
    assert {u["with"]["sarif_file"] for u in uploads} == {str(a.output) for a in parsed}
    assert any(s.get("uses", "").startswith("github/codeql-action/upload-sarif") for s in steps)
    assert any(s.get("with", {}).get("fetch-depth") == 0 for s in steps)


# --- what notebooks pass, what a cache or a bundle can hold ---------------------------------------


def test_the_api_takes_one_path_or_one_function(bundle: Path, tmp_path: Path) -> None:
    from enstack.errors import UserError

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.c").write_text(_fn("f") + "\n" + _fn("g"))
    scanner = Scanner(str(bundle), threshold=0.01, cache_dir=str(tmp_path / "cache"))
    report = scanner.scan(str(tmp_path / "src"), progress=False)  # a string, not characters
    assert sorted(s.function.name for s in report.scored) == ["f", "g"]
    one = scanner.predict_proba(_fn("f"))
    assert one.shape == (1, len(scanner.card.labels))
    np.testing.assert_allclose(one, scanner.predict_proba([_fn("f")]))
    bad = [
        ({"threshold": "0.5"}, "threshold: '0.5' is not a number"),
        ({"top_lines": 2.5}, "--top-lines: 2.5 is not a whole number"),
        ({"cache_dir": 3}, "cache_dir: 3 is not a path"),
        ({"precision": "int4"}, "--precision: 'int4'"),
    ]
    for settings, message in bad:
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            Scanner(bundle, **settings)
    for codes in (None, b"int f(void);", [1, 2], ["ok", "\udc80"]):
        with pytest.raises(UserError):
            scanner.predict_proba(codes)  # type: ignore[arg-type]
    with pytest.raises(UserError):
        scanner.scan([None])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("table", "column", "poison"),
    [
        ("scores", "probs", "[0.5, 0.5]"),  # another number of classes
        ("scores", "probs", '"text"'),
        ("scores", "per_model", '{"m": [NaN, 1, 1, 1, 1, 1]}'),
        ("lines", "ranked", "[[-4, 0.5]]"),  # a negative line number
        ("lines", "ranked", "{}"),
        ("files", "functions", '[{"path": "a.c"}]'),
        ("files", "functions", "[[[[[[[["),
    ],
)
def test_a_poisoned_cache_row_is_a_miss(
    bundle: Path, tmp_path: Path, capsys, table: str, column: str, poison: str
) -> None:
    import sqlite3

    (tmp_path / "a.c").write_text(_fn("f") + "\n" + _fn("g", "char b[4]; b[x] = 0; return 0;"))
    args = ["scan", str(tmp_path / "a.c"), "--bundle", str(bundle), "--threshold", "0.01",
            "--format", "json"]  # fmt: skip
    assert main([*args, "--no-cache"]) == 0
    truth = json.loads(capsys.readouterr()[0])["findings"]
    cached = [*args, "--cache-dir", str(tmp_path / "cache")]
    assert main(cached) == 0
    capsys.readouterr()
    with sqlite3.connect(tmp_path / "cache" / "scan.sqlite") as db:
        assert db.execute(f"UPDATE {table} SET {column} = ?", (poison,)).rowcount > 0
    assert main(cached) == 0  # re-scored, not a crash
    out, err = capsys.readouterr()
    assert json.loads(out)["findings"] == truth and "Traceback" not in err
    assert main(cached) == 0  # and rewritten: the next scan reads good rows
    assert json.loads(capsys.readouterr()[0])["findings"] == truth


def _re_manifested(bundle: Path, tmp_path: Path, change) -> Path:
    """A copy of the bundle changed by `change(copy, manifest)`, its manifest re-signed."""
    import hashlib

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    change(copy, manifest)
    manifest["files"] = {
        str(p.relative_to(copy)): {
            "bytes": p.stat().st_size,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        }
        for p in sorted(copy.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def _outside(copy: Path, manifest: dict) -> None:
    manifest["models"] = ["../../outside"]


def _no_tokenizer(copy: Path, manifest: dict) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        for path in copy.glob(f"models/*/{name}"):
            path.unlink()


def _dummy_meta(copy: Path, manifest: dict) -> None:
    """A scikit-learn type skops trusts by default: it would call every function benign."""
    import skops.io as sio
    from sklearn.dummy import DummyClassifier

    dummy = DummyClassifier(strategy="constant", constant=0).fit([[0.0], [1.0]], [0, 1])
    sio.dump(dummy, copy / "meta" / "meta.skops")


def _meta_not_a_zip(copy: Path, manifest: dict) -> None:
    (copy / "meta" / "meta.skops").write_bytes(b"PK\x03\x04 not really a zip")


def _garbage_tokenizer(copy: Path, manifest: dict) -> None:
    next(copy.glob("models/*/tokenizer.json")).write_text('{"model": {"type": "nope"}}')


def _remote_code(copy: Path, manifest: dict) -> None:
    path = next(copy.glob("models/*/config.json"))
    config = json.loads(path.read_text())
    config["auto_map"] = {"AutoModel": "evil.EvilModel"}
    config["model_type"] = "evil"
    path.write_text(json.dumps(config))


def _beyond_positions(copy: Path, manifest: dict) -> None:
    path = next(copy.glob("models/*/enstack.json"))
    path.write_text(json.dumps({**json.loads(path.read_text()), "max_length": 100_000}))


def _meta_json_wrong(copy: Path, manifest: dict) -> None:
    (copy / "meta" / "meta.json").write_text("[1, 2, 3]")


def _no_such_features(copy: Path, manifest: dict) -> None:
    manifest["features"] = "nope"


def _meta_of(name: str, damage) -> Callable:
    """A meta-classifier `name` fitted to the bundle's shape, then `damage(estimator, dir)`."""
    from enstack.stack.meta import MetaClassifier

    def change(copy: Path, manifest: dict) -> None:
        classes = len(manifest["labels"])
        rng = np.random.default_rng(0)
        x, y = rng.random((60, classes)), np.arange(60) % classes
        meta = MetaClassifier(name, classes, scale=name == "svm").fit(x, y)
        shutil.rmtree(copy / "meta")
        (copy / "meta").mkdir()
        damage(meta.estimator, copy / "meta", before_save=True)
        meta.save(copy / "meta")
        damage(meta.estimator, copy / "meta", before_save=False)
        manifest["meta"] = name

    return change


def _nan_svm(estimator, meta_dir: Path, before_save: bool) -> None:
    if before_save:
        estimator.steps[-1][1]._dual_coef_[:] = np.nan


def _xgb_edit(edit) -> Callable:
    """Damage to meta.xgb.json after saving: `edit(text)` returns the new text."""

    def damage(estimator, meta_dir: Path, before_save: bool) -> None:
        if not before_save:
            path = meta_dir / "meta.xgb.json"
            path.write_text(edit(path.read_text()))

    return damage


def _in_json(edit) -> Callable:
    def on_text(text: str) -> str:
        model = json.loads(text)
        edit(model)
        return json.dumps(model)

    return on_text


def _first_tree(model: dict) -> dict:
    return model["learner"]["gradient_booster"]["model"]["trees"][0]


def _children_outside(model: dict) -> None:
    tree = _first_tree(model)
    tree["left_children"] = [999_999] * len(tree["left_children"])  # segfaulted XGBoost


def _absurd_nodes(model: dict) -> None:
    _first_tree(model)["tree_param"]["num_nodes"] = "2000000000"


def _absurd_classes(model: dict) -> None:
    model["learner"]["learner_model_param"]["num_class"] = "100000000"


def _safetensors_header(size: int) -> Callable:
    def change(copy: Path, manifest: dict) -> None:
        path = next(copy.glob("models/*/model.safetensors"))
        body = path.read_bytes()
        path.write_bytes(size.to_bytes(8, "little") + body[8:])

    return change


def _nested_model_config(copy: Path, manifest: dict) -> None:
    """A member's config.json nested past Python's recursion limit (read by the card)."""
    path = next(copy.glob("models/*/config.json"))
    path.write_text("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (_meta_of("svm", _nan_svm), "not finite"),
        (_nested_model_config, "not JSON"),
        (_meta_of("xgboost", _xgb_edit(lambda t: t[: len(t) // 2])), "not JSON"),
        (_meta_of("xgboost", _xgb_edit(_in_json(_children_outside))), "outside the tree"),
        (_meta_of("xgboost", _xgb_edit(_in_json(_absurd_nodes))), "is not a size"),
        (_meta_of("xgboost", _xgb_edit(_in_json(_absurd_classes))), "where meta.json has"),
        (_safetensors_header(2**64 - 1), "cannot load it"),
        (_safetensors_header(500 << 20), "cannot load it"),
        (_garbage_tokenizer, "cannot load it"),
        (_remote_code, "cannot load it"),
        (_beyond_positions, "exceeds the model's"),
        (_meta_json_wrong, "meta"),
        (_no_such_features, "meta"),
        (_outside, "not a plain directory name"),
        (_no_tokenizer, "cannot encode code"),
        (_dummy_meta, "sklearn.dummy.DummyClassifier"),
        (_meta_not_a_zip, "not a skops file enstack wrote"),
    ],
)
def test_a_re_manifested_bundle_is_refused(
    bundle: Path, tmp_path: Path, capsys, change, fragment: str
) -> None:
    copy = _re_manifested(bundle, tmp_path, change)
    (tmp_path / "a.c").write_text(_fn("f"))
    code = main(["scan", str(tmp_path / "a.c"), "--bundle", str(copy), "--no-cache"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("error:") == 1 and "Traceback" not in err
    assert fragment in err


def test_oversized_standard_input_is_skipped(bundle: Path, monkeypatch, capsys) -> None:
    import io

    from enstack.scan.files import MAX_FILE_BYTES

    data = (_fn("f") * (MAX_FILE_BYTES // 30 + 10)).encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    code = main(["scan", "-", "--bundle", str(bundle), "--no-cache"])
    _, err = capsys.readouterr()
    assert code == 2 and "over 4 MiB" in err and err.count("error:") == 1


def test_a_five_class_model_is_warned_about_once() -> None:
    """A model without a benign class: one warning in SARIF's notifications, not one from the
    report and another from the model's card."""
    from enstack.scan.api import ScanReport
    from enstack.scan.card import FIVE_CLASS_WARNING, ModelCard
    from enstack.scan.files import FileTally
    from enstack.scan.formats.sarif import as_sarif

    card = ModelCard(
        source=Path("bundle"),
        kind="bundle",
        labels=["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other"],
        benign_label=None,
        fingerprint="0" * 64,
        has_line_ranker=False,
        members=["m"],
        meta="lr",
        trained_on={"synthetic": False, "rows": {"train": 10}},
    )
    report = ScanReport(
        model=card, scored=[], tally=FileTally(), damaged_functions=0, damaged_files=0,
        threshold=0.5, localise="attention",
    )  # fmt: skip
    notes = as_sarif(report)["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert [n["message"]["text"] for n in notes] == [FIVE_CLASS_WARNING]


def test_a_hostile_repository_runs_nothing_through_the_cli(
    bundle: Path, repo: Path, tmp_path: Path, capsys
) -> None:
    """fsmonitor, a textconv driver and a clean filter, all at once, through `enstack scan`:
    the scan reports the same functions as on a clean repository and no command runs."""
    mark = tmp_path / "PWNED"
    evil = tmp_path / "evil.sh"
    evil.write_text(f'#!/bin/sh\ntouch {mark}\ncat "$@"\n')
    evil.chmod(0o755)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("*.c diff=evil filter=evil\n")
    for key in ("core.fsmonitor", "diff.evil.textconv", "filter.evil.clean", "core.pager"):
        _git(repo, "config", key, str(evil))
    code, report, err = _scan_json(bundle, capsys, "--changed-since", "HEAD")
    assert code == 0, err
    assert _names(report) == {"edited", "moved_edited", "added"}
    assert not mark.exists()


def test_what_is_left_out_is_counted_and_named(
    bundle: Path, repo: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Nested folders an `--exclude` drops are counted; patterns match below a tree outside
    the working directory; an ignore file that drops every file is warned about; files out of
    `--changed-since`'s scope are "not changed", not "excluded"."""
    tree = tmp_path / "outside"
    for rel in ("contrib/a.c", "contrib/b/x.c", "contrib/b/c/y.h", "src/m.c"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(_fn(Path(rel).stem))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, report, err = _scan_json(bundle, capsys, str(tree), "--exclude", "contrib/")
    assert code == 0, err
    assert {f["function"] for f in report["findings"]} == {"m"}
    assert report["summary"]["excluded_files"] == 3 and "; 3 files excluded\n" in err
    assert "scanned 1 file, 1 function" in err and "1 finding " in err
    (tree / ".enstackignore").write_text("*\n")
    code = main(["scan", "--bundle", str(bundle), "--format", "sarif", "--no-cache", str(tree)])
    out, err = capsys.readouterr()
    assert code == 0 and "warning: .enstackignore rules left out every file (4)" in err
    notes = json.loads(out)["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert any(n["level"] == "warning" and "left out every file" in n["message"]["text"]
               for n in notes)  # fmt: skip
    monkeypatch.chdir(repo)
    code, report, err = _scan_json(bundle, capsys, "--changed-since", "HEAD")
    assert code == 0, err
    assert "excluded" not in err and report["summary"]["unchanged_files"] == 0
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "all")
    (repo / "a.c").write_text(_fn("kept") + "\n" + _fn("edited", "return 0;"))
    code, report, err = _scan_json(bundle, capsys, "--changed-since", "HEAD")
    assert code == 0 and "2 files not changed since HEAD" in err and "excluded" not in err
    assert report["summary"]["unchanged_files"] == 2 and report["summary"]["excluded_files"] == 0


def test_threshold_zero_lists_every_function(bundle: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "a.c").write_text(_fn("f") + "\n" + _fn("g") + "\n" + _fn("adler32_z"))
    code, report, err = _scan_json(bundle, capsys, str(tmp_path / "a.c"), "--threshold", "0")
    assert code == 0, err
    assert {f["function"] for f in report["findings"]} == {"f", "g", "adler32_z"}
    code = main(["scan", "--bundle", str(bundle), "--format", "sarif", "--threshold", "0",
                 "--no-cache", str(tmp_path / "a.c")])  # fmt: skip
    sarif = json.loads(capsys.readouterr().out)
    texts = {r["message"]["text"].split(" (")[0] for r in sarif["runs"][0]["results"]}
    assert "Function adler32_z" in texts  # plain text: no `adler32\_z`
    markdown = {r["message"]["markdown"].split(" (")[0] for r in sarif["runs"][0]["results"]}
    assert "Function adler32\\_z" in markdown
    for bad in ("-0.1", "1.5", "nan"):
        code = main(["scan", "--bundle", str(bundle), "--threshold", bad, str(tmp_path / "a.c")])
        assert code == 2 and "--threshold" in capsys.readouterr().err


@pytest.mark.parametrize("changed", [False, True])
def test_a_file_name_that_is_not_utf8(
    bundle: Path, tmp_path: Path, monkeypatch, capsys, changed: bool
) -> None:
    root = tmp_path / "r"
    root.mkdir()
    monkeypatch.chdir(root)
    if changed:
        _git(root, "init", "-q", "-b", "main")
        (root / "keep.c").write_text(_fn("keep"))
        _git(root, "add", "-A")
        _git(root, "commit", "-qm", "base")
    name = os.fsdecode(b"lat\xe9in.c")
    (root / name).write_text(_fn("latin"))
    extra = ["--changed-since", "HEAD"] if changed else ["."]
    for fmt in ("json", "sarif", "text", "csv"):
        code = main(["scan", "--bundle", str(bundle), "--format", fmt, "--threshold", "0",
                     "--no-cache", *extra])  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "Traceback" not in err and "latin" in out
    sarif_code = main(["scan", "--bundle", str(bundle), "--format", "sarif", "--threshold", "0",
                       "--cache-dir", str(tmp_path / "c"), *extra])  # fmt: skip
    sarif = json.loads(capsys.readouterr().out)
    assert sarif_code == 0
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in sarif["runs"][0]["results"]}  # fmt: skip
    assert "lat%E9in.c" in uris  # the file's own bytes, percent-encoded


def test_suppression_reasons_are_cleaned_and_trailing_marks_stay_put(
    bundle: Path, tmp_path: Path, capsys
) -> None:
    reason = "ok [x](https://evil.example) <img src=x> \x1b[31mred\x1b[0m \u202eevil\x01\x07 end"
    code_text = (
        f"int first(int x)\n{{\n    return x + 1;\n}} // enstack-ignore: {reason}\n"
        f"int second(int x)\n{{\n    return x + 2;\n}}\n"
    )
    (tmp_path / "a.c").write_text(code_text)
    outputs = {}
    for fmt in ("json", "sarif"):
        assert main(["scan", "--bundle", str(bundle), "--format", fmt, "--threshold", "0",
                     "--no-cache", str(tmp_path / "a.c")]) == 0  # fmt: skip
        outputs[fmt] = json.loads(capsys.readouterr().out)
    by_name = {f["function"]: f for f in outputs["json"]["findings"]}
    assert by_name["second"]["suppressed"] is None  # the mark after `}` is first's, not second's
    justification = by_name["first"]["suppressed"]["justification"]
    assert not any(c in justification for c in "\x1b\u202e\x01\x07")
    assert "red" in justification and "evil" in justification
    results = outputs["sarif"]["runs"][0]["results"]
    (first,) = [r for r in results if r["properties"]["function"] == "first"]
    shown = first["suppressions"][0]["justification"]
    assert "\\[x\\](https" in shown and "\\<img" in shown and "\x1b" not in shown


def test_compile_commands_decide_the_if_branches(bundle: Path, tmp_path: Path, capsys) -> None:
    from test_csyntax import ONLY_THE_BUILD_PARSES

    (tmp_path / "d.c").write_text(ONLY_THE_BUILD_PARSES)
    database = tmp_path / "compile_commands.json"
    command = {"directory": str(tmp_path), "file": "d.c",
               "arguments": ["cc", "-DUSE_B", "-DLEVEL=2", "-c", "d.c"]}  # fmt: skip
    database.write_text(json.dumps([command]))
    argv = ["scan", "--bundle", str(bundle), "--format", "json", "--threshold", "0",
            "--cache-dir", str(tmp_path / "cache"), str(tmp_path / "d.c")]  # fmt: skip
    assert main(argv) == 0
    plain = json.loads(capsys.readouterr().out)["findings"]
    assert main([*argv, "--compile-commands", str(database)]) == 0
    built = json.loads(capsys.readouterr().out)["findings"]
    assert [f["damaged"] for f in plain] == [True] and [f["damaged"] for f in built] == [False]
    database.write_text("[{]")
    assert main([*argv, "--compile-commands", str(database)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--compile-commands" in err
