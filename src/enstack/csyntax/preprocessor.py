"""One configuration of a file's `#if` groups, for the parser.

tree-sitter parses C without a preprocessor. Where an `#if` group's branches each hold half of
a statement (an `if (...) {` in one branch, another in the `#else`, one closing brace after
`#endif`), the text is not C in any configuration the parser sees, and everything up to the
function's end becomes one error block: on zlib's `inflate.c`, `inflate()` itself. Keeping
only the first (or only the last) branch of every group gives text that a compiler would see
for one set of macros; blanking the other lines with spaces, not deleting them, keeps every
line number and byte offset (so the parse is an incremental edit of the file's own).
"""

from __future__ import annotations

import re
from typing import Literal

OPENS = re.compile(rb"\s*#\s*(?:if|ifdef|ifndef)\b")
BRANCHES = re.compile(rb"\s*#\s*(?:elif|elifdef|elifndef|else)\b")
CLOSES = re.compile(rb"\s*#\s*endif\b")
Branch = Literal["first", "last"]
BLANK = bytes(32 for _ in range(256))  # a line not kept: spaces, so every offset is kept too


def has_conditionals(source: bytes) -> bool:
    return any(OPENS.match(line) for line in source.split(b"\n"))


def one_branch(source: bytes, keep: Branch) -> bytes:
    """`source` with only the first or the last branch of each `#if` group, the directives and
    the other branches blanked (their bytes turned to spaces). An unbalanced group (an `#endif`
    without its `#if`, a group left open) is read as far as it goes."""
    lines = source.split(b"\n")
    # per open group: [index of the branch being read, index of the branch kept]; `dead`
    # counts the groups reading a branch not kept, so a line's fate costs O(1) however deep
    # the nesting (a file of 100,000 nested `#if`s is input a scanner must survive)
    groups: list[list[int]] = []
    dead = 0
    last_branch = _last_branches(lines)
    out: list[bytes] = []
    continued = False  # the previous directive line ended in a backslash
    blank_continuation = False
    for number, line in enumerate(lines):
        if continued:  # a directive's continuation line goes where its first line went
            continued = line.rstrip().endswith(b"\\")
            out.append(line.translate(BLANK) if blank_continuation else line)
            continue
        directive = line.lstrip()[:1] == b"#"  # most lines are not: nothing to match
        grouping = directive
        if not directive:
            pass
        elif OPENS.match(line):
            kept_branch = 0 if keep == "first" else last_branch.get(number, 0)
            groups.append([0, kept_branch])
            dead += kept_branch != 0
        elif BRANCHES.match(line) and groups:
            group = groups[-1]
            dead -= group[0] != group[1]
            group[0] += 1
            dead += group[0] != group[1]
        elif CLOSES.match(line) and groups:
            branch, kept_branch = groups.pop()
            dead -= branch != kept_branch
        else:
            grouping = False
        kept = dead == 0 and not grouping
        out.append(line if kept else line.translate(BLANK))
        continued = directive and line.rstrip().endswith(b"\\")
        blank_continuation = not kept
    return b"\n".join(out)


def _last_branches(lines: list[bytes]) -> dict[int, int]:
    """For each `#if` line, the index of its group's last branch (0: no `#else`/`#elif`)."""
    open_at: list[int] = []
    count: dict[int, int] = {}
    for number, line in enumerate(lines):
        if line.lstrip()[:1] != b"#":
            continue
        if OPENS.match(line):
            open_at.append(number)
            count[number] = 0
        elif BRANCHES.match(line) and open_at:
            count[open_at[-1]] += 1
        elif CLOSES.match(line) and open_at:
            open_at.pop()
    return count
