"""A function's statements, from tree-sitter's statement nodes: what the line ranker labels and
ranks, what localisation sums its scores by, and where a window over a long function may end.

A statement is one candidate however many lines it spans, named by its first line (as a
reader, and Juliet's flaw comments, point at it): an expression, declaration, return, jump or
`case` label; a compound statement's header (`if (...)`, `while (...)`, `for (...)`,
`switch (...)`, `do`), its condition's lines included, without its body. Two statements that
start on one line are one candidate. Not statements: the signature, braces, `else`, comments
and preprocessor lines. Lines the parse could not place in a statement (an error block, a
macro the parser misread) are a statement each, so that nothing with code in it goes unranked.
"""

from __future__ import annotations

import numpy as np
from tree_sitter import Node

from enstack.csyntax.parser import parse_text

# statements read as one piece: nothing inside them is another candidate
SIMPLE = {"expression_statement", "declaration", "return_statement", "break_statement",
          "continue_statement", "goto_statement", "throw_statement", "field_declaration",
          "type_definition"}  # fmt: skip
# compound statements: their header is a statement, their body holds others
HEADED = {"if_statement": "consequence", "while_statement": "body", "for_statement": "body",
          "for_range_loop": "body", "switch_statement": "body", "do_statement": "body"}  # fmt: skip
NOT_CODE = {"comment", "{", "}", ";", "else", "preproc_call", "preproc_include", "preproc_def",
            "preproc_function_def"}  # fmt: skip


def statement_spans(code: str) -> dict[int, list[int]]:
    """0-based first line -> every line the statement spans (see the module's docstring);
    every line, one statement each, when the function has no statement at all."""
    root = parse_text(code)
    body = _body(root)
    spans: dict[int, set[int]] = {}
    claimed: set[int] = set()
    if body is not None:
        _collect(body, spans, claimed)
        _orphans(code, body, spans, claimed)
    if not spans:
        return {i: [i] for i in range(code.count("\n") + 1)}
    return {head: sorted(lines) for head, lines in sorted(spans.items())}


def _body(root: Node) -> Node | None:
    """The function's body; the whole text when it is not one function definition."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "function_definition":
            return node.child_by_field_name("body")
        stack.extend(reversed(node.children))
    return root


def _claim(spans: dict[int, set[int]], claimed: set[int], first: int, last: int) -> None:
    # a line already claimed stays with its statement: one starting where another did
    # (`a = 1; b = 2;`) adds nothing, and one continuing past it starts at its first free line
    lines = set(range(first, last + 1)) - claimed
    if lines:
        spans[min(lines)] = lines
        claimed.update(lines)


def _collect(node: Node, spans: dict[int, set[int]], claimed: set[int]) -> None:
    for child in node.children:
        _visit(child, spans, claimed)


def _visit(node: Node, spans: dict[int, set[int]], claimed: set[int]) -> None:
    if node.has_error and node.start_point[0] != node.end_point[0]:
        # a statement the parser had to repair (a missing `;`, a macro it misread) may be
        # several statements run together: its lines are placed one by one (`_orphans`)
        _collect(node, spans, claimed)
    elif node.type in SIMPLE:
        _claim(spans, claimed, node.start_point[0], node.end_point[0])
    elif node.type == "do_statement":  # `do`, the body, then `while (...);`
        body = node.child_by_field_name("body")
        _claim(spans, claimed, node.start_point[0], node.start_point[0])
        if body is not None:
            _visit(body, spans, claimed)
            _claim(spans, claimed, body.end_point[0], node.end_point[0])
    elif node.type in HEADED:
        header_end = _header_end(node, node.child_by_field_name(HEADED[node.type]))
        _claim(spans, claimed, node.start_point[0], header_end)
        _collect(node, spans, claimed)
    elif node.type in ("case_statement", "labeled_statement"):
        _claim(spans, claimed, node.start_point[0], node.start_point[0])
        _collect(node, spans, claimed)
    elif node.type not in NOT_CODE:
        _collect(node, spans, claimed)


def _header_end(statement: Node, body: Node | None) -> int:
    """The last line of a compound statement's header: the line of the token before its body
    (the closing parenthesis), or the whole statement's when it has no body."""
    if body is None:
        return statement.end_point[0]
    before = body.prev_sibling
    return before.end_point[0] if before is not None else statement.start_point[0]


def _orphans(code: str, body: Node, spans: dict[int, set[int]], claimed: set[int]) -> None:
    """Lines with code on them that no statement claimed: a statement each."""
    texts = code.split("\n")
    code_lines: set[int] = set()
    stack = list(body.children)
    while stack:
        node = stack.pop()
        if node.type in NOT_CODE:
            continue
        if node.child_count == 0:
            code_lines.update(range(node.start_point[0], node.end_point[0] + 1))
        else:
            stack.extend(node.children)
    directives = {i for i, text in enumerate(texts) if text.lstrip().startswith("#")}
    for line in sorted(code_lines - claimed - directives):
        _claim(spans, claimed, line, line)


def window_cuts(code: str) -> list[int]:
    """Lines L after which a window may end: no simple statement and no compound statement's
    header spans the break between L and L + 1."""
    n_lines = code.count("\n") + 1
    blocked = np.zeros(n_lines, dtype=bool)  # blocked[L]: the break after line L is inside
    stack = [parse_text(code)]
    while stack:
        node = stack.pop()
        end_row = None
        if node.type in SIMPLE:
            end_row = node.end_point[0]
        elif node.type in HEADED:
            body = node.child_by_field_name(HEADED[node.type])
            end_row = body.start_point[0] if body is not None else node.end_point[0]
        if end_row is not None and end_row > node.start_point[0]:
            blocked[node.start_point[0] : end_row] = True
        if node.type not in SIMPLE:
            stack.extend(node.children)
    return [line for line in range(n_lines - 1) if not blocked[line]]
