"""Fixtures that pytest injects into tests: a marker command, a pre-commit project, the Juliet
fixture, a trained run and a bundle (each trained once per session). Helpers a test imports by
name live in `tests/support`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Under pytest-xdist (`-n 2`), each worker and every process it starts runs torch on one
# thread: two workers with two threads each on a 2-core machine slow each other many times over.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Every JSON scan report is checked against its declared document as it is written, in this
# process and in every CLI process a test starts (enstack.scan.formats.document).
os.environ["ENSTACK_CHECK_DOCUMENTS"] = "1"

from support import (
    TINY_MODEL,
    PreCommitProject,
    git,
    shared_file,
    tiny_config,
    write_config,
)


@pytest.fixture
def marker(tmp_path: Path):
    """A script that leaves `PWNED` when anything runs it (and passes its input through, so a
    filter or textconv that did run would not fail git and hide itself); the test fails if it
    ran. For repositories whose configuration names commands enstack must never run."""
    mark = tmp_path / "PWNED"
    script = tmp_path / "evil.sh"
    script.write_text(f'#!/bin/sh\necho "$0 $*" >> {mark}\ncat "$@" 2>/dev/null\nexit 0\n')
    script.chmod(0o755)
    yield script
    assert not mark.exists(), f"a configured command ran: {mark.read_text()}"


@pytest.fixture
def pre_commit_project(tmp_path: Path) -> PreCommitProject:
    import shutil

    if shutil.which("pre-commit", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("pre-commit is not installed (pip install -e '.[dev]')")
    hooks_repo = tmp_path / "hooks"
    hooks_repo.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / ".pre-commit-hooks.yaml", hooks_repo)
    git(hooks_repo, "init", "-q", "-b", "main")
    git(hooks_repo, "add", "-A")
    git(hooks_repo, "commit", "-qm", "hooks")
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q", "-b", "main")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    rev = git(hooks_repo, "rev-parse", "HEAD").strip()
    return PreCommitProject(project, hooks_repo, rev, env)


@pytest.fixture
def juliet() -> Path:
    return shared_file("juliet5", "train.jsonl").parent


# --- training helpers ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One finished tiny training run (in-process), shared read-only by several tests."""
    from enstack.config import load_config
    from enstack.train.trainer import train_model

    root = tmp_path_factory.mktemp("trained")
    config = load_config(
        tiny_config(root / "c.yaml", root / "run", save_steps=4, keep_checkpoints=3)
    )
    train_model(config, "m", progress=False)
    return root


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    """A bundle for the scan tests, trained in place on synthetic data with a benign class:
    one tiny model."""
    root = tmp_path_factory.mktemp("scanbundle")
    cfg = write_config(
        root / "c.yaml",
        {
            "run_dir": str(root / "run"),
            "data": {
                "format": "synthetic",
                "labels": ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other", "none"],
                "synthetic": {"n_per_class": 30},
            },
            "models": [{"name": "m", "family": "codebert", "scratch": TINY_MODEL}],
            "training": {
                "epochs": 1,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "max_length": 128,
                "save_steps": 0,
                "device": "cpu",
            },
            "stacking": {"meta": ["lr"], "mode": "paper"},
        },
    )
    from enstack.cli import main

    assert main(["run", "--config", str(cfg)]) == 0
    return root / "run" / "stack" / "bundle"
