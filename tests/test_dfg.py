"""The C/C++ data-flow graph (`enstack.dfg`): edges checked by hand on small functions.

A node is named by its variable and which occurrence of that name it is among the function's
code tokens, from 0: in `int f(int n) { return n; }`, `n.0` is the parameter and `n.1` the use.
"""

from __future__ import annotations

from enstack.dfg import extract


def graph(code: str, language: str = "c") -> set[tuple[str, str, frozenset[str]]]:
    flow = extract(code.encode(), language)
    seen: dict[str, int] = {}
    label = []
    for token in flow.tokens:
        label.append(f"{token}.{seen.get(token, 0)}")
        seen[token] = seen.get(token, 0) + 1
    return {
        (label[e.token], e.relation, frozenset(label[s] for s in e.sources)) for e in flow.edges
    }


def test_declarations_compound_assignment_and_a_for_loop() -> None:
    edges = graph(
        """int f(int n, char *s) {
  int total = 0;
  for (int i = 0; i < n; i++) {
    total += s[i];
  }
  return total;
}"""
    )
    assert edges == {
        ("n.0", "comesFrom", frozenset()),
        ("s.0", "comesFrom", frozenset()),
        ("total.0", "comesFrom", frozenset()),
        ("i.0", "comesFrom", frozenset()),
        # the condition reads the initialiser and, on the next turn, the update
        ("i.1", "comesFrom", frozenset({"i.0", "i.2"})),
        ("n.1", "comesFrom", frozenset({"n.0"})),
        ("i.2", "computedFrom", frozenset({"i.0"})),
        # += reads total's previous value, the element and the index
        ("total.1", "computedFrom", frozenset({"total.0", "s.1", "i.3"})),
        ("s.1", "comesFrom", frozenset({"s.0"})),
        ("i.3", "comesFrom", frozenset({"i.0", "i.2"})),
        # the loop may run zero times: both definitions reach the return
        ("total.2", "comesFrom", frozenset({"total.0", "total.1"})),
    }


def test_if_else_merges_what_each_branch_leaves() -> None:
    edges = graph(
        """int g(int a, int b) {
  int x = a;
  if (b > 0) { x = b; } else { a = 1; }
  return x + a;
}"""
    )
    assert ("x.0", "comesFrom", frozenset({"a.1"})) in edges
    assert ("x.1", "computedFrom", frozenset({"b.2"})) in edges
    assert ("a.2", "computedFrom", frozenset()) in edges
    # x: the then-branch's definition or (else taken) the declaration; a likewise
    assert ("x.2", "comesFrom", frozenset({"x.0", "x.1"})) in edges
    assert ("a.3", "comesFrom", frozenset({"a.0", "a.2"})) in edges


def test_pointers_arrays_members_and_calls() -> None:
    edges = graph(
        """void h(char *dst, const char *src, struct buf *p, int i) {
  char tmp[8];
  tmp[i] = src[0];
  *dst = tmp[1];
  p->len = strlen(src);
  strcpy(dst, src);
}"""
    )
    # an element write keeps the array's other cells: tmp is computed from the old tmp too
    assert ("tmp.1", "computedFrom", frozenset({"tmp.0", "src.1", "i.1"})) in edges
    assert ("dst.1", "computedFrom", frozenset({"dst.0", "tmp.2"})) in edges
    # a member write changes the struct; the called function's name is no variable
    assert ("p.1", "computedFrom", frozenset({"p.0", "src.2"})) in edges
    assert ("dst.2", "comesFrom", frozenset({"dst.1"})) in edges
    names = {node.split(".")[0] for node, _, _ in edges}
    assert not names & {"strlen", "strcpy", "len", "h", "buf"}


def test_switch_cases_fall_through_and_merge() -> None:
    edges = graph(
        """void s(int c, int *p) {
  switch (c) { case 1: *p = c; break; default: p = 0; }
  use(p);
}"""
    )
    assert ("p.1", "computedFrom", frozenset({"p.0", "c.2"})) in edges
    assert ("p.2", "computedFrom", frozenset()) in edges
    assert ("p.3", "comesFrom", frozenset({"p.0", "p.1", "p.2"})) in edges


def test_cpp_references_range_for_and_methods_in_classes() -> None:
    edges = graph(
        """namespace n { struct A { int m(std::vector<int> &v) {
  int sum = 0;
  for (auto x : v) { sum = sum + x; }
  return sum;
} }; }""",
        "cpp",
    )
    assert ("v.0", "comesFrom", frozenset()) in edges  # the reference parameter
    assert ("x.0", "comesFrom", frozenset({"v.1"})) in edges
    assert ("v.1", "comesFrom", frozenset({"v.0"})) in edges
    assert ("sum.1", "computedFrom", frozenset({"sum.2", "x.1"})) in edges
    assert ("sum.2", "comesFrom", frozenset({"sum.0", "sum.1"})) in edges
    assert ("sum.3", "comesFrom", frozenset({"sum.0", "sum.1"})) in edges


def test_a_function_without_variables_has_no_nodes() -> None:
    flow = extract(b"int answer(void) { return 42; }")
    assert flow.edges == [] and not flow.damaged
    assert flow.tokens[:2] == ["int", "answer"]


def test_a_function_that_does_not_parse_still_gives_a_graph_and_says_so() -> None:
    flow = extract(b"int broken(int a { a = ; if ( }")
    assert flow.damaged
    uses = [e for e in flow.edges if e.name == "a"]
    assert len(uses) == 2 and uses[1].sources == (uses[0].token,)


def test_tokens_and_spans_cover_the_code_without_comments() -> None:
    code = b'int f(int a) { /* note */ return a + "x;y"[0]; }'
    flow = extract(code)
    assert "/* note */" not in flow.tokens
    assert '"x;y"' in flow.tokens  # a string literal is one token
    assert [code[a:b].decode() for a, b in flow.spans] == flow.tokens
