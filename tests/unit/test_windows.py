"""Functions longer than the model's window, scored whole: windows cut at statement
boundaries cover every line within the model's room, a function of one window is unchanged,
a flaw past the window is seen (truncation misses it) and its lines are ranked in the window
that drove the score."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from enstack import versions
from enstack.cli import main
from enstack.config import load_config_dict
from enstack.data.synthetic import generate
from enstack.scan.api import Scanner
from enstack.windows import aggregate, split_windows

LABELS = ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other", "none"]
CALL = ["    result = combine(first_argument,", "                     second_argument,",
        "                     third_argument);"]  # fmt: skip


def _tokenizer(model: Path):
    """The tokenizer of a bundle's model `m`, or of an export."""
    from transformers import AutoTokenizer

    export = model / "models" / "m" if (model / "models").is_dir() else model
    return AutoTokenizer.from_pretrained(export)


def _synthetic() -> tuple[list[str], np.ndarray]:
    config = load_config_dict(
        {"data": {"format": "synthetic", "labels": LABELS, "synthetic": {"n_per_class": 20}}},
        "t",
    )
    chunks = list(generate(config.data, 7))
    return [c for ch in chunks for c in ch.codes], np.concatenate([ch.labels for ch in chunks])


def _body(code: str) -> list[str]:
    lines = code.split("\n")
    end = max(i for i, line in enumerate(lines) if line == "}")
    return ["    " + line for line in lines[lines.index("{") + 1 : end]]


def _long_function(blocks: list[str], last: str) -> tuple[str, int]:
    """A function made of the bodies of `blocks`, each in braces, a statement over three lines
    between them, then `last`'s body: the text, and the line where `last`'s block starts."""
    lines = ["int long_function(int mode)", "{", "    int result = 0;"]
    for code in blocks:
        lines += ["    {", *_body(code), "    }", *CALL]
    start = len(lines)
    lines += ["    {", *_body(last), "    }", "    return result;", "}"]
    return "\n".join(lines) + "\n", start


def test_windows_cover_every_line_at_statement_boundaries(bundle: Path) -> None:
    tokenizer = _tokenizer(bundle)
    codes, _ = _synthetic()
    code, _ = _long_function(codes[:8], codes[9])
    lines = code.split("\n")
    room = 126
    windows = split_windows(code, tokenizer, room)
    assert len(windows) > 3
    covered: set[int] = set()
    for window in windows:
        assert window.text == "\n".join(lines[window.first_line : window.last_line + 1])
        assert len(tokenizer(window.text, add_special_tokens=False)["input_ids"]) <= room
        covered |= set(range(window.first_line, window.last_line + 1))
    assert covered == set(range(len(lines)))
    for before, after in itertools.pairwise(windows):
        assert before.first_line < after.first_line <= before.last_line + 1  # no gap
        assert after.first_line <= before.last_line  # they overlap
    calls = [i for i, line in enumerate(lines) if line == CALL[0]]
    for window in windows:  # the three-line call is never cut: no window starts or ends in it
        for start in calls:
            assert window.first_line not in (start + 1, start + 2)
            assert window.last_line not in (start, start + 1)
    short = "int f(int x)\n{\n    return x + 1;\n}\n"
    assert [w.text for w in split_windows(short, tokenizer, room)] == [short]


def test_a_line_longer_than_the_window_is_one_window_never_an_empty_one(bundle: Path) -> None:
    """A function on one line (minified, generated) cannot be cut at a line break: it is one
    window the tokenizer truncates; an empty window after it would be scored as a function."""
    tokenizer = _tokenizer(bundle)
    one_line = "int f(int x) { " + " ".join(f"x = x + {i};" for i in range(200)) + " }"
    assert [w.text for w in split_windows(one_line, tokenizer, 126)] == [one_line]
    lines = [f"    x = x + {i};" for i in range(30)]
    code = (
        "int g(int x)\n{\n" + "\n".join(lines) + "\n    return " + " + ".join(["x"] * 300) + ";\n}"
    )
    windows = split_windows(code, tokenizer, 126)
    assert len(windows) > 1 and all(w.text.strip() for w in windows)
    assert windows[-1].last_line == code.count("\n")


def test_aggregation_takes_the_most_vulnerable_window() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])  # columns: flaw, benign
    outputs = {"probs": probs, "labels": np.zeros(4, dtype=np.int64)}
    owner = np.array([0, 0, 0, 1])
    merged, driver = aggregate(outputs, owner, 2, benign_id=1)
    assert driver.tolist() == [0, 3] and merged["probs"].tolist() == [[0.9, 0.1], [0.7, 0.3]]
    averaged, driver = aggregate(outputs, owner, 2, benign_id=None)
    assert driver.tolist() == [-1, -1]
    assert np.allclose(averaged["probs"][0], probs[:3].mean(axis=0))


def _probe(model: Path) -> tuple[str, int, Scanner]:
    """A long function: the six synthetic benign functions `model` finds safest, then the
    flawed one it finds most vulnerable, past the first window."""
    codes, labels = _synthetic()
    scanner = Scanner(model, long_functions="windows")
    p_vulnerable = 1 - scanner.predict_proba(codes)[:, LABELS.index("none")]
    flawed = max((i for i in range(len(codes)) if labels[i] != 5), key=lambda i: p_vulnerable[i])
    safest = sorted((i for i in range(len(codes)) if labels[i] == 5), key=lambda i: p_vulnerable[i])
    code, flaw_start = _long_function([codes[i] for i in safest[:6]], codes[flawed])
    return code, flaw_start, scanner


def test_a_long_function_scores_as_its_most_vulnerable_window(bundle: Path, tmp_path) -> None:
    code, _, scanner = _probe(bundle)
    windows = split_windows(code, _tokenizer(bundle), 126)
    assert len(windows) > 1
    # each window scored as a text of its own (one window each, so unchanged)
    each = 1 - scanner.predict_proba([w.text for w in windows])[:, 5]
    whole = 1 - scanner.predict_proba([code])[0, 5]
    assert whole == pytest.approx(each.max(), abs=1e-5)
    driver = windows[int(each.argmax())]
    # the finding's lines are ranked inside the window that drove it
    source = tmp_path / "long.c"
    source.write_text(code)
    report = Scanner(bundle, threshold=0.01, top_lines=3, localise="attention").scan([str(source)])
    (finding,) = report.findings
    assert finding.lines and all(
        driver.first_line + 1 <= line <= driver.last_line + 1 for line, _ in finding.lines
    )
    assert report.coverage.long == 1 and report.coverage.lines_seen == report.coverage.lines


@pytest.fixture(scope="module")
def learned_export(tmp_path_factory) -> Path:
    """A model that has learned the synthetic flaws (about 30 s on 2 cores), with a window of
    128 tokens: most synthetic functions fit, the long probe does not."""
    from support import write_config

    root = tmp_path_factory.mktemp("windows")
    scratch = {"layers": 2, "hidden": 64, "heads": 2, "intermediate": 128, "vocab_size": 2000,
               "attention_dropout": 0}  # fmt: skip
    config = write_config(
        root / "c.yaml",
        {
            "run_dir": str(root / "run"),
            "data": {"format": "synthetic", "labels": LABELS, "synthetic": {"n_per_class": 200}},
            "models": [{"name": "m", "family": "codebert", "scratch": scratch}],
            "training": {
                "epochs": 3,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "warmup_ratio": 0.1,
                "max_length": 128,
                "save_steps": 0,
                "device": "cpu",
            },
        },
    )
    assert main(["train", "--config", str(config), "--model", "m"]) == 0
    return root / "run" / "models" / "m" / "best"


@pytest.mark.slow
def test_a_flaw_past_the_window_is_seen_and_located(learned_export: Path) -> None:
    code, flaw_start, scanner = _probe(learned_export)
    windows = split_windows(code, _tokenizer(learned_export), 126)
    each = 1 - scanner.predict_proba([w.text for w in windows])[:, 5]
    driver = windows[int(each.argmax())]
    assert driver.last_line >= flaw_start  # the window that drove the score holds the flaw
    whole = 1 - scanner.predict_proba([code])[0, 5]
    truncated = 1 - Scanner(learned_export, long_functions="truncate").predict_proba([code])[0, 5]
    assert whole > 0.5 > truncated  # windows flag it; the first window alone does not


def test_the_scan_summary_says_what_was_long_and_what_was_read(
    bundle: Path, tmp_path: Path, capsys
) -> None:
    codes, _ = _synthetic()
    code, _ = _long_function(codes[:6], codes[7])
    (tmp_path / "a.c").write_text(code + codes[8])
    for mode, fragment in (("windows", "scored whole, in windows"), ("truncate", "truncated")):
        argv = ["scan", str(tmp_path / "a.c"), "--bundle", str(bundle), "--no-cache"]
        assert main([*argv, "--long-functions", mode]) in (0, 1)
        err = capsys.readouterr().err
        clause = "1 of the 2 distinct function texts scored longer than a window"
        assert f"{clause} ({fragment};" in err
        seen, total = (
            err.split(clause)[1].split(" lines scored")[0].split("; ")[-1].split(" of their ")
        )
        assert (int(seen) == int(total)) == (mode == "windows")
    # cold and warm say the same: the cache keeps what the model saw with each score
    argv = ["scan", str(tmp_path / "a.c"), "--bundle", str(bundle), "--cache-dir",
            str(tmp_path / "cache")]  # fmt: skip
    summaries = []
    for _ in range(2):
        assert main(argv) in (0, 1)
        err = capsys.readouterr().err.splitlines()
        summaries.append(next(line for line in err if line.startswith("scanned ")))
    assert summaries[0] == summaries[1] and clause in summaries[1]


def test_stack_features_read_long_functions_as_the_scanner_does(bundle: Path) -> None:
    """The bundle's run (max_length 128): its val and test functions longer than the window
    are scored in windows for stacking too, and a function's features are the scanner's."""
    import json

    import pyarrow.parquet as pq
    from safetensors.numpy import load_file

    run = bundle.parents[1]
    results = json.loads((run / "reports" / "results.json").read_text())
    info = results["long_functions"]
    assert info["mode"] == "windows" and info["max_length"] == 128
    test = info["coverage"]["m"]["test"]
    assert test["long"] > 0 and test["lines_seen"] == test["lines"]
    codes = pq.read_table(run / "data" / "test.parquet").column("code").to_pylist()
    stacked = load_file(str(run / "features" / "m" / "test.safetensors"))["probs"]
    scanned = Scanner(bundle / "models" / "m").predict_proba(codes)
    np.testing.assert_allclose(stacked, scanned, atol=1e-5)
    assert "longer than max_length 128" in (run / "reports" / "results.md").read_text()


def test_the_scanner_on_a_long_real_function(bundle: Path, tmp_path: Path) -> None:
    """The longest vulnerable function of PairVul's CWE-416 file (a Linux kernel function,
    as published): every one of its lines is read, in windows, and the lines a finding ranks
    lie inside it."""
    import json

    from support import shared_file

    rows = json.loads(
        shared_file("realvul", "pairvul", "train", "linux_kernel_CWE-416_data.json").read_text()
    )
    code = max((r["code_before_change"] for r in rows), key=len)
    source = tmp_path / "kernel.c"
    source.write_text(code)
    report = Scanner(bundle, threshold=0.01, top_lines=5, localise="attention").scan([str(source)])
    assert len(report.scored) == 1
    function = report.scored[0].function
    assert report.coverage.long == 1 and report.coverage.lines_seen == report.coverage.lines
    assert report.coverage.lines == function.end_line - function.start_line + 1
    windows = split_windows(function.code, _tokenizer(bundle), 126)
    assert len(windows) > 10  # hundreds of lines: many windows of 128 tokens
    for finding in report.findings:
        assert all(function.start_line <= line <= function.end_line for line, _ in finding.lines)


def test_training_rows_are_the_windows_where_a_pair_differs(bundle: Path) -> None:
    """A long flawed function trains on the windows holding a line its fix changed, its fixed
    twin on the windows holding the lines the fix wrote, and neither on the code they share;
    a long flawed function without a fix on its first window only; long benign code outside
    any pair on every window; a function that fits is its own row."""
    from enstack.windows import training_rows

    tokenizer = _tokenizer(bundle)
    filler = [f"    counter_{i} = counter_{i} + offset_{i};" for i in range(40)]
    flaw, fix = "    memcpy(buffer, source, length);", "    memcpy(buffer, source, sizeof buffer);"
    lines = ["void copy(char *source, int length)", "{", "    char buffer[8];", *filler]
    flawed = "\n".join([*lines, flaw, "}"])
    fixed = flawed.replace(flaw, fix)
    unpaired = fixed.replace("void copy(", "void other(")
    short = "int f(int a)\n{\n    return a;\n}"
    codes = [flawed, fixed, flawed, unpaired, short]
    labels = [0, 5, 0, 5, 0]
    pairs = ["p", "p", None, None, None]
    rows = training_rows(codes, labels, pairs, tokenizer, 126, benign_id=5)
    windows = split_windows(flawed, tokenizer, 126)
    assert len(windows) > 2  # long enough for the choice to matter
    by_function = {i: [t for t, o in zip(rows.texts, rows.owner, strict=True) if o == i]
                   for i in range(len(codes))}  # fmt: skip
    assert by_function[0] and all("memcpy(buffer, source, length)" in t for t in by_function[0])
    assert len(by_function[0]) < len(windows)  # the windows without the changed line: not used
    assert by_function[1] and all("sizeof buffer" in t for t in by_function[1])
    assert len(by_function[1]) < len(windows)  # the code both sides share: not benign rows
    assert by_function[2] == [windows[0].text]  # no fix to compare with: the first window
    assert by_function[3] == [w.text for w in split_windows(unpaired, tokenizer, 126)]
    assert by_function[4] == [short]
    assert rows.labels == [labels[i] for i in rows.owner]
    assert (rows.placed, rows.first_window) == (2, 1)


@pytest.mark.slow
def test_training_on_windows_resumes_bit_exact_after_sigkill(tmp_path: Path) -> None:
    """Windows are part of the encoded data: a run killed anywhere and resumed ends with the
    same weights and log as one that never stopped, and its rows are windows."""
    import subprocess

    from support import kill_repeatedly, slow_saves, tiny_config, train_args

    settings = {"epochs": 2, "save_steps": 2, "max_length": 40, "long_functions": "windows"}
    ref_cfg = tiny_config(tmp_path / "ref.yaml", tmp_path / "ref", n_per_class=30, **settings)
    done = subprocess.run(train_args(ref_cfg), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = int(done.stderr.split(" train rows")[0].rsplit(" ", 1)[-1])
    assert rows > 30 * 5  # more rows than there are functions in all splits: windows
    twin_cfg = tiny_config(tmp_path / "twin.yaml", tmp_path / "twin", n_per_class=30, **settings)
    model_dir = tmp_path / "twin" / "models" / "m"
    kill_repeatedly(twin_cfg, model_dir / "checkpoints", slow_saves(0.08), attempts=4)
    final = subprocess.run(train_args(twin_cfg), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    reference = tmp_path / "ref" / "models" / "m"
    for name in ("final/model.safetensors", "best/model.safetensors", "metrics.jsonl"):
        assert (model_dir / name).read_bytes() == (reference / name).read_bytes(), name


def _reference_spans(cum, cuts, budget):
    """The greedy rule as first written (a scan of every cut per window): the oracle."""
    from enstack.windows import OVERLAP

    n_lines = len(cum) - 1
    spans, start = [], 0
    while True:
        if cum[n_lines] - cum[start] <= budget:
            spans.append((start, n_lines - 1))
            return spans
        fitting = [line for line in cuts if line >= start and cum[line + 1] - cum[start] <= budget]
        if fitting:
            end = max(fitting)
        else:
            end = start
            while end + 1 < n_lines and cum[end + 2] - cum[start] <= budget:
                end += 1
        spans.append((start, end))
        if end == n_lines - 1:
            return spans
        lap = budget // OVERLAP
        starts = [c + 1 for c in cuts if start < c + 1 <= end and cum[end + 1] - cum[c + 1] <= lap]
        start = min(starts) if starts else end + 1


def test_window_spans_match_the_greedy_rule_and_scale() -> None:
    import time

    from enstack.windows import _window_spans

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 80))
        per_line = rng.integers(0, 40, size=n)
        per_line[rng.random(n) < 0.05] = 200  # a line longer than a window
        cum = np.concatenate([[0], np.cumsum(per_line)])
        cuts = sorted(rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False).tolist())
        budget = int(rng.integers(20, 120))
        assert _window_spans(cum, cuts, budget) == _reference_spans(cum, cuts, budget)
    # a 4 MB function of short lines (a million cuts): seconds, not the hours of a rescan
    n = 1_000_000
    cum = np.concatenate([[0], np.cumsum(np.full(n, 3))])
    started = time.perf_counter()
    spans = _window_spans(cum, list(range(n)), 510)
    assert time.perf_counter() - started < 20
    assert spans[0][0] == 0 and spans[-1][1] == n - 1


def test_a_tokenizer_that_panics_or_lies_is_one_error() -> None:
    """A bundle's tokenizer passes the load-time check and then fails on real code: a Rust
    panic (pyo3's PanicException is a BaseException) or offsets outside the text."""
    from enstack.errors import UserError
    from enstack.windows import expand

    class PanicException(BaseException):  # what pyo3 raises, by name and base
        pass

    class Panics:
        is_fast = True

        def __call__(self, codes, **_):
            raise PanicException("index out of bounds: the len is 3 but the index is 7")

    class Lies:  # a long function's offsets, the last one past the text: lines cut wrong
        is_fast = True

        def __call__(self, codes, **_):
            return {"offset_mapping": [[(0, 1)] * 20 + [(0, len(c) + 5)] for c in codes]}

    for tokenizer, fragment in ((Panics(), "failed on the code"), (Lies(), "outside the code")):
        with pytest.raises(UserError, match=fragment):
            expand(["int f(void) { return 0; }"], tokenizer, 16, "windows")


def test_the_scanner_reads_long_functions_as_the_models_were_trained(
    bundle: Path, trained_run: Path, tmp_path: Path
) -> None:
    """Training records its long-function mode in each export; a scan reads long functions
    the same way unless told otherwise, and a model that does not say is read in windows."""
    import json
    import shutil

    from enstack.scan.api import Scanner
    from enstack.scan.card import read_card

    assert read_card(bundle).trained_long_functions == "windows"  # training's default
    export = tmp_path / "export"
    shutil.copytree(trained_run / "run" / "models" / "m" / "best", export)
    contract = export / "enstack.json"
    recorded = json.loads(contract.read_text())
    assert recorded["long_functions"] == "truncate"  # as the fixture's config trains
    assert Scanner(export).long_functions == "truncate"
    contract.write_text(json.dumps({**recorded, "long_functions": "windows"}))
    assert Scanner(export).long_functions == "windows"
    contract.write_text(json.dumps({**recorded, "long_functions": "truncate"}))
    scanner = Scanner(export)
    assert scanner.long_functions == "truncate"
    assert "trained on long functions truncated" in scanner.card.headline()
    assert not scanner.cache_key.endswith(f"+windows{versions.WINDOWS}")  # its own scores
    assert Scanner(export, long_functions="windows").long_functions == "windows"  # told
    contract.write_text(json.dumps({k: v for k, v in recorded.items() if k != "long_functions"}))
    assert Scanner(export).long_functions == "windows"  # an export that does not say
