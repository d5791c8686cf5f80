"""Function extraction on real C trees, against Universal Ctags' function list.

For each tree (ENSTACK_BENCH_TREES: `name=path` pairs separated by `:`; measured on zlib,
libexpat, curl, lua and libpng snapshots fetched from GitHub, commits in the results), every
`.c` and `.h` file is cut into functions by enstack's extractor and by ctags
(`--kinds-C=f --kinds-C++=f --fields=+ne`), and:

- `span recall`: the share of ctags' functions that enstack finds with the same name, a start
  within three lines and an end within one (ctags' end is its closing brace). Where ctags
  names a definition macro (`START_TEST(test_x) {` is `START_TEST` to ctags), enstack's name
  for the function it defines (`test_x`) counts as the same;
- `damaged share`: the share of enstack's functions that overlap a region tree-sitter could
  not parse;
- `keyword-named`: enstack functions named after a C keyword, a statement or a type;
- `functions/s`: enstack's throughput, beside the previous extractor's (`baseline`:
  versions.FUNCTION_CUTS 2, tree-sitter and `#if` branches, read from this repository's history at
  commit BASELINE_COMMIT, so the comparison needs a clone with history) timed in the same run.

Goals on every tree: span recall >= 0.995, damaged share <= 0.05, no keyword-named function,
no slower than 1.3x the previous extractor. Reproduce: `python -m benchmarks --only parse`.
Nothing here asserts a figure: a tree that misses a goal is reported as it is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks.common import Result

KEYWORDS = {
    "if", "else", "for", "while", "do", "switch", "case", "return", "sizeof", "goto", "break",
    "continue", "default", "typedef", "struct", "union", "enum", "int", "char", "void", "long",
    "short", "unsigned", "signed", "float", "double", "const", "volatile", "static", "extern",
    "register", "auto", "inline", "_Bool", "bool", "defined", "<anonymous>",
}  # fmt: skip
SUFFIXES = {".c", ".h"}
# the trees the extractor's rules were developed on; any other tree is held out (libarchive was
# measured untouched; libxml2, pcre2 and tcpdump were held out until a first measurement, then
# looked at: their first figures are in the changelog)
TUNED_ON = {"zlib", "libexpat", "curl", "lua", "libpng", "libxml2", "pcre2", "tcpdump"}
BASELINE_COMMIT = "fab7eb1"  # the extractor before macros were read (versions.FUNCTION_CUTS 2)
REPO = Path(__file__).resolve().parent.parent


def _trees() -> dict[str, Path]:
    """ENSTACK_BENCH_TREES (`name=path:name=path`), else every directory in ../c-trees beside
    the checkout (each a project's source, e.g. `git archive` of a fetched repository, with
    its commit in a `.commit` file)."""
    spec = os.environ.get("ENSTACK_BENCH_TREES", "")
    if not spec:
        base = REPO.parent / "c-trees"
        return {p.name: p for p in sorted(base.iterdir()) if p.is_dir()} if base.is_dir() else {}
    pairs = (item.split("=", 1) for item in spec.split(":") if item)
    return {name: Path(path) for name, path in pairs}


def ctags_functions(tree: Path) -> dict[str, list[tuple[str, int, int]]]:
    """path (relative to `tree`) -> [(name, start, end)] of ctags' function definitions."""
    command = ["ctags", "--output-format=json", "--fields=+ne", "--kinds-C=f", "--kinds-C++=f",
               "--languages=C,C++", "--langmap=C:.c.h", "-R", "-f", "-", "."]  # fmt: skip
    out = subprocess.run(command, cwd=tree, capture_output=True, check=True).stdout
    found: dict[str, list[tuple[str, int, int]]] = {}
    for line in out.decode(errors="replace").splitlines():
        tag = json.loads(line)
        if tag.get("_type") == "tag" and "end" in tag:
            rel = tag["path"].removeprefix("./")
            found.setdefault(rel, []).append((tag["name"], tag["line"], tag["end"]))
    return found


def _files(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if p.suffix in SUFFIXES and p.is_file())


def extraction_seconds(tree: Path, extract, repeats: int = 3) -> float:
    """The fastest of `repeats` passes of `extract` over every file of `tree` (files read
    first: only extraction is timed)."""
    from enstack.csyntax.parser import language_of

    sources = [(p.read_bytes(), p.name, language_of(p)) for p in _files(tree)]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for source, name, language in sources:
            extract(source, name, language)
        best = min(best, time.perf_counter() - started)
    return best


def measure(tree: Path, extract) -> dict:
    """Extract every file of `tree` with `extract(source, path, language)`; compare."""
    from enstack.csyntax.parser import language_of

    reference = ctags_functions(tree)
    found = matched = damaged = keyword = total = 0
    missed: list[str] = []
    for path in _files(tree):
        rel = path.relative_to(tree).as_posix()
        source = path.read_bytes()
        functions = extract(source, rel, language_of(path)).functions
        found += len(functions)
        damaged += sum(f.damaged for f in functions)
        keyword += sum(f.name.split("::")[-1] in KEYWORDS for f in functions)
        spans = {(f.name.split("::")[-1], f.start_line, f.end_line) for f in functions}
        lines = source.split(b"\n")
        for name, start, end in reference.get(rel, []):
            total += 1
            header = lines[start - 1] if 0 < start <= len(lines) else b""
            if any(
                _same_name(name, n, header) and abs(s - start) <= 3 and abs(e - end) <= 1
                for n, s, e in spans
            ):
                matched += 1
            elif len(missed) < 8:
                missed.append(f"{rel}:{start} {name}")
    return {
        "ctags_functions": total,
        "span_recall": matched / max(total, 1),
        "found": found,
        "damaged_share": damaged / max(found, 1),
        "keyword_named": keyword,
        "missed_examples": missed,
    }


def _same_name(ctags_name: str, ours: str, header: bytes) -> bool:
    """The same name; or ctags names a definition macro (`START_TEST(test_x) {`,
    `LIBSSH2_ALLOC_FUNC(my_malloc)`) where enstack names the function it defines."""
    if ours == ctags_name:
        return True
    pattern = rf"\s*{re.escape(ctags_name)}\s*\(\s*{re.escape(ours)}\b".encode()
    return ctags_name.isupper() and re.match(pattern, header) is not None


def _commit(tree: Path) -> str:
    stamp = tree / ".commit"
    return stamp.read_text().strip() if stamp.is_file() else "unknown"


def baseline_extractor():
    """`extract_functions` as it was at BASELINE_COMMIT, loaded from git into a fresh module
    (its own preprocessor too); None where the clone has no such history."""
    import importlib.util
    import sys
    import types

    modules = {}
    for name in ("preprocessor", "functions"):
        done = subprocess.run(
            ["git", "show", f"{BASELINE_COMMIT}:src/enstack/csyntax/{name}.py"],
            cwd=REPO, capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return None
        modules[name] = done.stdout.decode()
    package = "enstack_baseline_csyntax"
    sys.modules[package] = types.ModuleType(package)
    for name, text in modules.items():
        spec = importlib.util.spec_from_loader(f"{package}.{name}", loader=None)
        module = importlib.util.module_from_spec(spec)
        text = text.replace("enstack.csyntax.preprocessor", f"{package}.preprocessor")
        sys.modules[f"{package}.{name}"] = module
        exec(compile(text, f"{BASELINE_COMMIT}:{name}.py", "exec"), module.__dict__)
    return sys.modules[f"{package}.functions"].extract_functions


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    from enstack.csyntax.functions import extract_functions

    extract_functions_plain = baseline_extractor()
    if extract_functions_plain is None:
        print(f"parse: skipped (no commit {BASELINE_COMMIT} in this clone's history)")
        return {}

    if shutil.which("ctags") is None:
        print("parse: skipped (universal-ctags is not installed: apt install universal-ctags)")
        return {}
    results: dict[str, Result] = {}
    trees = _trees()
    if not trees:
        print(
            "parse: skipped (no C trees: set ENSTACK_BENCH_TREES=name=path:... or fill ../c-trees)"
        )
    for name, tree in trees.items():
        now = measure(tree, extract_functions)
        before = measure(tree, extract_functions_plain)
        repeats = 1 if quick else 3
        # alternated, each the fastest of its passes: a busy moment hurts neither side alone
        seconds_now = extraction_seconds(tree, extract_functions, repeats)
        seconds_before = extraction_seconds(tree, extract_functions_plain, repeats)
        detail = {
            "commit": _commit(tree),
            "held_out": name not in TUNED_ON,
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in now.items()},
            "functions_per_s": round(now["found"] / seconds_now, 1),
            "baseline_span_recall": round(before["span_recall"], 4),
            "baseline_damaged_share": round(before["damaged_share"], 4),
            "baseline_keyword_named": before["keyword_named"],
            "baseline_functions_per_s": round(before["found"] / seconds_before, 1),
            "slowdown": round(seconds_now / seconds_before, 3),
        }
        print(f"parse {name}: {json.dumps(detail)}")
        results[f"parse_span_recall_{name}"] = Result(
            now["span_recall"], "share", ">= 0.995", detail
        )
        results[f"parse_damaged_share_{name}"] = Result(
            now["damaged_share"], "share", "<= 0.05", {"baseline": detail["baseline_damaged_share"]}
        )
        results[f"parse_slowdown_{name}"] = Result(
            detail["slowdown"], "x", "<= 1.3", {"seconds": round(seconds_now, 3),
                                                 "baseline_seconds": round(seconds_before, 3)},
        )  # fmt: skip
    return results
