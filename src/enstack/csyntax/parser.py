"""tree-sitter's C and C++ parsers, and which source files are which."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from tree_sitter import Language, Node, Parser, Query, QueryCursor

C_SUFFIXES = {".c"}
CPP_SUFFIXES = {".cc", ".cpp", ".cxx", ".c++", ".h", ".hh", ".hpp", ".hxx", ".h++", ".ipp"}
SOURCE_SUFFIXES = C_SUFFIXES | CPP_SUFFIXES


@cache
def _parser(language: str) -> Parser:
    if language == "c":
        import tree_sitter_c

        return Parser(Language(tree_sitter_c.language()))
    import tree_sitter_cpp

    return Parser(Language(tree_sitter_cpp.language()))


@cache
def _definitions_query(language: Language) -> Query:
    return Query(language, "(function_definition) @definition")


def definition_nodes(root: Node, language: str) -> list[Node]:
    """Every `function_definition` node under `root`, found by tree-sitter's query engine (in
    C: a walk of every node in Python costs as much as the parse on a large file)."""
    query = _definitions_query(_parser(language).language)
    captures = QueryCursor(query).captures(root)
    return captures.get("definition", [])


def parse(source: bytes, language: str) -> Node:
    """The syntax tree of C (`"c"`) or C++ (`"cpp"`) source; tree-sitter recovers from errors
    (the root's `has_error` says whether it had to)."""
    return _parser(language).parse(source).root_node


def parse_text(code: str) -> Node:
    """A function whose language is not known (a dataset row, a function cut out of a file):
    read as C, or as C++ when only C++ parses it cleanly (C++ misreads K&R C, and C a class)."""
    source = code.encode("utf-8", errors="surrogatepass")
    as_c = parse(source, "c")
    if not as_c.has_error:
        return as_c
    as_cpp = parse(source, "cpp")
    return as_c if as_cpp.has_error else as_cpp


def language_of(path: Path) -> str:
    """C for `.c`, C++ for everything else (a `.h` is parsed as C++, which reads C headers)."""
    return "c" if path.suffix.lower() in C_SUFFIXES else "cpp"
