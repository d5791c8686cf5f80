"""The detection task: a benign class kept or dropped as configured, pairs carried through and
kept together, and each detection and pair metric against a hand-computed case."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from enstack.config import load_config
from enstack.data.prepare import prepare
from enstack.data.selection import SplitRules, StagedSource, plan_splits
from enstack.errors import UserError
from enstack.evaluate.tables import csv_text, markdown
from enstack.metrics import detection_metrics, pair_outcomes, vd_s
from enstack.stack.ablation import Scorer

from support import LABELS, write_config, write_source

DETECTION_LABELS = [*LABELS, "none"]


def _probs(p_vulnerable: list[float], classes: list[int]) -> np.ndarray:
    """Six-class probabilities: P(benign) = 1 - p, the rest on the given flaw class."""
    out = np.zeros((len(p_vulnerable), 6))
    for i, (p, cls) in enumerate(zip(p_vulnerable, classes, strict=True)):
        out[i, cls] = p
        out[i, 5] = 1 - p
    return out


# --- metrics against hand-computed cases ------------------------------------------------------


def test_detection_metrics_by_hand() -> None:
    # truth: 4 vulnerable (class 0/1), 4 benign (5); flagged at p >= 0.5
    y = np.array([0, 1, 0, 1, 5, 5, 5, 5])
    p = [0.9, 0.8, 0.4, 0.6, 0.7, 0.2, 0.1, 0.3]
    m = detection_metrics(y, _probs(p, [0, 1, 0, 1, 0, 0, 0, 0]), benign_id=5)
    # flagged: rows 0, 1, 3 (tp) and 4 (fp); row 2 is a false negative
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["fpr"] == pytest.approx(1 / 4)
    # ROC-AUC: of the 16 (vulnerable, benign) pairs, the vulnerable one scores higher in 14
    # (0.4 loses to 0.7, 0.6 loses to 0.7)
    assert m["roc_auc"] == pytest.approx(14 / 16)
    # average precision: ranked 0.9 v, 0.8 v, 0.7 b, 0.6 v, 0.4 v -> (1 + 1 + 3/4 + 4/5) / 4
    assert m["pr_auc"] == pytest.approx((1 + 1 + 3 / 4 + 4 / 5) / 4)
    # VD-S: no false positive allowed (1/4 > 0.5%): the best threshold above 0.7 catches 2 of 4
    assert m["vd_s"] == pytest.approx(0.5)


def test_vd_s_uses_the_lowest_miss_rate_within_the_false_positive_budget() -> None:
    # 1000 benign: 5 false positives are allowed (0.5%), the 6th is not
    benign = np.linspace(0.0, 0.5, 1000)
    benign[-6:] = [0.91, 0.92, 0.93, 0.94, 0.95, 0.99]
    vulnerable = np.array([0.96, 0.97, 0.98, 0.6, 0.7])
    truth = np.r_[np.zeros(1000, bool), np.ones(5, bool)]
    scores = np.r_[benign, vulnerable]
    # a threshold of 0.92 has 5 false positives and finds 3 of 5 vulnerable (0.96-0.98);
    # finding a 4th (0.7) would take a threshold below 0.91: 6 false positives, over budget
    assert vd_s(truth, scores) == pytest.approx(2 / 5)


def test_pair_outcomes_by_hand() -> None:
    # pairs A-E: (flaw, fix); F: one flaw, two fixes; G: a flaw alone (not a pair)
    pairs = np.array(["A", "A", "B", "B", "C", "C", "D", "D", "F", "F", "F", "G"], object)
    y = np.array([0, 5, 1, 5, 0, 5, 0, 5, 2, 5, 5, 3])
    p = [0.9, 0.1, 0.9, 0.8, 0.1, 0.2, 0.3, 0.7, 0.9, 0.1, 0.6, 0.9]
    out = pair_outcomes(y, _probs(p, [int(c) % 5 for c in y]), pairs, benign_id=5)
    assert out["n"] == 5  # A B C D F
    assert out["pair_correct"] == pytest.approx(1 / 5)  # A
    assert out["pair_vulnerable"] == pytest.approx(1 / 5)  # B
    assert out["pair_benign"] == pytest.approx(1 / 5)  # C
    assert out["pair_reversed"] == pytest.approx(1 / 5)  # D; F is none of the four
    assert out["pair_gain"] == pytest.approx(0.0)  # as many right as reversed: chance


def test_rows_carry_detection_and_pairs_only_with_a_benign_class() -> None:
    y = np.array([0, 5, 1, 5])
    probs = _probs([0.9, 0.1, 0.2, 0.6], [0, 0, 1, 1])
    pairs = np.array(["a", "a", "b", "b"], object)
    six = Scorer(6, 5, {"val": pairs}).row(("m",), None, "val", y, probs)
    assert six["detection"]["f1"] == pytest.approx(0.5)
    assert six["pairs"] == {
        "n": 2,
        "pair_correct": 0.5,
        "pair_vulnerable": 0.0,
        "pair_benign": 0.0,
        "pair_reversed": 0.5,
        "pair_gain": 0.0,
    }
    five = Scorer(6, None, {}).row(("m",), None, "val", y, probs)
    assert "detection" not in five and "pairs" not in five


def test_tables_show_detection_when_rows_have_it() -> None:
    y = np.array([0, 5, 1, 5])
    probs = _probs([0.9, 0.1, 0.2, 0.6], [0, 0, 1, 1])
    scorer = Scorer(6, 5, {"test": np.array(["a", "a", "b", "b"], object)})
    rows = [scorer.row(("m",), None, "test", y, probs), scorer.row(("m",), "lr", "test", y, probs)]
    summary = {
        "rows": rows,
        "selected": {"models": ["m"], "meta": "lr"},
        "selection": "x",
        "features": "probs",
    }
    text = markdown(summary)
    assert "## Detection: vulnerable vs benign" in text and "VD-S" in text and "P-C" in text
    lines = list(csv.reader(csv_text(rows).splitlines()))
    header = lines[0]
    assert "detection_vd_s" in header and "pairs_pair_correct" in header
    assert lines[1][header.index("pairs_n")] == "2"
    assert float(lines[1][header.index("detection_f1")]) == pytest.approx(0.5)


# --- data: benign rows kept or dropped, pairs carried and kept together ------------------------


ROWS = [(f"int f{i}(int x) {{ return x + {i}; }}", i % 5) for i in range(50)] + [
    (f"int g{i}(int x) {{ return x - {i}; }}", None) for i in range(30)
]


def _draper_config(tmp_path: Path, labels: list[str]) -> Path:
    source = write_source("draper-hdf5", tmp_path / "src.hdf5", ROWS)
    return write_config(
        tmp_path / "c.yaml",
        {
            "run_dir": str(tmp_path / "run"),
            "data": {"format": "draper-hdf5", "path": str(source), "labels": labels},
        },
    )


@pytest.mark.parametrize("benign", [False, True])
def test_draper_unflagged_rows_become_benign_only_when_asked(tmp_path: Path, benign: bool) -> None:
    labels = DETECTION_LABELS if benign else LABELS
    manifest = prepare(load_config(_draper_config(tmp_path, labels)), progress=False).manifest
    total = sum(manifest["splits"][s]["total"] for s in ("train", "val", "test"))
    if benign:
        assert total == 80
        assert sum(manifest["table"]["none"].values()) == 30
        assert manifest["notes"]["unflagged_kept_as_benign"] == 30
        assert manifest["dropped"]["no_label"] == 0
        codes = pq.read_table(tmp_path / "run" / "data" / "train.parquet").column("code")
        assert any(c.as_py().startswith("int g") for c in codes)  # decoded, not left empty
    else:
        assert total == 50 and manifest["dropped"]["no_label"] == 30
        assert manifest["benign_label"] is None


def _paired_rows(n_pairs: int) -> list[dict]:
    rows = []
    for i in range(n_pairs):
        rows.append(
            {
                "id": f"b{i}",
                "code": f"int f{i}(char *p) {{ return p[{i}]; }}",
                "label": i % 5,
                "pair": f"t{i}",
            }
        )
        for k in range(1 + i % 2):  # one or two fixes
            fix = f"int f{i}(char *p) {{ if (!p) return {k}; return p[{i}]; }}"
            rows.append({"id": f"g{i}.{k}", "code": fix, "label": "none", "pair": f"t{i}"})
    return rows


def test_pairs_are_carried_and_never_split_apart(tmp_path: Path) -> None:
    rows = _paired_rows(60)
    source = tmp_path / "all.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "run_dir": str(tmp_path / "run"),
            "data": {
                "format": "jsonl",
                "path": str(source),
                "labels": DETECTION_LABELS,
                "pair_column": "pair",
            },
        },
    )
    manifest = prepare(load_config(cfg), progress=False).manifest
    home: dict[str, str] = {}
    for split in ("train", "val", "test"):
        table = pq.read_table(tmp_path / "run" / "data" / f"{split}.parquet").to_pylist()
        assert manifest["splits"][split]["pairs"] == len({r["pair"] for r in table})
        for row in table:
            assert home.setdefault(row["pair"], split) == split, row  # one split per pair
    assert len(home) == 60
    # each row kept its own pair id
    by_id = {r["id"]: r["pair"] for r in rows}
    for split in ("train", "val", "test"):
        for row in pq.read_table(tmp_path / "run" / "data" / f"{split}.parquet").to_pylist():
            assert by_id[row["id"]] == row["pair"]


def test_halving_val_keeps_pairs_whole() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), 3)
    labels = np.tile([0, 5, 5], 100).astype(np.int16)
    labels[::3] = rng.integers(0, 5, 100)
    val = StagedSource(labels, np.arange(300, dtype=np.uint64) + 10**6, pairs=groups)
    train = StagedSource(np.array([0, 5], np.int16), np.array([1, 2], np.uint64))
    plan = plan_splits(
        {"train": train, "val": val}, SplitRules(DETECTION_LABELS, "none", seed=3, benign_id=5)
    )
    val_groups = set(groups[plan.parts["val"][0][1]])
    test_groups = set(groups[plan.parts["test"][0][1]])
    assert not val_groups & test_groups
    assert len(val_groups) + len(test_groups) == 100
    assert abs(len(val_groups) - len(test_groups)) <= 5  # halves, stratified per class


def test_benign_ratio_caps_benign_train_rows() -> None:
    labels = np.array([0] * 30 + [1] * 20 + [5] * 400, np.int16)
    source = StagedSource(labels, np.arange(len(labels), dtype=np.uint64))
    rules = SplitRules(DETECTION_LABELS, "none", seed=0, benign_id=5, benign_ratio=1.5)
    plan = plan_splits({"train": source, "val": source, "test": source}, rules)
    kept = labels[plan.parts["train"][0][1]]
    vulnerable = int((kept != 5).sum())
    assert vulnerable == 50 and int((kept == 5).sum()) == 75  # 1.5 x 50
    # val and test are measured as they come
    assert plan.downsampled["val"] == 0 and plan.downsampled["test"] == 0


def test_benign_settings_are_checked_in_the_config(tmp_path: Path) -> None:
    from enstack.errors import UserError

    bad = [
        ({"data": {"benign_ratio": 2.0}}, "benign_ratio needs the benign class"),
        ({"stacking": {"select_on": "detection_f1"}}, "needs the benign class"),
        (
            {"data": {"labels": DETECTION_LABELS}, "stacking": {"select_on": "pair_correct"}},
            None,  # synthetic data with a benign class has pairs: valid
        ),
        (
            {
                "data": {"format": "jsonl", "path": "x.jsonl", "labels": DETECTION_LABELS},
                "stacking": {"select_on": "pair_correct"},
            },
            "pair_correct needs data.pair_column",
        ),
    ]
    for i, (raw, message) in enumerate(bad):
        path = write_config(tmp_path / f"c{i}.yaml", raw)
        if message is None:
            load_config(path)
            continue
        with pytest.raises(UserError, match=message):
            load_config(path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_groups_are_carried_and_each_lands_in_one_split(tmp_path: Path, fmt: str) -> None:
    rows = _paired_rows(120)
    for row in rows:  # 24 families of 5 pairs, a pair inside one family; labels by name
        row["family"] = f"fam{int(row['pair'][1:]) // 5}"
        if isinstance(row["label"], int):
            row["label"] = DETECTION_LABELS[row["label"]]
    source = tmp_path / f"all.{fmt}"
    table = pa.Table.from_pylist(rows)
    if fmt == "jsonl":
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        pa_csv.write_csv(table, source)
    else:
        pq.write_table(table, source)
    data = {
        "format": fmt,
        "path": str(source),
        "labels": DETECTION_LABELS,
        "pair_column": "pair",
        "group_column": "family",
    }
    cfg = write_config(tmp_path / "c.yaml", {"run_dir": str(tmp_path / "run"), "data": data})
    manifest = prepare(load_config(cfg), progress=False).manifest
    home: dict[str, str] = {}
    for split in ("train", "val", "test"):
        kept = pq.read_table(tmp_path / "run" / "data" / f"{split}.parquet").to_pylist()
        assert manifest["splits"][split]["groups"] == len({r["group"] for r in kept}) > 0
        for row in kept:
            assert home.setdefault(row["group"], split) == split, row  # one split per group
            assert row["group"] == f"fam{int(row['pair'][1:]) // 5}"  # carried with its row
    assert len(home) == 24
    assert manifest["splits"]["val"]["groups_also_in_train"] == 0

    cfg = write_config(
        tmp_path / "d.yaml",
        {"run_dir": str(tmp_path / "run2"), "data": {**data, "group_column": "project"}},
    )
    with pytest.raises(UserError, match=r"'project'.*data\.group_column"):
        prepare(load_config(cfg), progress=False)


def test_a_class_missing_from_a_split_is_left_out_of_macro_f1_and_warned() -> None:
    from enstack.data.prepare import split_warnings
    from enstack.metrics import classification_metrics

    y_true = np.array([0, 0, 1, 1, 3, 3])  # no rows of class 2 (or 4)
    y_pred = np.array([0, 0, 1, 1, 3, 0])
    macro = classification_metrics(y_true, y_pred, 5)["macro_f1"]
    # class 0: precision 2/3, recall 1, F1 0.8; class 1: F1 1; class 3: precision 1, recall 1/2
    per_class = [0.8, 1.0, 2 / 3]
    assert macro == pytest.approx(np.mean(per_class))  # three classes, not five
    manifest = {
        "labels": ["a", "b", "c"],
        "table": {
            "a": {"val": 3, "test": 2},
            "b": {"val": 0, "test": 1},
            "c": {"val": 0, "test": 0},
        },
    }
    warnings = split_warnings(manifest)
    assert (
        warnings[0].startswith("no val rows of b, c")
        and "macro averages leave them out" in warnings[0]
    )
    assert warnings[1].startswith("no test rows of c")
