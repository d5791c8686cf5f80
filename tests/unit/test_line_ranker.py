"""The line ranker learned from fix pairs: which lines count as statements, which lines a fix
labels, that a ranker fitted on Juliet's training pairs finds the lines Juliet marks as flaws in
whole files of families it never saw, and that it survives the bundle's round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from enstack.csyntax.statements import statement_spans
from enstack.lines.fit import fit_line_ranker
from enstack.lines.labels import fixed_lines
from enstack.lines.ranker import load_line_ranker

from support import shared_file

FLAWED = """void copy(char *src)
{
    char buf[8];
#ifdef DEBUG
    printLine("copying");
#endif
    if(GLOBAL_CONST_TRUE)
    {
        strcpy(buf, src);
    }
    printLine("done");
}"""

# the fix bounds the copy, rewords a message and flips the guard (as Juliet's good1 does)
FIXED = """void copy(char *src)
{
    char buf[8];
#ifdef DEBUG
    printLine("copying");
#endif
    if(GLOBAL_CONST_FALSE)
    {
        strncpy(buf, src, sizeof(buf) - 1);
    }
    printLine("finished");
}"""


def test_statements_leave_out_signature_braces_and_directives() -> None:
    assert list(statement_spans(FLAWED)) == [2, 4, 6, 8, 10]
    assert list(statement_spans("int f(void) {\n  return 1;\n}")) == [1]
    assert list(statement_spans("int f(void) { return 1; }")) == [0]  # one line: itself
    kr = "int kr(a, b)\nint a; char *b;\n{\n    return a + b[0];\n}"
    assert list(statement_spans(kr)) == [3]  # a K&R parameter list is signature too


def test_a_statement_over_several_lines_is_one_statement_at_its_first_line() -> None:
    code = """int login(char *user)
{
    int ok = 0;
    if (LogonUserA(
            user,
            domain,
            password) != 0)
    {
        ok = 1;
    }
    return ok | FLAGS_A |
        FLAGS_B;
}"""
    assert statement_spans(code) == {2: [2], 3: [3, 4, 5, 6], 8: [8], 10: [10, 11]}
    # a fix that edits one argument's line labels the statement, at its first line
    assert fixed_lines(code, [code.replace("password)", "password, LOGON32_PROVIDER)")]) == {3}
    assert statement_spans("void f(void)\n{\n    i++\n    j--;\n}") == {2: [2], 3: [3]}


def test_a_fix_labels_the_edited_statement_only() -> None:
    # not the reworded message, not the flipped guard, not the unchanged lines
    assert fixed_lines(FLAWED, [FIXED]) == {8}
    unrelated = "int other(void)\n{\n    return 4;\n}"
    assert fixed_lines(FLAWED, [unrelated]) == set()  # not an edit of it: no labels
    # a loop whose counter is otherwise only declared guards like a constant condition
    looped = FLAWED.replace("if(GLOBAL_CONST_TRUE)", "for(j = 0; j < 1; j++)").replace(
        "char buf[8];", "char buf[8];\n    int j;"
    )
    assert fixed_lines(looped, [FIXED.replace("char buf[8];", "char buf[8];\n    int j;")]) == {9}
    # a condition on the function's own data is a statement like any other
    bounded = FLAWED.replace("if(GLOBAL_CONST_TRUE)", "if(src != NULL)")
    assert fixed_lines(bounded, [FIXED]) == {6, 8}


SINK = """void sink(int data)
{
    {
        int result = data - 1;
        printIntLine(result);
    }
}"""

# Juliet's goodB2G: the sink stays as it was, behind a check the fix adds
SINK_CHECKED = """void sink(int data)
{
    if (data > INT_MIN)
    {
        int result = data - 1;
        printIntLine(result);
    }
    else
    {
        printLine("data value is too small to perform subtraction.");
    }
}"""


def test_a_check_the_fix_adds_labels_the_statement_it_protects() -> None:
    assert fixed_lines(SINK, [SINK_CHECKED]) == {3}  # the subtraction, not the print after it
    # where the fix rewrites the statement after its check, that statement is labelled as
    # changed, and the check labels nothing more (not the print it also wraps)
    assert fixed_lines(
        SINK, [SINK_CHECKED.replace("int result = data - 1;", "int result = 0;")]
    ) == {3}


def test_the_juliet_rules_can_each_be_left_out() -> None:
    """Without a rule, what it set aside for Juliet's templates counts as a change again."""
    from enstack.lines.labels import JULIET_RULES

    assert fixed_lines(FLAWED, [FIXED], JULIET_RULES) == fixed_lines(FLAWED, [FIXED]) == {8}
    no_messages = JULIET_RULES - {"reworded_messages"}
    assert fixed_lines(FLAWED, [FIXED], no_messages) == {8, 10}  # and the reworded message
    no_guards = JULIET_RULES - {"constant_guards"}
    assert fixed_lines(FLAWED, [FIXED], no_guards) == {6, 8}  # and the flipped guard
    no_checks = JULIET_RULES - {"inserted_checks"}
    assert fixed_lines(SINK, [SINK_CHECKED], no_checks) == set()  # the guarded sink: not a flaw
    assert fixed_lines(SINK, [SINK_CHECKED], JULIET_RULES) == {3}


def _juliet_rows(split: str) -> list[dict]:
    path = shared_file("juliet6", f"{split}.jsonl")
    return [json.loads(line) for line in path.open()]


LABELS = ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other", "none"]


def test_ranker_from_juliet_train_pairs_finds_juliets_own_flaw_lines_in_unseen_files() -> None:
    """Fitted on 3,000 train pairs, scored on whole files of val families (never in train)
    against the lines Juliet itself marks as the flaw (the scan fixture's truth): the top
    line is one far more often than chance."""
    train = _juliet_rows("train")
    pairs = sorted({row["pair"] for row in train})
    kept = set(np.random.default_rng(0).choice(pairs, 3000, replace=False).tolist())
    train = [row for row in train if row["pair"] in kept]
    ranker = fit_line_ranker(
        [r["code"] for r in train],
        [r["label"] for r in train],
        [r["pair"] for r in train],
        LABELS,
        benign_id=5,
        seed=0,
        progress=False,
    )
    assert ranker is not None and ranker.info["functions"] > 1000
    fixture = shared_file("juliet-scan-val", "truth.json").parent
    hits, chance, scored = 0, 0.0, 0
    for name, functions in sorted(json.loads((fixture / "truth.json").read_text()).items()):
        source = (fixture / "src" / name).read_text().split("\n")
        for truth in (f for f in functions if f["label"] != 5):
            code = "\n".join(source[truth["start_line"] - 1 : truth["end_line"]])
            flaws = {line - truth["start_line"] for line in truth["flaw_lines"]}
            shares = ranker.rank(code, truth["class"])
            assert sum(shares.values()) == pytest.approx(1.0)
            hits += max(shares, key=shares.get) in flaws
            chance += len(flaws & set(shares)) / len(shares)
            scored += 1
    assert scored > 600
    print(f"top line a flaw line: {hits / scored:.3f}, chance {chance / scored:.3f}")
    # 0.665 before statements over several lines counted once, a length feature and each
    # function's flaw weighted as one unit; 0.700 with them
    assert hits / scored > 0.68 and hits / scored > 3 * chance / scored


def test_too_few_pairs_fit_no_ranker() -> None:
    codes = [FLAWED, FIXED] * 3
    pairs = ["p1", "p1", "p2", "p2", "p3", "p3"]
    # three flawed functions are too few to learn from; rows without a pair give none
    assert fit_line_ranker(codes, [0, 5] * 3, pairs, LABELS, 5, 0, progress=False) is None
    assert fit_line_ranker(codes * 10, [0, 5] * 30, [None] * 60, LABELS, 5, 0) is None


def test_save_and_load_give_the_same_ranking(tmp_path: Path) -> None:
    codes = [FLAWED, FIXED] * 30
    pairs = [f"p{i // 2}" for i in range(len(codes))]
    ranker = fit_line_ranker(codes, [1, 5] * 30, pairs, LABELS, 5, 0, progress=False)
    assert ranker is not None
    ranker.save(tmp_path / "lines")
    loaded = load_line_ranker(tmp_path / "lines")
    assert loaded is not None and loaded.info == ranker.info
    assert loaded.rank(FLAWED, "CWE-120") == ranker.rank(FLAWED, "CWE-120")
    top = max(loaded.rank(FLAWED, "CWE-120").items(), key=lambda item: item[1])[0]
    assert FLAWED.split("\n")[top].strip() == "strcpy(buf, src);"
    # another version's ranker is not read as this one's
    header = json.loads((tmp_path / "lines" / "ranker.json").read_text())
    (tmp_path / "lines" / "ranker.json").write_text(json.dumps({**header, "version": 99}))
    assert load_line_ranker(tmp_path / "lines") is None
    assert load_line_ranker(tmp_path / "none-here") is None
    assert np.isfinite(ranker.coef).all()
