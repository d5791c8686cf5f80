"""`enstack scan`: function extraction, every output format (SARIF checked against the official
schema), exit codes, hostile files, the cache, and a tampered bundle refused."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from enstack.cli import main
from enstack.csyntax.functions import extract_functions
from enstack.scan import LOCALISE_METHODS
from enstack.scan import api as scan_api
from enstack.scan.api import Scanner
from enstack.scan.localise import rank_lines

from support import TESTS_DATA

SCHEMA = TESTS_DATA / "sarif-schema-2.1.0.json"  # the official schema, shipped

C_FILE = """#include <string.h>
static int helper(int x) { return x + 1; }

void copy(char *src)
{
    char buf[8];
    strcpy(buf, src);
}

int kr(a, b) int a; char *b; { return a + b[0]; }
"""

CPP_FILE = """namespace outer {
class Box {
public:
    int get(int i) { return data[i]; }
    ~Box() { delete[] data; }
private:
    int *data;
};
}
template <typename T> T twice(T v) { return v + v; }
int outer::free_fn(void) { return 1; }
"""


def test_extraction_names_spans_and_scopes() -> None:
    extraction = extract_functions(C_FILE.encode(), "a.c", "c")
    found, broken = extraction.functions, extraction.has_errors
    assert [(f.name, f.start_line, f.end_line) for f in found] == [
        ("helper", 2, 2),
        ("copy", 4, 8),
        ("kr", 10, 10),  # a K&R definition
    ]
    assert not broken and "strcpy(buf, src);" in found[1].code
    found = extract_functions(CPP_FILE.encode(), "b.cpp", "cpp").functions
    assert [f.name for f in found] == [
        "outer::Box::get",
        "outer::Box::~Box",
        "twice",
        "outer::free_fn",
    ]


def test_a_damaged_file_still_yields_its_functions() -> None:
    source = (
        b"void ok(void) { }\nint bad(void) { int x = ; return @; }\nint after(void) { return 2; }\n"
    )
    extraction = extract_functions(source, "d.c", "c")
    found, broken = extraction.functions, extraction.has_errors
    assert broken
    assert {f.name: f.damaged for f in found} == {"ok": False, "bad": True, "after": False}


# --- a real (tiny) six-class bundle ------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.c").write_text(C_FILE)
    (src / "sub" / "b.cpp").write_text(CPP_FILE)
    (src / "bin.c").write_bytes(b"\x7fELF\0\0\0binary")
    (src / "latin1.c").write_bytes("int caf\xe9(void) { return 0; }\n".encode("latin-1"))
    (src / "broken.c").write_text("void broken( { int x = ; }\n")
    (src / "notes.txt").write_text("not code")
    os.symlink(src, src / "sub" / "loop")  # a directory symlink back to the root
    return src


def _scan(*args: str, capsys) -> tuple[int, str, str]:
    code = main(["scan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_scan_every_format_and_sarif_validates(
    bundle: Path, tree: Path, tmp_path: Path, capsys
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    outputs = {}
    for fmt in ("text", "json", "csv", "sarif"):
        out_file = tmp_path / f"out.{fmt}"
        code, _, err = _scan(
            str(tree),
            "--bundle",
            str(bundle),
            "--format",
            fmt,
            "--output",
            str(out_file),
            "--threshold",
            "0.01",
            "--no-cache",
            capsys=capsys,
        )
        assert code == 0, err
        outputs[fmt] = out_file.read_text()
    # binary skipped, the loop cut, latin-1 read with replacement, txt ignored
    assert "scanned 4 files" in err and "1 binary" in err and "1 symlink loop" in err
    assert "1 file not UTF-8" in err
    report = json.loads(outputs["json"])
    assert report["summary"]["functions"] == len(report["findings"])  # threshold 0.01: all
    names = {f["function"] for f in report["findings"]}
    assert {"copy", "outer::Box::get", "twice"} <= names
    sarif = json.loads(outputs["sarif"])
    jsonschema.validate(sarif, schema)
    run = sarif["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert "enstack/CWE-119" in rules and "enstack/none" not in rules
    assert "external/cwe/cwe-119" in rules["enstack/CWE-119"]["properties"]["tags"]
    result = next(r for r in run["results"] if r["properties"]["function"] == "copy")
    region = result["locations"][0]["physicalLocation"]["region"]
    assert 4 <= region["startLine"] <= 8  # the top-ranked line lies inside the function
    span = result["relatedLocations"][0]["physicalLocation"]["region"]
    assert (span["startLine"], span["endLine"]) == (4, 8)
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("a.c")
    assert set(result["properties"]["models"]) == {"m"}
    header = outputs["csv"].splitlines()[0].split(",")
    assert header[:3] == ["path", "function", "start_line"] and "p_none" in header
    assert "copy" in outputs["text"]
    # the text table names the line-ranking method, as JSON does
    assert f"top lines ({report['localisation']})" in outputs["text"].splitlines()[0]


def test_fingerprint_survives_moving_the_function(bundle: Path, tmp_path: Path) -> None:
    scanner = Scanner(bundle, threshold=0.01, top_lines=1)
    first = tmp_path / "x.c"
    first.write_text(C_FILE)
    before = {s.function.name: s for s in scanner.scan([str(first)], progress=False).findings}
    first.write_text("\n\n\n/* moved down */\n" + C_FILE)
    after = {s.function.name: s for s in scanner.scan([str(first)], progress=False).findings}
    assert after["copy"].function.start_line == before["copy"].function.start_line + 4
    assert after["copy"].fingerprint == before["copy"].fingerprint


def test_exit_codes(bundle: Path, tree: Path, tmp_path: Path, capsys) -> None:
    code, _, _ = _scan(
        str(tree / "a.c"),
        "--bundle",
        str(bundle),
        "--threshold",
        "0.01",
        "--fail-on",
        "warning",
        "--no-cache",
        capsys=capsys,
    )
    assert code == 1
    code, _, _ = _scan(
        str(tree / "a.c"),
        "--bundle",
        str(bundle),
        "--threshold",
        "1.0",
        "--fail-on",
        "warning",
        "--no-cache",
        capsys=capsys,
    )
    assert code == 0  # nothing reaches P(vulnerable) >= 1.0
    code, _, err = _scan(str(tree / "bin.c"), "--bundle", str(bundle), capsys=capsys)
    assert code == 2 and err.startswith("error: no readable C or C++ file")
    code, _, err = _scan(str(tree / "missing.c"), "--bundle", str(bundle), capsys=capsys)
    assert code == 2 and "missing.c: no such file" in err


@pytest.mark.parametrize("target", ["models/*/model.safetensors", "lines/ranker.safetensors"])
def test_a_tampered_bundle_is_refused(
    bundle: Path, tree: Path, tmp_path: Path, capsys, target: str
) -> None:
    """A flipped byte in a model's weights or in the line ranker: one line naming the file."""
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    tampered = next(copy.glob(target))
    data = bytearray(tampered.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    code, out, err = _scan(str(tree / "a.c"), "--bundle", str(copy), capsys=capsys)
    assert code == 2 and out == ""
    assert err.count("error:") == 1 and tampered.name in err and "Traceback" not in err


def test_cache_rescores_only_changed_functions(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enstack.scan import api

    parsed: list[str] = []
    monkeypatch.setattr(
        api,
        "extract_functions",
        lambda data, *rest: parsed.append(rest[0]) or extract_functions(data, *rest),
    )
    scanner = Scanner(bundle, threshold=0.5, top_lines=0, cache_dir=tmp_path / "cache")
    seen: list[str] = []
    original = scanner.model.predict_proba

    def counting(codes: list[str]):
        seen.extend(codes)
        return original(codes)

    scanner.model.predict_proba = counting  # type: ignore[method-assign]
    source = tmp_path / "t.c"
    source.write_text(C_FILE)
    cold = scanner.scan([str(source)], progress=False)
    assert len(seen) == 3
    seen.clear()
    warm = scanner.scan([str(source)], progress=False)
    assert seen == []  # nothing re-scored
    assert len(parsed) == 1  # nor parsed again: the same bytes
    assert [f.function for f in warm.scored] == [f.function for f in cold.scored]
    for a, b in zip(cold.scored, warm.scored, strict=True):
        np.testing.assert_allclose(a.probs, b.probs)
    source.write_text(C_FILE.replace("char buf[8];", "char buf[64];"))
    scanner.scan([str(source)], progress=False)
    assert len(seen) == 1 and "buf[64]" in seen[0]  # only the changed function
    assert len(parsed) == 2  # the changed file was parsed again


def test_predict_proba_api(bundle: Path) -> None:
    scanner = Scanner(str(bundle))  # a notebook's string path as well as a Path
    probs = scanner.predict_proba(["int f(void) { return 0; }", C_FILE])
    assert probs.shape == (2, 6)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_scan_scores_each_function_as_predict_proba_does(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan scores distinct texts once, longest first, in chunks; each function still gets
    its own probabilities, the same as scoring it alone."""
    monkeypatch.setattr(scan_api, "SCORE_BATCH", 2)  # several chunks from one small file
    (tmp_path / "a.c").write_text(C_FILE + "\nint twin(void) { return 0; }\n")
    (tmp_path / "b.c").write_text("int twin(void) { return 0; }\n")  # the same text twice
    scanner = Scanner(bundle, top_lines=0)
    scored = scanner.scan([str(tmp_path)], progress=False).scored
    assert len(scored) >= 4 and sum(s.function.name == "twin" for s in scored) == 2
    alone = np.stack([scanner.predict_proba([s.function.code])[0] for s in scored])
    np.testing.assert_allclose(np.stack([s.probs for s in scored]), alone, atol=1e-5)


@pytest.mark.parametrize("method", LOCALISE_METHODS)
def test_each_localisation_ranks_the_functions_own_lines(bundle: Path, method: str) -> None:
    scanner = Scanner(bundle)
    function = next(
        f for f in extract_functions(C_FILE.encode(), "a.c", "c").functions if f.name == "copy"
    )
    ranked = rank_lines(scanner.model, function.code, function.start_line, 0, method)
    lines = [line for line, _ in ranked]
    code_lines = {  # lines holding tokens: the braces count, blank lines do not
        function.start_line + i for i, text in enumerate(function.code.splitlines()) if text.strip()
    }
    assert len(lines) == len(set(lines)) and set(lines) <= code_lines
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True) and all(s >= 0 for s in scores)
    # occlusion may find no line whose loss lowers the score: all zeros, checked against a
    # masking done by hand in test_occlusion_is_the_fall_when_a_statement_is_masked
    if method == "occlusion" and sum(scores) == 0.0:
        assert ranked  # every statement is still listed
    else:
        assert sum(scores) == pytest.approx(1.0, abs=1e-6)
    assert ranked == rank_lines(scanner.model, function.code, function.start_line, 0, method)


@pytest.mark.parametrize("method", LOCALISE_METHODS)
def test_a_statement_over_several_lines_is_ranked_once_at_its_first_line(
    bundle: Path, method: str
) -> None:
    code = "int call(int a, int b)\n{\n    int total = sum3(a,\n        b,\n        a + b);\n"
    code += "    return total;\n}"
    ranked = rank_lines(Scanner(bundle).model, code, 10, 0, method)
    assert {line for line, _ in ranked} == {12, 15}  # never 13 or 14, the arguments' lines
    total = sum(score for _, score in ranked)  # occlusion: 0 when no line moves the model
    if method == "occlusion":
        assert total == pytest.approx(1.0, abs=1e-6) or total == 0.0
    else:
        assert total == pytest.approx(1.0, abs=1e-6)


def test_occlusion_is_the_fall_when_a_statement_is_masked(bundle: Path) -> None:
    """Each statement's occlusion score is the fall in log-odds of P(vulnerable) when its
    tokens are masked, recomputed here by hand; zeros only where no fall happens."""
    import torch

    from enstack.csyntax.statements import statement_spans
    from enstack.scan.localise import _encode_with_lines

    model = Scanner(bundle).model
    base = model.models[0]
    function = next(f for f in extract_functions(C_FILE.encode(), "a.c", "c").functions)
    ids, lines = _encode_with_lines(base, function.code, 0)
    spans = statement_spans(function.code)
    head_of = {line: head for head, span in spans.items() for line in span}

    def log_odds(mask: torch.Tensor) -> float:
        with torch.inference_mode():
            probs = torch.softmax(base.model(input_ids=ids, attention_mask=mask).float(), dim=1)
        p = (1 - probs[0, model.benign_id]).clamp(1e-6, 1 - 1e-6)
        return float(torch.logit(p))

    whole = log_odds(torch.ones_like(ids))
    falls = {}
    for head in spans:
        mask = torch.ones_like(ids)
        mask[0, torch.from_numpy(np.asarray([head_of.get(int(x), -1) == head for x in lines]))] = 0
        falls[head] = max(whole - log_odds(mask), 0.0)
    total = sum(falls.values())
    expected = {h: f / total if total > 0 else 0.0 for h, f in falls.items()}
    ranked = dict(rank_lines(model, function.code, 0, 0, "occlusion"))
    assert set(ranked) == set(expected)
    for head, share in expected.items():
        assert ranked[head] == pytest.approx(share, abs=1e-5)


def test_scan_with_a_runs_config(bundle: Path, tree: Path, tmp_path: Path, capsys) -> None:
    """`--config CFG` scans with the run's selected bundle; a run without one is one error."""
    config = bundle.parents[2] / "c.yaml"
    code, out, err = _scan(
        str(tree / "a.c"),
        "--config",
        str(config),
        "--threshold",
        "0.01",
        "--no-cache",
        capsys=capsys,
    )
    assert code == 0, err
    assert "scanned 1 file" in err and "copy" in out
    code, _, err = _scan(
        str(tree / "a.c"),
        "--config",
        str(config),
        "--set",
        f"run_dir={tmp_path / 'never-stacked'}",
        capsys=capsys,
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines[-1].startswith("error: ") and "no bundle yet" in lines[-1]


def test_the_learned_ranker_is_the_default_where_there_is_one(
    bundle: Path, tree: Path, capsys
) -> None:
    """The fixture's synthetic data pairs each flaw with its fix: its bundle carries a line
    ranker and `auto` picks it; an export has none, and asking for it is one error line."""
    assert (bundle / "lines" / "ranker.safetensors").is_file()
    assert Scanner(bundle).localise == "learned"
    export = bundle / "models" / "m"  # a single export: no fix pairs behind it
    assert Scanner(export).localise == "attention"
    code, out, err = _scan(
        str(tree / "a.c"), "--bundle", str(export), "--localise", "learned", capsys=capsys
    )
    assert code == 2 and out == "" and err.count("error:") == 1
    assert "no line ranker" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "forge",
    [
        ("ranker.json", b"[]"),
        ("ranker.json", b"{nope"),
        ("ranker.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "),
        ("ranker.safetensors", b"not safetensors at all"),
    ],
    ids=["json-list", "json-broken", "no-arrays", "garbage-weights"],
)
def test_a_forged_ranker_with_a_rewritten_manifest_is_one_error(
    bundle: Path, tree: Path, tmp_path: Path, capsys, forge: tuple[str, bytes]
) -> None:
    """An attacker who rewrites the ranker and re-signs the manifest to match gets past the
    hashes, not past the loader: one `error:` line naming the ranker, no traceback."""
    import hashlib
    import shutil

    name, data = forge
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "lines" / name).write_bytes(data)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][f"lines/{name}"] = {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = _scan(str(tree / "a.c"), "--bundle", str(copy), capsys=capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "ranker" in lines[0]


def test_functions_hidden_by_if_branches_are_scanned_and_the_rest_counted(
    bundle: Path, tmp_path: Path, capsys
) -> None:
    from test_csyntax import SPLIT_BY_IF

    tree = tmp_path / "macro"
    tree.mkdir()
    (tree / "split.c").write_text(SPLIT_BY_IF)
    # a body no configuration of the text makes C: nothing can be scored there
    (tree / "lost.c").write_text("int ok(void) { return 0; }\n]] x = (;\n{\n  a = ;\n}\n")
    outputs = {}
    for fmt in ("json", "sarif", "text", "csv"):
        code, _, err = _scan(
            str(tree), "--bundle", str(bundle), "--format", fmt, "--output",
            str(tmp_path / f"out.{fmt}"), "--threshold", "0.01", "--no-cache", capsys=capsys,
        )  # fmt: skip
        assert code == 0, err
        text = (tmp_path / f"out.{fmt}").read_text()
        outputs[fmt] = json.loads(text) if fmt in ("json", "sarif") else text
    # the text and CSV tables name what was lost too, and say which functions are damaged
    assert f"  {tree / 'lost.c'}: " in outputs["text"] and "not scored" in outputs["text"]
    assert outputs["text"].splitlines()[0].rstrip().endswith("damaged")
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    unscored = [r for r in rows if r["level"] == "unscored"]
    assert [r["path"] for r in unscored] == [str(tree / "lost.c")]
    assert {r["damaged"] for r in rows if r["level"] != "unscored"} <= {"true", "false"}
    report = outputs["json"]
    assert int(unscored[0]["unscored_lines"]) == report["summary"]["unscored_lines"]
    names = {f["function"] for f in report["findings"]}
    assert {"before", "decode", "after", "ok"} <= names  # decode sits between #if branches
    decode = next(f for f in report["findings"] if f["function"] == "decode")
    assert (decode["start_line"], decode["end_line"]) == (6, 20)
    lost = {entry["path"]: entry for entry in report["unscored_files"]}
    assert set(lost) == {str(tree / "lost.c")} and lost[str(tree / "lost.c")]["lines"] >= 3
    assert report["summary"]["unscored_lines"] == lost[str(tree / "lost.c")]["lines"]
    assert "lines in 1 file not scored" in err
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(outputs["sarif"], json.loads(SCHEMA.read_text()))
    notes = outputs["sarif"]["runs"][0]["invocations"][0]
    texts = [n["message"]["text"] for n in notes["toolExecutionNotifications"]]
    assert any("did not parse into functions" in t and "not scored" in t for t in texts)
    # a cached re-scan reads the file's functions, and what was lost, from the cache
    for _ in range(2):
        code, _, err = _scan(
            str(tree), "--bundle", str(bundle), "--format", "json", "--output",
            str(tmp_path / "cached.json"), "--cache-dir", str(tmp_path / "cache"), capsys=capsys,
        )  # fmt: skip
        assert code == 0, err
        cached = json.loads((tmp_path / "cached.json").read_text())
        assert cached["unscored_files"] == report["unscored_files"]


def test_a_scan_logs_each_stage_with_its_rate_and_quiet_prints_only_the_report(
    bundle: Path, tree: Path, capsys, monkeypatch
) -> None:
    """Not a terminal (a CI log): plain progress lines per stage (here at every step) and one
    line of what took how long; --quiet: the same report, and on stderr only the model's
    warnings."""
    monkeypatch.setenv("ENSTACK_PROGRESS_INTERVAL", "0")
    args = (str(tree), "--bundle", str(bundle), "--threshold", "0.01", "--no-cache")
    code, out, err = _scan(*args, capsys=capsys)
    assert code == 0
    assert re.search(r"^reading: 4 files \[.*files/s, \d+ functions in scope\]$", err, re.M), err
    assert re.search(r"^scoring: (\d+)/\1 \(100%\).* \d+ windows scored\]$", err, re.M), err
    assert re.search(r"^ranking lines: (\d+)/\1 \(100%\)", err, re.M), err
    took = err.splitlines()[-1]
    assert re.fullmatch(
        r"took [\d.]+ s: reading 4 files \(\d+ functions\) [\d.]+ s.*; scoring \d+ functions "
        r"\(\d+ windows; 0 from the cache\) .*; ranking lines of \d+ findings .*",
        took,
    ), took
    code, quiet_out, quiet_err = _scan(*args, "--quiet", capsys=capsys)
    assert code == 0 and quiet_out == out
    assert quiet_err.splitlines() and all(
        line.startswith("warning: ") for line in quiet_err.splitlines()
    ), quiet_err
