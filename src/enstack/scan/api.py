"""Scanning as a library: load a model once, then `predict_proba` on function strings or
`scan` paths. The CLI (`enstack scan`) is a thin layer over these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from enstack.errors import UserError
from enstack.progress import progress_bar
from enstack.scan import LOCALISE_CHOICES
from enstack.scan.cache import ScanCache, code_key, code_key_bytes
from enstack.scan.files import FileTally, SourceFile, check_paths, source_files
from enstack.scan.functions import EXTRACTOR_VERSION, Function, extract_functions, language_of
from enstack.scan.localise import LOCALISE_VERSION, rank_lines, resolve_method
from enstack.scan.model import ScanModel, load_scan_model

LEVELS = ("none", "note", "warning", "error")
ERROR_AT = 0.9  # P(vulnerable) at or above which a finding is an error, not a warning
SCORE_BATCH = 256  # functions scored per step (the progress bar's unit of work)


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

    @property
    def confidence(self) -> float:
        return self.p_vulnerable if self.p_vulnerable is not None else float(self.probs.max())


@dataclass
class ScanReport:
    model: ScanModel
    scored: list[Scored]
    tally: FileTally
    damaged_functions: int
    damaged_files: int
    threshold: float
    localise: str

    @property
    def findings(self) -> list[Scored]:
        return [s for s in self.scored if s.level != "none"]

    @property
    def detects(self) -> bool:
        return self.model.benign_label is not None

    def summary(self) -> str:
        levels = {lv: sum(1 for s in self.findings if s.level == lv) for lv in LEVELS[1:]}
        counted = ", ".join(f"{n} {lv}" for lv, n in levels.items() if n)
        skipped = sum(self.tally.skipped.values())
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.tally.skipped.items()))
        parts = [
            f"scanned {self.tally.files} files, {len(self.scored)} functions"
            + (
                f" ({self.damaged_functions} from damaged regions)"
                if self.damaged_functions
                else ""
            ),
            f"skipped {skipped} files" + (f" ({reasons})" if reasons else ""),
            f"{len(self.findings)} findings" + (f" ({counted})" if counted else ""),
        ]
        if self.tally.non_utf8:
            parts.append(f"{self.tally.non_utf8} files not UTF-8 (bytes replaced)")
        return "; ".join(parts)


class Scanner:
    """A loaded model and the scan settings; no state between scans but the model."""

    def __init__(
        self,
        model: ScanModel | Path | str,
        threshold: float = 0.5,
        top_lines: int = 3,
        localise: str = "auto",
        cache_dir: Path | None = None,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise UserError(f"--threshold: {threshold} is not in (0, 1]")
        if localise not in LOCALISE_CHOICES:
            raise UserError(f"--localise: {localise!r} is not one of {', '.join(LOCALISE_CHOICES)}")
        if top_lines < 0:
            raise UserError("--top-lines: must be 0 or more")
        self.model = model if isinstance(model, ScanModel) else load_scan_model(model)
        self.threshold = threshold
        self.top_lines = top_lines
        self.localise = resolve_method(self.model, localise)
        self.cache_dir = cache_dir

    def predict_proba(self, codes: list[str]) -> np.ndarray:
        """Class probabilities (columns: `self.model.labels`) for each function's code."""
        return self.model.predict_proba(list(codes))[0]

    def scan(self, paths: list[str], progress: bool | None = None) -> ScanReport:
        check_paths(paths)
        tally = FileTally()
        functions: list[Function] = []
        damaged_files = 0
        cache = ScanCache(self.cache_dir, self.model.fingerprint) if self.cache_dir else None
        try:
            for source in source_files(paths, tally):
                found, has_errors = _functions_of(source, cache)
                functions += found
                damaged_files += has_errors
            if tally.files == 0 and paths:
                raise UserError(
                    f"no readable C or C++ file in {', '.join(paths)} "
                    f"(extensions: .c .h .cc .cpp .cxx .hh .hpp .hxx)"
                )
            scored = self._score(functions, cache, progress)
            for item in scored:
                if item.level != "none" and self.top_lines:
                    item.lines = self._lines(item, cache)[: self.top_lines]
        finally:
            if cache is not None:
                cache.close()
        return ScanReport(
            self.model,
            scored,
            tally,
            sum(f.damaged for f in functions),
            damaged_files,
            self.threshold,
            self.localise,
        )

    def _score(
        self, functions: list[Function], cache: ScanCache | None, progress: bool | None
    ) -> list[Scored]:
        keys = [code_key(f.code) for f in functions]
        known = cache.get_scores(list(set(keys))) if cache else {}
        # each distinct text once, longest first: the chunks below then hold functions of like
        # length, which batch with little padding
        todo = sorted(
            {k: f.code for k, f in zip(keys, functions, strict=True) if k not in known}.items(),
            key=lambda item: (-len(item[1]), item[0]),
        )
        bar = progress_bar(
            enabled=progress,
            total=len(todo),
            desc="scoring",
            unit=" functions",
            leave=False,
        )
        for start in range(0, len(todo), SCORE_BATCH):
            part = todo[start : start + SCORE_BATCH]
            probs, per_model = self.model.predict_proba([code for _, code in part])
            new = {
                key: (probs[i], {m: p[i] for m, p in per_model.items()})
                for i, (key, _) in enumerate(part)
            }
            known.update(new)
            if cache:
                cache.put_scores(new)
            bar.update(len(part))
        bar.close()
        return [self._judge(f, *known[k]) for f, k in zip(functions, keys, strict=True)]

    def _judge(self, function: Function, probs: np.ndarray, per_model: dict) -> Scored:
        labels, benign = self.model.labels, self.model.benign_id
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
        method = f"{self.localise}@{LOCALISE_VERSION}"
        relative = cache.get_lines(key, method) if cache else None
        if relative is None:
            target = self.model.labels.index(item.label)
            relative = rank_lines(self.model, item.function.code, 0, target, self.localise)
            if cache:
                cache.put_lines(key, method, relative)
        return [(item.function.start_line + line, score) for line, score in relative]


def _functions_of(source: SourceFile, cache: ScanCache | None) -> tuple[list[Function], bool]:
    """The file's functions: from the cache when these very bytes were parsed before."""
    language = language_of(source.language_path)
    # the path is part of the key: the functions carry it
    header = f"{EXTRACTOR_VERSION}\0{language}\0{source.display}\0".encode()
    key = code_key_bytes(header + source.data)
    known = cache.get_functions(key) if cache else None
    if known is not None:
        return [Function(**fields) for fields in known[0]], known[1]
    found, has_errors = extract_functions(source.data, source.display, language)
    if cache:
        cache.put_functions(key, [asdict(f) for f in found], has_errors)
    return found, has_errors
