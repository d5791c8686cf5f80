"""Reading a git repository without running anything its configuration names.

A scanned repository is untrusted input, and so is its `.git/config`: `core.fsmonitor`, the
`textconv` and `command` of a diff driver, the `clean`/`smudge`/`process` of a filter,
`core.hooksPath`, `core.pager`, `core.sshCommand`, `core.gitProxy`, a promisor remote's lazy
fetch and aliases each make git run a command. Porcelain (`git diff`, `git status`) runs several
of them, so nothing here uses it. What enstack asks a repository is answered by plumbing that
reads objects and the index only (`rev-parse`, `rev-list`, `ls-tree`, `ls-files`,
`diff-index --cached`, `diff-tree`, `cat-file --batch`), under the overrides in `_HARDENING`;
the line diff of a file against a blob is computed by `git diff --no-index` between two
temporary files in an empty directory outside every repository, with no configuration at all
(`line_changes`).

One owner for every git call enstack makes: the scanner's `--changed-since` and the
knowledge base's `--from-git` (`enstack known build`) go through `Repository`; `diff-tree`
compares two commits' trees there, raw (no diff driver, no textconv).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from enstack.errors import UserError

GIT_TIMEOUT_S = 300

# `-c` settings beat every configuration file; each one turns off a configured command.
_HARDENING = (
    "core.fsmonitor=false",  # a hook command run on index refresh
    "core.untrackedCache=false",
    "core.hooksPath=/dev/null",  # no hook can be found (plumbing runs none anyway)
    "core.pager=cat",
    "core.sshCommand=false",
    "core.gitProxy=",
    "core.askPass=",
    "credential.helper=",
    "log.showSignature=false",  # gpg.program
    "diff.external=",
    "protocol.allow=never",  # a promisor remote's lazy fetch, every transport
    *(f"protocol.{name}.allow=never" for name in ("ext", "file", "git", "ssh", "http", "https")),
)

# Environment: no system configuration, no prompts, no transport, no pager.
_ENV_OVERRIDES = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ALLOW_PROTOCOL": "enstack-none",  # an allow-list naming no real protocol
    "GIT_NO_LAZY_FETCH": "1",  # git 2.45+; protocol.allow=never covers older ones
    "GIT_PAGER": "cat",
    "GIT_OPTIONAL_LOCKS": "0",  # read-only: never write the user's index
}
# Set by the caller's environment, these would run a command of theirs, not the repository's;
# dropped all the same, since no call here needs them.
_ENV_DROPPED = (
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_EXTERNAL_DIFF",
    "GIT_PROXY_COMMAND",
    "GIT_EXEC_PATH",
)

HUNK = re.compile(rb"@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class GitError(UserError):
    """A git call that failed; the message names the command and git's last line."""


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    oid: str
    path: str  # as git stores it, decoded with os.fsdecode (non-UTF-8 names survive)


def hardened_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v for k, v in (base if base is not None else os.environ).items() if k not in _ENV_DROPPED
    }
    env.update(_ENV_OVERRIDES)
    return env


def run_git(
    args: list[str], cwd: Path, what: str, *, check: bool = True, stdin: bytes = b""
) -> bytes:
    """`git -c ... ARGS` in `cwd` with every configured command turned off; `what` names the
    user's request in an error (`--changed-since main`)."""
    command = ["git", "--no-pager", *(x for s in _HARDENING for x in ("-c", s)), *args]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=hardened_env(),
            input=stdin,
            capture_output=True,
            check=False,
            timeout=GIT_TIMEOUT_S,
        )
    except FileNotFoundError:
        raise GitError(f"{what}: git is not installed (or not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"{what}: git {args[0]} took over {GIT_TIMEOUT_S} s; giving up") from None
    if done.returncode != 0 and check:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        last = one_line(reason[-1]) if reason else f"exit {done.returncode}"
        raise GitError(f"{what}: git {args[0]} failed in {cwd} ({last})")
    return done.stdout


def one_line(text: str) -> str:
    """A message on one line, control characters shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Repository:
    """A repository read through plumbing only."""

    def __init__(self, where: Path, what: str) -> None:
        self.what = what
        if not where.is_dir():
            raise GitError(f"{what}: {where} is not a directory")
        top = run_git(["rev-parse", "--show-toplevel"], where, what, check=False)
        if top.strip():
            self.top = Path(top.decode(errors="surrogateescape").rstrip("\n"))
        else:  # a bare repository (`git clone --bare`, a mirror) has no work tree
            bare = run_git(["rev-parse", "--is-bare-repository"], where, what)
            if bare.strip() != b"true":
                raise GitError(f"{what}: {where} is not in a git work tree or a bare repository")
            self.top = where.resolve()
        fmt = run_git(["rev-parse", "--show-object-format"], self.top, what, check=False)
        self.object_format = fmt.decode().strip() or "sha1"

    def git(self, args: list[str], *, check: bool = True, stdin: bytes = b"") -> bytes:
        return run_git(args, self.top, self.what, check=check, stdin=stdin)

    def commit(self, rev: str) -> str | None:
        """The commit `rev` names, or None where it names none."""
        out = self.git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
            check=False,
        )
        sha = out.decode(errors="replace").strip()
        return sha or None

    def first_parent(self, commit: str) -> str | None:
        """The commit's first parent; None for a root commit."""
        out = self.git(["rev-list", "--parents", "-n", "1", "--end-of-options", commit])
        shas = out.decode().split()
        return shas[1] if len(shas) > 1 else None

    def changed_paths(self, old: str, new: str) -> list[str]:
        """Paths whose blob differs between two commits (raw tree comparison: no diff driver,
        no textconv, no rename detection)."""
        out = self.git(
            ["diff-tree", "-r", "-z", "--no-renames", "--no-textconv", "--no-ext-diff",
             "--name-only", old, new]
        )  # fmt: skip
        return [os.fsdecode(name) for name in filter(None, out.split(b"\0"))]

    def file_at(self, commit: str, path: str, limit: int = 4 << 20) -> bytes | None:
        """A file's bytes at a commit (None where it is absent, not a blob, or over `limit`)."""
        out = self.git(["ls-tree", "-z", "--full-tree", commit, "--", path])
        meta, _, _name = out.rstrip(b"\0").partition(b"\t")
        fields = meta.split(b" ")
        if len(fields) != 3 or fields[1] != b"blob":
            return None
        return next((data for _, data in self.blobs([fields[2].decode()], limit)), None)

    def tree(self, commit: str) -> dict[str, TreeEntry]:
        """Every blob of a commit's tree, by path."""
        out = self.git(["ls-tree", "-r", "-z", "--full-tree", commit])
        entries = {}
        for record in filter(None, out.split(b"\0")):
            meta, _, name = record.partition(b"\t")
            mode, kind, oid = meta.split(b" ")
            if kind == b"blob":
                path = os.fsdecode(name)
                entries[path] = TreeEntry(mode.decode(), oid.decode(), path)
        return entries

    def index(self) -> dict[str, TreeEntry]:
        """Every path in the index (stage 0, or the first stage of a conflicted one)."""
        out = self.git(["ls-files", "-z", "--stage", "--full-name"])
        entries: dict[str, TreeEntry] = {}
        for record in filter(None, out.split(b"\0")):
            meta, _, name = record.partition(b"\t")
            mode, oid, _stage = meta.split(b" ")
            path = os.fsdecode(name)
            entries.setdefault(path, TreeEntry(mode.decode(), oid.decode(), path))
        return entries

    def untracked(self) -> list[str]:
        """Files git neither tracks nor ignores."""
        out = self.git(["ls-files", "-z", "--others", "--exclude-standard", "--full-name"])
        return [os.fsdecode(name) for name in filter(None, out.split(b"\0"))]

    def staged_renames(self, commit: str) -> dict[str, str]:
        """new path -> old path for renames between `commit` and the index (`git mv`)."""
        out = self.git(
            [
                "diff-index",
                "--cached",
                "-z",
                "--name-status",
                "-M",
                "--diff-filter=R",
                "--no-textconv",
                "--no-ext-diff",
                commit,
            ]
        )
        fields = out.split(b"\0")
        renames = {}
        for i in range(0, len(fields) - 2, 3):
            if fields[i].startswith(b"R"):
                renames[os.fsdecode(fields[i + 2])] = os.fsdecode(fields[i + 1])
        return renames

    def blobs(self, oids: list[str], limit: int) -> Iterator[tuple[str, bytes | None]]:
        """(oid, content) for each blob; None for a blob over `limit` bytes (never read)."""
        if not oids:
            return
        checked = self.git(["cat-file", "--batch-check"], stdin="\n".join(oids).encode() + b"\n")
        small = []
        for line in checked.decode(errors="replace").splitlines():
            oid, _, size = line.partition(" blob ")
            if size and int(size) <= limit:
                small.append(oid)
            else:
                yield oid.split(" ")[0], None
        if not small:
            return
        out = self.git(["cat-file", "--batch"], stdin="\n".join(small).encode() + b"\n")
        at = 0
        for oid in small:
            header_end = out.index(b"\n", at)
            size = int(out[at:header_end].split(b" ")[2])
            yield oid, out[header_end + 1 : header_end + 1 + size]
            at = header_end + 1 + size + 1

    def blob_id(self, data: bytes) -> str:
        """The id git gives `data` as a blob, computed here (hash-object would run filters)."""
        digest = hashlib.sha256 if self.object_format == "sha256" else hashlib.sha1
        return digest(b"blob %d\0" % len(data) + data).hexdigest()


def line_changes(old: bytes, new: bytes) -> set[int]:
    """Lines of `new` added or modified relative to `old` (1-based). A place where lines were
    only deleted marks the line after it. git's diff runs on two temporary files in an empty
    directory outside every repository, with no configuration file read: nothing the scanned
    repository says applies. Hunks are read by their counts, so no content line, however it
    is written, is taken for a header."""
    with tempfile.TemporaryDirectory(prefix="enstack-diff-") as scratch:
        base = Path(scratch)
        (base / "old").write_bytes(old)
        (base / "new").write_bytes(new)
        env = hardened_env({k: v for k, v in os.environ.items() if not k.startswith("GIT_")})
        env.update(
            {
                "HOME": scratch,
                "XDG_CONFIG_HOME": scratch,
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_CEILING_DIRECTORIES": str(base.parent),
            }
        )
        command = [
            "git",
            "--no-pager",
            "diff",
            "--no-index",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--text",
            "--unified=0",
            "--ignore-cr-at-eol",
            "old",
            "new",
        ]
        try:
            done = subprocess.run(
                command, cwd=base, env=env, capture_output=True, check=False, timeout=GIT_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise GitError(f"git diff took over {GIT_TIMEOUT_S} s; giving up") from None
    if done.returncode not in (0, 1):
        raise GitError(
            f"git diff --no-index failed ({one_line(done.stderr.decode(errors='replace'))})"
        )
    return hunk_lines(done.stdout)


def hunk_lines(diff: bytes) -> set[int]:
    """New-side lines of a one-file diff with `--unified=0`, read by the hunk headers' counts."""
    lines = diff.split(b"\n")
    changed: set[int] = set()
    i = 0
    while i < len(lines) and not lines[i].startswith(b"@@ "):
        i += 1  # the file header: before the first hunk, written by git, never by content
    while i < len(lines):
        match = HUNK.match(lines[i])
        if match is None:
            break  # the end of the output (an empty last line)
        old_count = int(match.group(1) or 1)
        start, new_count = int(match.group(2)), int(match.group(3) or 1)
        changed.update(range(start, start + new_count) if new_count else [max(start, 1)])
        i += 1
        body = old_count + new_count
        while body and i < len(lines):
            if not lines[i].startswith(b"\\"):  # "\ No newline at end of file" is not counted
                body -= 1
            i += 1
        while i < len(lines) and lines[i].startswith(b"\\"):
            i += 1
    return changed
