"""What tests share: the repository's paths, small sources in every format, runners for the
real CLI and for killing it, tiny configs. Fixtures (which pytest injects) are in conftest.py;
everything a test imports by name is here: `from support import run_cli, tiny_config`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTS_DATA = REPO / "tests" / "data"  # fixtures kept with the tests: golden files, schemas
# the shared real-data fixtures; ENSTACK_SHARED_DATA points elsewhere (a GPU machine's copy)
SHARED_DATA = Path(os.environ.get("ENSTACK_SHARED_DATA", REPO.parent / "shared" / "data"))
JULIET = SHARED_DATA / "juliet5"
LABELS = ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other"]


Row = tuple[bytes | str, int | list[int] | None]  # code, class id / several flags / no label


def write_source(fmt: str, path: Path, rows: list[Row], label_names: bool = False) -> Path:
    """Write `rows` as a Draper HDF5, CSV, JSONL or Parquet file at `path`."""
    if fmt == "draper-hdf5":
        return _write_hdf5(path, rows)
    codes = [code for code, _ in rows]
    labels = [_tabular_label(label, label_names) for _, label in rows]
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["id", "code", "label"])
        for i, (code, label) in enumerate(zip(codes, labels, strict=True)):
            writer.writerow([f"r{i}", _placeholder(code, i), "" if label is None else label])
        path.write_bytes(_restore_bytes(text.getvalue(), codes))
    elif fmt == "jsonl":
        lines = [
            json.dumps({"id": f"r{i}", "code": _placeholder(code, i), "label": label})
            for i, (code, label) in enumerate(zip(codes, labels, strict=True))
        ]
        path.write_bytes(_restore_bytes("\n".join(lines) + "\n", codes))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        raw = [c if isinstance(c, bytes) else c.encode() for c in codes]
        table = pa.table(
            {
                "id": [f"r{i}" for i in range(len(rows))],
                "code": pa.array(raw, pa.binary()),
                "label": pa.array([None if lb is None else str(lb) for lb in labels], pa.string()),
            }
        )
        pq.write_table(table, path)
    else:
        raise ValueError(fmt)
    return path


def _tabular_label(label: int | list[int] | None, names: bool) -> int | str | None:
    if label is None:
        return None
    assert isinstance(label, int), "several flags exist only in Draper HDF5"
    return LABELS[label] if names else label


def _placeholder(code: bytes | str, i: int) -> str:
    # Non-UTF-8 code cannot pass through csv/json writers: write a marker, swap bytes in after.
    return f"@@RAW{i}@@" if isinstance(code, bytes) else code


def _restore_bytes(text: str, codes: list[bytes | str]) -> bytes:
    data = text.encode("utf-8")
    for i, code in enumerate(codes):
        if isinstance(code, bytes):
            data = data.replace(f"@@RAW{i}@@".encode(), code)
    return data


def _write_hdf5(path: Path, rows: list[Row]) -> Path:
    import h5py
    import numpy as np

    flags = np.zeros((len(rows), len(LABELS)), dtype=bool)
    for i, (_, label) in enumerate(rows):
        for cls in [] if label is None else [label] if isinstance(label, int) else label:
            flags[i, cls] = True
    raw = [c if isinstance(c, bytes) else c.encode() for c, _ in rows]
    with h5py.File(path, "w") as handle:
        handle.create_dataset("functionSource", data=raw, dtype=h5py.vlen_dtype(bytes))
        for j, name in enumerate(LABELS):
            handle.create_dataset(name, data=flags[:, j])
    return path


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> CliResult:
    """Run `python -m enstack ARGS` in a real subprocess, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "enstack", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_user_error(result: CliResult, *fragments: str) -> None:
    """Exit 2, one `error:` line on stderr (the last line), holding each fragment, no traceback.

    Progress lines printed before the failure (what was being done) are allowed.
    """
    assert result.code == 2, (result.code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def write_config(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def shared_file(*parts: str) -> Path:
    """A file of the shared real data. Where it is missing (a user's fresh clone) the test is
    skipped with the path as its reason (`-ra` lists them); in CI, which sets
    ENSTACK_REQUIRE_SHARED_DATA=1, a missing file fails the test instead of hiding it."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        if os.environ.get("ENSTACK_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"{path} is missing, and ENSTACK_REQUIRE_SHARED_DATA=1 (CI) needs it")
        pytest.skip(f"{path} is not beside this checkout (the shared real data)")
    return path


def git(repo: Path, *args: str) -> str:
    """`git ARGS` in `repo` as a test sets a repository up (an author named, output decoded)."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, check=True)
    return done.stdout.decode()


@dataclass
class PreCommitProject:
    """A git project that runs this checkout's `.pre-commit-hooks.yaml` through pre-commit
    itself, as a user's project does (the hooks repository pinned at a commit)."""

    root: Path
    hooks_repo: Path
    rev: str
    env: dict[str, str]

    def use(self, hook: dict) -> None:
        import yaml

        repos = [{"repo": str(self.hooks_repo), "rev": self.rev, "hooks": [hook]}]
        (self.root / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": repos}))
        git(self.root, "add", "-A")

    def stage(self, name: str, text: str) -> None:
        (self.root / name).write_text(text)
        git(self.root, "add", "-A")

    def run(self) -> subprocess.CompletedProcess:
        pre_commit = str(Path(sys.executable).parent / "pre-commit")
        return subprocess.run([pre_commit, "run"], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip


TINY_MODEL = {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64, "vocab_size": 500}


def tiny_config(
    path: Path, run_dir: Path, family: str = "codebert", n_per_class: int = 40, **training: object
) -> Path:
    """A config that trains a ~40k-parameter model on synthetic data in a few seconds."""
    settings = {
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "max_length": 128,
        "save_steps": 3,
        "keep_checkpoints": 2,
        "device": "cpu",
        "log_steps": 1,
        # synthetic functions run past 128 tokens: windows would nearly double the rows that
        # every training test trains on; the tests of windows ask for them
        "long_functions": "truncate",
        **training,
    }
    return write_config(
        path,
        {
            "run_dir": str(run_dir),
            "data": {"format": "synthetic", "synthetic": {"n_per_class": n_per_class}},
            "models": [{"name": "m", "family": family, "scratch": TINY_MODEL}],
            "training": settings,
        },
    )


def train_args(config: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "enstack",
        "train",
        "--config",
        str(config),
        "--model",
        "m",
        *extra,
    ]


def resign_checkpoint(directory: Path) -> None:
    """Rewrite a checkpoint's manifest over its files as they are now: an edited checkpoint
    an attacker re-signed, which only loading it can tell from a real one."""
    from enstack import versions
    from enstack.manifest import MANIFEST, describe_files, manifest_bytes

    (directory / MANIFEST).write_bytes(
        manifest_bytes(versions.CHECKPOINT_FORMAT, describe_files(directory))
    )


def slow_saves(seconds: float) -> dict[str, str]:
    """The environment under which a training process pauses `seconds` after each file a
    checkpoint save writes (tests/slow_saves/sitecustomize.py), so that a SIGKILL lands
    inside a save often enough; the package itself has no such hook."""
    path = os.pathsep.join(
        p for p in (str(REPO / "tests" / "slow_saves"), os.environ.get("PYTHONPATH")) if p
    )
    return {"PYTHONPATH": path, "ENSTACK_TEST_SAVE_PAUSE": str(seconds)}


def popen_train(
    config: Path, env_extra: dict[str, str] | None = None, *extra: str
) -> subprocess.Popen:
    return popen_cli(train_args(config, *extra), env_extra)


def popen_cli(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    """A command line (`[python, -m, enstack, ...]`) started, its output captured."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def save_in_progress(ckpt_dir: Path) -> bool:
    """A checkpoint is being written right now (its temporary directory exists)."""
    return ckpt_dir.is_dir() and any(".tmp-" in p.name for p in ckpt_dir.iterdir())


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.005) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


HANG = 1800.0  # seconds: only a process that hangs takes this long to reach any moment


def until_event(proc: subprocess.Popen, moment) -> bool:
    """Wait for what a process reports (a file or directory it writes: `moment()`), or for it
    to end. No wall-clock budget: on a loaded machine the process is slower, not wrong; the
    HANG limit only turns a hung process into a failure. True when the moment came."""
    reached = wait_for(lambda: moment() or proc.poll() is not None, timeout=HANG)
    assert reached, f"the process reached no reported moment in {HANG:.0f} s (hung?)"
    return moment()


def sleep(seconds: float) -> None:
    """A random moment after an event: kills land anywhere in the work that follows."""
    import time

    time.sleep(seconds)


def sigterm_then_resume(
    args: list[str], model_dir: Path, env_extra: dict[str, str]
) -> subprocess.CompletedProcess:
    """Start the training command `args`, SIGTERM it once it logs a step, and check that it
    saved one checkpoint and exited 130 naming the command that resumes it; then run the same
    command again and return that run (checked to succeed)."""
    import signal

    proc = popen_cli(args, env_extra)
    assert until_event(proc, lambda: (model_dir / "metrics.jsonl").is_file())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved, resume with:" in err
    assert len(list((model_dir / "checkpoints").iterdir())) == 1
    resumed = subprocess.run(args, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    return resumed


def kill_repeatedly(
    config: Path,
    ckpt_dir: Path,
    env_extra: dict[str, str],
    attempts: int = 6,
    args: list[str] | None = None,
) -> dict[str, int]:
    """SIGKILL `enstack train` (or the command `args`) again and again, every other time
    inside a save, else at a random moment; each attempt resumes from what the last left.
    Returns the kills by kind."""
    import random
    import signal

    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    kills = {"inside_save": 0, "elsewhere": 0}
    for attempt in range(attempts):
        proc = popen_cli(args, env_extra) if args else popen_train(config, env_extra)
        if attempt % 2 == 0:  # the moment a save is half-written
            until_event(proc, lambda: save_in_progress(ckpt_dir))
        else:  # a random moment once training runs
            until_event(proc, ckpt_dir.is_dir)
            sleep(rng.uniform(0.0, 1.5))
        inside = save_in_progress(ckpt_dir)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err
        kills["inside_save" if inside else "elsewhere"] += 1
    assert kills["inside_save"] >= 1, (kills, seed)
    assert sum(kills.values()) >= 3, (kills, seed)
    return kills
