"""Hostile and broken input, as an attacker or a tired user would write it.

Each case builds its input in a fresh directory and runs the CLI's entry point in-process
(the fast tier: no real process is needed to reach an error path). Every case must end in
exit code 2 and exactly one `error:` line that names the culprit, no traceback, and no file
created or changed anywhere in the directory (the culprit excepted, where a command reads it).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from enstack.cli import main

from support import TINY_MODEL, write_source

GOOD_ROWS = [(f"int f{i}(int a) {{ return a + {i}; }}", i % 5) for i in range(40)]
TINY = {"name": "m", "family": "codebert", "scratch": TINY_MODEL}


@dataclass
class Case:
    id: str
    build: Callable[[Path], list[str]]  # writes the input under the directory, returns argv
    culprit: tuple[str, ...]  # fragments the error line must hold
    may_create: tuple[str, ...] = ()  # paths (relative) a command may write before it fails


def _after(_done: object, value):
    """`value`, once the side effect in the first argument has happened (for lambdas)."""
    return value


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file (size, mtime) and directory (present) under `root`."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        if p.is_file()
        else (-1, 0)
        for p in root.rglob("*")
    }


def _config(root: Path, body: dict | str, *extra: str, verb: str = "prepare") -> list[str]:
    path = root / "c.yaml"
    if isinstance(body, str):
        path.write_text(body)
    else:
        path.write_text(yaml.safe_dump({"run_dir": str(root / "run"), **body}, sort_keys=False))
    return [verb, "--config", str(path), *extra]


def config_case(id: str, body: dict | str, *culprit: str) -> Case:
    return Case(id, lambda root: _config(root, body), culprit)


# --- config --------------------------------------------------------------------------------

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9)
)

CONFIG_CASES = [
    config_case("model-name-dot", {"models": [{**TINY, "name": "."}]}, "models.0.name"),
    config_case("model-name-dotdot", {"models": [{**TINY, "name": ".."}]}, "models.0.name"),
    config_case("model-name-slash", {"models": [{**TINY, "name": "a/b"}]}, "models.0.name"),
    config_case("model-name-hidden", {"models": [{**TINY, "name": ".m"}]}, "models.0.name"),
    config_case("model-name-empty", {"models": [{**TINY, "name": ""}]}, "models.0.name"),
    config_case("two-models-one-name", {"models": [TINY, TINY]}, "models", "share a name"),
    config_case("no-models", {"models": []}, "models"),
    config_case("seed-negative", {"seed": -1}, "seed"),
    config_case("seed-too-big", {"seed": 2**40}, "seed"),
    config_case("seed-text", {"seed": "abc"}, "seed"),
    config_case("lr-zero", {"training": {"learning_rate": 0}}, "training.learning_rate"),
    config_case("lr-above-one", {"training": {"learning_rate": 3}}, "training.learning_rate"),
    config_case("lr-nan", "training: {learning_rate: .nan}\n", "training.learning_rate"),
    config_case("lr-inf", "training: {learning_rate: .inf}\n", "training.learning_rate"),
    config_case("grad-norm-inf", "training: {max_grad_norm: .inf}\n", "max_grad_norm"),
    config_case("epochs-zero", {"training": {"epochs": 0}}, "training.epochs"),
    config_case("batch-negative", {"training": {"batch_size": -4}}, "training.batch_size"),
    config_case("max-length-tiny", {"training": {"max_length": 4}}, "training.max_length"),
    config_case("weight-decay-negative", {"training": {"weight_decay": -1}}, "weight_decay"),
    config_case("amp-unknown", {"training": {"amp": "fp8"}}, "training.amp"),
    config_case("meta-empty", {"stacking": {"meta": []}}, "stacking.meta"),
    config_case("meta-unknown", {"stacking": {"meta": ["knn"]}}, "stacking.meta"),
    config_case(
        "meta-param-unknown",
        {"stacking": {"meta_params": {"rf": {"n_estimatorz": 5}}}},
        "stacking.meta_params",
        "n_estimatorz",
    ),
    config_case(
        "meta-param-bad-value",
        {"stacking": {"meta_params": {"rf": {"n_estimators": -5}}}},
        "stacking.meta_params",
        "n_estimators",
    ),
    config_case(
        "meta-param-unknown-xgboost",
        {"stacking": {"meta_params": {"xgboost": {"max_dpeth": 3}}}},
        "xgboost",
        "max_dpeth",
    ),
    config_case("cv-folds-one", {"stacking": {"cv_folds": 1}}, "stacking.cv_folds"),
    config_case("unknown-top-key", {"modelz": []}, "modelz"),
    config_case("unknown-nested-key", {"training": {"epoch": 3}}, "training.epoch"),
    config_case(
        "heads-do-not-divide",
        {"models": [{**TINY, "scratch": {"hidden": 30, "heads": 4}}]},
        "hidden",
    ),
    config_case(
        "pretrained-and-scratch", {"models": [{**TINY, "pretrained": "/m"}]}, "exactly one"
    ),
    config_case("csv-without-path", {"data": {"format": "csv"}}, "data"),
    config_case(
        "test-without-val", {"data": {"format": "csv", "train": "a", "test": "b"}}, "data.test"
    ),
    config_case("labels-duplicate", {"data": {"labels": ["a", "a"]}}, "data.labels"),
    config_case("alias-bomb", BILLION_LAUGHS, "c.yaml", "expands"),
    config_case("python-tag", "!!python/object/apply:os.system ['touch pwned']\n", "c.yaml"),
    config_case("top-level-list", "- a\n- b\n", "c.yaml", "mapping"),
    config_case("not-yaml", "training: {epochs: [1\n", "c.yaml", "YAML"),
    Case(
        "not-utf8",
        lambda root: _after(
            (root / "c.yaml").write_bytes(b"seed: 1\n# \xff\xfe caf\xe9\n"),
            ["prepare", "--config", str(root / "c.yaml")],
        ),
        ("c.yaml", "UTF-8"),
    ),
    Case(
        "config-huge",
        lambda root: _after(
            (root / "c.yaml").write_text("#" * (2 << 20)),
            ["prepare", "--config", str(root / "c.yaml")],
        ),
        ("c.yaml", "bytes"),
    ),
    Case(
        "config-is-a-directory",
        lambda root: _after(
            (root / "c.yaml").mkdir(), ["prepare", "--config", str(root / "c.yaml")]
        ),
        ("c.yaml",),
    ),
    Case(
        "set-without-equals", lambda root: _config(root, {}, "--set", "training.epochs"), ("--set",)
    ),
    Case(
        "set-missing-item", lambda root: _config(root, {}, "--set", "models.9.name=x"), ("models",)
    ),
    Case(
        "set-bad-type",
        lambda root: _config(root, {}, "--set", "training.epochs=many"),
        ("training.epochs",),
    ),
    Case(
        "unknown-model-to-train",
        lambda root: _config(root, {"models": [TINY]}, "--model", "zz", verb="train"),
        ("'zz'",),
    ),
]


# --- data ----------------------------------------------------------------------------------


def _data_case(id: str, make: Callable[[Path], dict], *culprit: str) -> Case:
    def build(root: Path) -> list[str]:
        return _config(root, {"data": make(root), "models": [TINY]})

    return Case(id, build, culprit)


def _hdf5(path: Path, source, flags=None) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("functionSource", data=source)
        for name in ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other"]:
            handle.create_dataset(name, data=np.ones(len(source), bool) if flags is None else flags)
    return path


def _parquet_ints(root: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"code": list(range(40)), "label": [i % 5 for i in range(40)]}), root / "d.parquet"
    )
    return {"format": "parquet", "path": str(root / "d.parquet")}


def _truncated_parquet(root: Path) -> dict:
    path = write_source("parquet", root / "d.parquet", GOOD_ROWS)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return {"format": "parquet", "path": str(path)}


def _csv_bytes(root: Path, tail: bytes) -> dict:
    """A good CSV file with `tail` appended as its last rows."""
    path = write_source("csv", root / "d.csv", GOOD_ROWS)
    path.write_bytes(path.read_bytes() + tail)
    return {"format": "csv", "path": str(path)}


def _corrupt_parquet_page(root: Path) -> dict:
    """A Parquet file whose footer is intact but whose snappy data page is overwritten."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = root / "d.parquet"
    codes = [f"int f{i}(int a) {{ return a + {i}; }}" * 20 for i in range(40)]
    table = pa.table({"code": codes, "label": [i % 5 for i in range(40)]})
    pq.write_table(table, path, compression="snappy")
    data = bytearray(path.read_bytes())
    for i in range(8, len(data) // 2):  # the first column's pages, well before the footer
        data[i] = (data[i] * 7 + 13) % 256
    path.write_bytes(bytes(data))
    return {"format": "parquet", "path": str(path)}


DATA_CASES = [
    _data_case("csv-bare-carriage-return", lambda r: _csv_bytes(r, b"r9,int f\rg;,0\n"), "d.csv"),
    _data_case("csv-random-bytes", lambda r: _csv_bytes(r, bytes(range(256)) * 8 + b"\n"), "d.csv"),
    _data_case(
        "jsonl-lone-surrogate",
        lambda r: _after(
            (r / "d.jsonl").write_text(
                "".join(json.dumps({"code": c, "label": lb}) + "\n" for c, lb in GOOD_ROWS)
                + '{"code": "int f(void) { return \\ud800; }", "label": 0}\n'
            ),
            {"format": "jsonl", "path": str(r / "d.jsonl")},
        ),
        "d.jsonl",
        "41",
    ),
    _data_case("parquet-corrupt-page", _corrupt_parquet_page, "d.parquet"),
    _data_case(
        "data-missing-file", lambda r: {"format": "csv", "path": str(r / "nope.csv")}, "nope.csv"
    ),
    _data_case(
        "hdf5-source-ints",
        lambda r: {"format": "draper-hdf5", "path": str(_hdf5(r / "d.hdf5", np.arange(40)))},
        "d.hdf5",
        "functionSource",
    ),
    _data_case(
        "hdf5-source-2d",
        lambda r: {
            "format": "draper-hdf5",
            "path": str(_hdf5(r / "d.hdf5", np.zeros((40, 3), "S4"))),
        },
        "d.hdf5",
        "functionSource",
    ),
    _data_case(
        "hdf5-flags-floats",
        lambda r: {
            "format": "draper-hdf5",
            "path": str(
                _hdf5(
                    r / "d.hdf5",
                    np.array([f"int f{i}(void) {{ return {i}; }}".encode() for i in range(40)]),
                    np.full(40, 0.5),
                )
            ),
        },
        "d.hdf5",
        "CWE-119",
    ),
    _data_case(
        "hdf5-not-hdf5",
        lambda r: _after(
            (r / "d.hdf5").write_bytes(b"\x89HDF junk" * 10),
            {"format": "draper-hdf5", "path": str(r / "d.hdf5")},
        ),
        "d.hdf5",
    ),
    _data_case("parquet-code-ints", _parquet_ints, "d.parquet", "code"),
    _data_case("parquet-truncated", _truncated_parquet, "d.parquet"),
    _data_case(
        "jsonl-deep-nesting",
        lambda r: _after(
            (r / "d.jsonl").write_text('{"code": ' + "[" * 100_000 + "]" * 100_000 + "}\n"),
            {"format": "jsonl", "path": str(r / "d.jsonl")},
        ),
        "d.jsonl",
    ),
    _data_case(
        "jsonl-not-json",
        lambda r: _after(
            (r / "d.jsonl").write_text('{"code": "int f;", "label": 0}\n{oops\n'),
            {"format": "jsonl", "path": str(r / "d.jsonl")},
        ),
        "d.jsonl",
    ),
    _data_case(
        "csv-label-unknown",
        lambda r: {
            "format": "csv",
            "path": str(write_source("csv", r / "d.csv", [*GOOD_ROWS, ("int g;", 9)])),
        },
        "d.csv",
        "9",
    ),
]


# --- checkpoints (ckpt verify) ---------------------------------------------------------------


def _ckpt_case(id: str, damage: Callable[[Path], None], *culprit: str) -> Case:
    def build(root: Path) -> list[str]:
        ckpt = root / "ckpt-g000000004"
        shutil.copytree(_trained_checkpoint(), ckpt)
        damage(ckpt)
        return ["ckpt", "verify", str(ckpt)]

    return Case(id, build, culprit)


_TRAINED: list[Path] = []


def _trained_checkpoint() -> Path:
    return _TRAINED[0]


def _manifest_edit(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(ckpt: Path) -> None:
        manifest = json.loads((ckpt / "manifest.json").read_text())
        edit(manifest)
        (ckpt / "manifest.json").write_text(json.dumps(manifest))

    return damage


def _state_edit(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """Change state.json and re-sign it in the manifest: only the schema can catch it."""

    def damage(ckpt: Path) -> None:
        from support import resign_checkpoint

        state = json.loads((ckpt / "state.json").read_text())
        edit(state)
        (ckpt / "state.json").write_text(json.dumps(state))
        resign_checkpoint(ckpt)

    return damage


def _set(key: str, value: object) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        target = d
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        target[last] = value

    return edit


def _deep_manifest(ckpt: Path) -> None:
    (ckpt / "manifest.json").write_text('{"files": ' + "[" * 100_000 + "]" * 100_000 + "}")


CKPT_CASES = [
    _ckpt_case("manifest-nested-100k-deep", _deep_manifest, "manifest.json"),
    _ckpt_case(
        "manifest-names-etc-passwd",
        _manifest_edit(lambda m: m["files"].update({"/etc/passwd": {"bytes": 1, "sha256": "0"}})),
        "/etc/passwd",
    ),
    _ckpt_case(
        "manifest-names-dotdot",
        _manifest_edit(lambda m: m["files"].update({"../x": {"bytes": 1, "sha256": "0"}})),
        "../x",
    ),
    _ckpt_case(
        "manifest-files-list",
        _manifest_edit(lambda m: m.update(files=["model.safetensors"])),
        "manifest.json",
    ),
    _ckpt_case(
        "manifest-entry-no-hash",
        _manifest_edit(lambda m: m["files"]["rng.safetensors"].pop("sha256")),
        "rng.safetensors",
    ),
    _ckpt_case(
        "manifest-not-json",
        lambda c: (c / "manifest.json").write_text("{nope"),
        "manifest.json",
    ),
    _ckpt_case("manifest-missing", lambda c: (c / "manifest.json").unlink(), "manifest.json"),
    _ckpt_case(
        "unlisted-file", lambda c: (c / "payload.pkl").write_bytes(b"\x80\x04."), "payload.pkl"
    ),
    _ckpt_case(
        "tensor-truncated",
        lambda c: (c / "model.safetensors").write_bytes(b"\x00" * 8),
        "model.safetensors",
    ),
    _ckpt_case(
        "tensor-symlink-out",
        lambda c: (
            (c / "rng.safetensors").unlink() or (c / "rng.safetensors").symlink_to("/etc/hostname")
        ),
        "rng.safetensors",
    ),
    _ckpt_case("state-step-negative", _state_edit(_set("step", -3)), "state.json", "step"),
    _ckpt_case(
        "state-global-step-text",
        _state_edit(_set("global_step", "12")),
        "state.json",
        "global_step",
    ),
    _ckpt_case(
        "state-rng-truncated",
        _state_edit(_set("rng.python.state", [1, 2, 3])),
        "state.json",
        "rng.python.state",
    ),
    _ckpt_case(
        "state-loss-nan", _state_edit(_set("loss_sum", float("nan"))), "state.json", "loss_sum"
    ),
    _ckpt_case(
        "state-best-f1-above-one", _state_edit(_set("best_f1", 7.5)), "state.json", "best_f1"
    ),
    _ckpt_case(
        "state-not-object",
        lambda c: (c / "state.json").write_text("[]"),
        "state.json",
    ),
    _ckpt_case(
        "state-accum-zero",
        _state_edit(_set("grad_accum_steps", 0)),
        "state.json",
        "grad_accum_steps",
    ),
    Case(
        "clean-not-a-checkpoints-dir",
        lambda root: _after(
            (root / "photos").mkdir() or (root / "photos" / "cat.jpg").write_bytes(b"x"),
            ["ckpt", "clean", str(root / "photos")],
        ),
        ("photos", "not a checkpoints directory"),
    ),
    Case("verify-missing-dir", lambda root: ["ckpt", "verify", str(root / "nope")], ("nope",)),
]

CASES = CONFIG_CASES + DATA_CASES + CKPT_CASES


@pytest.fixture(scope="module", autouse=True)
def _one_checkpoint(trained_run: Path) -> None:
    ckpts = sorted((trained_run / "run" / "models" / "m" / "checkpoints").iterdir())
    _TRAINED[:] = [ckpts[-1]]


@pytest.mark.parametrize("case", CASES, ids=lambda c: getattr(c, "id", None))
def test_hostile_input_gets_one_error_line(tmp_path: Path, capsys, case: Case) -> None:
    argv = case.build(tmp_path)
    before = _tree(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2, err
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err
    for fragment in case.culprit:
        assert fragment in errors[0], (fragment, errors[0])
    after = _tree(tmp_path)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= set(case.may_create), changed
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_clean_removes_only_what_enstack_wrote(tmp_path: Path, capsys) -> None:
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    good = ckpts / "ckpt-g000000004"
    shutil.copytree(_trained_checkpoint(), good)
    debris = ckpts / ".ckpt-g000000008.tmp-0123abcd"  # an unfinished save
    debris.mkdir()
    (debris / "model.safetensors").write_bytes(b"partial")
    gallery = ckpts / "ckpt-gallery"  # the user's, despite the prefix
    gallery.mkdir()
    (gallery / "plot.png").write_bytes(b"png")
    notes = ckpts / ".notes.tmp-1"
    notes.write_text("mine")
    broken = ckpts / "ckpt-g000000009"  # invalid, but holds a file of the user's
    broken.mkdir()
    (broken / "README.txt").write_text("mine")

    assert main(["ckpt", "clean", str(ckpts)]) == 0
    out = capsys.readouterr().out
    assert not debris.exists() and f"removed {debris}" in out
    assert good.is_dir() and gallery.is_dir() and notes.is_file() and broken.is_dir()
    assert out.count("removed ") == 1 and f"{ckpts}: 1 removed" in out  # only the debris


def test_second_writer_on_a_model_is_refused_with_the_owner_pid(tmp_path: Path, capsys) -> None:
    import os

    from enstack.fsutil import ProcessLock

    argv = _config(tmp_path, {"models": [TINY], "training": {"device": "cpu"}}, "--model", "m")
    argv[0] = "train"
    model_dir = tmp_path / "run" / "models" / "m"
    with ProcessLock(model_dir / ".lock", "model 'm'"):
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"in use by process {os.getpid()}" in err and err.count("error:") == 1
    assert not (model_dir / "checkpoints").exists()  # the refused process wrote nothing there


def test_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from enstack.fsutil import ProcessLock

    lock = tmp_path / ".lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, pathlib; from enstack.fsutil import ProcessLock\n"
            f"with ProcessLock(pathlib.Path({str(lock)!r}), 'x'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with ProcessLock(lock, "x"):  # the kernel released the dead owner's lock
        assert lock.read_text().strip() == str(__import__("os").getpid())
    assert not lock.exists()


def test_staging_is_unique_per_run_directory(tmp_path: Path) -> None:
    from enstack.run_layout import staging_path

    a = staging_path(tmp_path / "stage", tmp_path / "one" / "run", "m")
    b = staging_path(tmp_path / "stage", tmp_path / "two" / "run", "m")
    assert a != b and a.parent.parent == b.parent.parent == tmp_path / "stage"


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import torch

    from enstack.train import trainer as T

    real_step = T.Trainer._train_step
    calls = {"n": 0}

    def diverging(self, group):  # the real step, then a loss gone NaN from step 7 on
        losses = real_step(self, group)
        calls["n"] += 1
        return [torch.full_like(x, float("nan")) for x in losses] if calls["n"] >= 7 else losses

    monkeypatch.setattr(T.Trainer, "_train_step", diverging)
    body = {"models": [TINY], "training": {"device": "cpu", "save_steps": 3, "log_steps": 1}}
    argv = _config(tmp_path, body, "--model", "m")
    argv[0] = "train"
    assert main(argv) == 2
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "nan at global step 7" in error[0] and "Traceback" not in err
    ckpts = sorted((tmp_path / "run" / "models" / "m" / "checkpoints").iterdir())
    assert [c.name for c in ckpts] == ["ckpt-g000000003", "ckpt-g000000006"]  # none after
    assert str(ckpts[-1]) in error[0]


@pytest.mark.parametrize(
    ("relative", "content"),
    [
        ("run.json", "[1, 2]"),  # a list, not the record
        ("reports/results.json", "{not json"),
        ("reports/results.json", "[" * 100_000),
        ("stack/ablation.json", '{"rows": []}'),  # no fingerprint
    ],
)
@pytest.mark.slow  # `enstack run` redoes a stage each time
def test_a_damaged_run_file_is_stale_not_a_crash(
    bundle: Path, tmp_path: Path, capsys, relative: str, content: str
) -> None:
    """Files enstack wrote into a finished run directory, damaged afterwards: `enstack run`
    redoes what they recorded (stale), with no traceback."""
    run = tmp_path / "run"
    shutil.copytree(bundle.parents[1], run)
    config = yaml.safe_load((bundle.parents[2] / "c.yaml").read_text())
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump({**config, "run_dir": str(run)}))
    (run / relative).write_text(content)
    code = main(["run", "--config", str(config_path)])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    assert json.loads((run / "reports" / "results.json").read_text())["stack_fingerprint"]


# --- training on what a run directory or a pretrained directory holds ------------------------


def _copied_run(trained_run: Path, tmp_path: Path, **model: object) -> tuple[Path, Path]:
    """A copy of the trained run whose model `m` is unfinished again (no exports), and its
    config (with `model` replacing the model's entry, when given)."""
    run = tmp_path / "run"
    shutil.copytree(trained_run / "run", run)
    for export in ("best", "final"):
        shutil.rmtree(run / "models" / "m" / export, ignore_errors=True)
    config = yaml.safe_load((trained_run / "c.yaml").read_text())
    config["run_dir"] = str(run)
    if model:
        config["models"] = [{"name": "m", **model}]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return run, path


def _newest(run: Path) -> Path:
    return sorted((run / "models" / "m" / "checkpoints").iterdir())[-1]


def _other_param_groups(run: Path, tmp_path: Path) -> list[str]:
    from support import resign_checkpoint

    ckpt = _newest(run)
    state = json.loads((ckpt / "state.json").read_text())
    groups = state["optimizer"]["param_groups"]
    groups.append(dict(groups[0]))
    (ckpt / "state.json").write_text(json.dumps(state))
    resign_checkpoint(ckpt)  # re-signed: only loading it can tell
    return []


def _pretrained_dir(run: Path, tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    source = tmp_path / "pretrained"
    shutil.copytree(run / "models" / "m" / "base", source)
    from safetensors.torch import save_file

    from enstack.models.loading import new_classifier, read_hf_config

    model = new_classifier(read_hf_config(source), None)
    save_file(model.encoder_module.state_dict(), str(source / "model.safetensors"))
    damage(source)
    return source


class _Payload:
    """What an attacker pickles: a call that would leave a mark if unpickling ran it."""

    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self):
        return (Path.touch, (self.mark,))


def _pickled_weights(source: Path) -> None:
    import pickle

    (source / "model.safetensors").unlink()
    with (source / "pytorch_model.bin").open("wb") as handle:
        pickle.dump({"weight": _Payload(source.parent / "pwned")}, handle)


def _truncated_weights(source: Path) -> None:
    data = (source / "model.safetensors").read_bytes()
    (source / "model.safetensors").write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("param-groups", "state.json: its optimizer or schedule does not fit this model"),
        ("other-architecture", "model.safetensors: does not match the model (size mismatch"),
        ("pickled-pretrained", "pytorch_model.bin is a pickle holding more than tensors"),
        ("truncated-pretrained", "cannot read its weights"),
        ("export-past-positions", "is longer than models[m].pretrained can read (128 tokens"),
    ],
)
def test_training_from_damaged_or_foreign_weights_is_one_error(
    trained_run: Path, tmp_path: Path, capsys, case: str, fragment: str
) -> None:
    if case == "param-groups":
        run, config = _copied_run(trained_run, tmp_path)
        _other_param_groups(run, tmp_path)
        argv = ["train", "--config", str(config), "--model", "m"]
    elif case == "other-architecture":  # --force-resume past the refusal, onto other shapes
        scratch = {**TINY_MODEL, "hidden": 48}
        run, config = _copied_run(trained_run, tmp_path, family="codebert", scratch=scratch)
        shutil.rmtree(run / "models" / "m" / "base")
        argv = ["train", "--config", str(config), "--model", "m", "--force-resume"]
    elif case == "export-past-positions":  # an enstack export as the starting point
        export = str(trained_run / "run" / "models" / "m" / "best")
        run, config = _copied_run(trained_run, tmp_path, family="codebert", pretrained=export)
        shutil.rmtree(run / "models" / "m")
        argv = ["train", "--config", str(config), "--model", "m", "--set"]
        argv.append("training.max_length=4096")
    else:
        damage = _pickled_weights if case == "pickled-pretrained" else _truncated_weights
        source = _pretrained_dir(trained_run / "run", tmp_path, damage)
        run, config = _copied_run(trained_run, tmp_path, family="codebert", pretrained=str(source))
        shutil.rmtree(run / "models" / "m")
        argv = ["train", "--config", str(config), "--model", "m"]
    before = (
        sorted(p.name for p in (run / "models" / "m" / "checkpoints").glob("*"))
        if (run / "models" / "m" / "checkpoints").is_dir()
        else []
    )
    code = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert fragment in errors[0], errors[0]
    assert not (tmp_path / "pwned").exists()  # nothing in the pickle ran
    checkpoints = run / "models" / "m" / "checkpoints"
    after = sorted(p.name for p in checkpoints.glob("*")) if checkpoints.is_dir() else []
    assert after == before  # no checkpoint lost or added


@pytest.mark.parametrize("damaged", ["token-cache", "data-manifest"])
def test_damaged_derived_files_are_redone_with_a_warning(
    trained_run: Path, tmp_path: Path, capsys, damaged: str
) -> None:
    """A token cache or a prepared data manifest is enstack's own derived data: damage means
    stale, redone and said, never a traceback nor silence; training then gives the same
    model as the undamaged run."""
    run, config = _copied_run(trained_run, tmp_path)
    shutil.rmtree(run / "models" / "m")
    if damaged == "token-cache":
        for path in (run / "cache" / "tokens").rglob("*.safetensors"):
            path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
        expected = "token cache damaged (stale): redone"
    else:
        (run / "data" / "manifest.json").write_text("{damaged")
        expected = "manifest.json: damaged (stale): preparing the data again"
    code = main(["train", "--config", str(config), "--model", "m", "--resume", "never"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    assert expected in err
    redone = run / "models" / "m" / "final" / "model.safetensors"
    original = trained_run / "run" / "models" / "m" / "final" / "model.safetensors"
    assert redone.read_bytes() == original.read_bytes()


FULL_DISK_PROBE = """
import resource, signal, sys
from pathlib import Path
import numpy as np
from safetensors.numpy import save_file
from enstack.fsutil import staged_dir

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, writes fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def plain_write(path):  # as skops writes its zip: the error carries no file name
    with path.open("wb") as handle:
        handle.write(b"x" * 65536)


writers = {"safetensors": lambda p: save_file({"a": np.zeros(65536)}, str(p)), "plain": plain_write}
final = Path(sys.argv[1])
for name, write in writers.items():
    try:
        with staged_dir(final) as tmp:
            write(tmp / "out")
    except OSError as exc:
        print(name, exc.errno, exc.filename)
"""


def test_a_full_disk_names_what_was_being_written(tmp_path: Path) -> None:
    """A write past the process's file-size limit fails as a full disk does (EFBIG, no root
    needed); libraries writing into a staged directory lose the file name (a zip writer) or
    raise their own error (safetensors): either way the error names what was being written."""
    import errno
    import subprocess
    import sys

    final = tmp_path / "stack"
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_PROBE, str(final)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"safetensors {errno.EFBIG} {final}",
        f"plain {errno.EFBIG} {final}",
    ]
    assert list(tmp_path.iterdir()) == []  # nothing half-written kept
