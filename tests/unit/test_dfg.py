"""The C/C++ data-flow graph (`enstack.csyntax.dataflow`): edges checked by hand on small functions.

A node is named by its variable and which occurrence of that name it is among the function's
code tokens, from 0: in `int f(int n) { return n; }`, `n.0` is the parameter and `n.1` the use.
"""

from __future__ import annotations

import pytest

from enstack.csyntax.dataflow import extract


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


# --- the graph as model input -------------------------------------------------------------

FUNCTION = "int f(int a) { int b = a; return b; }"


def _tokenizer():
    from enstack.config import DataConfig, ModelConfig
    from enstack.data.synthetic import generate
    from enstack.models.loading import train_scratch_tokenizer

    codes = [c for chunk in generate(DataConfig(), seed=1) for c in chunk.codes][:200]
    model = ModelConfig(name="m", family="graphcodebert", scratch={"vocab_size": 400})
    return train_scratch_tokenizer(model, [*codes, FUNCTION])


def _encoded(codes: list[str], dfg_length: int = 64):
    import torch

    from enstack.encode import EncodedSplit, pad_id, tokenize

    tokenizer = _tokenizer()
    tokens, offsets, graph = tokenize(codes, tokenizer, "graphcodebert", 128, dfg_length=dfg_length)
    labels = torch.zeros(len(codes), dtype=torch.long)
    return EncodedSplit(tokens, offsets, labels, pad_id(tokenizer), graph), tokenizer


def test_graph_input_positions_and_attention_follow_graphcodebert() -> None:
    import numpy as np

    split, tokenizer = _encoded([FUNCTION, "int g(void) { return 1; }"])
    (ids, mask, positions), _ = split.collate(np.array([0, 1]))
    graph = split.graph
    n_code = int(split.offsets[1] - split.offsets[0])
    spans = graph["node_spans"][: int(graph["node_offsets"][1])].tolist()
    edges = [tuple(e) for e in graph["edges"][: int(graph["edge_offsets"][1])].tolist()]
    # a, b, a, b: the parameter, the declared b, the use of a, the returned b
    names = [tokenizer.decode(ids[0, a:b]).strip() for a, b in spans]
    assert names == ["a", "b", "a", "b"]
    assert sorted(edges) == [(1, 2), (2, 0), (3, 1)]  # b <- a(use), a(use) <- a, b(ret) <- b
    real = n_code + len(spans)
    assert positions[0, :n_code].tolist() == list(range(2, n_code + 2))
    assert positions[0, n_code:real].tolist() == [0] * 4
    assert (positions[0, real:] == 1).all()
    m = mask[0]
    assert m[:n_code, :n_code].all()  # code with code
    assert m[0, :real].all() and m[n_code - 1, :real].all()  # <s> and </s> with everything
    assert not m[:, real:].any() and not m[real:].any()  # padding: nobody
    for k, (a, b) in enumerate(spans):
        node = n_code + k
        assert m[node, a:b].all() and m[a:b, node].all()  # a node and its subwords
        code_seen = set(np.flatnonzero(m[node, :n_code].numpy()).tolist())
        assert code_seen == set(range(a, b))  # of the code, only its own subwords
        node_seen = set((np.flatnonzero(m[node, n_code:real].numpy())).tolist())
        assert node_seen == {j for i, j in edges if i == k}  # along its edges only
    # a function without variables: no nodes, the plain code block
    n_code_g = int(split.offsets[2] - split.offsets[1])
    assert int(graph["node_offsets"][2] - graph["node_offsets"][1]) == 0
    assert mask[1, :n_code_g, :n_code_g].all() and not mask[1, n_code_g:].any()


def test_graph_input_keeps_at_most_dfg_length_nodes_and_survives_broken_code() -> None:
    split, _ = _encoded([FUNCTION, "int broken(int a { a = ; if ( }"], dfg_length=2)
    sizes = (split.graph["node_offsets"][1:] - split.graph["node_offsets"][:-1]).tolist()
    assert sizes[0] == 2 and 1 <= sizes[1] <= 2
    edges = split.graph["edges"].tolist()
    assert all(0 <= i < 2 and 0 <= j < 2 for i, j in edges)


@pytest.mark.slow
def test_a_graph_model_trains_exports_and_loads_back_to_the_same_answers(tmp_path) -> None:
    """GraphCodeBERT with its graph (on by default for the family): trained, exported under
    a model type transformers refuses, loaded by enstack with the graph rebuilt: the val
    loss and F1 recomputed from the export are the ones training logged."""
    import json

    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    from enstack.cli import main
    from enstack.config import load_config
    from enstack.data.record import read_prepared
    from enstack.models.loading import load_classifier
    from enstack.stack.features import encode_as_trained
    from enstack.train.validation import evaluate

    from support import tiny_config

    cfg = tiny_config(tmp_path / "c.yaml", tmp_path / "run", family="graphcodebert", epochs=1)
    assert main(["train", "--config", str(cfg), "--model", "m"]) == 0
    config = load_config(cfg)
    export = config.layout.model("m").best
    saved = json.loads((export / "config.json").read_text())
    assert saved["enstack"]["dfg_length"] == 64 and saved["model_type"] == "enstack-graph-input"
    with pytest.raises(ValueError):
        AutoModelForSequenceClassification.from_pretrained(export)

    model, tokenizer = load_classifier(export)
    splits = encode_as_trained(config, export, model, tokenizer, read_prepared(config.layout.data))
    nodes = splits["val"].graph["node_offsets"]
    assert (nodes[1:] > nodes[:-1]).all()  # every synthetic function has variables

    again = evaluate(model, splits["val"], 5, 16, torch.device("cpu"), "off")
    logged = json.loads((export / "enstack.json").read_text())["val"]
    assert np.isclose(again["loss"], logged["loss"], atol=1e-5)
    assert again["f1"] == pytest.approx(logged["f1"], abs=1e-9)

    # the scanner builds the same graph from raw code and gives the same probabilities
    import pyarrow.parquet as pq

    from enstack.infer import predict
    from enstack.scan.model import load_scan_model

    codes = pq.read_table(config.layout.split("val"), columns=["code"]).column("code")
    ours = predict(model, splits["val"], 16, torch.device("cpu"), "off")["probs"]
    # as trained: each function's first max_length tokens (scans read long ones in windows)
    model = load_scan_model(export, device="cpu", long_functions="truncate")
    scanned = model.predict_proba(codes.to_pylist())[0]
    np.testing.assert_allclose(scanned, ours, atol=1e-5)
    # its lines are explained without the graph, and a scan says so; a learned ranker's are not
    assert model.card.graph_members == ("m",)
    assert "without the graph" in model.card.localisation_note("attention")
    assert model.card.localisation_note("learned") is None


def test_pathological_nesting_is_bounded() -> None:
    """30 nested loops (2^30 passes if every level were walked twice) and 10,000 nested
    parentheses (past Python's recursion limit): seconds, a graph, and the cut said."""
    import time

    from enstack.csyntax.dataflow import parse_function

    loops = "int f(int n) {\n int a = 0;\n"
    loops += "".join(f" for (int i{k} = 0; i{k} < n; i{k}++) {{\n" for k in range(30))
    loops += "  a = a + 1;\n" + " }\n" * 30 + " return a;\n}\n"
    parens = "int g(int x) { return " + "(" * 10_000 + "x" + ")" * 10_000 + "; }"
    started = time.perf_counter()
    deep = parse_function(loops)
    wide = parse_function(parens)
    assert time.perf_counter() - started < 20
    uses = [e for e in deep.edges if e.name == "a" and e.relation == "comesFrom"]
    assert uses, "the loop body's read of a still has its edges"
    assert wide.truncated and not deep.truncated
