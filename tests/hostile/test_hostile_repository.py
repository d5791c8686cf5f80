"""A scanned repository attacks `--changed-since`: each way a repository's git configuration can
name a command (fsmonitor, textconv, clean/smudge/process filters, diff drivers, hooks, aliases,
pagers, ssh commands, proxies, lazy fetches) is set to a command that leaves a mark, and none
may run; diff lines written to look like file headers must not move or hide a change; files
that are not regular (links out of the tree, FIFOs, devices) are never opened."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest
from tests.conftest import git

from enstack.errors import UserError
from enstack.safegit import hunk_lines, line_changes
from enstack.scan.scope import PathFilter, changed_since

FN = "int {name}(int x)\n{{\n    {body}\n}}\n"


def _fn(name: str, body: str = "return x + 1;") -> str:
    return FN.format(name=name, body=body)


def _git(repo: Path, *args: str) -> str:
    return git(repo, *args)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """One commit of a.c (two functions) and b.c; then a.c's second function is edited."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "a.c").write_text(_fn("first") + "\n" + _fn("second"))
    (root / "b.c").write_text(_fn("other"))
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "base")
    (root / "a.c").write_text(_fn("first") + "\n" + _fn("second", "return x * 2;"))
    return root


def _config(repo: Path, key: str, value: str) -> None:
    _git(repo, "config", key, value)


def _expect_edit_only(repo: Path) -> None:
    changes = changed_since("HEAD", repo)
    a = repo / "a.c"
    assert changes.lines == {a: {8}}  # the edited line of `second`, nothing else
    assert not changes.whole


def test_fsmonitor_does_not_run(repo: Path, marker: Path) -> None:
    _config(repo, "core.fsmonitor", str(marker))
    _expect_edit_only(repo)


def test_textconv_and_diff_driver_command_do_not_run(repo: Path, marker: Path) -> None:
    (repo / ".gitattributes").write_text("*.c diff=evil\n")
    _git(repo, "add", ".gitattributes")  # committed attributes, as a pull request brings them
    _git(repo, "commit", "-qm", "attributes")
    _config(repo, "diff.evil.textconv", str(marker))
    _config(repo, "diff.evil.command", str(marker))
    _config(repo, "diff.external", str(marker))
    _expect_edit_only(repo)


@pytest.mark.parametrize("kind", ["clean", "smudge", "process"])
def test_filters_do_not_run(repo: Path, marker: Path, kind: str) -> None:
    info = repo / ".git" / "info"
    info.mkdir(exist_ok=True)
    (info / "attributes").write_text("*.c filter=evil\n")
    _config(repo, f"filter.evil.{kind}", str(marker))
    _config(repo, "filter.evil.required", "true")
    _expect_edit_only(repo)


def test_hooks_aliases_and_pagers_do_not_run(repo: Path, marker: Path) -> None:
    hooks = repo / "hooks"
    hooks.mkdir()
    for name in ("post-index-change", "pre-commit", "post-checkout", "reference-transaction"):
        (hooks / name).symlink_to(marker)
    _config(repo, "core.hooksPath", str(hooks))
    for command in ("diff", "ls-files", "ls-tree", "cat-file", "rev-parse", "diff-index"):
        _config(repo, f"alias.{command}", f"!{marker}")
        _config(repo, f"pager.{command}", str(marker))
    _config(repo, "core.pager", str(marker))
    _config(repo, "log.showSignature", "true")
    _config(repo, "gpg.program", str(marker))
    _expect_edit_only(repo)


@pytest.mark.parametrize(
    ("url", "keys"),
    [
        ("ssh://attacker.invalid/x.git", {"core.sshCommand": "{m}"}),
        ("git://attacker.invalid/x.git", {"core.gitProxy": "{m}"}),
        ("ext::{m} %G", {"protocol.ext.allow": "always"}),
    ],
)
def test_a_lazy_fetch_runs_no_transport(repo: Path, marker: Path, url: str, keys: dict) -> None:
    """A partial clone whose old blob is missing: reading it would fetch from the promisor
    remote, whose transport the repository configures."""
    blob = _git(repo, "rev-parse", "HEAD:a.c").strip()
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    _config(repo, "core.repositoryformatversion", "1")
    _config(repo, "extensions.partialClone", "origin")
    _config(repo, "remote.origin.url", url.format(m=marker))
    _config(repo, "remote.origin.promisor", "true")
    for key, value in keys.items():
        _config(repo, key, value.format(m=marker))
    changes = changed_since("HEAD", repo)
    assert changes.whole == {repo / "a.c"}  # its old side unreadable: every line is in scope


def test_a_diff_line_cannot_end_a_file_or_start_another(repo: Path) -> None:
    """Added lines that read, once git prefixes them with `+`, as `+++ /dev/null` or
    `+++ b/b.c` must not hide the later hunks of the same file or credit them elsewhere."""
    first = _fn("first", "/*\n++ /dev/null\n*/\n    return x + 1;")
    second = _fn("second", "/*\n++ b/b.c\n@@ -1 +1 @@\n*/\n    strcpy(buf, src);")
    (repo / "a.c").write_text(first + "\n" + second)
    changes = changed_since("HEAD", repo)
    a = repo / "a.c"
    assert set(changes.lines) == {a}  # b.c is unchanged and gets nothing
    text = (repo / "a.c").read_text().splitlines()
    strcpy = text.index("    strcpy(buf, src);") + 1
    assert strcpy in changes.lines[a]
    assert changes.touches(a, strcpy - 1, strcpy + 1)


def test_hunks_are_read_by_their_counts() -> None:
    diff = (
        b"diff --git a/old b/new\n--- a/old\n+++ b/new\n"
        b"@@ -1,0 +2,3 @@\n+++ /dev/null\n+@@ -9 +9,9 @@\n+diff --git a/x b/x\n"
        b"@@ -5 +8 @@\n-gone\n+here\n\\ No newline at end of file\n"
        b"@@ -20,2 +22,0 @@\n-a\n-b\n"
    )
    assert hunk_lines(diff) == {2, 3, 4, 8, 22}


def test_line_changes_ignores_a_hostile_global_config(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    mark = tmp_path / "ran"
    (home / ".gitconfig").write_text(f"[diff]\n\texternal = touch {mark}\n")
    monkeypatch.setenv("HOME", str(home))
    assert line_changes(b"a\nb\nc\n", b"a\nB\nc\nd\n") == {2, 4}
    assert not mark.exists()


class _Hang(Exception):
    pass


def _alarm(_signum: int, _frame: object) -> None:
    raise _Hang


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "/etc/passwd"])
def test_untracked_and_tracked_links_out_and_fifos_are_not_opened(
    repo: Path, tmp_path: Path, target: str
) -> None:
    if target == "fifo":
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        target = str(fifo)
    (repo / "untracked.c").symlink_to(target)
    os.mkfifo(repo / "pipe.c")
    (repo / "b.c").unlink()
    (repo / "b.c").symlink_to(target)  # a tracked file turned into a link out
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)
    try:
        changes = changed_since("HEAD", repo)
    except _Hang:
        pytest.fail("changed_since blocked on a file that is not regular")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert set(changes.lines) == {repo / "a.c"} and not changes.whole


def test_only_wanted_files_below_the_roots_are_read(repo: Path) -> None:
    (repo / "notes.txt").write_text("new\n")
    sub = repo / "sub"
    sub.mkdir()
    (sub / "c.c").write_text(_fn("c"))
    changes = changed_since("HEAD", repo, suffixes={".c"}, roots=[sub])
    assert changes.whole == {sub / "c.c"} and not changes.lines
    changes = changed_since("HEAD", repo, suffixes={".c"}, roots=[repo / "a.c"])
    assert set(changes.lines) == {repo / "a.c"} and not changes.whole


def test_a_renamed_file_keeps_only_its_edit(repo: Path) -> None:
    _git(repo, "mv", "b.c", "renamed.c")
    (repo / "renamed.c").write_text(_fn("other", "return 0;"))
    changes = changed_since("HEAD", repo)
    assert changes.lines[repo / "renamed.c"] == {3}
    assert not changes.whole


def test_a_file_mode_change_alone_marks_no_line(repo: Path) -> None:
    mode = (repo / "b.c").stat().st_mode
    (repo / "b.c").chmod(mode | stat.S_IXUSR)
    _expect_edit_only(repo)


# --- the tree's ignore file and --exclude -----------------------------------------------------


def _build_filter(root: Path, excludes: list[str] | None = None) -> PathFilter:
    return PathFilter.build({".c"}, excludes or [], [root])


def test_an_ignore_file_linked_out_of_the_tree_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root:$6$salt$hash:19000:0:99999:7:::\n[z-a]\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / ".enstackignore").symlink_to(secret)
    with pytest.raises(UserError) as caught:
        _build_filter(tree)
    assert "not a regular file" in str(caught.value) and "root:" not in str(caught.value)


@pytest.mark.parametrize("kind", ["huge", "device"])
def test_an_ignore_file_too_big_or_not_a_file(tmp_path: Path, kind: str) -> None:
    ignore = tmp_path / ".enstackignore"
    if kind == "huge":
        with ignore.open("wb") as handle:  # sparse: 1 GiB that stat calls small nowhere
            handle.truncate(1 << 30)
    else:
        os.mkfifo(ignore)  # a FIFO with no writer: opening it must not block
    with pytest.raises(UserError) as caught:
        _build_filter(tmp_path)
    assert ("over 1 MiB" if kind == "huge" else "not a regular file") in str(caught.value)


def test_a_catastrophic_pattern_matches_in_linear_time(tmp_path: Path) -> None:
    pattern = "a*" * 12 + "b"
    (tmp_path / ".enstackignore").write_text(pattern + "\n")
    spec = _build_filter(tmp_path, [pattern])
    name = tmp_path / ("a" * 60 + ".c")
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        assert not spec.excluded(name)  # Python's re backtracks here for hours
        assert spec.excluded(tmp_path / ("a" * 12 + "b"))
    except _Hang:
        pytest.fail("a pattern backtracked")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "sparse"])
def test_a_baseline_that_is_endless_or_blocks(tmp_path: Path, capsys, kind: str) -> None:
    """`--baseline /dev/zero` reports size 0 to stat; a FIFO with no writer blocks an open."""
    from enstack.cli import main

    path = tmp_path / "baseline.sarif"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "sparse":
        with path.open("wb") as handle:
            handle.truncate(1 << 30)
    else:
        path = Path(kind)
    (tmp_path / "a.c").write_text(_fn("f"))
    code = main(["scan", "--bundle", str(tmp_path / "no-bundle"), "--baseline", str(path),
                 str(tmp_path / "a.c")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "--baseline" in err, err


def test_a_revision_holding_a_newline_is_one_line(repo: Path) -> None:
    with pytest.raises(UserError) as caught:
        changed_since("HEAD\nerror: forged", repo)
    assert "\n" not in str(caught.value) and "HEAD\\nerror: forged" in str(caught.value)
