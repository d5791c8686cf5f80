"""Damaged, crafted and old checkpoints; a disk that fills up; inspect and clean."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest

from enstack.ckpt.layout import verify
from enstack.config import load_config
from enstack.run_layout import staging_path

from support import assert_user_error, run_cli, tiny_config, train_args


def _checkpoints(run: Path) -> list[Path]:
    ckpts = (run / "models" / "m" / "checkpoints").iterdir()
    return sorted(ckpts, key=lambda p: json.loads((p / "state.json").read_text())["global_step"])


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of the shared trained run, with its config pointing at the copy."""
    shutil.copytree(trained_run / "run", tmp_path / "run")
    tiny_config(tmp_path / "c.yaml", tmp_path / "run", save_steps=4, keep_checkpoints=3)
    return tmp_path


class Payload:
    """Unpickling this would create the marker file: proof that nothing was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _truncate(path: Path) -> str:
    data = path / "model.safetensors"
    data.write_bytes(data.read_bytes()[:-100])
    return "model.safetensors"


def _flip(path: Path) -> str:
    data = path / "optimizer.safetensors"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    return "optimizer.safetensors"


def _remove(path: Path) -> str:
    (path / "rng.safetensors").unlink()
    return "rng.safetensors"


def _no_manifest(path: Path) -> str:
    (path / "manifest.json").unlink()
    return "manifest.json"


@pytest.mark.parametrize("damage", [_truncate, _flip, _remove, _no_manifest])
@pytest.mark.slow
def test_damaged_checkpoint_fails_verify_and_resume_takes_the_previous(
    run_copy: Path, damage
) -> None:
    ckpts = _checkpoints(run_copy / "run")
    newest, previous = ckpts[-1], ckpts[-2]
    culprit = damage(newest)
    assert_user_error(run_cli("ckpt", "verify", str(newest)), str(newest / culprit))
    assert run_cli("ckpt", "verify", str(previous)).code == 0

    # the newest is the finished epoch-end one; with it damaged, training resumes from the
    # previous one, says why, and finishes again
    result = subprocess.run(train_args(run_copy / "c.yaml"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"skipping checkpoint: {newest / culprit}" in result.stderr
    assert f"resuming m from {previous}" in result.stderr


@pytest.mark.slow
def test_pickle_payloads_are_never_executed(run_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    ckpt = _checkpoints(run_copy / "run")[-1]
    blob = pickle.dumps(Payload(marker))
    for f in ckpt.iterdir():
        f.write_bytes(blob)
    result = run_cli("ckpt", "verify", str(ckpt))
    assert_user_error(result, str(ckpt))
    assert run_cli("ckpt", "inspect", str(ckpt)).code == 2
    # even with a manifest that vouches for the pickles, loading refuses them
    manifest = {
        "format_version": 2,
        "files": {
            f.name: {"bytes": len(blob), "sha256": __import__("hashlib").sha256(blob).hexdigest()}
            for f in ckpt.iterdir()
            if f.name != "manifest.json"
        },
    }
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    assert_user_error(run_cli("ckpt", "verify", str(ckpt)), "state.json")
    resumed = run_cli(
        "train", "--config", str(run_copy / "c.yaml"), "--model", "m", "--resume", str(ckpt)
    )
    assert_user_error(resumed, "state.json")
    assert not marker.exists()


@pytest.mark.slow
def test_checkpoint_without_a_newer_field_loads_with_a_warning(run_copy: Path) -> None:
    ckpt = _checkpoints(run_copy / "run")[0]  # mid-run
    state = json.loads((ckpt / "state.json").read_text())
    total = state.pop("total_batches")
    (ckpt / "state.json").write_text(json.dumps(state))
    _refresh_manifest(ckpt)
    resumed = run_cli(
        "train", "--config", str(run_copy / "c.yaml"), "--model", "m", "--resume", str(ckpt)
    )
    assert resumed.code == 0, resumed.stderr
    assert "has no 'total_batches'" in resumed.stderr and f"derived {total}" in resumed.stderr


def _refresh_manifest(ckpt: Path) -> None:
    from support import resign_checkpoint

    (ckpt / "manifest.json").unlink()
    resign_checkpoint(ckpt)


@pytest.mark.slow
def test_changed_config_refuses_resume_unless_forced(run_copy: Path) -> None:
    ckpt = _checkpoints(run_copy / "run")[0]
    args = [
        "train",
        "--config",
        str(run_copy / "c.yaml"),
        "--model",
        "m",
        "--resume",
        str(ckpt),
        "--set",
        "training.learning_rate=0.5",
    ]
    assert_user_error(
        run_cli(*args), "different config", "changed: training.learning_rate", "--resume never"
    )
    forced = run_cli(*args, "--force-resume")
    assert forced.code == 0 and "forced" in forced.stderr


def test_inspect_speaks_in_epochs_and_steps(trained_run: Path) -> None:
    ckpt = _checkpoints(trained_run / "run")[0]
    state = json.loads((ckpt / "state.json").read_text())
    result = run_cli("ckpt", "inspect", str(ckpt))
    assert result.code == 0, result.stderr
    e, s = state["epoch"], state["step"]
    # people count epochs from 1, as the bar does; an epoch-end checkpoint is (e + 1, 0)
    where = f"end of epoch {e}" if s == 0 and e > 0 else f"epoch {e + 1}, step {s}"
    assert f"{where}, global step {state['global_step']}" in result.stdout
    assert f"(state.json: epoch {e}, step {s}; epochs from 0 there)" in result.stdout
    assert f"{s} optimizer steps of epoch {e + 1} are done" in result.stdout
    total = state["total_batches"]
    assert f"next batch trained is batch {s + 1} of {total} in that epoch" in result.stdout
    assert "model.safetensors" in result.stdout


@pytest.mark.slow
def test_clean_removes_partial_saves_and_old_checkpoints(run_copy: Path) -> None:
    ckpt_dir = run_copy / "run" / "models" / "m" / "checkpoints"
    (ckpt_dir / ".ckpt-g000000099.tmp-deadbeef").mkdir()
    broken = ckpt_dir / "ckpt-g000000098"
    broken.mkdir()
    result = run_cli("ckpt", "clean", str(ckpt_dir), "--keep", "1")
    assert result.code == 0, result.stderr
    left = [p.name for p in ckpt_dir.iterdir()]
    newest = _checkpoints(run_copy / "run")
    assert ".ckpt-g000000099.tmp-deadbeef" not in left and "ckpt-g000000098" not in left
    best = [p for p in newest if json.loads((p / "state.json").read_text()).get("is_best")]
    assert set(left) <= {newest[-1].name, *(p.name for p in best)}
    assert newest[-1].name in left


def test_rotation_keeps_newest_and_best(trained_run: Path) -> None:
    ckpts = _checkpoints(trained_run / "run")
    states = [json.loads((p / "state.json").read_text()) for p in ckpts]
    non_best = [s for s in states if not s.get("is_best")]
    assert len(non_best) <= 3  # keep_checkpoints
    assert states[-1]["finished"] and states[-1]["step"] == 0
    for path in ckpts:
        verify(path)


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("needs root to mount a small tmpfs (a real full disk) for ENOSPC")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_disk_full_keeps_the_previous_checkpoint(tmp_path: Path, small_disk: Path) -> None:
    """A ~500 KiB checkpoint on a 700 KiB disk: the first save fits, the second cannot."""
    config = load_config(tiny_config(tmp_path / "c.yaml", tmp_path / "run", save_steps=2))
    ckpt_dir = tmp_path / "run" / "models" / "m" / "checkpoints"
    ckpt_dir.parent.mkdir(parents=True)
    ckpt_dir.symlink_to(small_disk, target_is_directory=True)
    result = run_cli("train", "--config", str(tmp_path / "c.yaml"), "--model", "m")
    assert_user_error(result, "could not save checkpoint", "No space left on device", "is intact")
    left = [p for p in small_disk.iterdir()]
    assert len(left) == 1 and left[0].name == "ckpt-g000000002", left
    assert verify(left[0]).global_step == 2
    assert config.training.save_steps == 2


@pytest.mark.slow
def test_staging_directory_takes_saves_and_resume_finds_them_there(tmp_path: Path) -> None:
    """Slow storage: saves land on the staging disk first, then are copied to run_dir and
    verified. A crash after the staged save but before the copy leaves the newest state only
    in staging; resume must still find it (newest by global step, wherever it is)."""
    staging = tmp_path / "fast-local-disk"
    cfg = tiny_config(
        tmp_path / "c.yaml",
        tmp_path / "run",
        save_steps=4,
        keep_checkpoints=2,
        staging_dir=str(staging),
    )
    first = subprocess.run(train_args(cfg), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    final_dir = tmp_path / "run" / "models" / "m" / "checkpoints"
    staged_dir = staging_path(staging, tmp_path / "run", "m")
    finals = _checkpoints(tmp_path / "run")
    staged = list(staged_dir.iterdir())
    assert len(staged) == 1 and staged[0].name == finals[-1].name  # staging keeps the newest
    for path in (*finals, *staged):
        verify(path)

    # simulate the crash: the newest (finished) state never reached run_dir, older ones did
    newest = finals[-1]
    shutil.rmtree(newest)
    assert newest.name not in {p.name for p in final_dir.iterdir()}
    resumed = run_cli("train", "--config", str(cfg), "--model", "m")
    assert resumed.code == 0, resumed.stderr
    assert f"already trained ({staged_dir / newest.name})" in resumed.stdout


def test_inspect_on_a_checkpoints_directory_lists_each_checkpoint(run_copy: Path) -> None:
    ckpts = _checkpoints(run_copy / "run")
    broken = ckpts[0]
    (broken / "state.json").write_text("{")
    result = run_cli("ckpt", "inspect", str(broken.parent))
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()[1:]
    assert [line.split()[0] for line in lines] == sorted(p.name for p in ckpts)
    assert "invalid" in lines[0] and all("global step" in line for line in lines[1:])
    last = json.loads((ckpts[-1] / "state.json").read_text())
    assert f"global step {last['global_step']}" in lines[-1]
