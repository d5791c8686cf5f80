"""What a fix says about a vulnerability: MVP's two signatures, over normalised statements.

- the vulnerability's signature: the statements the fix deleted (and that the fixed version
  no longer holds anywhere); for a fix that only inserts (most fixes insert a check), the
  statements around each insertion instead, so a copy must still have the place the check
  was missing from;
- the fix's signature: the statements the fix added (that the vulnerable version did not hold).

A scanned function is vulnerable to the entry when it is close enough to the vulnerable
function, holds the vulnerability's signature and not the fix's (`judge`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import SequenceMatcher

from enstack.known.normalise import Normalised

CONTEXT = 2  # informative statements kept on each side of an insertion
# how much of the vulnerable function a scanned one must hold (share of its distinct
# statements): a function of the same name may be a later or earlier version of it; under
# another name, only a close copy counts
SAME_NAME_CONTAINMENT = 0.3
OTHER_NAME_CONTAINMENT = 0.7
FIX_PRESENT = 0.5  # share of the fix's added statements whose presence means "fixed"
# a mark is held by the statement itself or, in an earlier or later version of the code, by
# one this alike (difflib's ratio over tokens: a cast added, an argument more); and a function
# is still vulnerable when it holds this share of the marks
NEAR = 0.75
MARKS_HELD = 0.75
# difflib is quadratic at worst: statements longer than this are compared exactly only, and a
# function of more statements than MAX_UNITS is no entry (a row a dataset or an attacker made
# huge would otherwise stall a build)
MAX_NEAR_TOKENS = 400
MAX_UNITS = 20_000
# bump when what `judge` decides changes: scans cache each function's verdicts under it


@dataclass(frozen=True)
class Signature:
    deleted: tuple[int, ...]  # vulnerability's signature: unit keys the fix removed
    added: tuple[int, ...]  # fix's signature: unit keys the fix introduced
    context: tuple[int, ...]  # for an insert-only fix: the units around the insertion
    texts: dict[int, str] = field(default_factory=dict)  # each mark's and added one's text

    @property
    def vulnerable_marks(self) -> tuple[int, ...]:
        """What a function must hold to still be vulnerable."""
        return self.deleted or self.context

    @property
    def usable(self) -> bool:
        """Something to match beyond an exact clone."""
        return bool(self.vulnerable_marks)


@dataclass(frozen=True)
class Entry:
    """One known vulnerable function and what its fix changed."""

    vuln_id: str  # CVE-2021-1234 (or the dataset's advisory id)
    cwe: str  # CWE ids, comma-joined ("" when the source names none)
    label: str | None  # the class the CWE maps to through the hierarchy
    name: str | None  # the vulnerable function's name
    source: str  # where the base learned it: dataset file and row, or repository and commit
    vulnerable_key: int
    fixed_key: int
    vulnerable_keys: frozenset[int]
    fixed_keys: frozenset[int]
    sketched: frozenset[int]  # the informative ones, which the index's MinHash is taken over
    signature: Signature
    change: str  # what the fix changed, in the project's own lines (for the message)
    row: int = 0  # its row in the base (0 until written)


@dataclass(frozen=True)
class Verdict:
    how: str  # "clone" (the vulnerable function, normalised) or "signature"
    marks: tuple[int, ...]  # unit keys of the scanned function that matched: where it points
    containment: float  # share of the vulnerable function's statements the function holds


def signature_of(vulnerable: Normalised, fixed: Normalised) -> Signature:
    """The fix's two signatures; informative statements only (a lone `}` proves nothing)."""
    before, after = vulnerable.keys, fixed.keys
    still_there, was_there = set(after), set(before)
    informative = {u.key for u in vulnerable.units + fixed.units if u.informative}
    deleted: list[int] = []
    added: list[int] = []
    insertions: list[int] = []  # positions in `before` where statements went in
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if tag in ("delete", "replace"):
            deleted += [k for k in before[i1:i2] if k not in still_there and k in informative]
        if tag in ("insert", "replace"):
            added += [k for k in after[j1:j2] if k not in was_there and k in informative]
        if tag == "insert" or tag == "replace":  # a replaced `}` or `int V ;` is an insertion
            insertions.append(i1)
    context: list[int] = []
    if not deleted:
        units = vulnerable.units
        for at in insertions:
            context += [u.key for u in _nearest(units[:at][::-1])]
            context += [u.key for u in _nearest(units[at:])]
    marks = set(_unique(deleted) or _unique(context)) | set(added)
    texts = {u.key: u.text for u in vulnerable.units + fixed.units if u.key in marks}
    return Signature(_unique(deleted), _unique(added), _unique(context), texts)


def _nearest(units) -> list:
    return [u for u in units if u.informative][:CONTEXT]


def _unique(keys: list[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(keys))


def judge(function: Normalised, name: str | None, entry: Entry) -> Verdict | None:
    """Whether `function` is still vulnerable to the entry; None when it is not (or it holds
    the fix)."""
    keys = function.key_set
    if function.key == entry.fixed_key:
        return None
    signature = entry.signature
    if function.key == entry.vulnerable_key:
        return Verdict("clone", signature.vulnerable_marks, 1.0)
    if not signature.usable:
        return None
    containment = len(keys & entry.vulnerable_keys) / max(1, len(entry.vulnerable_keys))
    same_name = name is not None and name == entry.name
    if containment < (SAME_NAME_CONTAINMENT if same_name else OTHER_NAME_CONTAINMENT):
        return None
    added_texts = [signature.texts[k] for k in signature.added if k in signature.texts]
    mark_texts = [signature.texts[k] for k in signature.vulnerable_marks if k in signature.texts]
    if signature.added:
        # the fix is there: its statements, or ones nearly the same (the check written a
        # little differently) that the vulnerable version did not have and that are closer to
        # the fix than to what it replaced
        fix = _held(function, signature.added, signature.texts, entry.vulnerable_keys, mark_texts)
        if len(fix) >= FIX_PRESENT * len(signature.added):
            return None
    matched = _held(
        function, signature.vulnerable_marks, signature.texts, entry.fixed_keys, added_texts
    )
    if len(matched) < MARKS_HELD * len(signature.vulnerable_marks):
        return None
    return Verdict("signature", tuple(matched), containment)


def _held(
    function: Normalised,
    marks: tuple[int, ...],
    texts: dict[int, str],
    excluded: frozenset[int],
    rivals: list[str],
) -> list[int]:
    """The function's statements that stand for `marks`: each mark itself or, in an earlier
    or later version of the code, a statement nearly the same that is not in `excluded` (a
    statement the other side also has is no evidence) and is closer to the mark than to any of
    `rivals` (the other side's statements: a statement halfway between a fix's old and new
    line says nothing)."""
    keys = function.key_set
    held = []
    spare = None
    rival_tokens = [r.split(" ") for r in rivals]
    for mark in marks:
        if mark in keys:
            held.append(mark)
            continue
        text = texts.get(mark)
        if text is None or text.count(" ") >= MAX_NEAR_TOKENS:
            continue
        if spare is None:  # the function's statements that may stand in, tokenised once
            spare = [(u.key, u.text.split(" ")) for u in function.units if u.informative
                     and u.key not in excluded
                     and u.text.count(" ") < MAX_NEAR_TOKENS]  # fmt: skip
        near = _nearest_statement(text.split(" "), spare, rival_tokens)
        if near is not None:
            held.append(near)
    return held


def _nearest_statement(
    tokens: list[str], candidates: list[tuple[int, list[str]]], rivals: list[list[str]]
) -> int | None:
    """The key of the candidate whose tokens are at least NEAR alike, best first, and more
    alike than to any rival."""
    best, best_ratio = None, NEAR
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(tokens)
    for key, other in candidates:
        matcher.set_seq1(other)
        if matcher.real_quick_ratio() < best_ratio or matcher.quick_ratio() < best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio >= best_ratio and ratio > _closest(other, rivals):
            best, best_ratio = key, ratio
    return best


def _closest(tokens: list[str], others: list[list[str]]) -> float:
    """The highest likeness of `tokens` to any of `others` (0 with none)."""
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(tokens)
    best = 0.0
    for other in others:
        if len(other) >= MAX_NEAR_TOKENS:
            continue
        matcher.set_seq1(other)
        if matcher.real_quick_ratio() > best:
            best = max(best, matcher.ratio())
    return best
