"""The Python API (notebooks, Colab): every stage end to end on the demo config, the same
errors as the CLI, as exceptions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import enstack.api as es
from enstack.cli import main

FLAWED = "void copy(char *src) { char buf[8]; strcpy(buf, src); }\n"


@pytest.mark.slow
def test_every_stage_from_python(tmp_path: Path) -> None:
    config = es.demo_config(
        tmp_path / "run",
        data={"synthetic": {"n_per_class": 20}},
        training={"epochs": 1, "save_steps": 0},
        stacking={"meta": ["vote", "lr"]},
    )
    assert config.data.synthetic.n_per_class == 20 and config.data.labels[-1] == "none"
    assert config.training.batch_size == 16  # merged into the demo's training keys, not replacing

    data = es.prepare(config, progress=False)
    assert (data.data_dir / "train.parquet").is_file() and not data.skipped
    for model in config.models:
        trained = es.train(config, model.name, progress=False)
        assert trained.paths.best.is_dir() and not trained.already_done
    stacked = es.stack(config, progress=False)
    assert (stacked.stack_dir / "bundle" / "manifest.json").is_file()
    reports = es.evaluate(config)
    assert reports.results_json.is_file() and not reports.skipped
    # the selection and the best single model drawn once where they are one model
    sel = stacked.summary["selected"]
    same = sel["meta"] is None and sel["models"] == [stacked.summary["best_single"]]
    plots = {p.name for p in (reports.directory / "plots").iterdir()}
    assert "roc_selected.png" in plots and ("roc_best_single.png" in plots) != same
    summary = es.run(config, progress=False)  # all done: every stage skipped
    assert summary["selected"] == stacked.summary["selected"]
    assert es.train(config, "codebert", progress=False).already_done

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "copy.c").write_text(FLAWED)
    with pytest.warns(UserWarning, match="synthetic"):  # as the CLI says beside the model
        report = es.scan([tmp_path / "src"], config=config, threshold=0.01)
    assert [f.function.name for f in report.findings] == ["copy"]


def test_config_from_a_dict_with_overrides_and_settings(tmp_path: Path) -> None:
    config = es.load_config(
        {"run_dir": str(tmp_path), "training": {"epochs": 4, "batch_size": 8}},
        overrides=["training.epochs=2"],
        training={"learning_rate": 1e-4},
    )
    assert (config.training.epochs, config.training.batch_size) == (2, 8)
    assert config.training.learning_rate == 1e-4


def test_bad_input_raises_the_line_the_cli_prints(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"training": {"epochs": 0}}))
    with pytest.raises(es.UserError) as raised:
        es.load_config(bad)
    assert main(["prepare", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {raised.value}"
    with pytest.raises(es.UserError, match=r"training\.epochs"):
        es.load_config({"training": {"epochs": 0}})
    with pytest.raises(es.UserError, match="a bundle or a config"):
        es.scan(["x.c"])


def test_wrong_types_are_one_clear_error(tmp_path: Path) -> None:
    from enstack.scan.api import Scanner

    nested: dict = {}
    cursor = nested
    for _ in range(5000):
        cursor["a"] = {}
        cursor = cursor["a"]
    cases = {
        "Scanner: model": lambda: Scanner(None),
        "Scanner: model must": lambda: Scanner(5),
        "bundle must be": lambda: es.scan([str(tmp_path)], bundle=5),
        "load_config: give": lambda: es.load_config(123),
        "nested too deeply": lambda: es.load_config(nested),
        "config file not found: x.yaml": lambda: es.train("x.yaml", "m"),
        "train: model must": lambda: es.train(es.load_config(None), 3),
    }
    for fragment, call in cases.items():
        with pytest.raises(es.UserError, match=fragment):
            call()
    with pytest.raises(TypeError, match="bogus"):  # Python's own, at the call
        es.scan([str(tmp_path)], bundle=tmp_path, bogus=1)


def test_a_scan_from_python_warns_labels_and_writes(bundle: Path, tmp_path: Path) -> None:
    import json

    from enstack.scan.api import Scanner

    (tmp_path / "a.c").write_text("int f(int x)\n{\n    return x + 1;\n}\n")
    with pytest.warns(UserWarning, match="synthetic"):
        report = es.scan([str(tmp_path / "a.c")], bundle=bundle, threshold=0.0)
    sarif = json.loads(report.write(tmp_path / "out.sarif").read_text())
    assert sarif["version"] == "2.1.0" and len(sarif["runs"][0]["results"]) == 1
    as_json = json.loads(report.render("json"))
    assert as_json["findings"][0]["function"] == "f"
    with pytest.raises(es.UserError, match="format"):
        report.render("xml")
    scanner = Scanner(bundle)
    probs = scanner.predict_proba(["int f(void) { return 0; }", "int g(int *p) { return *p; }"])
    assert probs.shape == (2, len(probs.labels)) and probs.labels == scanner.card.labels
    rows = probs.as_dicts()
    assert set(rows[0]) == set(probs.labels) and abs(sum(rows[1].values()) - 1) < 1e-5
    with pytest.raises(es.UserError, match="selection must be"):
        scanner.scan([str(tmp_path)], selection="x")
    with pytest.raises(es.UserError, match="baseline must be"):
        scanner.scan([str(tmp_path)], baseline="x")


def test_a_single_model_selection_says_why_and_shows_the_best_ensemble() -> None:
    from enstack.evaluate.tables import plain_table, selection_note

    def row(models, meta, split, f1):
        cells = dict.fromkeys(("accuracy", "precision", "recall", "macro_f1", "auc"), 0.5)
        return {"models": models, "meta": meta, "split": split, **cells, "f1": f1}

    rows = [
        row(["a"], None, "val", 0.80), row(["a"], None, "test", 0.70),
        row(["a", "b"], "lr", "val", 0.81), row(["a", "b"], "lr", "test", 0.74),
        row(["b"], None, "val", 0.60), row(["b"], None, "test", 0.55),
    ]  # fmt: skip
    summary = {"rows": rows, "selected": {"models": ["a"], "meta": None}, "select_on": "f1"}
    note = selection_note(summary)
    assert note and "a alone (val f1 80.00%)" in note and "one standard error" in note
    assert "a + b" in note and "F1 74.00%" in note
    assert "a alone" in plain_table(summary)
    summary["selected"] = {"models": ["a", "b"], "meta": "lr"}
    assert selection_note(summary) is None


def test_messages_go_through_the_enstack_logger(tmp_path, capsys) -> None:
    """A notebook can silence enstack's lines or take them elsewhere, as with any library;
    by default they are the CLI's lines on standard error."""
    import logging

    import enstack.api as es

    config = es.demo_config(tmp_path / "run", data={"synthetic": {"n_per_class": 20}})
    es.prepare(config, progress=False)
    capsys.readouterr()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger("enstack")
    keep = Keep()
    root.addHandler(keep)
    level = root.level
    try:
        root.setLevel(logging.WARNING)  # warnings only: the stages' progress lines go quiet
        (tmp_path / "run" / "data" / "manifest.json").write_text("{damaged")
        # the same warning reaches code as an EnstackWarning, which it can catch or filter
        with pytest.warns(es.EnstackWarning, match="manifest.json: damaged") as issued:
            es.prepare(config, progress=False)
        assert issued[0].filename == __file__  # attributed to the caller, not to logging
    finally:
        root.setLevel(level)
        root.removeHandler(keep)
    err = capsys.readouterr().err
    assert "manifest.json: damaged (stale): preparing the data again" in err
    assert err.startswith("warning: ")
    assert [r.name for r in records] == ["enstack.data.prepare"]
    assert records[0].levelno == logging.WARNING
    assert issubclass(es.EnstackWarning, UserWarning)
    # the CLI says it once, as a line: no Python warning is issued there
    (tmp_path / "run" / "data" / "manifest.json").write_text("{damaged")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["prepare", "--config", str(tmp_path / "c.yaml")]) == 0
    assert not [w for w in caught if issubclass(w.category, es.EnstackWarning)]
    assert "warning: " in capsys.readouterr().err
