"""What a fix says about a vulnerability: MVP's two signatures, over normalised statements.

- the vulnerability's signature: the statements the fix deleted (and that the fixed version
  no longer holds anywhere); for a fix that only inserts (most fixes insert a check), the
  statements around each insertion instead, so a copy must still have the place the check
  was missing from;
- the fix's signature: the statements the fix added (that the vulnerable version did not hold).

A scanned function is vulnerable to the entry when it is close enough to the vulnerable
function, holds the vulnerability's signature and not the fix's (`Signature.judge`).
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

from enstack.known.normalise import Normalised

CONTEXT = 2  # informative statements kept on each side of an insertion
# how much of the vulnerable function a scanned one must hold (share of its distinct
# statements): a function of the same name may be a later or earlier version of it; under
# another name, only a close copy counts
SAME_NAME_CONTAINMENT = 0.3
OTHER_NAME_CONTAINMENT = 0.7
FIX_PRESENT = 0.5  # share of the fix's added statements whose presence means "fixed"


@dataclass(frozen=True)
class Signature:
    deleted: tuple[int, ...]  # vulnerability's signature: unit keys the fix removed
    added: tuple[int, ...]  # fix's signature: unit keys the fix introduced
    context: tuple[int, ...]  # for an insert-only fix: the units around the insertion

    @property
    def vulnerable_marks(self) -> tuple[int, ...]:
        """What a function must hold to still be vulnerable."""
        return self.deleted or self.context

    @property
    def usable(self) -> bool:
        """Something to match beyond an exact clone."""
        return bool(self.vulnerable_marks)


@dataclass(frozen=True)
class Verdict:
    how: str  # "clone" (the vulnerable function, normalised) or "signature"
    marks: tuple[int, ...]  # unit keys that matched: where the finding points
    containment: float  # share of the vulnerable function's statements the function holds


def signature_of(vulnerable: Normalised, fixed: Normalised) -> Signature:
    """The fix's two signatures; informative statements only (a lone `}` proves nothing)."""
    before, after = vulnerable.keys, fixed.keys
    still_there, was_there = set(after), set(before)
    informative = {u.key for u in vulnerable.units + fixed.units if u.informative}
    deleted: list[int] = []
    added: list[int] = []
    insertions: list[int] = []  # positions in `before` where only insertions happened
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if tag in ("delete", "replace"):
            deleted += [k for k in before[i1:i2] if k not in still_there and k in informative]
        if tag in ("insert", "replace"):
            added += [k for k in after[j1:j2] if k not in was_there and k in informative]
        if tag == "insert":
            insertions.append(i1)
    context: list[int] = []
    if not deleted:
        units = vulnerable.units
        for at in insertions:
            context += [u.key for u in _nearest(units[:at][::-1])]
            context += [u.key for u in _nearest(units[at:])]
    return Signature(_unique(deleted), _unique(added), _unique(context))


def _nearest(units) -> list:
    return [u for u in units if u.informative][:CONTEXT]


def _unique(keys: list[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(keys))


def judge(
    function: Normalised,
    name: str | None,
    entry_name: str | None,
    vulnerable_key: int,
    fixed_key: int,
    vulnerable_keys: frozenset[int],
    signature: Signature,
) -> Verdict | None:
    """Whether `function` is still vulnerable to the entry; None when it is not (or it holds
    the fix)."""
    keys = function.key_set
    containment = len(keys & vulnerable_keys) / max(1, len(vulnerable_keys))
    if function.key == fixed_key:
        return None
    if function.key == vulnerable_key:
        return Verdict("clone", signature.vulnerable_marks, 1.0)
    if not signature.usable:
        return None
    same_name = name is not None and name == entry_name
    if containment < (SAME_NAME_CONTAINMENT if same_name else OTHER_NAME_CONTAINMENT):
        return None
    marks = signature.vulnerable_marks
    if not all(k in keys for k in marks):
        return None
    if signature.added:
        present = sum(k in keys for k in signature.added) / len(signature.added)
        if present >= FIX_PRESENT:
            return None  # the fix is there
    return Verdict("signature", marks, containment)
