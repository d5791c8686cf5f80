"""The data-flow graph of a C or C++ function, as GraphCodeBERT reads code: GraphCodeBERT
models read it after the code tokens (`encode.py` batches it, `models/classifier.py` reads it).

GraphCodeBERT's own code builds graphs for seven languages, not C or C++. This extractor works
over tree-sitter's C and C++ grammars in the way the official ones do for the others: every
variable occurrence is a node, tied to the code token it is; an edge says where its value comes
from. `comesFrom`: a use reads the definitions that reach it, a declaration its initialiser.
`computedFrom`: an assigned variable is computed from the variables of the right-hand side
(and, for `+=` and the like, from its own previous value). Branches (if/else, switch) see the
definitions from before them and merge theirs after; loop bodies are walked twice, so a use at
the top of a body also reads what the end of the previous iteration wrote.

The work is bounded for generated or hostile code: only the four outermost levels of nested
loops are walked twice, and syntax nested deeper than MAX_DEPTH levels is not walked at all
(`DataFlow.truncated` says so), so neither 30 nested loops nor 10,000 parentheses take more
than a moment or exhaust Python's stack.

Nodes are variables, not function names, types or fields: in `p->len = strlen(s)`, `p` and `s`
are nodes, `len` and `strlen` are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tree_sitter import Node

from enstack.csyntax.parser import parse

# Leaves kept whole as one code token (their insides are not code).
ATOMS = {"string_literal", "char_literal", "raw_string_literal", "concatenated_string"}
LOOPS = {"for_statement", "while_statement", "do_statement", "for_range_loop"}
# Syntax nested deeper than this (3,000 parentheses, generated code) is not walked: the walk
# recurses once per level, and Python's stack is not a resource an input may exhaust.
MAX_DEPTH = 150
TWICE_LOOPS = 4  # nested loops walked twice (at most 2^4 passes over the innermost)
# Declarator wrappers around the declared name: `*p`, `a[4]`, `&r`, `(f)`.
DECLARATOR_WRAPPERS = {
    "pointer_declarator",
    "array_declarator",
    "reference_declarator",
    "parenthesized_declarator",
}


@dataclass(frozen=True)
class Edge:
    """Variable `name` at code token `token` and where its value comes from."""

    name: str
    token: int
    relation: str  # "comesFrom" or "computedFrom"
    sources: tuple[int, ...]  # code-token indices of the nodes it reads


@dataclass
class DataFlow:
    tokens: list[str]  # the function's code tokens (tree-sitter leaves, comments left out)
    spans: list[tuple[int, int]]  # each token's byte span in the function's source
    edges: list[Edge] = field(default_factory=list)  # one per node, in token order
    damaged: bool = False  # tree-sitter recovered from a parse error somewhere in it
    truncated: bool = False  # nested deeper than MAX_DEPTH: the deeper part has no edges


def extract(source: bytes, language: str = "c") -> DataFlow:
    """The data-flow graph of one function's source (`language`: "c" or "cpp")."""
    root = parse(source, language)
    leaves = _leaves(root)
    flow = DataFlow(
        tokens=[source[n.start_byte : n.end_byte].decode("utf-8", "replace") for n in leaves],
        spans=[(n.start_byte, n.end_byte) for n in leaves],
        damaged=root.has_error,
    )
    walker = _Walker({(n.start_byte, n.end_byte): i for i, n in enumerate(leaves)}, source)
    walker.walk(root, {})
    flow.edges = walker.edges()
    flow.truncated = walker.truncated
    return flow


def _leaves(root: Node) -> list[Node]:
    out: list[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "comment":
            continue
        if node.child_count == 0 or node.type in ATOMS:
            if node.end_byte > node.start_byte:
                out.append(node)
            continue
        stack.extend(reversed(node.children))
    return out


States = dict[str, list[int]]  # variable -> code tokens of the definitions that reach here


class _Walker:
    def __init__(self, token_of: dict[tuple[int, int], int], source: bytes) -> None:
        self.token_of = token_of
        self.source = source
        self.found: dict[int, tuple[str, str, set[int]]] = {}
        self.depth = 0  # syntax levels being walked
        self.loops = 0  # loops being walked, the current one included
        self.truncated = False

    def edges(self) -> list[Edge]:
        return [
            Edge(name, token, relation, tuple(sorted(sources)))
            for token, (name, relation, sources) in sorted(self.found.items())
        ]

    # --- nodes ------------------------------------------------------------------------------

    def _add(self, node: Node, relation: str, sources: list[int]) -> int | None:
        token = self.token_of.get((node.start_byte, node.end_byte))
        if token is None:
            return None
        name = self._text(node)
        _, old_relation, old = self.found.get(token, (name, relation, set()))
        # walked twice (loops): the second pass adds what the loop's end defines
        self.found[token] = (name, old_relation, old | {s for s in sources if s != token})
        return token

    def _text(self, node: Node) -> str:
        return self.source[node.start_byte : node.end_byte].decode("utf-8", "replace")

    # --- the walk ---------------------------------------------------------------------------

    def walk(self, node: Node, states: States) -> list[int]:
        """Record the graph of `node`'s subtree; the tokens of the variables it reads."""
        if self.depth >= MAX_DEPTH:
            self.truncated = True
            return []
        self.depth += 1
        try:
            return self._walk(node, states)
        finally:
            self.depth -= 1

    def _walk(self, node: Node, states: States) -> list[int]:
        kind = node.type
        if kind == "identifier":
            return self._use(node, states)
        if kind in ("init_declarator", "parameter_declaration", "declaration"):
            return self._declaration(node, states)
        if kind == "assignment_expression":
            return self._assignment(node, states)
        if kind == "update_expression":
            return self._update(node, states)
        if kind == "call_expression":
            return self._call(node, states)
        if kind == "field_expression":
            return self.walk(node.child_by_field_name("argument"), states)
        if kind == "if_statement":
            return self._branches(node, states, ("consequence", "alternative"))
        if kind == "switch_statement":
            return self._switch(node, states)
        if kind in LOOPS:
            return self._loop(node, states)
        if kind == "function_declarator":  # the function's own name is not a variable
            parameters = node.child_by_field_name("parameters")
            return self.walk(parameters, states) if parameters is not None else []
        if kind == "conditional_expression":
            return self._branches(node, states, ("consequence", "alternative"))
        reads: list[int] = []
        for child in node.children:
            reads += self.walk(child, states)
        return reads

    def _use(self, node: Node, states: States) -> list[int]:
        name = self._text(node)
        if name in states:
            token = self._add(node, "comesFrom", states[name])
        else:  # first sight (a global, a macro, a parameter the parse lost): a root node
            token = self._add(node, "comesFrom", [])
            if token is not None:
                states[name] = [token]
        return [] if token is None else [token]

    def _define(self, node: Node, relation: str, sources: list[int], states: States) -> None:
        token = self._add(node, relation, sources)
        if token is not None:
            states[self._text(node)] = [token]

    def _declaration(self, node: Node, states: States) -> list[int]:
        if node.type == "declaration":  # `int a = 1, *b;`: each declarator in turn
            reads: list[int] = []
            for child in node.children_by_field_name("declarator"):
                if child.type == "init_declarator":
                    reads += self.walk(child, states)
                else:
                    self._declare(child, [], states)
            return reads
        if node.type == "parameter_declaration":
            declarator = node.child_by_field_name("declarator")
            if declarator is not None:
                self._declare(declarator, [], states)
            return []
        value = node.child_by_field_name("value")  # init_declarator
        reads = self.walk(value, states) if value is not None else []
        self._declare(node.child_by_field_name("declarator"), reads, states)
        return reads

    def _declare(self, declarator: Node | None, sources: list[int], states: States) -> None:
        """The declared name inside `*p`, `a[N]` (N is read), `&r`, `(x)`."""
        node = declarator
        while node is not None and node.type in DECLARATOR_WRAPPERS:
            size = node.child_by_field_name("size")
            if size is not None:
                self.walk(size, states)
            inner = node.child_by_field_name("declarator")
            # C++'s `&r` names no field: the declared name is its last named child
            node = inner if inner is not None else (node.named_children or [None])[-1]
        if node is not None and node.type == "identifier":
            self._define(node, "comesFrom", sources, states)

    def _assignment(self, node: Node, states: States) -> list[int]:
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        reads = self.walk(right, states) if right is not None else []
        target, index_reads = self._target(left, states)
        if target is None:
            return reads
        operator = node.child_by_field_name("operator")
        compound = operator is not None and self._text(operator) != "="
        partial = left is not None and left.type != "identifier"  # a[i] = v keeps a's other cells
        sources = list(reads) + index_reads
        if compound or partial:
            sources += states.get(self._text(target), [])
        self._define(target, "computedFrom", sources, states)
        return reads + index_reads

    def _target(self, lvalue: Node | None, states: States) -> tuple[Node | None, list[int]]:
        """The variable an assignment writes (`x`, `*p`, `a[i]`, `s.f`, `p->f`: x, p, a, s, p)
        and the variables read to find the place (`i` in `a[i]`)."""
        node, reads = lvalue, []
        while node is not None and node.type != "identifier":
            if node.type == "subscript_expression":
                index = node.child_by_field_name("index") or node.child_by_field_name("indices")
                if index is not None:
                    reads += self.walk(index, states)
                node = node.child_by_field_name("argument")
            elif node.type in ("pointer_expression", "field_expression"):
                node = node.child_by_field_name("argument")
            elif node.type == "parenthesized_expression" and node.named_child_count:
                node = node.named_children[0]
            else:
                return None, reads + self.walk(node, states)
        return node, reads

    def _update(self, node: Node, states: States) -> list[int]:
        target, reads = self._target(node.child_by_field_name("argument"), states)
        if target is None:
            return reads
        previous = states.get(self._text(target), [])
        self._define(target, "computedFrom", previous + reads, states)
        token = self.token_of.get((target.start_byte, target.end_byte))
        return reads + ([] if token is None else [token])

    def _call(self, node: Node, states: States) -> list[int]:
        """A call reads its arguments; the function's name is not a variable (a call through
        a pointer variable, `(*fp)(x)`, reads `fp`)."""
        function = node.child_by_field_name("function")
        reads = []
        if function is not None and function.type not in ("identifier", "field_expression"):
            reads += self.walk(function, states)
        elif function is not None and function.type == "field_expression":
            reads += self.walk(function.child_by_field_name("argument"), states)
        arguments = node.child_by_field_name("arguments")
        if arguments is not None:
            reads += self.walk(arguments, states)
        return reads

    def _branches(self, node: Node, states: States, arms: tuple[str, ...]) -> list[int]:
        """The condition, then each arm from the same states; afterwards, every definition
        that any arm (or skipping them all) leaves reaching."""
        reads = self.walk(node.child_by_field_name("condition"), states)
        outcomes, every_path_covered = [], True
        for arm in arms:
            child = node.child_by_field_name(arm)
            branch = _copy(states)
            if child is None:
                every_path_covered = False  # no else: the definitions before may reach past
            else:
                reads += self.walk(child, branch)
            outcomes.append(branch)
        if every_path_covered:
            states.clear()
        _merge_into(states, outcomes)
        return reads

    def _switch(self, node: Node, states: States) -> list[int]:
        reads = self.walk(node.child_by_field_name("condition"), states)
        body = node.child_by_field_name("body")
        outcomes = [_copy(states)]  # no case taken
        running = _copy(states)  # falling through from one case into the next
        for case in body.named_children if body is not None else []:
            entry = _copy(states)
            _merge_into(entry, [running])
            reads += self.walk(case, entry)
            running = entry
            outcomes.append(entry)
        _merge_into(states, outcomes)
        return reads

    def _loop(self, node: Node, states: States) -> list[int]:
        """A for loop's initialiser once; then its condition, body and update (in the order
        they run) twice, so the second pass's uses read what the first pass defined; the
        loop may also run zero times. Only the outermost TWICE_LOOPS levels of nested loops
        are walked twice (deeper ones once per pass of their parent): twice at every level
        would cost 2^depth (24 nested loops: minutes); real code rarely nests deeper."""
        reads: list[int] = []
        if node.type == "for_statement":
            initializer = node.child_by_field_name("initializer")
            reads += self.walk(initializer, states) if initializer is not None else []
            parts = [node.child_by_field_name(f) for f in ("condition", "body", "update")]
        elif node.type == "for_range_loop":  # `for (auto x : items)`: x comes from items
            items = self.walk(node.child_by_field_name("right"), states)
            reads += items
            self._declare(node.child_by_field_name("declarator"), items, states)
            parts = [node.child_by_field_name("body")]
        else:  # while (condition) body; do body while (condition)
            parts = [node.child_by_field_name(f) for f in ("condition", "body")]
            if node.type == "do_statement":
                parts.reverse()
        before = _copy(states)
        self.loops += 1
        try:
            for _ in range(2 if self.loops <= TWICE_LOOPS else 1):
                for part in parts:
                    reads += self.walk(part, states) if part is not None else []
        finally:
            self.loops -= 1
        _merge_into(states, [before])
        return sorted(set(reads))


def _copy(states: States) -> States:
    return {name: list(tokens) for name, tokens in states.items()}


def _merge_into(states: States, others: list[States]) -> None:
    for other in others:
        for name, tokens in other.items():
            merged = states.setdefault(name, [])
            merged += [t for t in tokens if t not in merged]
            merged.sort()


# --- the graph as GraphCodeBERT reads it: nodes tied to subword positions --------------------


@dataclass
class RowGraph:
    """One encoded row's graph: each node's subword positions [start, end) in the row, and the
    edges (node, node it reads), by node index."""

    spans: list[tuple[int, int]]
    edges: list[tuple[int, int]]


def parse_function(code: str) -> DataFlow:
    """The graph of a function whose language is not known (a dataset row): C, or C++ when
    only C++ parses it cleanly."""
    source = code.encode("utf-8", "surrogatepass")
    flow = extract(source, "c")
    if flow.damaged:
        as_cpp = extract(source, "cpp")
        if not as_cpp.damaged:
            return as_cpp
    return flow


def row_graph(
    flow: DataFlow, code: str, offsets: list[tuple[int, int]], first: int, limit: int
) -> RowGraph:
    """Tie `flow`'s nodes to the row's subwords. `offsets`: each code subword's character
    span in `code` (the tokenizer's offset mapping, after truncation); `first`: the row
    position of the first code subword (after `<s>` and any family prefix). A node whose
    token was truncated away is dropped with its edges; at most `limit` nodes, in code order."""
    char_at = _char_index(code)
    spans: list[tuple[int, int]] = []
    node_of_token: dict[int, int] = {}
    for edge in flow.edges:
        if len(spans) >= limit:
            break
        start_byte, end_byte = flow.spans[edge.token]
        a, b = char_at[start_byte], char_at[end_byte]
        hits = [i for i, (s, e) in enumerate(offsets) if s < b and e > a]
        if not hits:
            continue
        node_of_token[edge.token] = len(spans)
        spans.append((first + hits[0], first + hits[-1] + 1))
    edges = [
        (node_of_token[edge.token], node_of_token[source])
        for edge in flow.edges
        if edge.token in node_of_token
        for source in edge.sources
        if source in node_of_token
    ]
    return RowGraph(spans, edges)


def _char_index(code: str) -> list[int]:
    """The character index at each UTF-8 byte offset of `code` (and at its end)."""
    out: list[int] = []
    for i, char in enumerate(code):
        out += [i] * len(char.encode("utf-8", "surrogatepass"))
    out.append(len(code))
    return out
