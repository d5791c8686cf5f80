"""MITRE CWE ids, as real datasets write them, mapped onto the configured classes.

A dataset labels a vulnerable function with CWE ids (`"CWE-787"`, `"cwe-476"`, `787`, a list,
the string of a list, `NVD-CWE-Other`). Each id goes to the nearest configured class among
itself and its ancestors by ChildOf in MITRE's research view (the `cwe-tree` package's
catalogue): CWE-787 (out-of-bounds write) is a child of CWE-119, so it becomes CWE-119 where
CWE-119 is a class. An id with no configured class above it, NVD's placeholders and ids the
catalogue does not hold (categories such as CWE-264) go to the catch-all class (`CWE-other`)
when there is one. `data.cwe_map` overrides any id. A row with several ids takes the first
that reaches a named class, else the catch-all. Every id seen is recorded with where it went
and why, for the manifest and prepare's output.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from enstack.registries.cwe_ids import CWE_ID, cwe_ids

CATCH_ALL = "CWE-other"
MAX_ANCESTOR_STEPS = 30  # MITRE's research view is at most a dozen levels deep


@dataclass(frozen=True)
class Mapped:
    cls: int | None  # the class id; None: no class takes it (dropped)
    why: str  # "itself", "ancestor CWE-119 (2 steps)", "cwe_map", ...


class CweMapper:
    """CWE ids to class ids of `labels`, with a record of every id seen."""

    def __init__(self, labels: list[str], overrides: dict[str, str]) -> None:
        from cwe_tree import query  # MITRE's hierarchy, loaded once (about a thousand nodes)

        self.tree = query
        self.labels = labels
        self.by_cwe = {name.upper(): i for i, name in enumerate(labels) if CWE_ID.fullmatch(name)}
        upper = [name.upper() for name in labels]
        self.catch_all = upper.index(CATCH_ALL.upper()) if CATCH_ALL.upper() in upper else None
        self.overrides = {key: labels.index(value) for key, value in overrides.items()}
        self.memo: dict[str, Mapped] = {}
        self.seen: Counter[str] = Counter()  # rows per CWE id

    def __call__(self, value: object) -> int | None:
        """The class of a row's CWE value; None when no class takes it."""
        ids = cwe_ids(value)
        self.seen.update(ids or ["(none)"])
        mapped = [self.one(cwe) for cwe in ids]
        named = [m.cls for m in mapped if m.cls is not None and m.cls != self.catch_all]
        return named[0] if named else self.catch_all

    def take_seen(self) -> Counter[str]:
        """The rows per CWE id counted since the last call (one chunk's)."""
        seen, self.seen = self.seen, Counter()
        return seen

    def one(self, cwe: str) -> Mapped:
        if cwe not in self.memo:
            self.memo[cwe] = self._map(cwe)
        return self.memo[cwe]

    def _map(self, cwe: str) -> Mapped:
        if cwe in self.overrides:
            return Mapped(self.overrides[cwe], "data.cwe_map")
        if cwe.upper() in self.by_cwe:
            return Mapped(self.by_cwe[cwe.upper()], "itself")
        if cwe.startswith("NVD-"):
            return Mapped(self.catch_all, "NVD placeholder")
        if self.tree.get_node(cwe) is None:
            return Mapped(self.catch_all, "not a weakness in the CWE catalogue")
        return self._nearest_ancestor(cwe)

    def _nearest_ancestor(self, cwe: str) -> Mapped:
        """Breadth first up ChildOf: the nearest configured class; at equal distance, the one
        listed first in data.labels."""
        frontier, visited = {cwe}, {cwe}
        for steps in range(1, MAX_ANCESTOR_STEPS + 1):
            parents = {p for node in frontier for p in self.tree.get_node(node).parents}
            parents -= visited
            hits = sorted(self.by_cwe[p.upper()] for p in parents if p.upper() in self.by_cwe)
            if hits:
                name = self.labels[hits[0]]
                return Mapped(hits[0], f"ancestor {name} ({steps} step{'s' * (steps > 1)})")
            if not parents:
                break
            visited |= parents
            frontier = {p for p in parents if self.tree.get_node(p) is not None}
        return Mapped(self.catch_all, "no configured class among its ancestors")

    def table(self, seen: Counter[str]) -> dict[str, dict]:
        """Where each CWE id in `seen` (rows per id) went: {id: {rows, class, why}}, most
        rows first."""
        out = {}
        for cwe, rows in seen.most_common():
            if cwe == "(none)":
                cls, why = self.catch_all, "no CWE id in the row"
            else:
                cls, why = self.one(cwe).cls, self.one(cwe).why
            name = None if cls is None else self.labels[cls]
            out[cwe] = {"rows": rows, "class": name, "why": why}
        return out
