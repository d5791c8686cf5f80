"""C syntax in one place (`enstack.csyntax`): functions that `#if` branches hide from the
parser are recovered with their line numbers, what cannot be is counted, C++ operators are
named, and statements come from tree-sitter's statement nodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enstack.csyntax.functions import extract_functions
from enstack.csyntax.preprocessor import one_branch
from enstack.csyntax.statements import statement_spans, window_cuts

# As on curl and zlib: an `if (...) {` in each branch of an `#if` group and one closing brace
# after it. No single configuration of the text is C to a parser that sees both branches.
SPLIT_BY_IF = """static int before(int a)
{
    return a + 1;
}

int decode(struct state *s, int flush)
{
    int ret = 0;
#ifdef GUNZIP
    if (s->wrap & 2) {
        ret = crc(s);
#else
    if (s->wrap) {
        ret = adler(s);
#endif
        s->mode = HEAD;
    }
    memcpy(s->out, s->in, s->len);
    return ret;
}

static int after(int b)
{
    return b * 2;
}
"""


def test_functions_split_by_if_branches_are_recovered_at_their_lines() -> None:
    whole = extract_functions(SPLIT_BY_IF.encode(), "d.c", "c")
    names = {f.name: f for f in whole.functions}
    assert set(names) == {"before", "decode", "after"}
    decode = names["decode"]
    assert (decode.start_line, decode.end_line) == (6, 20)
    assert not decode.damaged  # one branch parses cleanly
    # the function's text is one configuration: the first branch, the other blanked
    assert "crc(s)" in decode.code and "adler(s)" not in decode.code
    assert decode.code.count("\n") == 20 - 6  # line numbers kept
    assert whole.unscored.lines == 0


def test_one_branch_keeps_line_numbers_and_nesting() -> None:
    source = b"a\n#if X\nb\n#if Y\nc\n#else\nd\n#endif\n#elif Z\ne\n#else \\\n  more\nf\n#endif\ng"
    first = one_branch(source, "first").split(b"\n")
    last = one_branch(source, "last").split(b"\n")
    assert len(first) == len(last) == source.count(b"\n") + 1
    assert [line for line in first if line.strip()] == [b"a", b"b", b"c", b"g"]
    assert [line for line in last if line.strip()] == [b"a", b"f", b"g"]  # continuation too
    assert len(first[1]) == len(b"#if X") and len(one_branch(source, "last")) == len(source)


def test_what_cannot_be_parsed_is_counted_per_file() -> None:
    # after the three functions, four lines no configuration makes C, one of them a body's
    # opening brace at the left margin: an error block that no function covers
    source = (SPLIT_BY_IF + "\n]] x = (;\n{\n  a = ;\n}\n").encode()
    found = extract_functions(source, "e.c", "c")
    assert found.has_errors
    assert [f.name for f in found.functions] == ["before", "decode", "after"]
    assert not any(f.damaged for f in found.functions)
    assert (found.unscored.lines, found.unscored.functions) == (4, 1)  # blank lines not counted


def test_a_file_that_parses_is_read_once_and_unchanged() -> None:
    clean = b"int f(int a)\n{\n    return a;\n}\n"
    found = extract_functions(clean, "f.c", "c")
    assert not found.has_errors and found.unscored.lines == 0
    assert [(f.name, f.start_line, f.end_line, f.code) for f in found.functions] == [
        ("f", 1, 4, clean.decode().rstrip("\n"))
    ]


def test_cpp_operators_and_reference_returning_functions_are_named() -> None:
    source = b"""class A {
  A& operator=(const A& o) { return *this; }
  int& at(int i) { return v[i]; }
  operator bool() const { return true; }
};
A& A::operator+=(const A& o) { return *this; }
int& get_ref() { static int x; return x; }
const char *&pp(void) { return p; }
template <typename T> T& Box<T>::get() { return t; }
"""
    names = [f.name for f in extract_functions(source, "a.cpp", "cpp").functions]
    assert names == [
        "A::operator=",
        "A::at",
        "A::operator bool",
        "A::operator+=",
        "get_ref",
        "pp",
        "Box<T>::get",
    ]


def test_statements_are_the_parsers_statements() -> None:
    code = """void f(int n)
{
    /* a comment is not a statement */
    int a = 0; int b = 1;
    do {
        n--;
    } while (n > 0);
    switch (n) {
    case 1:
        break;
    default:
        a = b;
    }
    for (int i = 0;
         i < n; i++) g(i);
    if (a) {
        h();
    } else {
        k();
    }
}"""
    spans = statement_spans(code)
    assert 2 not in spans  # the comment
    assert spans[3] == [3]  # two statements on one line: one candidate
    assert spans[4] == [4] and spans[5] == [5] and spans[6] == [6]  # do, body, while
    assert spans[7] == [7] and spans[8] == [8] and spans[9] == [9] and spans[10] == [10]
    assert spans[13] == [13, 14]  # a for header over two lines, its one-line body with it
    assert 17 not in spans  # `} else {`
    assert sorted(spans) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 16, 18]


def test_windows_never_cut_inside_a_statement() -> None:
    code = (
        "void f(void)\n{\n    call(a,\n         b);\n"
        "    if (x &&\n        y) {\n        z();\n    }\n}"
    )
    cuts = window_cuts(code)
    assert 2 not in cuts and 4 not in cuts  # inside the call, inside the header
    assert {1, 3, 5, 6} <= set(cuts)


@pytest.mark.slow  # 12 s: the size that shows a per-line walk's cost
def test_deeply_nested_conditionals_are_read_in_linear_time() -> None:
    """A file an attacker writes: 20,000 nested `#if`s around a function, and an `#else` at
    every level (so the file does not parse whole and every branch is tried). Each line's fate
    costs O(1) however deep the nesting: seconds, not the minutes a per-line walk of every
    open group took (29 s for `one_branch` alone here, before)."""
    import time

    n = 20_000
    source = b"#if A\n" * n + b"int f(int a)\n{\n    return a +;\n}\n" + b"#else\n}}\n#endif\n" * n
    started = time.perf_counter()
    found = extract_functions(source, "deep.c", "c")
    assert time.perf_counter() - started < 20
    assert [(f.name, f.start_line) for f in found.functions] == [("f", n + 1)]
    first = one_branch(source, "first").split(b"\n")
    assert len(first) == source.count(b"\n") + 1 and b"}}" not in first


# --- macros where C declares a function (issue 36) ----------------------------------------------

# written in the manner of zlib, libexpat and Lua (export markers, calling conventions,
# prototype wrappers, far pointers, statement macros without `;`), not copied from them
MACRO_HEAVY = """\
#define local static
#define ZEXPORT
local int helper OF((z_streamp strm, int n));

uLong ZEXPORT checksum(uLong adler, const Bytef FAR *buf, uInt len) {
    struct state FAR *s = (struct state FAR *)buf;
    return adler + len + (z_const Bytef *)buf - buf;
}

local gzFile open_it(const char *path, int fd) {
    return path ? 0 : fd;
}

static void XMLCALL
on_start(void *data, const XML_Char *name) {
    UNUSED(data)
    UNUSED(name)
}

LUA_API lua_Number lua_version(lua_State *L) {
    return 504;
}

START_TEST(test_case_one) {
    char *p = voidcast(char *, malloc(8));
    run(va_arg(ap, struct item *));
}
END_TEST

START_TEST(test_case_two) {
    run(2);
}
END_TEST

__attribute__((no_sanitize("memory")))
static DWORD WINAPI worker(void *arg) {
    return 0;
}

int dispatch(int c) {
    switch (c) {
    case 1:
        c++;
        FALLTHROUGH /* a statement macro with no `;` before a case */
    case 2:
        ND_ICHECK_U(c, <, 4);
        return c;
    }
    return 0;
}
"""


def test_functions_declared_through_macros_are_whole_clean_and_named() -> None:
    source = MACRO_HEAVY.encode()
    found = extract_functions(source, "m.c", "c")
    spans = {f.name: (f.start_line, f.end_line, f.damaged) for f in found.functions}
    lines = MACRO_HEAVY.splitlines()

    def span(name: str) -> tuple[int, int, bool]:
        start = next(i for i, line in enumerate(lines, 1) if name in line and "(" in line)
        end = next(i for i, line in enumerate(lines[start - 1 :], start) if line == "}")
        return start, end, False

    expected = ["checksum", "open_it", "lua_version", "test_case_one", "test_case_two", "dispatch"]
    for name in expected:
        assert spans[name] == span(name), name
    # a definition begins with its return type, or its attribute, on the lines above its name
    assert spans["on_start"] == (span("on_start")[0] - 1, span("on_start")[1], False)
    assert spans["worker"] == (span("worker")[0] - 1, span("worker")[1], False)
    assert set(spans) == {
        *expected,
        "on_start",
        "worker",
    }  # no prototype, no macro named as a function
    # the code scored is the file's own text, macros and all
    checksum = next(f for f in found.functions if f.name == "checksum")
    assert checksum.code.startswith("uLong ZEXPORT checksum(") and "FAR *)buf" in checksum.code


def test_blanking_keeps_every_offset_and_leaves_types_alone() -> None:
    from enstack.csyntax.macros import blank_specifier_macros

    source = MACRO_HEAVY.encode()
    blanked = blank_specifier_macros(source)
    assert len(blanked) == len(source) and blanked.count(b"\n") == source.count(b"\n")
    assert all(a == b or b in b" 0" for a, b in zip(source, blanked, strict=True))
    for text in (
        b"FILE *open_file(const char *name) {}",  # an all-caps type stays
        b"#define Rand64 unsigned long long\nstatic Rand64 rotl(Rand64 x) {}",  # a type macro
        b"int f(int a, int b) { return (a * b) + g(a, b); }",  # a product is no cast
        b"}\nBOOL\nmain(void)\n{ return 0; }",  # a type alone on its line
        b"static void\nFOO(x)\n{ }",  # a function named in capitals
        b"int f(void) { if (x)\n  FOO(y)\n  bar(); }",  # a macro in an if, not alone
        b"int f(int a, int *b) { return g(a * b, *b) + h(a, b); }",  # products and pointers
    ):
        assert blank_specifier_macros(text) == text, text


def test_no_function_is_named_after_a_keyword_or_a_type() -> None:
    # an error block in which tree-sitter reads `if (x) {` as a definition named `if`
    source = (
        b"local gzFile f(int a) {\n  int b;\n#ifdef X\n  if (a) {\n#endif\n"
        b"  if (b) {\n    g();\n  }\n  return 0;\n}\n"
    )
    names = [f.name for f in extract_functions(source, "k.c", "c").functions]
    assert names and not set(names) & {"if", "for", "while", "switch", "return", "int"}


@pytest.mark.parametrize(
    "tail",
    [b" " * 200_000, b"/*" * 100_000, b"'" * 200_000, b'"' * 200_000, b";\nFOO(x)\n" * 40_000,
     b"a b c d e f g h " * 20_000, b"(" * 100_000, b"#define A \\\n" * 50_000],
)  # fmt: skip
def test_blanking_is_linear_on_hostile_text(tail: bytes) -> None:
    import time

    from enstack.csyntax.macros import blank_specifier_macros

    started = time.perf_counter()
    head = b"int FOO f(int x) { return x; }\n"
    blanked = blank_specifier_macros(head + tail)
    assert len(blanked) == len(head + tail) and blanked.startswith(b"int     f(")
    assert time.perf_counter() - started < 10  # seconds; quadratic would be hours


def test_extraction_matches_ctags_on_macro_heavy_c(tmp_path: Path) -> None:
    """The parse benchmark's comparison, on a small tree: every function ctags finds, found
    with the same span; none damaged."""
    import shutil

    if shutil.which("ctags") is None:
        pytest.skip("universal-ctags is not installed (apt install universal-ctags)")
    from benchmarks.parse import measure

    (tmp_path / "m.c").write_text(MACRO_HEAVY)
    (tmp_path / "s.c").write_text(SPLIT_BY_IF)
    result = measure(tmp_path, extract_functions)
    assert result["ctags_functions"] >= 10
    assert result["span_recall"] == 1.0 and result["damaged_share"] == 0.0
    assert result["keyword_named"] == 0


# --- a build's macros: --compile-commands --------------------------------------------------------

ONLY_THE_BUILD_PARSES = """\
int decode(struct state *s)
{
#if defined(USE_A)
    if (s->a) { {
#elif defined(USE_B) && LEVEL >= 2
    if (s->b) {
#else
    while (1) { {
#endif
        s->mode = 2;
    }
    return 0;
}
"""


def test_a_build_reads_its_own_if_branches(tmp_path: Path) -> None:
    from enstack.csyntax.build import CompileCommands, configured

    source = ONLY_THE_BUILD_PARSES.encode()
    without = {f.name: f for f in extract_functions(source, "d.c", "c").functions}
    assert without["decode"].damaged  # neither the first nor the last branch is C
    (tmp_path / "d.c").write_bytes(source)
    database = tmp_path / "compile_commands.json"
    database.write_text(json.dumps([
        {"directory": str(tmp_path), "file": "d.c",
         "command": "cc -DUSE_B -D LEVEL=3 -UNDEBUG -c d.c -o d.o"},
    ]))  # fmt: skip
    build = CompileCommands.load(database).for_file(tmp_path / "d.c")
    assert build is not None and build.defines == {"USE_B": "1", "LEVEL": "3"}
    (decode,) = extract_functions(source, "d.c", "c", build).functions
    assert (decode.name, decode.start_line, decode.end_line, decode.damaged) == (
        "decode",
        1,
        13,
        False,
    )
    assert "s->b" in decode.code and "s->a" not in decode.code and "while" not in decode.code
    kept = configured(source, build)
    assert len(kept) == len(source) and kept.count(b"\n") == source.count(b"\n")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "not a JSON compilation database"),
        ('{"file": "a.c"}', "not a JSON array"),
        ('[{"command": "cc a.c"}]', 'entry 1 has no "file"'),
        ('[{"file": "a.c", "command": "cc \'unterminated"}]', "does not split"),
        ('[{"file": "a.c"}]', 'neither "arguments" nor "command"'),
    ],
)
def test_a_compilation_database_that_is_not_one(
    tmp_path: Path, content: str, fragment: str
) -> None:
    from enstack.csyntax.build import CompileCommands
    from enstack.errors import UserError

    database = tmp_path / "compile_commands.json"
    database.write_text(content)
    with pytest.raises(UserError, match=fragment):
        CompileCommands.load(database)


def test_a_compilation_database_is_never_run(tmp_path: Path) -> None:
    from enstack.csyntax.build import CompileCommands

    mark = tmp_path / "PWNED"
    database = tmp_path / "compile_commands.json"
    database.write_text(json.dumps([
        {"directory": str(tmp_path), "file": "a.c",
         "command": f"cc $(touch {mark}) `touch {mark}` -DX=1; touch {mark} -c a.c"},
        {"directory": str(tmp_path), "file": "b.c", "arguments": ["cc", f"-DY=$(touch {mark})"]},
    ]))  # fmt: skip
    commands = CompileCommands.load(database)
    assert commands.for_file(tmp_path / "a.c").defines["X"] == "1;"
    assert not mark.exists()
