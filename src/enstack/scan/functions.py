"""Functions cut out of C and C++ source with tree-sitter: free functions, methods, and
functions inside namespaces, classes, templates, `extern "C"` blocks and preprocessor
conditionals. tree-sitter recovers from syntax errors, so a damaged file still yields the
functions it can find; the ones that overlap a parse error are marked `damaged`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tree_sitter import Language, Node, Parser

EXTRACTOR_VERSION = 1  # bump when what is cut out changes: cached functions are then redone
C_SUFFIXES = {".c"}
CPP_SUFFIXES = {".cc", ".cpp", ".cxx", ".c++", ".h", ".hh", ".hpp", ".hxx", ".h++", ".ipp"}
SOURCE_SUFFIXES = C_SUFFIXES | CPP_SUFFIXES

# the nodes whose name qualifies the functions defined inside them
SCOPES = {"namespace_definition", "class_specifier", "struct_specifier", "union_specifier"}
NAMED_DECLARATORS = {
    "identifier",
    "field_identifier",
    "qualified_identifier",
    "destructor_name",
    "operator_name",
    "template_function",
    "operator_cast",
}


@dataclass(frozen=True)
class Function:
    path: str  # as the user named it, relative where it was found under a directory
    name: str
    start_line: int  # 1-based, inclusive
    end_line: int
    code: str
    damaged: bool  # the function overlaps a region tree-sitter could not parse


@cache
def _parser(language: str) -> Parser:
    if language == "c":
        import tree_sitter_c

        return Parser(Language(tree_sitter_c.language()))
    import tree_sitter_cpp

    return Parser(Language(tree_sitter_cpp.language()))


def parse(source: bytes, language: str) -> Node:
    """The syntax tree of C (`"c"`) or C++ (`"cpp"`) source; tree-sitter recovers from errors
    (the root's `has_error` says whether it had to)."""
    return _parser(language).parse(source).root_node


def language_of(path: Path) -> str:
    """C for `.c`, C++ for everything else (a `.h` is parsed as C++, which reads C headers)."""
    return "c" if path.suffix.lower() in C_SUFFIXES else "cpp"


def extract_functions(source: bytes, path: str, language: str) -> tuple[list[Function], bool]:
    """Every function definition in `source`, in file order, and whether the file has parse
    errors anywhere."""
    root = parse(source, language)
    functions: list[Function] = []
    stack: list[tuple[Node, tuple[str, ...]]] = [(root, ())]
    while stack:
        node, scope = stack.pop()
        if node.type == "function_definition":
            functions.append(_function(node, source, path, scope))
            continue  # a function's body holds no other definitions worth scoring alone
        inner = (*scope, _scope_name(node)) if node.type in SCOPES else scope
        stack.extend((child, inner) for child in reversed(node.children))
    functions.sort(key=lambda f: (f.start_line, f.end_line))
    return functions, root.has_error


def _function(node: Node, source: bytes, path: str, scope: tuple[str, ...]) -> Function:
    name = _declared_name(node.child_by_field_name("declarator"))
    qualified = "::".join([*(s for s in scope if s), name])
    code = source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")
    return Function(
        path=path,
        name=qualified,
        start_line=node.start_point[0] + 1,
        end_line=node.end_point[0] + 1,
        code=code,
        damaged=node.has_error,
    )


def _declared_name(declarator: Node | None) -> str:
    """The name in a (possibly pointer- or reference-wrapped) function declarator."""
    node = declarator
    while node is not None:
        if node.type in NAMED_DECLARATORS:
            return node.text.decode("utf-8", errors="replace")
        inner = node.child_by_field_name("declarator")
        if inner is None:
            named = [c for c in node.named_children if c.type in NAMED_DECLARATORS]
            return named[0].text.decode("utf-8", errors="replace") if named else "<anonymous>"
        node = inner
    return "<anonymous>"


def _scope_name(node: Node) -> str:
    name = node.child_by_field_name("name")
    return name.text.decode("utf-8", errors="replace") if name is not None else ""
