"""The documentation's commands are commands enstack takes.

Every `enstack ...` command in a ```bash block of the site's pages and the README is parsed by
the CLI's own parser (an option renamed or removed fails here, not in a user's terminal); the
blocks marked `<!-- runnable -->` are run for real, in a directory holding a bundle where the
docs say the demo leaves one and a small C tree in `src/`. The CLI reference page is written
from the same parser when the site is built (`docs/_hooks/cli_reference.py`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from enstack.cli import build_parser

from support import REPO

ROOT = REPO
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"(<!-- runnable -->\s*\n)?```bash\n(.*?)```", re.S)
C_SOURCE = """int copy(char *d, const char *s, int n)
{
  for (int i = 0; i <= n; i++)
    d[i] = s[i];
  return n;
}
"""


def _blocks() -> list[tuple[str, bool, str]]:
    """(page, runnable, block text) for every bash block."""
    return [
        (page.name, bool(m.group(1)), m.group(2))
        for page in PAGES
        for m in BLOCK.finditer(page.read_text(encoding="utf-8"))
    ]


def _commands(block: str) -> list[list[str]]:
    """The enstack commands of a shell block: continuation lines joined, comments dropped,
    each `&&`, `;` or `|` segment that starts with `enstack` (or runs `-m enstack`, as
    torchrun and python do), as `enstack ARGS...`."""
    text = block.replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        segment: list[str] = []
        for word in [*words, ";"]:
            if word in ("&&", "||", ";", "|"):
                if segment[:1] == ["enstack"]:
                    found.append(segment)
                elif "-m" in segment and segment[segment.index("-m") + 1 :][:1] == ["enstack"]:
                    found.append(segment[segment.index("-m") + 1 :])
                segment = []
            else:
                segment.append(word)
    return found


DOC_COMMANDS = [
    pytest.param(command, id=f"{page}: {shlex.join(command)[:70]}")
    for page, _, block in _blocks()
    for command in _commands(block)
]


def test_the_docs_show_enstack_commands_in_every_task_page() -> None:
    pages = {page for page, _, block in _blocks() if _commands(block)}
    assert {
        "install.md",
        "scanning.md",
        "known.md",
        "training.md",
        "distributed.md",
        "README.md",
    } <= pages
    assert len(DOC_COMMANDS) >= 20


@pytest.mark.parametrize("command", DOC_COMMANDS)
def test_each_documented_command_parses(command: list[str], capsys) -> None:
    try:
        build_parser().parse_args(command[1:])
    except SystemExit as stop:  # argparse's way of saying no (or of printing --help)
        err = capsys.readouterr().err
        assert stop.code == 0, f"`{shlex.join(command)}` does not parse: {err.strip()}"


RUNNABLE = [
    pytest.param(block, id=f"{page}#{i}")
    for i, (page, runnable, block) in enumerate(_blocks())
    if runnable
]


def test_some_blocks_are_marked_runnable() -> None:
    assert len(RUNNABLE) >= 2


@pytest.mark.slow  # each command is a fresh process that loads the model
@pytest.mark.parametrize("block", RUNNABLE)
def test_runnable_blocks_run(block: str, bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "copy.c").write_text(C_SOURCE)
    (tmp_path / "enstack-demo" / "stack").mkdir(parents=True)
    (tmp_path / "enstack-demo" / "stack" / "bundle").symlink_to(bundle)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # the user's own cache stays untouched
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for command in _commands(block):  # each file a command names is written, and not empty
        if "-o" in command or "--output" in command:
            flag = "-o" if "-o" in command else "--output"
            written = tmp_path / command[command.index(flag) + 1]
            assert written.stat().st_size > 0, written


def _hook():
    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "docs" / "_hooks" / "cli_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_names_every_command_and_option() -> None:
    hook = _hook()
    page = hook.on_page_markdown((ROOT / "docs" / "cli.md").read_text(), None, None, None)
    assert hook.MARKER not in page
    parser = build_parser()
    for name, sub in hook._commands(parser, "enstack"):
        assert f"## `{name}`" in page
        for action in sub._actions:
            for option in action.option_strings:
                assert option in page, (name, option)
    assert "--format {text,json,csv,sarif,html}" in page and "--quiet" in page
