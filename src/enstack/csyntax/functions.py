"""Functions cut out of C and C++ source with tree-sitter: free functions, methods, operators,
and functions inside namespaces, classes, templates, `extern "C"` blocks and preprocessor
conditionals.

tree-sitter recovers from syntax errors, so a damaged file still yields the functions it can
find; the ones that overlap a parse error are marked `damaged`. Real C is macro-heavy and is
parsed without a preprocessor, so a file may not parse: where it does not, it is parsed again
with only the first and with only the last branch of every `#if` group (preprocessor.py; line
numbers kept), and a function that parses cleanly in either replaces the damaged one (or the
error block) that covered it. Whatever is still inside an error block and in no function is
counted: its lines, and the function bodies that open in it, which no function could be
scored for (`Extraction.unscored`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from tree_sitter import Node

from enstack.csyntax.build import BuildContext, configured
from enstack.csyntax.macros import blank_specifier_macros
from enstack.csyntax.parser import definition_nodes, parse_tree, reparse
from enstack.csyntax.preprocessor import has_conditionals, one_branch

# (2: `#if` branches recovered, operators and reference-returning functions named; 3: macros in
# declarations blanked, no function named after a keyword or a type)

# names no function has: a statement or a type read as a function's name in an error block
NOT_NAMES = frozenset(
    [
        "if",
        "else",
        "for",
        "while",
        "do",
        "switch",
        "case",
        "return",
        "sizeof",
        "goto",
        "break",
        "continue",
        "default",
        "typedef",
        "struct",
        "union",
        "enum",
        "int",
        "char",
        "void",
        "long",
        "short",
        "unsigned",
        "signed",
        "float",
        "double",
        "const",
        "volatile",
        "static",
        "extern",
        "register",
        "auto",
        "inline",
        "bool",
        "_Bool",
        "defined",
        "<anonymous>",
    ]
)
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
# a function body opening at the left margin, on its own line or after a `)`: an estimate of
# the functions an error block swallowed
BLANKED_LINE = re.compile(r"^ +$", re.MULTILINE)  # a line one_branch turned to spaces
BODY_OPENS = re.compile(rb"^\{|^[A-Za-z_].*\)\s*\{\s*$")


@dataclass(frozen=True)
class Function:
    path: str  # as the user named it, relative where it was found under a directory
    name: str
    start_line: int  # 1-based, inclusive
    end_line: int
    code: str
    damaged: bool  # the function overlaps a region tree-sitter could not parse


@dataclass(frozen=True)
class Unscored:
    """What a file's parse could not turn into functions: nothing there can be scored."""

    functions: int  # function bodies opening in those lines (an estimate)
    lines: int  # non-blank lines inside error blocks that no function covers


@dataclass(frozen=True)
class Extraction:
    functions: list[Function]  # in file order
    has_errors: bool  # the file has parse errors anywhere (as read whole)
    unscored: Unscored = Unscored(0, 0)


def extract_functions(
    source: bytes, path: str, language: str, build: BuildContext | None = None
) -> Extraction:
    """Every function definition in `source` (see the module's docstring). With `build` (the
    file's macros from a compilation database), `#if` groups are first read as that build
    reads them, before the first and the last branch of each."""
    tree = parse_tree(source, language)
    found = _definitions(tree.root_node, source, path, language)
    if not tree.root_node.has_error:
        return Extraction(found, False)
    # the same length: offsets point into `source`; only the declarations around errors read
    blanked = blank_specifier_macros(source, regions=_error_regions(tree.root_node, len(source)))
    if blanked != source:  # macros in declarations: the blanked text is what is parsed
        tree = reparse(tree, source, blanked, language)
        cleaner = _definitions(tree.root_node, source, path, language)
        found = _prefer_clean(cleaner, found) if tree.root_node.has_error else cleaner
    root = tree.root_node
    if root.has_error and has_conditionals(source):
        for configure in _configurations(build):
            variant = reparse(tree.copy(), blanked, configure(blanked), language)
            # a function's text is one configuration: the other branches' lines left empty
            candidates = [
                replace(f, code=BLANKED_LINE.sub("", f.code))
                for f in _definitions(variant.root_node, configure(source), path, language)
            ]
            found = _prefer_clean(found, candidates)
    source_lines = source.split(b"\n")
    lines = [line for line in _unscored_lines(root, found) if source_lines[line].strip()]
    opens = sum(1 for line in lines if BODY_OPENS.match(source_lines[line]))
    return Extraction(found, True, Unscored(opens, len(lines)))


def _configurations(build: BuildContext | None) -> list[Callable[[bytes], bytes]]:
    """The readings of `#if` groups to try, in order: the build's (where there is one), then
    the first and the last branch of every group."""
    readings: list[Callable[[bytes], bytes]] = []
    if build is not None:
        readings.append(lambda text: configured(text, build))
    readings += [lambda text: one_branch(text, "first"), lambda text: one_branch(text, "last")]
    return readings


def _error_regions(root: Node, size: int) -> list[tuple[int, int]]:
    """Byte ranges around the top-level declarations that hold a parse error, each widened by
    its neighbours (a macro in one declaration can break the parse of the next)."""
    children = root.children
    regions: list[tuple[int, int]] = []
    for index, child in enumerate(children):
        if not child.has_error:
            continue
        start = children[index - 1].start_byte if index else 0
        end = children[index + 1].end_byte if index + 1 < len(children) else size
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    return regions


def _definitions(root: Node, source: bytes, path: str, language: str) -> list[Function]:
    """The functions of a parse; `source` is the text their code is cut from (the parsed text,
    or the original that blanking kept byte for byte). A "function" named after a keyword or
    a type (`if (x) {` read as a definition in an error block) is no function."""
    functions: list[Function] = []
    for node in definition_nodes(root, language):
        if _inside_definition(node):
            continue  # a function's body holds no other definitions worth scoring alone
        function = _function(node, source, path, _scope(node))
        if function.name.rsplit("::", 1)[-1] not in NOT_NAMES:
            functions.append(function)
    functions.sort(key=lambda f: (f.start_line, f.end_line))
    return functions


def _inside_definition(node: Node) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type == "function_definition":
            return True
        parent = parent.parent
    return False


def _scope(node: Node) -> tuple[str, ...]:
    """The names of the namespaces and classes around a definition, outermost first."""
    names = []
    parent = node.parent
    while parent is not None:
        if parent.type in SCOPES:
            names.append(_scope_name(parent))
        parent = parent.parent
    return tuple(reversed(names))


def _prefer_clean(found: list[Function], alternative: list[Function]) -> list[Function]:
    """`found`, with each function of `alternative` added where `found` has none (its lines
    were an error block), and each clean one in place of the damaged ones it overlaps."""
    kept = list(found)
    for candidate in alternative:
        overlapping = [f for f in kept if _overlap(f, candidate)]
        if not overlapping or (not candidate.damaged and all(f.damaged for f in overlapping)):
            kept = [f for f in kept if f not in overlapping] + [candidate]
    kept.sort(key=lambda f: (f.start_line, f.end_line))
    return kept


def _overlap(a: Function, b: Function) -> bool:
    return a.start_line <= b.end_line and b.start_line <= a.end_line


def _unscored_lines(root: Node, functions: list[Function]) -> list[int]:
    """0-based lines inside the parse's error blocks that no function covers."""
    covered = {line for f in functions for line in range(f.start_line - 1, f.end_line)}
    lines: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "ERROR":
            lines.update(range(node.start_point[0], node.end_point[0] + 1))
        elif node.has_error:
            stack.extend(node.children)
    return sorted(lines - covered)


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
        if node.type == "operator_cast":  # `operator bool() const`: its name, not its call
            target = node.child_by_field_name("type")
            return "operator " + _text(target) if target is not None else _text(node)
        if node.type in NAMED_DECLARATORS:
            return _text(node)
        inner = node.child_by_field_name("declarator")
        if inner is None:  # a reference declarator (`int& f()`) keeps its inner one unnamed
            named = [c for c in node.named_children if c.type in NAMED_DECLARATORS]
            wrapped = [c for c in node.named_children if c.type.endswith("declarator")]
            if named:
                return _text(named[0])
            inner = wrapped[0] if wrapped else None
        node = inner
    return "<anonymous>"


def _text(node: Node) -> str:
    return node.text.decode("utf-8", errors="replace")


def _scope_name(node: Node) -> str:
    name = node.child_by_field_name("name")
    return name.text.decode("utf-8", errors="replace") if name is not None else ""
