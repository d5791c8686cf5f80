"""Every bad input of the data stage ends in one `error:` line, exit 2, and nothing written."""

from __future__ import annotations

import signal
from pathlib import Path

import h5py
import pytest

from support import assert_user_error, run_cli, until_event, write_config, write_source

GOOD = [(f"int f{i}(void) {{ return {i}; }}", i % 5) for i in range(40)]


def _config(tmp_path: Path, data: dict, **top: object) -> Path:
    return write_config(
        tmp_path / "c.yaml", {"run_dir": str(tmp_path / "run"), "data": data, **top}
    )


def _nothing_written(tmp_path: Path) -> None:
    run = tmp_path / "run"
    leftovers = list(run.rglob("*")) if run.exists() else []
    assert leftovers == [], leftovers


def test_missing_data_file(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"format": "csv", "path": str(tmp_path / "nope.csv")})
    assert_user_error(run_cli("prepare", "--config", str(cfg)), "nope.csv", "not found")
    _nothing_written(tmp_path)


def test_missing_config_file(tmp_path: Path) -> None:
    assert_user_error(run_cli("prepare", "--config", str(tmp_path / "x.yaml")), "x.yaml")


def test_hdf5_without_function_source(tmp_path: Path) -> None:
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("source", data=[b"x"])
    cfg = _config(tmp_path, {"format": "draper-hdf5", "path": str(path)})
    assert_user_error(run_cli("prepare", "--config", str(cfg)), "bad.hdf5", "functionSource")
    _nothing_written(tmp_path)


@pytest.mark.parametrize("fmt,ext", [("csv", "csv"), ("jsonl", "jsonl"), ("parquet", "parquet")])
def test_tabular_without_the_named_column(tmp_path: Path, fmt: str, ext: str) -> None:
    path = write_source(fmt, tmp_path / f"d.{ext}", GOOD)
    cfg = _config(tmp_path, {"format": fmt, "path": str(path), "code_column": "func"})
    assert_user_error(run_cli("prepare", "--config", str(cfg)), f"d.{ext}", "'func'")
    _nothing_written(tmp_path)


@pytest.mark.parametrize("fmt,ext", [("csv", "csv"), ("jsonl", "jsonl"), ("parquet", "parquet")])
def test_unknown_label_names_value_and_row(tmp_path: Path, fmt: str, ext: str) -> None:
    rows = [*GOOD[:6], ("int x(void) { return 0; }", 7), *GOOD[6:]]
    path = write_source(fmt, tmp_path / f"d.{ext}", rows)
    cfg = _config(tmp_path, {"format": fmt, "path": str(path)})
    result = run_cli("prepare", "--config", str(cfg))
    assert_user_error(result, f"d.{ext}", "row 7", "7")
    _nothing_written(tmp_path)


def test_unknown_label_name(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"code": "int f(void) { return 0; }", "label": "CWE-999"}\n')
    cfg = _config(tmp_path, {"format": "jsonl", "path": str(path)})
    assert_user_error(run_cli("prepare", "--config", str(cfg)), "'CWE-999'", "row 1")


def test_empty_split_after_filtering(tmp_path: Path) -> None:
    train = write_source("jsonl", tmp_path / "train.jsonl", GOOD)
    val = write_source("jsonl", tmp_path / "val.jsonl", GOOD[:5])  # all leak from train
    cfg = _config(tmp_path, {"format": "jsonl", "train": str(train), "val": str(val)})
    assert_user_error(run_cli("prepare", "--config", str(cfg)), "val split is empty")
    _nothing_written(tmp_path)


def test_class_without_train_rows(tmp_path: Path) -> None:
    rows = [row for row in GOOD if row[1] != 2]
    path = write_source("csv", tmp_path / "d.csv", rows)
    cfg = _config(tmp_path, {"format": "csv", "path": str(path)})
    assert_user_error(run_cli("prepare", "--config", str(cfg)), "CWE-469", "no train rows")
    _nothing_written(tmp_path)


def test_unknown_config_key_lists_valid_ones(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"format": "synthetic", "n_per_class": 5})
    assert_user_error(
        run_cli("prepare", "--config", str(cfg)),
        "'data.n_per_class'",
        "valid keys here:",
        "synthetic",
    )


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"format": "synthetic"}, training={"batch_size": "big"})
    assert_user_error(run_cli("prepare", "--config", str(cfg)), "training.batch_size")


def test_bad_set_override(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"format": "synthetic"})
    assert_user_error(
        run_cli("prepare", "--config", str(cfg), "--set", "training.epochs"), "KEY=VALUE"
    )
    assert_user_error(
        run_cli("prepare", "--config", str(cfg), "--set", "data.format=xml"), "data.format"
    )


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"format": "csv", "path": str(tmp_path / "nope.csv")})
    result = run_cli("--debug", "prepare", "--config", str(cfg))
    assert result.code == 2 and "Traceback" in result.stderr


def test_usage_errors_are_one_error_line(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"format": "synthetic"})
    assert_user_error(run_cli("train", "--config", str(cfg)), "--model", "enstack train --help")
    assert_user_error(run_cli("nonsense"), "invalid choice")
    assert_user_error(run_cli("ckpt", "clean", str(tmp_path), "--keep", "0"), "--keep")


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`enstack prepare ... | head -0`: the reader is gone before enstack prints."""
    import subprocess
    import sys

    cfg = write_config(
        tmp_path / "c.yaml",
        {"run_dir": str(tmp_path / "run"), "data": {"synthetic": {"n_per_class": 20}}},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "enstack", "prepare", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader leaves at once
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_an_interrupted_training_names_the_command_that_resumes(monkeypatch) -> None:
    import argparse

    from enstack.cli import _resume_command

    argv = [
        "/venv/bin/enstack",
        "train",
        "--config",
        "c 1.yaml",
        "--model",
        "m",
        "--resume",
        "never",
    ]
    monkeypatch.setattr("sys.argv", argv)
    again = _resume_command(argparse.Namespace(resume="never"))
    assert again == "enstack train --config 'c 1.yaml' --model m"  # auto: the newest checkpoint
    monkeypatch.setattr("sys.argv", [*argv[:-1], "/ck/ckpt-g40"])
    again = _resume_command(argparse.Namespace(resume="/ck/ckpt-g40"))
    assert again.endswith("--model m --resume /ck/ckpt-g40")


@pytest.mark.parametrize("delay", [0.0, 0.5, 1.0])
@pytest.mark.slow
def test_sigterm_at_any_moment_exits_130_with_one_line(tmp_path: Path, delay: float) -> None:
    """`timeout` or a scheduler stopping `enstack prepare` once it is at work (it holds its
    stage lock): reading, splitting, writing. Start-up (the interpreter and its imports) is
    not covered: see the README's limits."""
    import os
    import subprocess
    import sys
    import time

    cfg = write_config(
        tmp_path / "c.yaml",
        {"run_dir": str(tmp_path / "run"), "data": {"synthetic": {"n_per_class": 8000}}},
    )
    command = [sys.executable, "-m", "enstack", "prepare", "--config", str(cfg)]
    env = {**os.environ, "ENSTACK_PROGRESS_INTERVAL": "0"}
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lock = tmp_path / "run" / ".lock-prepare"
    until_event(proc, lock.exists)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip(f"prepare finished within {delay} s on this machine")
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("interrupted") and "Traceback" not in err
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    assert not leftovers, leftovers
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "run" / "data" / "manifest.json").is_file()


def test_a_full_disk_during_prepare_is_one_line_and_nothing_half_written(tmp_path: Path) -> None:
    import os
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = (
        os.geteuid() == 0
        and not subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)], capture_output=True
        ).returncode
    )
    if not mounted:
        pytest.skip("needs root to mount a small tmpfs (a real full disk)")
    try:
        cfg = write_config(
            tmp_path / "c.yaml",
            {"run_dir": str(disk / "run"), "data": {"synthetic": {"n_per_class": 2000}}},
        )
        result = run_cli("prepare", "--config", str(cfg))
        assert_user_error(result, "No space left on device", "nothing half-written")
        assert not [p for p in disk.rglob("*") if ".tmp-" in p.name]
        assert not (disk / "run" / "data" / "manifest.json").exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_an_unreachable_hub_fails_fast_and_names_a_command_that_exists(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "run_dir": str(tmp_path / "run"),
            "data": {"synthetic": {"n_per_class": 20}},
            "models": [{"name": "m", "family": "codebert", "pretrained": "acme/no-such-model"}],
        },
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens: refused at once
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache
    }
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run(
        [sys.executable, "-m", "enstack", "train", "--config", str(cfg), "--model", "m"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "cannot be reached; using the local cache only" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "hf download acme/no-such-model" in last
    assert "Traceback" not in result.stderr and "Retrying" not in result.stderr


def test_damaged_stacking_arrays_are_one_line_naming_the_file(tmp_path: Path) -> None:
    """evaluate reads arrays.safetensors only when reports are due: a damaged one ends in one
    error naming it and how to recover, with no reports half-written."""
    from enstack.records import write_record
    from enstack.stack.summary import Candidate, StackSummary

    run_dir = tmp_path / "run"
    stack = run_dir / "stack"
    stack.mkdir(parents=True)
    summary = StackSummary(
        fingerprint="x", mode="cv", features="probs", labels=["a", "b"], benign_label="b",
        select_on="f1", selection="", rows=[], selected=Candidate(models=["m"], meta=None),
        best_single="m", line_ranker=None, long_functions={},
    )  # fmt: skip
    write_record(stack / "ablation.json", summary)  # a summary as the stack stage writes one
    (stack / "arrays.safetensors").write_bytes(b"\xff" * 64)  # not a safetensors header
    cfg = write_config(tmp_path / "c.yaml", {"run_dir": str(run_dir)})
    result = run_cli("evaluate", "--config", str(cfg))
    assert_user_error(result, "arrays.safetensors", "missing or unreadable", "enstack stack")
    assert not (run_dir / "reports").exists()
    assert not any(p.name.startswith(".reports") for p in run_dir.iterdir())


def test_a_mistyped_option_is_named_not_the_required_one() -> None:
    assert_user_error(run_cli("scan", "--bundel", "b", "a.c"), "--bundel", "did you mean --bundle")


def test_a_set_override_is_blamed_for_its_own_key(tmp_path: Path) -> None:
    from enstack.config import load_config
    from enstack.errors import UserError

    cfg = _config(tmp_path, {"format": "synthetic"})
    result = run_cli("train", "--config", str(cfg), "--model", "m", "--set", "training.epoch=2")
    assert_user_error(result, "--set training.epoch=2", "unknown key 'training.epoch'")
    assert str(cfg) not in result.stderr
    # one override given as a string is one override, not a list of its characters
    assert load_config(None, "seed=7").seed == 7
    with pytest.raises(UserError, match="--set seed=x"):
        load_config(None, "seed=x")
