"""Commands that need no model start without torch or transformers (issue: a scan that starts
in a second). Each runs in a fresh interpreter, which then lists the heavy modules it loaded."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from enstack.cli import main

from support import REPO

HEAVY = ("torch", "transformers", "tokenizers", "sklearn", "matplotlib")
C_FILE = "int twice(int x)\n{\n  return 2 * x;\n}\n"


def _heavy_modules(*argv: str) -> tuple[int, list[str], str]:
    """Run `enstack ARGV` in a fresh interpreter: its exit code, the heavy modules it loaded,
    and its stderr."""
    probe = (
        "import sys\nfrom enstack.cli import main\n"
        "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as stop:\n    code = stop.code\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print('RESULT', code, ','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=REPO,
        timeout=120,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    _, code, heavy = [*line.split(" ", 2), ""][:3]
    return int(code), [m for m in heavy.split(",") if m], done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["scan", "--help"], ["known", "build", "--help"]])
def test_help_loads_no_model_library(argv: list[str]) -> None:
    code, heavy, err = _heavy_modules(*argv)
    assert (code, heavy) == (0, []), err


def test_every_ckpt_command_loads_no_model_library(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run / "run", run)
    checkpoints = next(run.glob("models/*/checkpoints"))
    newest = sorted(p for p in checkpoints.iterdir() if p.is_dir())[-1]
    for argv in (
        ["ckpt", "inspect", str(newest)],
        ["ckpt", "verify", str(newest)],
        ["ckpt", "clean", str(checkpoints), "--keep", "1"],
    ):
        code, heavy, err = _heavy_modules(*argv)
        assert (code, heavy) == (0, []), (argv, err)
    assert len([p for p in checkpoints.iterdir() if p.is_dir()]) <= 2  # newest and best kept


@pytest.mark.slow  # three fresh processes, one of which loads the model
def test_a_scan_the_cache_answers_loads_no_model_library(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text(C_FILE)
    argv = ["scan", str(tmp_path / "a.c"), "--bundle", str(bundle), "--threshold", "0",
            "--cache-dir", str(tmp_path / "cache"), "-q"]  # fmt: skip
    assert main(argv) == 0  # cold: the model runs, and its scores and lines are cached
    code, heavy, err = _heavy_modules(*argv)
    assert (code, heavy) == (0, []), err
    code, heavy, _ = _heavy_modules(*argv, "--no-cache")  # the control: a model must run
    assert code == 0 and {"torch", "transformers"} <= set(heavy)
