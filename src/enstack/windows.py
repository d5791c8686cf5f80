"""Functions longer than a model's window, covered whole: cut into overlapping windows at
statement boundaries, each scored, the function's answer taken from the window that drove it.

Real vulnerable functions are long: on real CVE fixes most exceed 510 tokens and in about a
third the first changed line lies past token 510, where truncation cannot see it. A window
ends only at a line break that no simple statement (an expression, declaration, return, ...)
and no `if`/`for`/`while`/`switch` header spans, found with tree-sitter; a window holds at
most the model's room for code (its `max_length` less the framing tokens, less a margin for
subwords that merge differently at a window's edge), and the next window starts about a
quarter window before the last one ended, at a boundary, so a statement near a cut is seen
whole by one of them. A function that fits is one window: its text, unchanged.

Aggregation (`aggregate`): with a benign class, a function is as vulnerable as its most
vulnerable window (the lowest P(benign)), and every output (probabilities, logits, embedding)
comes from that window; without one (the paper's five classes), the windows' outputs are
averaged. The driving window's line range is where a finding points.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from enstack.csyntax.statements import window_cuts
from enstack.errors import UserError
from enstack.registries.modes import LONG_FUNCTION_MODES

LongFunctions = Literal[LONG_FUNCTION_MODES]  # type: ignore[valid-type]
EDGE_MARGIN = 2  # tokens kept free: a subword at a window's edge may split in two
OVERLAP = 4  # the next window repeats about 1/OVERLAP of the last one


@dataclass(frozen=True)
class Window:
    text: str
    first_line: int  # 0-based lines of the function, inclusive
    last_line: int


def split_windows(code: str, tokenizer, room: int) -> list[Window]:
    """`code` as windows of at most `room` tokens (see the module's docstring)."""
    return _split(code, _token_offsets([code], tokenizer)[0], room)


def _token_offsets(codes: list[str], tokenizer) -> list[list[tuple[int, int]]]:
    """Each code's token character spans, in one call of the (fast) tokenizer."""
    # verbose off: transformers warns of every text longer than the model, which is the point
    try:
        encoded = tokenizer(
            codes, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return encoded["offset_mapping"]
    except BaseException as exc:  # a Rust panic is a BaseException (pyo3's PanicException)
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise UserError(
            "the model's tokenizer failed on the code it was given "
            f"({type(exc).__name__}: {str(exc)[:200]}); its tokenizer files are damaged or "
            "not a code tokenizer's"
        ) from None


def _checked(spans: list[tuple[int, int]], code: str) -> list[tuple[int, int]]:
    """A long function's token offsets, which cut its lines: refused where a tokenizer gives
    spans outside the code (checked only where they are used, not for every function)."""
    if any(not 0 <= a <= b <= len(code) for a, b in spans):
        raise UserError(
            "the model's tokenizer gave token offsets outside the code; its tokenizer files "
            "are damaged or not a code tokenizer's"
        )
    return spans


def _split(code: str, offsets: list[tuple[int, int]], room: int) -> list[Window]:
    lines = code.split("\n")
    if len(offsets) <= room:
        return [Window(code, 0, len(lines) - 1)]
    budget = max(room - EDGE_MARGIN, 1)
    cum = _tokens_before_line(code, offsets, len(lines))
    cuts = window_cuts(code)
    spans = _window_spans(cum, cuts, budget)
    return [Window("\n".join(lines[a : b + 1]), a, b) for a, b in spans]


def _tokens_before_line(code: str, offsets: list, n_lines: int) -> np.ndarray:
    """cum[i]: tokens that start before line i (cum[n_lines]: all of them)."""
    starts = np.cumsum([0, *(len(line) + 1 for line in code.split("\n"))])
    token_lines = np.searchsorted(starts, [start for start, _ in offsets], side="right") - 1
    per_line = np.bincount(token_lines, minlength=n_lines)[:n_lines]
    return np.concatenate([[0], np.cumsum(per_line)])


def _window_spans(cum: np.ndarray, cuts: list[int], budget: int) -> list[tuple[int, int]]:
    """(first line, last line) of each window, greedy: as long as the budget allows, ending at
    an allowed cut; the next starts at the earliest cut within the overlap. Each choice is a
    binary search over the sorted cuts and the cumulative token counts (`cum` never
    decreases), so a function of a million short lines costs O(windows x log lines), not a
    scan of every cut per window."""
    n_lines = len(cum) - 1
    cuts = sorted(set(cuts))
    spans: list[tuple[int, int]] = []
    overlap = budget // OVERLAP
    start = 0
    while True:
        if cum[n_lines] - cum[start] <= budget:
            spans.append((start, n_lines - 1))
            return spans
        # the last cut c >= start with cum[c + 1] - cum[start] <= budget
        reach = int(np.searchsorted(cum, cum[start] + budget, side="right")) - 1  # c + 1 <= reach
        at = bisect.bisect_right(cuts, reach - 1) - 1
        fits = at >= 0 and cuts[at] >= start
        # else one statement longer than the window: cut at a line, or take one long line
        end = cuts[at] if fits else max(start, min(reach - 1, n_lines - 1))
        spans.append((start, end))
        if end == n_lines - 1:  # a last line longer than the window: it is read truncated
            return spans
        # the first cut c in [start, end - 1] with cum[end + 1] - cum[c + 1] <= overlap
        first = int(np.searchsorted(cum, cum[end + 1] - overlap, side="left")) - 1
        at = bisect.bisect_left(cuts, max(start, first))
        start = cuts[at] + 1 if at < len(cuts) and cuts[at] <= end - 1 else end + 1


def aggregate(
    outputs: dict[str, np.ndarray], owner: np.ndarray, n: int, benign_id: int | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-window outputs (rows of `owner`'s functions) to one row per function; and the row of
    the window that drove each function (-1 where windows were averaged)."""
    probs = outputs["probs"]
    driver = np.full(n, -1, dtype=np.int64)
    if benign_id is not None:
        order = np.lexsort((probs[:, benign_id], owner))  # by function, most vulnerable first
        first = np.ones(len(order), dtype=bool)
        first[1:] = owner[order][1:] != owner[order][:-1]
        driver[owner[order][first]] = order[first]
        return {kind: values[driver] for kind, values in outputs.items()}, driver
    counts = np.bincount(owner, minlength=n).astype(np.float64)
    out = {}
    for kind, values in outputs.items():
        if kind == "labels":
            out[kind] = values[np.searchsorted(owner, np.arange(n))]
            continue
        sums = np.zeros((n, *values.shape[1:]), dtype=np.float64)
        np.add.at(sums, owner, values)
        out[kind] = (sums / counts.reshape(-1, *[1] * (values.ndim - 1))).astype(values.dtype)
    return out, driver


@dataclass
class Coverage:
    """Functions scored, how many were longer than one window, and their lines seen."""

    functions: int = 0
    long: int = 0
    lines: int = 0
    lines_seen: int = 0

    @classmethod
    def of(cls, per_function: list[tuple[int, int, int]]) -> Coverage:
        """The coverage of functions given each one's (long, lines, lines seen)."""
        totals = np.asarray(per_function, dtype=np.int64).reshape(-1, 3).sum(axis=0)
        return cls(len(per_function), *(int(v) for v in totals))


@dataclass
class Expanded:
    """Functions as the rows a model scores, with what was seen of them."""

    windows: list[Window]
    owner: np.ndarray  # the function each window belongs to
    long: int  # functions longer than one window
    lines: int  # lines of those long functions
    lines_seen: int  # of those lines, the ones inside some window (all, unless truncated)
    # per function: (1 if longer than a window, its lines, its lines seen); zeros when short
    per_function: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))


def expand(codes: list[str], tokenizer, room: int, mode: LongFunctions) -> Expanded:
    """Every function's windows in order. Each function is tokenised once, all in one call;
    only a long one is parsed for its cuts, and only when it is read in windows. Truncation
    keeps the text (the tokenizer cuts it) and records the lines its first `room` tokens reach."""
    # a slow tokenizer gives no offsets to count lines by: it truncates, as before windows
    fast = getattr(tokenizer, "is_fast", False)
    offsets = _token_offsets(codes, tokenizer) if fast and codes else [[] for _ in codes]
    windows: list[Window] = []
    owner: list[int] = []
    per_function = np.zeros((len(codes), 3), dtype=np.int64)
    for i, (code, spans) in enumerate(zip(codes, offsets, strict=True)):
        n_lines = code.count("\n") + 1
        pieces = [Window(code, 0, n_lines - 1)]
        if len(spans) > room:  # lines are counted for the long functions only
            spans = _checked(spans, code)
            seen = n_lines
            if mode == "truncate":
                seen = code.count("\n", 0, spans[room - 1][1]) + 1
            else:
                pieces = _split(code, spans, room)
            per_function[i] = (1, n_lines, seen)
        windows.extend(pieces)
        owner.extend([i] * len(pieces))
    long, lines, seen = (int(v) for v in per_function.sum(axis=0))
    return Expanded(windows, np.asarray(owner, dtype=np.int64), long, lines, seen, per_function)


@dataclass
class WindowRows:
    """A split's functions as the rows a model trains or is validated on."""

    texts: list[str]
    labels: list[int]
    owner: np.ndarray  # the function each row belongs to
    placed: int = 0  # long functions of a pair whose windows the pair's difference chose
    first_window: int = 0  # long flawed (or paired fixed) ones it could not: the first window


def training_rows(
    codes: list[str],
    labels: list[int],
    pairs: list | None,
    tokenizer,
    room: int,
    benign_id: int | None,
) -> WindowRows:
    """Training rows over windows. A function that fits is one row, as ever. Of a long
    function of a fix pair, the windows that hold a line the pair's other side does not (for
    the flawed function, the lines its fix changed, by `enstack.lines.labels.fixed_lines`;
    for the fixed one, the lines its fix wrote) are its rows: the flawed function's as flawed,
    the fixed one's as benign. Their other windows, the code the two share, are left out:
    they may hold no flaw, yet they are the flawed function's code. A long flawed function
    without a fix to compare with trains on its first window, as truncation reads it (which
    window holds its flaw is unknown, and every window flawed would teach that any part of a
    long flawed function is the flaw); a long benign function outside any pair on every
    window. Without a benign class there is nothing to be safe: every window carries the label."""
    expanded = expand(codes, tokenizer, room, "windows")
    sides = _pair_sides(labels, pairs, benign_id)
    bounds = np.searchsorted(expanded.owner, np.arange(len(codes) + 1))
    rows = WindowRows([], [], np.zeros(0, dtype=np.int64))
    owner: list[int] = []
    for function, code in enumerate(codes):
        windows = expanded.windows[bounds[function] : bounds[function + 1]]
        benign = benign_id is None or labels[function] == benign_id
        pair = pairs[function] if pairs is not None else None
        # the other side of its pair: a flawed function's fixes, a fixed function's flaws
        others = [codes[i] for i in sides.get((pair, not benign), [])]
        kept, how = _kept_windows(code, windows, benign, others)
        rows.placed += how == "placed"
        rows.first_window += how == "first window"
        rows.texts.extend(w.text for w in kept)
        rows.labels.extend([labels[function]] * len(kept))
        owner.extend([function] * len(kept))
    rows.owner = np.asarray(owner, dtype=np.int64)
    return rows


def _kept_windows(
    code: str, windows: list[Window], benign: bool, others: list[str]
) -> tuple[list[Window], str]:
    """A function's training windows, and how they were chosen ("all", "placed" where its
    pair differs, or "first window")."""
    if len(windows) == 1 or (benign and not others):
        return windows, "all"  # it fits, or benign code outside any pair
    from enstack.lines.labels import fixed_lines

    changed = fixed_lines(code, others) if others else set()
    chosen = [w for w in windows if any(w.first_line <= line <= w.last_line for line in changed)]
    if chosen:
        return chosen, "placed"
    return windows[:1], "first window"


def _pair_sides(labels: list[int], pairs: list | None, benign_id: int | None) -> dict:
    """(pair, is benign) -> its rows: a flawed function's fixes, a fixed function's flaws."""
    sides: dict = {}
    if pairs is None or benign_id is None:
        return sides
    for row, (pair, label) in enumerate(zip(pairs, labels, strict=True)):
        if pair is not None:
            sides.setdefault((pair, label == benign_id), []).append(row)
    return sides


def scoring_rows(codes: list[str], labels: list[int], tokenizer, room: int) -> WindowRows:
    """Validation rows: every window of every function, each carrying its function's label;
    the model's answers are aggregated per function (`aggregate`) before they are scored."""
    expanded = expand(codes, tokenizer, room, "windows")
    owner = expanded.owner
    return WindowRows([w.text for w in expanded.windows], [labels[i] for i in owner], owner)
