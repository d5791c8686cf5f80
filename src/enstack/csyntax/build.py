"""What a build says about each file: the macros a compilation database defines.

`enstack scan --compile-commands build/compile_commands.json` reads clang's JSON compilation
database (CMake's `CMAKE_EXPORT_COMPILE_COMMANDS`, Bear, Meson) for each file's `-D` and `-U`
options. With them, `#if` groups are read as that build reads them (`configured`): the branch
whose condition holds is kept, where the condition is one enstack can decide (`defined(X)`,
`X`, `!X`, numbers, `&&`, `||`, comparisons); elsewhere the first branch is kept, as without a
build. Nothing in the database is run: its commands are split into words (`shlex`), never
executed, and no compiler or header is needed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from enstack import versions
from enstack.errors import UserError
from enstack.fsutil import read_untrusted_json

MAX_DATABASE_BYTES = 256 << 20


@dataclass(frozen=True)
class BuildContext:
    """One file's macros as its compile command defines them (`-D`, then `-U`)."""

    defines: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A digest of the defines: part of the file's cache key."""
        text = "\0".join(f"{k}={v}" for k, v in sorted(self.defines.items()))
        return hashlib.sha256(f"{versions.BUILD_MACROS}\0{text}".encode()).hexdigest()[:16]


class CompileCommands:
    """A compilation database: each file's BuildContext, by absolute path."""

    def __init__(self, contexts: dict[str, BuildContext], source: Path) -> None:
        self.contexts = contexts
        self.source = source

    @classmethod
    def load(cls, path: Path) -> CompileCommands:
        culprit = f"--compile-commands {path}"
        entries = read_untrusted_json(
            path, MAX_DATABASE_BYTES, culprit, "not a JSON compilation database"
        )
        if not isinstance(entries, list):
            raise UserError(f"{culprit}: not a JSON array of compile commands")
        contexts: dict[str, BuildContext] = {}
        for number, entry in enumerate(entries, start=1):
            file, words = _entry(entry, culprit, number)
            contexts[file] = BuildContext(_defines(words))
        return cls(contexts, path)

    def for_file(self, path: Path) -> BuildContext | None:
        return self.contexts.get(os.path.realpath(path))


def _entry(entry: object, culprit: str, number: int) -> tuple[str, list[str]]:
    """An entry's absolute file path and its command's words."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise UserError(f'{culprit}: entry {number} has no "file"')
    directory = entry.get("directory", "")
    if not isinstance(directory, str):
        raise UserError(f'{culprit}: entry {number}: "directory" is not text')
    if isinstance(entry.get("arguments"), list) and all(
        isinstance(a, str) for a in entry["arguments"]
    ):
        words = list(entry["arguments"])
    elif isinstance(entry.get("command"), str):
        try:
            words = shlex.split(entry["command"])  # split, never run
        except ValueError as exc:
            raise UserError(
                f"{culprit}: entry {number}: its command does not split ({exc})"
            ) from None
    else:
        raise UserError(f'{culprit}: entry {number} has neither "arguments" nor "command"')
    file = os.path.realpath(os.path.join(directory, entry["file"]))
    return file, words


def _defines(words: list[str]) -> dict[str, str]:
    """`-DNAME`, `-D NAME`, `-DNAME=VALUE`, `-UNAME`, in order (a later one wins)."""
    defines: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        for flag in ("-D", "-U"):
            if word.startswith(flag):
                value = word[2:] or (words[index + 1] if index + 1 < len(words) else "")
                index += 0 if word[2:] else 1
                name, _, body = value.partition("=")
                if not re.fullmatch(r"[A-Za-z_]\w*", name):
                    break
                if flag == "-D":
                    defines[name] = body if "=" in value else "1"
                else:
                    defines.pop(name, None)
                break
        index += 1
    return defines


# --- reading `#if` groups as the build does ------------------------------------------------------

_DIRECTIVE = re.compile(rb"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")
BLANK = bytes(32 for _ in range(256))


def configured(source: bytes, context: BuildContext) -> bytes:
    """`source` with every `#if` group read as the build reads it: the branch whose condition
    holds kept, the directives and the other branches turned to spaces (every offset kept).
    A condition enstack cannot decide keeps the group's first branch."""
    lines = source.split(b"\n")
    out: list[bytes] = []
    # per open group: (whether an enclosing branch is dead, whether a branch was taken, alive)
    groups: list[list[bool]] = []
    continued = False
    for line in lines:
        if continued:  # a directive's continuation line
            continued = line.rstrip().endswith(b"\\")
            out.append(line.translate(BLANK))
            continue
        match = _DIRECTIVE.match(line) if line.lstrip()[:1] == b"#" else None
        if match is None:
            alive = all(group[2] for group in groups)
            out.append(line if alive else line.translate(BLANK))
            continue
        kind, rest = match.group(1), _condition_text(match.group(2), lines, len(out))
        _step(groups, kind, rest, context)
        out.append(line.translate(BLANK))
        continued = line.rstrip().endswith(b"\\")
    return b"\n".join(out)


def _condition_text(rest: bytes, lines: list[bytes], at: int) -> bytes:
    text = rest
    while text.rstrip().endswith(b"\\") and at + 1 < len(lines):
        at += 1
        text = text.rstrip()[:-1] + b" " + lines[at]
    return re.sub(rb"/\*.*?\*/|//.*", b" ", text)


def _step(groups: list[list[bool]], kind: bytes, rest: bytes, context: BuildContext) -> None:
    """Open, switch or close a group: [parent alive, a branch taken, this branch alive]."""
    if kind in (b"if", b"ifdef", b"ifndef"):
        parent = all(group[2] for group in groups)
        holds = _holds(kind, rest, context)
        groups.append([parent, holds is not False, parent and holds is not False])
    elif not groups:
        return  # an `#else` or `#endif` without its `#if`: read past
    elif kind == b"endif":
        groups.pop()
    else:
        group = groups[-1]
        holds = True if kind == b"else" else _holds(b"if", rest, context)
        take = not group[1] and holds is not False
        group[2] = group[0] and take
        group[1] = group[1] or take


def _holds(kind: bytes, rest: bytes, context: BuildContext) -> bool | None:
    """Whether a condition holds for the build; None where it cannot be decided (the first
    branch is then kept, as without a build: `take` treats None as true once)."""
    name = rest.strip().split(b" ")[0].decode("ascii", "replace")
    if kind == b"ifdef":
        return name in context.defines
    if kind == b"ifndef":
        return name not in context.defines
    return _evaluate(rest.decode("ascii", "replace"), context)


_TOKEN = re.compile(
    r"\s*(defined\s*\(\s*\w+\s*\)|defined\s+\w+|\d+[uUlL]*|\w+|&&|\|\||[!=<>]=|[()!<>])"
)


def _evaluate(text: str, context: BuildContext) -> bool | None:
    """A preprocessor condition as a Python expression over the defines, where it is only
    names, numbers, `defined`, `!`, `&&`, `||`, comparisons and parentheses; else None."""
    words = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            return None
        token = match.group(1)
        position = match.end()
        if token.startswith("defined"):
            name = re.sub(r"defined|[()\s]", "", token)
            words.append("1" if name in context.defines else "0")
        elif token[0].isdigit():
            words.append(str(int(re.sub(r"[uUlL]+$", "", token))))
        elif re.fullmatch(r"\w+", token):
            value = context.defines.get(token, "0")  # an unknown name is 0, as cpp reads it
            if not re.fullmatch(r"\d+", value.strip() or "1"):
                return None
            words.append(str(int(value.strip() or "1")))
        else:
            words.append({"&&": " and ", "||": " or ", "!": " not "}.get(token, token))
    if len(words) > 200:
        return None
    try:
        return bool(_safe_eval(" ".join(words)))
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return None


def _safe_eval(expression: str) -> int:
    """Evaluate integers, `and`, `or`, `not`, comparisons and parentheses by walking the
    parsed expression: nothing else is accepted (no names, no calls, no attributes)."""
    import ast

    tree = ast.parse(expression, mode="eval")

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BoolOp):
            values = [value(v) for v in node.values]
            return int(all(values) if isinstance(node.op, ast.And) else any(values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return int(not value(node.operand))
        if isinstance(node, ast.Compare):
            left, result = value(node.left), True
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = value(right_node)
                result = result and _compare(op, left, right)
                left = right
            return int(result)
        raise ValueError("not a preprocessor condition")

    return value(tree)


def _compare(op: object, left: int, right: int) -> bool:
    import ast

    table = {ast.Eq: left == right, ast.NotEq: left != right, ast.Lt: left < right,
             ast.LtE: left <= right, ast.Gt: left > right, ast.GtE: left >= right}  # fmt: skip
    for kind, result in table.items():
        if isinstance(op, kind):
            return result
    raise ValueError("not a comparison")
