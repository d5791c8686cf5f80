"""Config: defaults, validation messages, dotted overrides, and the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from enstack.config import Config, load_config, load_config_dict
from enstack.errors import UserError

from support import REPO, write_config


def test_every_key_has_a_default_matching_table_two() -> None:
    config = Config()
    assert config.training.batch_size == 16 and config.training.epochs == 10
    assert config.training.learning_rate == 2e-5 and config.training.max_length == 512
    assert [m.pretrained for m in config.models] == [
        "microsoft/codebert-base",
        "microsoft/graphcodebert-base",
        "microsoft/unixcoder-base",
    ]
    assert config.stacking.meta == ["lr", "svm", "rf", "xgboost"]


def test_dotted_overrides_reach_nested_keys_and_lists(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", {"data": {"format": "synthetic"}})
    config = load_config(
        cfg,
        [
            "training.epochs=3",
            "data.downsample={max_per_class: 500}",
            "models.1.pretrained=/models/gcb",
            "stacking.meta=[lr, svm]",
            "seed=7",
        ],
    )
    assert config.training.epochs == 3
    assert config.data.downsample.max_per_class == 500
    assert config.models[1].pretrained == "/models/gcb"
    assert config.stacking.meta == ["lr", "svm"] and config.seed == 7


def test_relative_paths_resolve_against_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(
        tmp_path / "c.yaml", {"run_dir": "runs/x", "data": {"format": "csv", "path": "d.csv"}}
    )
    config = load_config(cfg)
    assert config.run_dir == tmp_path / "runs" / "x"
    assert config.data.path == tmp_path / "d.csv"


@pytest.mark.parametrize(
    "data,fragment",
    [
        ({"format": "csv"}, "needs data.path or data.train"),
        ({"format": "csv", "path": "a", "train": "b"}, "either data.path"),
        ({"format": "csv", "train": "a", "test": "b"}, "without data.val"),
        ({"labels": ["only-one"]}, "data.labels"),
        ({"downsample": {"max_per_class": 0}}, "max_per_class"),
    ],
)
def test_inconsistent_data_sections_are_named(tmp_path: Path, data: dict, fragment: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", {"data": data})
    with pytest.raises(UserError, match=fragment):
        load_config(cfg)


def test_model_needs_exactly_one_weight_source(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", {"models": [{"name": "m"}]})
    with pytest.raises(UserError, match="exactly one of pretrained or scratch"):
        load_config(cfg)


@pytest.mark.parametrize(
    "name",
    [
        "demo.yaml",
        "paper.yaml",
        "custom-csv.yaml",
        "juliet5.yaml",
        "juliet6.yaml",
        "juliet6-scan.yaml",
        "pairs-example.yaml",
        "realvul.yaml",
    ],
)
def test_shipped_configs_validate(name: str) -> None:
    load_config(REPO / "configs" / name)


def test_shipped_configs_are_found_by_name_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    """A notebook's working directory has no `configs/`: the shipped ones come with the
    package, by name; a file of that name in the working directory still wins."""
    from enstack.api import load_config as api_load_config
    from enstack.config import shipped_names

    monkeypatch.chdir(tmp_path)
    assert {"demo", "juliet6", "paper", "custom-csv"} <= set(shipped_names())
    assert load_config(Path("juliet6")).run_dir == tmp_path / "runs" / "juliet6"
    assert api_load_config("paper.yaml").data.format == "draper-hdf5"
    # the checkout's configs/ is the package's: one copy of each
    assert (REPO / "configs").resolve() == (REPO / "src" / "enstack" / "configs").resolve()
    (tmp_path / "juliet6").write_text("run_dir: mine\n")
    assert load_config(Path("juliet6")).run_dir == tmp_path / "mine"
    with pytest.raises(UserError, match="shipped config's name: custom-csv, demo"):
        load_config(Path("juliet7"))


def test_the_custom_csv_template_prepares_a_users_csv_as_shipped(tmp_path: Path) -> None:
    """The README's defaults (`code`, `label`), small models that train on a CPU."""
    from support import run_cli, write_source

    rows = [(f"int f{i}(char *p) {{ return p[{i}]; }}", i % 5) for i in range(100)]
    (tmp_path / "data").mkdir()
    write_source("csv", tmp_path / "data" / "my_functions.csv", rows, label_names=True)
    template = REPO / "configs" / "custom-csv.yaml"
    result = run_cli("prepare", "--config", str(template), cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert (tmp_path / "runs" / "my-dataset" / "data" / "manifest.json").is_file()
    config = yaml.safe_load(template.read_text())
    assert all("scratch" in m and "pretrained" not in m for m in config["models"])


def test_every_training_setting_has_a_trajectory_decision() -> None:
    """A setting added to the schema without a decision in enstack.train.trajectory would
    either change every old checkpoint's fingerprint (all refused) or be silently left out of
    it (a changed value resumed as if it were the same): decide, then this passes."""
    from enstack.config import ModelConfig, ScratchConfig, TrainingConfig
    from enstack.train import trajectory

    for schema, decided in (
        (TrainingConfig, trajectory.TRAINING),
        (ModelConfig, trajectory.MODEL),
        (ScratchConfig, trajectory.SCRATCH),
    ):
        assert set(schema.model_fields) == set(decided), (
            f"{schema.__name__}: decide in enstack/train/trajectory.py whether "
            f"{sorted(set(schema.model_fields) ^ set(decided))} change the trajectory"
        )


def test_off_trajectory_settings_keep_the_fingerprint_and_the_rest_change_it() -> None:
    from enstack.train.trajectory import OFF_TRAJECTORY_KEYS, TRAINING, AddedLater, run_fingerprint

    config = load_config_dict({"data": {"format": "synthetic"}}, "t")
    model = config.models[0]
    base = run_fingerprint(config, model)
    changed = {"save_steps": 7, "keep_checkpoints": 5, "staging_dir": "/tmp/x", "log_steps": 3,
               "device": "cpu", "num_threads": 1}  # fmt: skip
    assert set(changed) == set(OFF_TRAJECTORY_KEYS)
    for key, value in changed.items():
        other = load_config_dict({"data": {"format": "synthetic"}, "training": {key: value}}, "t")
        assert run_fingerprint(other, other.models[0]) == base, key
    changes = {"epochs": 3, "max_length": 64, "deterministic": True, "long_functions": "truncate"}
    for key, value in changes.items():
        assert TRAINING[key] != "off"
        other = load_config_dict({"data": {"format": "synthetic"}, "training": {key: value}}, "t")
        assert run_fingerprint(other, other.models[0]) != base, key
    assert TRAINING["deterministic"] == AddedLater(False)  # old runs trained without it


def test_a_run_from_before_windows_goes_on_truncated_unless_the_user_says_otherwise() -> None:
    """Checkpoints written before training read windows recorded no `long_functions`: one
    resumes (or is found finished) truncated under the new default, while a new run trains
    on windows, and a user who sets the key gets what they set (a changed setting)."""
    from enstack.train.trajectory import as_checkpoint_trained, run_fingerprint, trajectory_settings

    old = load_config_dict({"data": {"format": "synthetic"}}, "t")
    assert old.training.long_functions == "windows"  # the default for new runs
    truncated = load_config_dict(
        {"data": {"format": "synthetic"}, "training": {"long_functions": "truncate"}}, "t"
    )
    model = old.models[0]
    # what an old checkpoint recorded: the settings of a truncated run, without the key
    recorded = {"config": trajectory_settings(truncated, model)}
    assert "long_functions" not in recorded["config"]["training"]
    settled = as_checkpoint_trained(old, recorded)
    assert settled.training.long_functions == "truncate"
    assert run_fingerprint(settled, model) == run_fingerprint(truncated, model)
    # a new run's checkpoint recorded windows: nothing to settle
    fresh = {"config": trajectory_settings(old, model)}
    assert as_checkpoint_trained(old, fresh).training.long_functions == "windows"
    # set by the user: theirs, even against an old checkpoint
    chosen = load_config_dict(
        {"data": {"format": "synthetic"}, "training": {"long_functions": "windows"}}, "t"
    )
    assert as_checkpoint_trained(chosen, recorded).training.long_functions == "windows"
    assert as_checkpoint_trained(old, None) is old
