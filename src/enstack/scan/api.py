"""Scanning as a library: load a model once, then `predict_proba` on function strings or
`scan` paths. The CLI (`enstack scan`) is a thin layer over these."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from enstack import versions
from enstack.csyntax.build import BuildContext, CompileCommands
from enstack.csyntax.functions import (
    Extraction,
    Function,
    Unscored,
    extract_functions,
)
from enstack.csyntax.parser import language_of
from enstack.errors import UserError
from enstack.log import count_of
from enstack.progress import abandon, progress_bar
from enstack.scan import (
    DEFAULT_THRESHOLD,
    LOCALISE_CHOICES,
    LONG_FUNCTION_MODES,
    PRECISIONS,
)
from enstack.scan.cache import ScanCache, code_key, code_key_bytes
from enstack.scan.card import ModelCard, read_card, resolve_method
from enstack.scan.files import (
    MAX_FILE_BYTES,
    FileTally,
    Selection,
    SourceFile,
    check_paths,
    selection_for,
    source_files,
)
from enstack.scan.scope import IGNORE_FILE
from enstack.scan.suppress import (
    Baseline,
    InlineMark,
    Suppression,
    fingerprint,
    inline_marks,
    inline_suppression,
)
from enstack.windows import Coverage, LongFunctions

if TYPE_CHECKING:  # torch and transformers load only when something must be scored
    from enstack.known.base import KnownBase
    from enstack.known.match import KnownReport
    from enstack.scan.model import ScanModel

LEVELS = ("none", "note", "warning", "error")
ERROR_AT = 0.9  # P(vulnerable) at or above which a finding is an error, not a warning
SCORE_BATCH = 256  # functions scored per step (the progress bar's unit of work)
STAGE_LOG_EVERY = 10.0  # seconds between a scan's progress lines in a log (not a terminal)


@dataclass
class Scored:
    """A function and what the model says about it."""

    function: Function
    probs: np.ndarray  # per class
    per_model: dict[str, np.ndarray]
    label: str  # the most probable flaw class (any class for a model without a benign one)
    p_vulnerable: float | None  # 1 - P(benign); None without a benign class
    level: str  # none, note, warning or error
    lines: list[tuple[int, float]] = field(default_factory=list)  # file lines, best first
    suppression: Suppression | None = None  # an enstack-ignore comment or the baseline

    @property
    def confidence(self) -> float:
        return self.p_vulnerable if self.p_vulnerable is not None else float(self.probs.max())

    @cached_property  # read by the baseline, JSON and SARIF: hash the function's text once
    def fingerprint(self) -> str:
        """SARIF's primaryLocationLineHash: what a baseline matches on."""
        return fingerprint(self.function.name, self.label, self.function.code)


@dataclass(frozen=True)
class Stage:
    """How long one stage of a scan took, and over how much work: a line on stderr."""

    name: str  # reading, scoring, ranking lines, known vulnerabilities
    done: int
    noun: str  # file, function, finding
    seconds: float
    detail: str = ""  # e.g. "2,209 windows"

    def __str__(self) -> str:
        fast = self.seconds >= 0.05 and self.done
        rate = f", {self.done / self.seconds:,.0f} {self.noun}s/s" if fast else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.name} {count_of(self.done, self.noun)}{detail} {self.seconds:.1f} s{rate}"


@dataclass(kw_only=True)
class ScanReport:
    model: ModelCard | None  # None: a scan against a knowledge base alone (--known, no model)
    scored: list[Scored]
    tally: FileTally
    damaged_functions: int
    damaged_files: int
    threshold: float
    localise: str
    damaged_paths: list[str] = field(default_factory=list)
    changed_since: str | None = None  # the revision of --changed-since
    functions_seen: int = 0  # in the files read, before --changed-since kept the changed ones
    # what the model saw of the distinct texts scored (from the cache where it answered):
    # how many were longer than one window, and their lines scored
    coverage: Coverage | None = None
    long_mode: str = "windows"
    # per file: what the parse could not turn into functions (so was not scored at all)
    unscored: dict[str, Unscored] = field(default_factory=dict)
    known: KnownReport | None = None  # what the knowledge base (--known) found
    stages: list[Stage] = field(default_factory=list)  # what took how long (stderr only)

    def timing(self) -> str:
        """One line: the scan's time, stage by stage, with each stage's rate."""
        total = sum(stage.seconds for stage in self.stages)
        return f"took {total:.1f} s: " + "; ".join(map(str, self.stages))

    def render(self, fmt: str = "text") -> str:
        """The report as `enstack scan --format FMT` writes it: text, json, csv, sarif or html
        (`enstack.scan.formats.FORMATS`)."""
        from enstack.scan.formats import render

        return render(self, fmt)

    def write(self, path: str | Path, fmt: str | None = None) -> Path:
        """Write the report to `path` atomically, in `fmt` or the format its suffix names
        (`.sarif`, `.json`, `.csv`, `.html`, else text)."""
        from enstack.fsutil import atomic_write_text
        from enstack.scan.formats import for_path

        path = Path(path)
        fmt = fmt or for_path(path)
        atomic_write_text(path, self.render(fmt))
        return path

    @property
    def findings(self) -> list[Scored]:
        """Every function at or above the threshold, suppressed ones included."""
        return [s for s in self.scored if s.level != "none"]

    @property
    def unsuppressed(self) -> list[Scored]:
        """The findings nobody has judged yet: what `--fail-on` counts."""
        return [s for s in self.findings if s.suppression is None]

    @property
    def localisation_note(self) -> str | None:
        """What the findings' ranked lines leave out (a graph model's graph), if any."""
        ranked = any(s.lines for s in self.findings)
        if self.model is None or not ranked:
            return None
        return self.model.localisation_note(self.localise)

    @property
    def detects(self) -> bool:
        """A model that tells vulnerable from benign (or none at all: nothing to warn of)."""
        return self.model is None or self.model.benign_label is not None

    @property
    def functions(self) -> int:
        """Functions in scope: scored by the model, or checked against the base alone."""
        if self.model is None:
            return self.known.checked if self.known is not None else 0
        return len(self.scored)

    @property
    def fails_at(self) -> list[str]:
        """The level of every finding nobody has judged yet, learned and known."""
        known = self.known.unsuppressed if self.known is not None else []
        return [s.level for s in self.unsuppressed] + [k.level for k in known]

    def summary(self) -> str:
        new = self.unsuppressed
        levels = {lv: sum(1 for s in new if s.level == lv) for lv in LEVELS[1:]}
        counted = ", ".join(f"{n} {lv}" for lv, n in levels.items() if n)
        skipped = sum(self.tally.skipped.values())
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.tally.skipped.items()))
        functions = count_of(self.functions, "function")
        if self.changed_since is not None:
            functions = (
                f"{self.functions} of their {count_of(self.functions_seen, 'function')} in scope "
                f"(changed since {self.changed_since})"
            )
        suppressed = len(self.findings) - len(new)
        learned = count_of(len(new), "finding") + (f" ({counted})" if counted else "")
        parts = [
            f"scanned {count_of(self.tally.files, 'file')}, {functions}"
            + (
                f" ({self.damaged_functions} from damaged regions)"
                if self.damaged_functions
                else ""
            ),
            f"skipped {count_of(skipped, 'file')}" + (f" ({reasons})" if reasons else ""),
        ]
        if self.model is not None:
            parts.append(learned)
        if self.known is not None:
            parts.append(self.known.summary())
        if suppressed:
            parts.append(f"{suppressed} suppressed")
        parts += self._coverage_clause()
        if self.unscored:
            lines = sum(u.lines for u in self.unscored.values())
            bodies = sum(u.functions for u in self.unscored.values())
            about = f", about {count_of(bodies, 'function')}" if bodies else ""
            parts.append(
                f"{count_of(lines, 'line')} in {count_of(len(self.unscored), 'file')} not scored "
                f"(C the parser could not read{about}; listed per file in every format)"
            )
        if self.localisation_note:
            parts.append(f"lines: {self.localisation_note}")
        parts += self._scope_clauses()
        if self.tally.non_utf8:
            parts.append(f"{count_of(self.tally.non_utf8, 'file')} not UTF-8 (bytes replaced)")
        return "; ".join(parts)

    def _coverage_clause(self) -> list[str]:
        """How much of the long functions the model saw, over the distinct function texts
        scored (identical functions are scored once); the cache keeps it with each score, so
        a cached re-scan says what the cold one said."""
        seen = self.coverage
        if seen is None or not seen.long:
            return []
        how = "scored whole, in windows" if self.long_mode == "windows" else "truncated"
        return [
            f"{seen.long} of the {count_of(seen.functions, 'distinct function text')} scored "
            f"longer than a window ({how}; {seen.lines_seen} of their {seen.lines} lines "
            f"scored)"
        ]

    def _scope_clauses(self) -> list[str]:
        """What --exclude, the ignore files and --changed-since left out, named apart; a
        warning where they left out every file (a committed `.enstackignore` of `*` would
        otherwise turn a CI scan green in silence)."""
        tally = self.tally
        parts = []
        if tally.excluded:
            by_file = f" ({tally.ignored} by {IGNORE_FILE})" if tally.ignored else ""
            parts.append(f"{count_of(tally.excluded, 'file')} excluded{by_file}")
        if tally.unchanged:
            parts.append(
                f"{count_of(tally.unchanged, 'file')} not changed since {self.changed_since}"
            )
        if self.every_file_excluded:
            parts.append(f"warning: {self.every_file_excluded}")
        return parts

    @property
    def every_file_excluded(self) -> str | None:
        """The warning when exclusion rules left nothing to scan, else None."""
        if self.tally.files or not self.tally.excluded:
            return None
        rules = (
            "--exclude and ignore files"
            if self.tally.ignored < self.tally.excluded
            else (f"{IGNORE_FILE} rules")
        )
        return f"{rules} left out every file ({self.tally.excluded}): nothing was scanned"


def _stage_bar(progress: bool | None, desc: str, unit: str, total: int | None = None):
    """A scan stage's progress: a bar cleared when it ends on a terminal, a plain line at most
    every STAGE_LOG_EVERY seconds in a log (the `took` line then says how long it took)."""
    return progress_bar(enabled=progress, desc=desc, unit=unit, total=total, leave=False,
                        every=STAGE_LOG_EVERY)  # fmt: skip


class Probabilities(np.ndarray):
    """An array of class probabilities (one row per function) that knows its columns."""

    labels: list[str]

    @classmethod
    def of(cls, probs: np.ndarray, labels: list[str]) -> Probabilities:
        out = np.asarray(probs).view(cls)
        out.labels = list(labels)
        return out

    def __array_finalize__(self, obj: object) -> None:
        self.labels = list(getattr(obj, "labels", []))

    def as_dicts(self) -> list[dict[str, float]]:
        """Each row as {class: probability}."""
        rows = np.atleast_2d(np.asarray(self))
        return [dict(zip(self.labels, map(float, row), strict=True)) for row in rows]


class Scanner:
    """A model and the scan settings; no state between scans but the model.

    Given a path, the model is loaded on first need: a scan that the cache answers whole
    (every function scored before, every finding's lines ranked) never loads it."""

    def __init__(
        self,
        model: ScanModel | Path | str | None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        top_lines: int = 3,
        localise: str = "auto",
        cache_dir: Path | None = None,
        precision: str = "fp32",
        long_functions: LongFunctions | None = None,
        compile_commands: Path | str | None = None,
        known: KnownBase | Path | str | None = None,
    ) -> None:
        _check_settings(threshold, top_lines, localise, precision, cache_dir)
        # each file's macros from a compilation database: `#if` groups read as the build does
        self.build = CompileCommands.load(Path(compile_commands)) if compile_commands else None
        if long_functions not in (None, *LONG_FUNCTION_MODES):
            choices = " or ".join(LONG_FUNCTION_MODES)
            raise UserError(f"--long-functions: {long_functions!r} is not {choices}")
        self.known = _known_base(known)
        loaded = hasattr(model, "card") and hasattr(model, "predict_proba")  # a ScanModel
        if model is None and self.known is None:
            raise UserError(
                "Scanner: model is missing: give a bundle's path (or a loaded ScanModel), a "
                "knowledge base (known=), or both"
            )
        if not (model is None or isinstance(model, (str, Path)) or loaded):
            raise UserError(
                f"Scanner: model must be a bundle's path or a loaded ScanModel, not {model!r}"
            )
        self.card: ModelCard | None
        if model is None:  # the knowledge base alone: no model is read, torch never imported
            self.card, self._model = None, None
        elif isinstance(model, (str, Path)):
            self.card, self._model = read_card(model), None
        else:
            self.card, self._model = model.card, model
            precision = model.precision
        if self.card and self.card.stored_precision == "int8":
            precision = "int8"  # stored quantised (`enstack quantise`): int8 whatever asked
        # unless told, long functions are read as the models were trained on them
        default = self.card.long_functions_read if self.card else "windows"
        self.long_functions = long_functions or default
        if self._model is not None:
            self._model.long_functions = self.long_functions
        self.precision = precision
        self.threshold = threshold
        self.top_lines = top_lines
        self.localise = resolve_method(self.card, localise) if self.card else localise
        if self.localise == "gradient" and precision == "int8":
            raise UserError("--localise gradient: needs --precision fp32 (int8 has no gradients)")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    @property
    def model(self) -> ScanModel:
        """The loaded model (loading it now if this is its first use)."""
        if self.card is None:
            raise UserError("this Scanner has no model (a knowledge base alone): nothing to score")
        if self._model is None:
            from enstack.scan.model import load_scan_model

            self._model = load_scan_model(
                self.card.source,
                precision=self.precision,
                card=self.card,
                long_functions=self.long_functions,
            )
        return self._model

    @property
    def cache_key(self) -> str:
        """Scores differ by precision and by how long functions are read: each keeps its own
        rows (truncation keeps the key scans had before windows)."""
        if self.card is None:
            return "known-only"  # no scores are kept; the files' functions are
        key = self.card.fingerprint + ("" if self.precision == "fp32" else f"@{self.precision}")
        windows = f"+windows{versions.WINDOWS}" if self.long_functions == "windows" else ""
        return key + windows

    def predict_proba(self, codes: list[str] | str) -> Probabilities:
        """Class probabilities for each function's code, one row per function; the columns
        are the model's classes, named by the result's `labels` (`probs.labels`,
        `probs.as_dicts()`). One string is one function (one row), not a sequence of
        characters."""
        codes = [codes] if isinstance(codes, str) else codes
        if not isinstance(codes, (list, tuple)) or not all(isinstance(c, str) for c in codes):
            raise UserError("predict_proba: give a function's code as a string, or a list of them")
        for i, code in enumerate(codes):
            if len(code) > MAX_FILE_BYTES:
                raise UserError(f"predict_proba: code {i} is over {MAX_FILE_BYTES >> 20} MiB")
        probs = self.model.predict_proba([_valid_text(c) for c in codes])[0]
        return Probabilities.of(probs, self.card.labels)

    def scan(
        self,
        paths: list[str],
        progress: bool | None = None,
        selection: Selection | None = None,
        baseline: Baseline | None = None,
    ) -> ScanReport:
        """Score every function in `paths` (files, directories, `-`). `selection` narrows what
        is read (excludes, `--changed-since`); `baseline` marks findings already known."""
        paths = _path_list(paths)
        if selection is not None and not isinstance(selection, Selection):
            raise UserError(
                f"scan: selection must be a Selection (selection_for(...)), not {selection!r}"
            )
        if baseline is not None and not isinstance(baseline, Baseline):
            raise UserError(
                f"scan: baseline must be a Baseline (load_baseline(path)), not {baseline!r}"
            )
        selection = selection or selection_for(paths)
        changes = selection.changes
        check_paths(paths, changes)
        tally = FileTally()
        functions: list[Function] = []
        marks: dict[int, list[InlineMark]] = {}
        damaged_paths: list[str] = []
        unscored: dict[str, Unscored] = {}
        seen = 0
        labels = self.card.labels if self.card else []
        cache = ScanCache(self.cache_dir, self.cache_key, len(labels)) if self.cache_dir else None
        started = time.monotonic()
        reading = _stage_bar(progress, "reading", " files")
        try:
            for source in source_files(paths, tally, selection):
                reading.update()
                build = self.build.for_file(source.language_path) if self.build else None
                extraction = _functions_of(source, cache, build)
                found = extraction.functions
                seen += len(found)
                if changes is not None:
                    found = [
                        f
                        for f in found
                        if changes.touches(source.language_path, f.start_line, f.end_line)
                    ]
                for function, found_marks in zip(
                    found, _marks_of(source, found, labels), strict=True
                ):
                    if found_marks:
                        marks[len(functions)] = found_marks
                    functions.append(function)
                if extraction.has_errors:
                    damaged_paths.append(source.display)
                if extraction.unscored.lines:
                    unscored[source.display] = extraction.unscored
                reading.set_postfix_str(f"{count_of(len(functions), 'function')} in scope",
                                        refresh=False)  # fmt: skip
            if tally.files == 0 and paths and changes is None and not tally.excluded:
                raise UserError(_nothing_readable(paths, tally))
            reading.close()
            stages = [Stage("reading", tally.files, "file", time.monotonic() - started,
                            count_of(len(functions), "function"))]  # fmt: skip
            scored, coverage = self._score(functions, cache, progress, stages)
            known = self._check_known(functions, marks, baseline, progress, cache, stages)
            self._rank_findings(scored, marks, baseline, cache, progress, stages)
        except BaseException:
            abandon(reading)  # the error line, not a half-drawn bar, is the last thing shown
            raise
        finally:
            if cache is not None:
                cache.close()
        return ScanReport(
            model=self.card,
            scored=scored,
            tally=tally,
            damaged_functions=sum(f.damaged for f in functions),
            damaged_files=len(damaged_paths),
            threshold=self.threshold,
            localise=self.localise,
            damaged_paths=damaged_paths,
            changed_since=changes.rev if changes is not None else None,
            functions_seen=seen,
            coverage=coverage,
            long_mode=self.long_functions,
            unscored=unscored,
            known=known,
            stages=stages,
        )

    def _rank_findings(
        self,
        scored: list[Scored],
        marks: dict[int, list[InlineMark]],
        baseline: Baseline | None,
        cache: ScanCache | None,
        progress: bool | None,
        stages: list[Stage],
    ) -> None:
        """Each finding's suppression (an inline mark, the baseline) and its ranked lines."""
        started = time.monotonic()
        findings = [(i, item) for i, item in enumerate(scored) if item.level != "none"]
        ranking = progress if self.top_lines and findings else False
        bar = _stage_bar(ranking, "ranking lines", " findings", len(findings))
        for index, item in findings:
            item.suppression = inline_suppression(marks.get(index, []), item.label) or (
                baseline.suppression(item.fingerprint) if baseline else None
            )
            if self.top_lines:
                item.lines = self._lines(item, cache)[: self.top_lines]
            bar.update()
        bar.close()
        if self.top_lines and findings:
            stages.append(Stage("ranking lines of", len(findings), "finding",
                                time.monotonic() - started))  # fmt: skip

    def _check_known(
        self,
        functions: list[Function],
        marks: dict[int, list[InlineMark]],
        baseline: Baseline | None,
        progress: bool | None,
        cache: ScanCache | None,
        stages: list[Stage],
    ) -> KnownReport | None:
        """Each function against the knowledge base; a finding is suppressed as a learned one
        is (an `enstack-ignore` naming its CVE, its CWE or no class; the baseline)."""
        if self.known is None:
            return None
        from enstack.known.match import KnownMatcher

        started = time.monotonic()
        matcher = KnownMatcher(self.known)
        report = matcher.report()
        keys = [code_key(f"{f.name}\0{f.code}") for f in functions]  # the verdict reads both
        owner = self.known.cache_key
        known = cache.get_known(owner, sorted(set(keys))) if cache else {}
        fresh: dict[str, list[tuple]] = {}
        bar = _stage_bar(progress, "known vulnerabilities", " functions", len(functions))
        for index, (function, key) in enumerate(zip(functions, keys, strict=True)):
            found_here = matcher.findings(function, known[key]) if key in known else None
            if found_here is None:  # not cached (or a stale row): judged now
                known[key] = fresh[key] = matcher.verdicts(function.code, function.name)
                found_here = matcher.findings(function, known[key]) or []
            report.checked += 1
            for found in found_here:
                aliases = found.entry.cwe.split(",") if found.entry.cwe else []
                found.suppression = inline_suppression(
                    marks.get(index, []), found.label, *aliases
                ) or (baseline.suppression(found.fingerprint) if baseline else None)
                report.findings.append(found)
            bar.update()
        bar.close()
        if cache:
            cache.put_known(owner, fresh)
        stages.append(Stage("checking known vulnerabilities in", len(functions), "function",
                            time.monotonic() - started))  # fmt: skip
        return report

    def _score(
        self,
        functions: list[Function],
        cache: ScanCache | None,
        progress: bool | None,
        stages: list[Stage],
    ) -> tuple[list[Scored], Coverage | None]:
        """Each function judged; and what the model saw of the distinct texts (from the
        cache for those it answers, so a cached re-scan says what a cold one says)."""
        if self.card is None:
            return [], None
        started = time.monotonic()
        keys = [code_key(f.code) for f in functions]
        distinct = sorted(set(keys))
        known = cache.get_scores(distinct) if cache else {}
        seen_of = cache.get_coverage(distinct) if cache else {}
        # each distinct text once, longest first: the chunks below then hold functions of like
        # length, which batch with little padding
        todo = sorted(
            {k: f.code for k, f in zip(keys, functions, strict=True) if k not in known}.items(),
            key=lambda item: (-len(item[1]), item[0]),
        )
        bar = _stage_bar(progress, "scoring", " functions", len(todo))
        windows = 0
        for start in range(0, len(todo), SCORE_BATCH):
            part = todo[start : start + SCORE_BATCH]
            probs, per_model = self.model.predict_proba([code for _, code in part])
            new = {
                key: (probs[i], {m: p[i] for m, p in per_model.items()})
                for i, (key, _) in enumerate(part)
            }
            known.update(new)
            covered = self.model.last_coverage
            counts = (
                {key: tuple(map(int, covered[i])) for i, (key, _) in enumerate(part)}
                if covered is not None and len(covered) == len(part)
                else {}
            )
            seen_of.update(counts)
            if cache:
                cache.put_scores(new)
                cache.put_coverage(counts)
            windows += getattr(self.model, "last_windows", 0)
            bar.set_postfix_str(f"{count_of(windows, 'window')} scored", refresh=False)
            bar.update(len(part))
        bar.close()
        cached = len(distinct) - len(todo)
        stages.append(Stage("scoring", len(todo), "function", time.monotonic() - started,
                            f"{count_of(windows, 'window')}; {cached} from the cache"))  # fmt: skip
        judged = [self._judge(f, *known[k]) for f, k in zip(functions, keys, strict=True)]
        complete = all(k in seen_of for k in distinct)  # a cache an older enstack wrote: not
        return judged, Coverage.of([seen_of[k] for k in distinct]) if complete else None

    def _judge(self, function: Function, probs: np.ndarray, per_model: dict) -> Scored:
        labels, benign = self.card.labels, self.card.benign_id
        if benign is None:
            label = labels[int(probs.argmax())]
            return Scored(function, probs, per_model, label, None, "note")
        flaws = [i for i in range(len(labels)) if i != benign]
        label = labels[max(flaws, key=lambda i: probs[i])]
        p_vulnerable = float(1.0 - probs[benign])
        if p_vulnerable >= max(ERROR_AT, self.threshold):
            level = "error"
        elif p_vulnerable >= self.threshold:
            level = "warning"
        else:
            level = "none"
        return Scored(function, probs, per_model, label, p_vulnerable, level)

    def _lines(self, item: Scored, cache: ScanCache | None) -> list[tuple[int, float]]:
        key = code_key(item.function.code)
        method = f"{self.localise}@{versions.LOCALISE}.{versions.LINE_RANKING}"
        relative = cache.get_lines(key, method) if cache else None
        if relative is None:
            from enstack.scan.localise import rank_lines

            target = self.card.labels.index(item.label)
            relative = rank_lines(self.model, item.function.code, 0, target, self.localise)
            if cache:
                cache.put_lines(key, method, relative)
        return [(item.function.start_line + line, score) for line, score in relative]


def _known_base(known: object) -> KnownBase | None:
    """A knowledge base from its directory (verified as it opens), or one already open."""
    if known is None:
        return None
    from enstack.known.base import KnownBase

    if isinstance(known, KnownBase):
        return known
    if not isinstance(known, (str, Path)):
        raise UserError(f"known: {known!r} is not a knowledge base's directory")
    return KnownBase(Path(known))


def _check_settings(
    threshold: object, top_lines: object, localise: object, precision: object, cache_dir: object
) -> None:
    """The Scanner's settings, checked where notebooks pass them (a string threshold, a
    fractional line count), with the CLI's one-line errors."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise UserError(f"threshold: {threshold!r} is not a number")
    if not 0.0 <= threshold <= 1.0:  # 0: every function is a finding, for triaging a model
        raise UserError(f"--threshold: {threshold} is not in [0, 1]")
    if localise not in LOCALISE_CHOICES:
        raise UserError(f"--localise: {localise!r} is not one of {', '.join(LOCALISE_CHOICES)}")
    if isinstance(top_lines, bool) or not isinstance(top_lines, int) or top_lines < 0:
        raise UserError(f"--top-lines: {top_lines!r} is not a whole number, 0 or more")
    if precision not in PRECISIONS:
        raise UserError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if cache_dir is not None and not isinstance(cache_dir, (str, Path)):
        raise UserError(f"cache_dir: {cache_dir!r} is not a path")


def _path_list(paths: object) -> list[str]:
    """One path (a string, as notebooks pass it) or several; never a string's characters."""
    if isinstance(paths, (str, Path)):
        return [str(paths)]
    if not isinstance(paths, (list, tuple)) or not all(isinstance(p, (str, Path)) for p in paths):
        raise UserError("scan: give a path, or a list of paths (files, directories, or -)")
    return [_valid_text(str(p)) for p in paths]


def _valid_text(text: str) -> str:
    """Text Python can encode: a lone surrogate (from a bad decode upstream) is refused here,
    not as a UnicodeEncodeError deep inside the tokenizer."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{text[:40]!r}...: holds a lone surrogate; not valid text") from None
    return text


def _nothing_readable(paths: list[str], tally: FileTally) -> str:
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(tally.skipped.items()))
    return f"no readable C or C++ file in {', '.join(paths)} " + (
        f"(skipped: {why})" if why else "(extensions: .c .h .cc .cpp .cxx .hh .hpp .hxx)"
    )


def _marks_of(
    source: SourceFile, functions: list[Function], labels: list[str]
) -> list[list[InlineMark]]:
    """Each function's `enstack-ignore` comments: in it, on the comment line just above it,
    or after its closing brace."""
    if b"enstack-ignore" not in source.data.lower():
        return [[] for _ in functions]
    lines = source.data.decode("utf-8", errors="replace").splitlines()

    def line(number: int) -> str:  # a cached function may lie past a file that shrank
        return lines[number - 1] if 1 <= number <= len(lines) else ""

    return [
        inline_marks(f.code, line(f.start_line - 1), labels, _after_end(f.code, line(f.end_line)))
        for f in functions
    ]


def _after_end(code: str, last_line: str) -> str:
    """What follows a function's closing brace on its last line (`} // enstack-ignore: ...`)."""
    tail = code.rsplit("\n", 1)[-1]
    at = last_line.find(tail)
    return last_line[at + len(tail) :] if at >= 0 else ""


def _functions_of(
    source: SourceFile, cache: ScanCache | None, build: BuildContext | None = None
) -> Extraction:
    """The file's functions: from the cache when these very bytes were parsed before (with
    the same build's macros)."""
    language = language_of(source.language_path)
    # the path is part of the key: the functions carry it; so is the build's reading of #if
    built = build.key if build is not None else ""
    header = f"{versions.FUNCTION_CUTS}\0{language}\0{source.display}\0{built}\0"
    key = code_key_bytes(header.encode(errors="surrogateescape") + source.data)
    known = cache.get_functions(key) if cache else None
    if known is not None:
        return known
    found = extract_functions(source.data, source.display, language, build)
    if cache:
        cache.put_functions(key, found)
    return found
