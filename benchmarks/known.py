"""Known vulnerabilities (`enstack known build`, `enstack scan --known`), measured three ways.

1. `known_realvul_*`: PairVul and SVEN as published (../shared/data/realvul), split by CVE (by
   fix commit where SVEN names no CVE): half the ids build the base, half are held out. For the
   ids in the base, recall on their vulnerable functions as a copy might arrive:
   - `exact`: the same text (also what a function moved to another file is);
   - `renamed`: every variable and parameter the function declares renamed, and the function
     itself prefixed (`vendor_`), as vendored copies are;
   - `reformatted`: braces moved to their own line, continuation lines joined, indentation and
     spacing after `if`/`for`/`while` changed;
   - `comments`: every comment removed and others added;
   - `statement_added`: a statement inserted at the top of the body (away from the fix);
   - `all`: renamed, reformatted, comments changed and a statement added, at once;
   the share of their fixed functions flagged with their own id (as published, and renamed);
   false alarms per function on every function (vulnerable and fixed) of the held-out ids;
   milliseconds per function (normalising, looking up, judging).
2. `known_scale_*`: bases of 1k, 10k and 100k entries (real entries, each made distinct by
   renaming its calls and adding a statement: synthetic on the size axis only), the same 300
   held-out functions looked up in each: ms per function, candidates per function, the base's
   load time and size.
3. `known_release_*`: one real project's history (ENSTACK_BENCH_KNOWN_REPO, a clone or bare
   mirror of libexpat): its `expat/Changes` names, per release, the CVEs that release fixes and
   the pull requests that fixed them. The base is built from those pull requests' merge commits
   (each against its first parent, as `enstack known build --from-git` does); every release
   tag's `lib/` is scanned; a (release, CVE) is truly affected when the release is older than
   the one that fixed the CVE (Changes names no release that introduced a flaw, so this truth
   is an approximation: a CVE in code added later counts as affecting releases before that
   code existed). Precision, recall and F1 over (release, CVE), beside a VUDDY-style exact hash
   (the normalised, abstracted function equal to a known vulnerable one) on the same releases.

Goals (issue 42): recall >= 0.95 renamed or reformatted and >= 0.80 with a statement added;
fixed versions flagged <= 0.02; false alarms <= 0.001 per unrelated function; <= 1 ms per
function at 100k entries; per (release, CVE) precision >= 0.90 with recall >= 0.60.
The matching thresholds (signature.py) were set on the realvul split above; the release
history was measured once with them, untuned. Reproduce: `python -m benchmarks --only known`.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import SHARED_DATA, Result

TRANSFORMS = ("exact", "renamed", "reformatted", "comments", "statement_added", "all")
SCALE_SIZES = (1_000, 10_000, 100_000)
SCALE_QUERIES = 300
RELEASE_TAG = re.compile(r"R_(\d+)_(\d+)_(\d+)$")


# --- copies as they arrive ---------------------------------------------------------------------


def declared_names(code: str) -> tuple[set[str], str | None]:
    """The variables and parameters a function declares, and its own name (tree-sitter)."""
    from enstack.csyntax.parser import parse_tree

    data = code.encode()
    tree = parse_tree(data, "c")
    declared: set[str] = set()
    own: str | None = None
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.type != "identifier" or node.parent is None:
            continue
        parent = node.parent
        if parent.child_by_field_name("declarator") != node:
            continue
        text = data[node.start_byte : node.end_byte].decode()
        if parent.type == "function_declarator":
            own = own or text
        elif parent.type in ("init_declarator", "pointer_declarator", "array_declarator",
                             "parameter_declaration", "declaration"):  # fmt: skip
            declared.add(text)
    return declared, own


def renamed(code: str) -> str:
    """Declared names renamed where they are names: not in strings or comments, not fields
    (`->len` belongs to the project's struct), not names in capitals (a macro tree-sitter read
    as a declaration)."""
    from enstack.known.normalise import KEYWORDS, TOKEN, is_constant

    names, own = declared_names(code)
    mapping = {n: f"v{i}_{n[:1]}" for i, n in enumerate(sorted(names)) if not is_constant(n)}
    if own and own not in KEYWORDS:
        mapping[own] = f"vendor_{own}"
    out, last, previous = [], 0, ""
    for match in TOKEN.finditer(code):
        text = match.group()
        if match.lastgroup == "name" and text in mapping and previous not in (".", "->"):
            out += [code[last : match.start()], mapping[text]]
            last = match.end()
        if match.lastgroup not in ("comment", "pp"):
            previous = text
    return "".join(out) + code[last:]


def reformatted(code: str) -> str:
    out: list[str] = []
    for line in code.splitlines():
        text = line.strip()
        joinable = out and not out[-1].lstrip().startswith("#") and "//" not in out[-1]
        if joinable and out[-1].rstrip().endswith((",", "(", "&&", "||")) and text:
            out[-1] = out[-1].rstrip() + " " + text
            continue
        if text.startswith("#"):
            out.append(text)
            continue
        text = re.sub(r"\b(if|for|while|switch)\s*\(", r"\1(", text)
        if text.endswith("{") and text != "{" and "//" not in text and "/*" not in text:
            out += ["  " + text[:-1].rstrip(), "  {"]
        else:
            out.append("  " + text)
    return "\n".join(out)


COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)


def comments_changed(code: str) -> str:
    stripped = COMMENT.sub("", code)
    lines = stripped.splitlines()
    return "\n".join(
        line + " /* reviewed */" if line.rstrip().endswith(";") and i % 5 == 0 else line
        for i, line in enumerate(lines)
    )


def statement_added(code: str) -> str:
    head, brace, body = code.partition("{")
    if not brace:
        return code
    return head + "{\n\ttrace_entry(__func__, __LINE__);" + body


def transform(name: str) -> Callable[[str], str]:
    return {
        "exact": lambda c: c,
        "renamed": renamed,
        "reformatted": reformatted,
        "comments": comments_changed,
        "statement_added": statement_added,
        "all": lambda c: statement_added(comments_changed(reformatted(renamed(c)))),
    }[name]


# --- realvul ------------------------------------------------------------------------------------


def realvul_pairs() -> list:
    from enstack.known.base import BuildTally
    from enstack.known.build import dataset_pairs, preset_config

    tally = BuildTally()
    seen, pairs = set(), []
    for preset, sub in (("pairvul", "pairvul/train"), ("sven", "sven/train"), ("sven", "sven/val")):
        data = preset_config(preset, SHARED_DATA / "realvul" / sub)
        for pair in dataset_pairs(data, preset, tally):
            key = (pair.vuln_id, pair.vulnerable)
            if key not in seen:
                seen.add(key)
                pairs.append(pair)
    return pairs


def in_base(vuln_id: str) -> bool:
    """Half the ids, by a hash of the id: a CVE's pairs all land on one side."""
    return zlib.crc32(vuln_id.encode()) % 2 == 0


def build_base(path: Path, pairs: list, what: str) -> tuple[int, float]:
    from enstack.known.base import BuildTally, writing
    from enstack.known.build import DEFAULT_LABELS, EntryMaker

    maker, tally = EntryMaker(DEFAULT_LABELS), BuildTally()
    started = time.perf_counter()
    with writing(path, append=False) as (writer, staged):
        for pair in pairs:
            entry = maker(pair, tally)
            if entry is not None:
                writer.add(entry, tally)
        count = writer.finish(staged, [{"what": what, "taken": tally.taken}])
    return count, time.perf_counter() - started


def _function(code: str, name: str = "f"):
    from enstack.csyntax.functions import Function

    return Function("copy.c", name, 1, code.count("\n") + 1, code, False)


def _own_name(code: str) -> str:
    from enstack.known.normalise import normalise

    return normalise(code).name or "f"


def measure_realvul(workdir: Path, quick: bool) -> dict[str, Result]:
    from enstack.known.base import KnownBase
    from enstack.known.match import KnownMatcher

    pairs = realvul_pairs()
    base_pairs = [p for p in pairs if in_base(p.vuln_id)]
    held = [p for p in pairs if not in_base(p.vuln_id)]
    if quick:
        base_pairs, held = base_pairs[:300], held[:300]
    count, build_s = build_base(workdir / "kb-realvul", base_pairs, "realvul half")
    matcher = KnownMatcher(KnownBase(workdir / "kb-realvul"))
    results: dict[str, Result] = {}
    timed = [0.0, 0]

    def flags(code: str) -> list[str]:
        function = _function(code, _own_name(code))  # as the scanner hands it over: not timed
        started = time.perf_counter()
        found = matcher.match(function)
        timed[0] += time.perf_counter() - started
        timed[1] += 1
        return [f.entry.vuln_id for f in found]

    recall = {}
    for name in TRANSFORMS:
        change = transform(name)
        hits = sum(p.vuln_id in flags(change(p.vulnerable)) for p in base_pairs)
        recall[name] = hits / len(base_pairs)
    fixed = sum(p.vuln_id in flags(p.fixed) for p in base_pairs) / len(base_pairs)
    fixed_renamed = sum(p.vuln_id in flags(renamed(p.fixed)) for p in base_pairs) / len(base_pairs)
    # a held-out id's function may be a base function at another time (the kernel fixed some
    # functions for several CVEs; one commit may fix two CVEs): a finding there is often true,
    # so those are counted apart, and false alarms are counted on functions of other names
    base_names = {_own_name(p.vulnerable) for p in base_pairs}
    same_name_flagged, same_name_functions, alarms, unrelated = 0, 0, 0, 0
    for p in held:
        for code in (p.vulnerable, p.fixed):
            found = flags(code)
            if _own_name(code) in base_names:
                same_name_functions += 1
                same_name_flagged += bool(found)
            else:
                unrelated += 1
                alarms += len(found)
    tree_functions, tree_alarms = _unrelated_trees(flags, quick)
    ms = 1000 * timed[0] / timed[1]
    detail = {
        "base_entries": count,
        "base_ids": len({p.vuln_id for p in base_pairs}),
        "build_s": round(build_s, 2),
        "recall": {k: round(v, 4) for k, v in recall.items()},
        "fixed_flagged": round(fixed, 4),
        "fixed_renamed_flagged": round(fixed_renamed, 4),
        "held_out_same_name_functions": same_name_functions,
        "held_out_same_name_flagged": same_name_flagged,
        "held_out_unrelated_functions": unrelated,
        "held_out_false_alarms": alarms,
        "c_tree_functions": tree_functions,
        "c_tree_false_alarms": tree_alarms,
        "ms_per_function": round(ms, 3),
    }
    print(f"known realvul: {detail}")
    for name in TRANSFORMS:
        goal = ">= 0.80" if name in ("statement_added", "all") else ">= 0.95"
        results[f"known_realvul_recall_{name}"] = Result(recall[name], "share", goal, detail)
    results["known_realvul_fixed_flagged"] = Result(fixed, "share", "<= 0.02", {})
    everything = unrelated + tree_functions
    results["known_realvul_false_alarms"] = Result(
        (alarms + tree_alarms) / everything, "per function", "<= 0.001", {}
    )
    results["known_realvul_ms"] = Result(ms, "ms per function", "", {})
    return results


def _unrelated_trees(flags, quick: bool) -> tuple[int, int]:
    """Every function of the C trees in ../c-trees (the parse benchmark's: zlib, curl, lua,
    libpng, ...; none holds Linux kernel code or a SVEN project's), each finding a false alarm.
    libexpat is left out: the release benchmark looks for its CVEs."""
    from enstack.csyntax.functions import extract_functions
    from enstack.csyntax.parser import language_of

    base = Path(__file__).resolve().parents[2] / "c-trees"
    trees = sorted(p for p in base.iterdir() if p.is_dir() and p.name != "libexpat") if (
        base.is_dir()) else []  # fmt: skip
    functions = alarms = 0
    for tree in trees[:2] if quick else trees:
        for path in sorted(tree.rglob("*.c")):
            for function in extract_functions(
                path.read_bytes(), path.name, language_of(path)
            ).functions:
                functions += 1
                alarms += len(flags(function.code))
    return functions, alarms


# --- scale -------------------------------------------------------------------------------------


NAME = re.compile(r"\b[A-Za-z_]\w*\b")


def synthetic_pair(pair, i: int):
    """A real pair made into another function: every name suffixed with `_s<i>` (calls,
    fields and constants are what the normalised text keeps, so each copy's statements are
    its own), a statement added to both sides."""
    from enstack.known.build import FixPair
    from enstack.known.normalise import KEYWORDS

    def change(code: str) -> str:
        code = NAME.sub(lambda m: m.group() if m.group() in KEYWORDS else f"{m.group()}_s{i}", code)
        return statement_added(code)

    return FixPair(change(pair.vulnerable), change(pair.fixed), f"SYN-{i}", [], f"synthetic:{i}")


def measure_scale(workdir: Path, quick: bool) -> dict[str, Result]:
    """The real half's entries, filled up to each size with synthetic ones; looked up: half
    held-out functions (no match expected), half copies of base functions (renamed,
    reformatted, recommented, a statement added: each should find its id)."""
    from enstack.known.base import DB_NAME, KnownBase
    from enstack.known.match import KnownMatcher
    from enstack.known.normalise import normalise

    pairs = realvul_pairs()
    real = [p for p in pairs if in_base(p.vuln_id)]
    half = SCALE_QUERIES // 2
    held = [p.vulnerable for p in pairs if not in_base(p.vuln_id)][:half]
    smallest = real[: SCALE_SIZES[0]]  # copies of entries every base size holds
    step = max(1, len(smallest) // half)
    copies = [(transform("all")(p.vulnerable), p.vuln_id) for p in smallest[::step][:half]]
    queries = [(code, None) for code in held] + copies
    rows = {}
    for size in SCALE_SIZES[:2] if quick else SCALE_SIZES:
        path = workdir / f"kb-scale-{size}"
        filler = [synthetic_pair(real[i % len(real)], i) for i in range(max(0, size - len(real)))]
        count, build_s = build_base(path, real[:size] + filler, f"realvul half + {len(filler)}")
        started = time.perf_counter()
        base = KnownBase(path)
        load_s = time.perf_counter() - started
        matcher = KnownMatcher(base)
        functions = [(_function(code, _own_name(code)), want) for code, want in queries]
        candidates = sum(len(base.candidates(normalise(f.code), f.name)) for f, _ in functions)
        base._entries.clear()  # timed cold: no entry read before
        found, started = 0, time.perf_counter()
        for function, want in functions:
            ids = [k.entry.vuln_id for k in matcher.match(function)]
            found += want is not None and want in ids
        ms = 1000 * (time.perf_counter() - started) / len(functions)
        rows[size] = {
            "entries": count,
            "build_s": round(build_s, 1),
            "load_s": round(load_s, 4),
            "mib": round((path / DB_NAME).stat().st_size / 2**20, 1),
            "ms_per_function": round(ms, 3),
            "candidates_per_function": round(candidates / len(functions), 2),
            "copies_found": round(found / len(copies), 4),
        }
        print(f"known scale {size}: {rows[size]}")
        base.close()
        shutil.rmtree(path)
    largest = max(rows)
    return {
        "known_scale_ms": Result(
            rows[largest]["ms_per_function"],
            "ms per function",
            "<= 1 ms at 100k entries",
            {"by_size": rows},
        ),
    }


# --- a real project's releases -------------------------------------------------------------------


CHANGES_RELEASE = re.compile(r"^Release (\d+)\.(\d+)\.(\d+)\b", re.MULTILINE)
CHANGES_CVE = re.compile(r"^\s*((?:#\d+\s+)*#\d+)\s+(CVE-\d{4}-\d+)\b", re.MULTILINE)


def changes_fixes(text: str) -> dict[str, tuple[tuple[int, int, int], list[int]]]:
    """CVE -> (the release that fixed it, its pull requests), from expat/Changes."""
    releases = [
        (m.start(), tuple(int(x) for x in m.groups())) for m in CHANGES_RELEASE.finditer(text)
    ]
    found: dict[str, tuple[tuple[int, int, int], list[int]]] = {}
    for match in CHANGES_CVE.finditer(text):
        owner = [version for at, version in releases if at < match.start()]
        if not owner:
            continue  # unreleased
        prs = [int(n) for n in re.findall(r"#(\d+)", match.group(1))]
        found.setdefault(match.group(2), (owner[-1], prs))
    return found


def measure_release(workdir: Path, quick: bool) -> dict[str, Result]:
    from enstack.csyntax.functions import extract_functions
    from enstack.known.base import BuildTally, KnownBase
    from enstack.known.build import DEFAULT_LABELS, EntryMaker, git_pairs
    from enstack.known.match import KnownMatcher
    from enstack.known.normalise import normalise
    from enstack.safegit import Repository

    spec = os.environ.get("ENSTACK_BENCH_KNOWN_REPO") or str(
        Path("/work/.mirror/libexpat+libexpat/repo")
    )
    repo_path = Path(spec)
    if not repo_path.is_dir():
        print("known release: skipped (set ENSTACK_BENCH_KNOWN_REPO to a libexpat clone)")
        return {}
    repo = Repository(repo_path, "benchmark")
    head = repo.commit("HEAD")
    changes = repo.file_at(head, "expat/Changes") or b""
    fixes = changes_fixes(changes.decode(errors="replace"))
    merges = _merge_commits(repo)
    rows = ["cve_id,commit"]
    for cve, (_, prs) in sorted(fixes.items()):
        rows += [f"{cve},{merges[pr]}" for pr in prs if pr in merges]
    fixes_csv = workdir / "expat-fixes.csv"
    fixes_csv.write_text("\n".join(rows) + "\n")
    tally, maker = BuildTally(), EntryMaker(DEFAULT_LABELS)
    from enstack.known.base import writing

    with writing(workdir / "kb-expat", append=False) as (writer, staged):
        for pair in git_pairs(repo_path, fixes_csv, tally):
            entry = maker(pair, tally)
            if entry is not None:
                writer.add(entry, tally)
        entries = writer.finish(staged, [{"what": "libexpat fixes"}])
    base = KnownBase(workdir / "kb-expat")
    cves_in_base = {row[0] for row in base.db.execute("SELECT DISTINCT vuln_id FROM entries")}
    vulnerable_keys: dict[int, set[str]] = {}
    for vuln_id, key in base.db.execute("SELECT vuln_id, vulnerable_key FROM entries"):
        vulnerable_keys.setdefault(key, set()).add(vuln_id)
    matcher = KnownMatcher(base)
    releases = sorted(
        (tuple(int(x) for x in m.groups()), tag)
        for tag in _tags(repo)
        if (m := RELEASE_TAG.fullmatch(tag))
    )
    if quick:
        releases = releases[-6:]
    truth, ours, exact = set(), set(), set()
    for version, tag in releases:
        sha = repo.commit(tag)
        for cve in cves_in_base:
            if version < fixes[cve][0]:
                truth.add((tag, cve))
        for path, data in _lib_sources(repo, sha):
            for function in extract_functions(data, path, "c").functions:
                for found in matcher.match(function):
                    ours.add((tag, found.entry.vuln_id))
                for cve in vulnerable_keys.get(normalise(function.code).key, ()):
                    exact.add((tag, cve))
    scores = {"enstack": _prf(ours, truth), "vuddy_exact_hash": _prf(exact, truth)}
    detail = {
        "repository": "libexpat",
        "head": head,
        "releases": len(releases),
        "cves_in_changes": len(fixes),
        "cves_in_base": len(cves_in_base),
        "entries": entries,
        "build_skipped": tally.skipped,
        "truth_pairs": len(truth),
        **scores,
    }
    print(f"known release: {detail}")
    return {
        "known_release_f1": Result(
            scores["enstack"]["f1"],
            "F1 per (release, CVE)",
            "precision >= 0.90 at recall >= 0.60",
            detail,
        ),
    }


def _prf(found: set, truth: set) -> dict:
    hit = len(found & truth)
    precision = hit / len(found) if found else 0.0
    recall = hit / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hit else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "flagged": len(found), "true": hit}  # fmt: skip


def _merge_commits(repo) -> dict[int, str]:
    """Pull request number -> its merge commit on the first-parent history."""
    out = repo.git(["log", "--first-parent", "--merges", "--format=%H %s", "HEAD"])
    merges = {}
    for line in out.decode(errors="replace").splitlines():
        sha, _, subject = line.partition(" ")
        found = re.match(r"Merge pull request #(\d+)", subject)
        if found:
            merges.setdefault(int(found.group(1)), sha)
    return merges


def _tags(repo) -> list[str]:
    out = repo.git(["for-each-ref", "--format=%(refname:short)", "refs/tags"])
    return out.decode().split()


def _lib_sources(repo, sha: str):
    for path, entry in sorted(repo.tree(sha).items()):
        in_lib = re.match(r"(expat/)?lib/[^/]+\.c$", path)
        if in_lib:
            data = next((d for _, d in repo.blobs([entry.oid], 8 << 20)), None)
            if data is not None:
                yield path, data


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    random.seed(0)
    results = measure_realvul(workdir, quick)
    results.update(measure_scale(workdir, quick))
    results.update(measure_release(workdir, quick))
    return results
