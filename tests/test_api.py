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
    summary = es.run(config, progress=False)  # all done: every stage skipped
    assert summary["selected"] == stacked.summary["selected"]
    assert es.train(config, "codebert", progress=False).already_done

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "copy.c").write_text(FLAWED)
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
