"""Which statements of a flawed function its fixes changed: the line ranker's labels, and the
lines a localisation figure is scored against.

A flawed function's positive statements are those a fixed variant of it (one close enough to
be an edit of it: difflib ratio over lines >= `SIMILAR`) does without, in whole or in part.
Three more rules exist for Juliet's templates, where a "fix" is often not a fix of the flawed
line, and are named as such (`JULIET_RULES`); each can be left out (`rules=`):
- `reworded_messages`: a changed string literal is not a change (Juliet's good variants print
  other messages);
- `constant_guards`: a control header whose condition reads nothing else in the function
  (`if(1)`, `if(GLOBAL_CONST_TRUE)`) is never a flaw line, although fixes flip it to make the
  flaw unreachable;
- `inserted_checks`: a statement a fix keeps but puts behind a check it inserts is a flaw line
  (Juliet's goodB2G variants guard the sink rather than rewrite it).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence

from enstack.csyntax.statements import statement_spans
from enstack.lines.features import C_TOKEN, normal

SIMILAR = 0.5  # a fixed variant this close (difflib ratio over lines) is an edit of the flaw
MAX_VARIANTS = 8  # fixed variants compared per flawed function
JULIET_RULES = frozenset({"reworded_messages", "constant_guards", "inserted_checks"})
STRING_LITERAL = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'")
CONTROL_HEADER = re.compile(r"(?:\}\s*)?(?:else\s+)?(?:if|while|for|switch)\s*\(")
DECLARATION = re.compile(r"(?!(?:return|delete|goto|throw)\b)(?:\w+\s+)+[\w\s,*]+;")  # int i, j;
KEYWORDS = frozenset(
    {"if", "else", "while", "for", "switch", "do", "return", "sizeof"}
    | {"int", "char", "long", "short", "unsigned"}
)


def fixed_lines(
    flawed: str, fixes: Sequence[str], rules: frozenset[str] = JULIET_RULES
) -> set[int]:
    """Statements of `flawed` (their first lines, 0-based) that some close fixed variant
    changed, by the module's rules."""
    lines = [_edited_text(line, rules) for line in flawed.split("\n")]
    spans = statement_spans(flawed)
    guards = _constant_guards(lines, spans) if "constant_guards" in rules else set()
    statements = [i for i in spans if i not in guards]
    changed: set[int] = set()
    for fix in fixes[:MAX_VARIANTS]:
        fix_lines = [_edited_text(line, rules) for line in fix.split("\n")]
        matcher = difflib.SequenceMatcher(None, lines, fix_lines, autojunk=False)
        if matcher.ratio() < SIMILAR:
            continue
        kept = set(fix_lines)
        changed.update(i for i in statements if any(lines[j] not in kept for j in spans[i]))
        if "inserted_checks" in rules:
            changed.update(_checked_statements(matcher, statements, fix_lines, kept, lines))
    return changed


def _edited_text(line: str, rules: frozenset[str]) -> str:
    """A line as a fix compares it."""
    line = normal(line)
    return STRING_LITERAL.sub('""', line) if "reworded_messages" in rules else line


def _constant_guards(lines: list[str], spans: dict[int, list[int]]) -> set[int]:
    """Control headers whose condition reads nothing the rest of the function touches
    (`for(j = 0; j < 1; j++)`, where `j` is otherwise only declared): a fix that flips one
    makes the flawed code unreachable, which says nothing about which line is the flaw."""
    tokens = [C_TOKEN.findall(line) for line in lines]
    total = Counter(token for row in tokens for token in row)
    declared = {  # names in declarations (`int j;`): one mention there is not a use
        token
        for line, row in zip(lines, tokens, strict=True)
        if DECLARATION.fullmatch(line) and not CONTROL_HEADER.match(line)
        for token in row
    }
    guards = set()
    for index, span in spans.items():
        if not CONTROL_HEADER.match(lines[index]):
            continue
        own = Counter(token for line in span for token in tokens[line])  # the whole condition
        names = {t for t in own if t not in KEYWORDS and (t[0].isalpha() or t[0] == "_")}
        elsewhere = {n: total[n] - own[n] for n in names}  # mentions on the other lines
        if not any(n > 1 or (n == 1 and name not in declared) for name, n in elsewhere.items()):
            guards.add(index)
    return guards


def _checked_statements(
    matcher: difflib.SequenceMatcher,
    statements: list[int],
    fix_lines: list[str],
    kept: set[str],
    lines: list[str],
) -> set[int]:
    """Statements a fix keeps but puts behind a check it inserts (`if (data > INT_MIN)` before
    `int result = data - 1;`): the check points at the statement it protects. Without these a
    sink that its fix guards rather than rewrites would only ever be labelled safe."""
    checked = set()
    for tag, start, _, fix_start, fix_end in matcher.get_opcodes():
        if tag != "insert" or not any(
            CONTROL_HEADER.match(fix_lines[j]) for j in range(fix_start, fix_end)
        ):
            continue
        protected = next((i for i in statements if i >= start), None)
        if protected is not None and lines[protected] in kept:
            checked.add(protected)
    return checked
