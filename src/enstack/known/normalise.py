"""A function's code in the form the knowledge base compares: comments, whitespace and layout
gone, names abstracted, cut into statements.

Abstraction level `names-v1` (VUDDY's levels 1-3, named here for what they keep):
- abstracted to `V`: local variables, parameters, type names; the function's own name to `F`;
- kept: keywords and built-in types, called functions and macros (`memcpy (`, `MIN (`),
  fields (`->len`, `.len`), names in capitals (constants and macros: `EINVAL`, `PAGE_SIZE`),
  number, string and character literals, operators.
A copy whose variables were renamed, reformatted, or recommented normalises to the same text;
one that calls other functions does not (a change there may be the fix).

The unit is a statement, not a physical line: the token stream is cut after each `;`, `{` and
`}` outside parentheses, so `if (x)\\n    return;` and `if (x) return;` are one unit and a
reformatted copy keeps its units. Preprocessor lines are left out (configuration, not code).

Tokens come from one compiled regular expression, not a parse: the function's text alone is
often not valid C (a macro tree-sitter cannot read), and a lexer reads every byte the same way
whatever the parser would make of it, in a fraction of the time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

LEVEL = "names-v1"  # what is abstracted; stored in the base: a base of another level is refused

TOKEN = re.compile(
    r"""
    (?P<comment>//(?:[^\n\\]|\\.)*|/\*.*?(?:\*/|\Z))
  | (?P<pp>(?:^|(?<=\n))[ \t]*\#(?:[^\n\\]|\\.)*)
  | (?P<literal>[uUL]?8?"(?:\\.|[^"\\\n])*"|[uUL]?'(?:\\.|[^'\\\n])*'
                |\.?\d(?:[eEpP][+-]|[\w.'])*)
  | (?P<name>[A-Za-z_$][\w$]*)
  | (?P<op>->\*?|\+\+|--|<<=|>>=|<=>|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^]=|::|\.\.\.|[^\s])
  | (?P<newline>\n)
    """,
    re.VERBOSE | re.DOTALL,
)

# C's keywords and C++'s that C code cannot use as a name; `new`, `class`, `this`, `delete`,
# `template`... are names in C (the kernel has many a `struct page *new`), so they are read as
# names: in C++ they are then abstracted alike on both sides of a comparison
KEYWORDS = frozenset(
    """
    auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while _Bool _Complex _Atomic _Alignas _Alignof _Noreturn
    _Static_assert _Thread_local bool true false NULL nullptr alignas alignof asm const_cast
    constexpr decltype dynamic_cast noexcept reinterpret_cast static_assert static_cast wchar_t
    char8_t char16_t char32_t __attribute__ __inline __inline__ __restrict __restrict__
    __volatile__ __asm__ __extension__
    """.split()  # noqa: SIM905 (a word list reads better as words)
)
ENDS_UNIT = frozenset(";{}")
MIN_TOKENS = 4  # a unit shorter than this (`}`, `break ;`, `V ++ ;`) says little on its own


class Unit(NamedTuple):
    text: str  # normalised tokens joined by spaces
    key: int  # 63-bit hash of `text`: what the base stores and compares
    first_line: int  # 1-based, relative to the function's first line
    last_line: int
    informative: bool  # long enough to count as evidence on its own


@dataclass(frozen=True)
class Normalised:
    units: tuple[Unit, ...]
    key: int  # hash of the whole normalised function (every unit, in order)
    name: str | None  # the function's own name, as written

    @cached_property
    def keys(self) -> list[int]:
        return [u.key for u in self.units]

    @cached_property
    def informative_keys(self) -> frozenset[int]:
        """What the index sketches: a `}` or a `return V ;` is in nearly every function, and an
        element in every set would make every set share its MinHash bands."""
        return frozenset(u.key for u in self.units if u.informative)

    @cached_property
    def key_set(self) -> frozenset[int]:
        return frozenset(u.key for u in self.units)

    @property
    def looks_like_a_function(self) -> bool:
        """A body in braces and a few statements: anything less is no function to match."""
        return self.name is not None and len(self.units) >= 3


def hash63(text: str) -> int:
    """A stable 63-bit hash (fits SQLite's signed INTEGER)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def normalise(code: str) -> Normalised:
    """`code` (one function) as abstracted statement units (see the module's docstring)."""
    units: list[Unit] = []
    current: list[str] = []
    first = last = depth = 0  # depth: parentheses (`for (a; b; c)` is one unit)
    for text, at in _abstracted_tokens(_raw_tokens(code)):
        if not current:
            first = at
        current.append(text)
        last = at
        if text == "(":
            depth += 1
        elif text == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and text in ENDS_UNIT:
            joined = " ".join(current)
            units.append(Unit(joined, hash63(joined), first, at, len(current) >= MIN_TOKENS))
            current = []
    if current:
        joined = " ".join(current)
        units.append(Unit(joined, hash63(joined), first, last, len(current) >= MIN_TOKENS))
    whole = hash63("\n".join(u.text for u in units))
    return Normalised(tuple(units), whole, _own_name(code))


def is_constant(name: str) -> bool:
    """A name in capitals (`EINVAL`, `PAGE_SIZE`): a constant or a macro, kept."""
    return len(name) > 1 and name[0].isupper() and name.isupper()


def _raw_tokens(code: str) -> list[tuple[bool, str, int]]:
    """(is a name, text, 1-based line) of every token; comments and preprocessor lines
    dropped, their lines counted."""
    raw: list[tuple[bool, str, int]] = []
    append = raw.append
    line = 1
    for comment, pp, literal, name, op, newline in TOKEN.findall(code):
        if newline:
            line += 1
        elif name:
            append((True, name, line))
        elif op:
            append((False, op, line))
        elif literal:
            append((False, literal, line))
            line += literal.count("\n")  # a string continued with a backslash
        else:
            line += (comment or pp).count("\n")
    return raw


def _abstracted_tokens(raw: list[tuple[bool, str, int]]) -> list[tuple[str, int]]:
    """(token, line) with names abstracted (see the module's docstring)."""
    out: list[tuple[str, int]] = []
    append = out.append
    own_name_done = body_open = False
    before = ""
    n = len(raw)
    for i, (is_name, text, at) in enumerate(raw):
        if not is_name or text in KEYWORDS or is_constant(text):
            body_open = body_open or text == "{"
            append((text, at))
        elif before in (".", "->", "::"):
            append((text, at))  # a field or a member
        elif i + 1 < n and raw[i + 1][1] == "(":
            if not own_name_done and not body_open:
                append(("F", at))  # the function's own name, before its body opens
                own_name_done = True
            else:
                append((text, at))  # a call: which function is called matters
        else:
            append(("V", at))
        before = text
    return out


def _own_name(code: str) -> str | None:
    """The name before the first `(` of the declarator (the part before the body's `{`)."""
    head = code.split("{", 1)
    if len(head) < 2:
        return None
    declarator = TOKEN.sub(lambda m: "" if m.lastgroup in ("comment", "pp") else m.group(), head[0])
    found = re.findall(r"([A-Za-z_][\w:~]*)\s*\(", declarator)
    names = [n for n in found if n.rsplit("::", 1)[-1] not in KEYWORDS]
    return names[0].rsplit("::", 1)[-1] if names else None
