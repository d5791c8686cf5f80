"""`enstack scan` as a CI job runs it: three encoders at CodeBERT-base size on this CPU.

The bundle is built in place (no hub): three exports of the three families at full size (12
layers, 768 wide, 12 heads, 3072 intermediate, a 50,265-token embedding table, 512 positions;
random weights, seeded; a byte-level BPE tokenizer trained on the C files scanned here) and an
unweighted mean as the meta-classifier. Random weights score like trained ones cost: the
figures are about time and agreement, not about findings.

- `scan_int8_speedup`: functions/s of `Scanner.predict_proba` with `--precision int8` over
  fp32, on the same functions (a C project's, many past 512 tokens), both loaded in one process.
  Beside it, agreement: the share of functions whose finding (P(vulnerable) over a threshold
  set at the fp32 median, so half are findings and any drift shows) is unchanged, and the
  largest change of P(vulnerable); on the project and on Juliet scan-fixture functions.
- `scan_pr_10_functions_s`: wall time of `enstack scan --changed-since HEAD` in a fresh
  process (start-up, imports, model loading included) on a copy of the project with 10
  functions edited, with `--precision int8`; the fp32 wall beside it.
- `scan_int8_agreement_trained`: the same agreement for a trained model, where the
  probabilities spread as they do in use: the demo's ensemble (trained here first, tiny) on
  every function of the Juliet scan fixture, findings at the default threshold 0.5.
- `scan_rescan_speedup`: a cold scan of the whole project (empty cache, int8) over the same
  command run again on the unchanged tree (every answer from the cache; no model loaded).

Needs a C project: `ENSTACK_BENCH_C_PROJECT` (default: ../zlib beside the checkout; measured on
madler/zlib at d201f04, its top-level *.c and *.h). Reproduce:
`python -m benchmarks --only scan_ci [--workdir DIR]` (the bundle is kept in DIR and reused).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import SHARED_DATA, Result

PROJECT = Path(
    os.environ.get("ENSTACK_BENCH_C_PROJECT", Path(__file__).resolve().parents[2] / "zlib")
)
FAMILIES = ("codebert", "graphcodebert", "unixcoder")
LABELS = ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other", "none"]
FULL_SIZE = {"layers": 12, "hidden": 768, "heads": 12, "intermediate": 3072, "vocab": 50265}
MAX_LENGTH = 512
PR_FUNCTIONS = 10
JULIET_FUNCTIONS = 48
PROJECT_SAMPLE = 48  # functions timed at both precisions, spread over every length


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    sources = _project_files()
    bundle = _full_size_bundle(workdir / "scan-ci-bundle", sources)
    results = {"scan_int8_speedup": _int8(bundle, sources, quick)}
    results["scan_pr_10_functions_s"] = _pull_request(bundle, workdir, quick)
    results["scan_int8_agreement_trained"] = _trained_agreement(workdir)
    results["scan_rescan_speedup"] = _rescan(bundle, workdir)
    return results


def _project_files() -> list[Path]:
    files = sorted(p for p in PROJECT.glob("*") if p.suffix in (".c", ".h"))
    if not files:
        raise SystemExit(
            f"scan_ci: no C project at {PROJECT}; clone one (git clone "
            "https://github.com/madler/zlib) and set ENSTACK_BENCH_C_PROJECT"
        )
    return files


def _full_size_bundle(out: Path, sources: list[Path]) -> Path:
    """Three random full-size exports and a mean over them, built once per workdir."""
    if (out / "manifest.json").is_file():
        return out
    import numpy as np
    import torch

    from enstack.config import ModelConfig, ScratchConfig
    from enstack.models.loading import new_classifier, read_hf_config, write_base
    from enstack.stack.bundle import write_bundle
    from enstack.stack.meta import MetaClassifier
    from enstack.train.export import export_model

    codes = [p.read_text(errors="replace") for p in sources]
    work = out.parent / "scan-ci-models"
    exports = {}
    for seed, family in enumerate(FAMILIES):
        size = FULL_SIZE
        scratch = ScratchConfig(
            layers=size["layers"],
            hidden=size["hidden"],
            heads=size["heads"],
            intermediate=size["intermediate"],
            vocab_size=size["vocab"],
        )
        model_cfg = ModelConfig(name=family, family=family, scratch=scratch)
        base = work / family / "base"
        write_base(base, model_cfg, LABELS, MAX_LENGTH, codes)
        config = read_hf_config(base)
        config.vocab_size = size["vocab"]  # CodeBERT's table, whatever the BPE learned here
        config.save_pretrained(base)
        torch.manual_seed(seed)
        model = new_classifier(config, None)
        export = work / family / "best"
        extra = {"family": family, "max_length": MAX_LENGTH, "labels": LABELS, "dfg_length": 0}
        export_model(model, base, export, extra)
        exports[family] = export
    meta = MetaClassifier("vote", len(LABELS))
    x = np.full((len(LABELS), len(LABELS) * len(FAMILIES)), 1.0 / len(LABELS))
    meta.fit(x, np.arange(len(LABELS)))
    trained_on = {"format": "none", "synthetic": False, "sources": ["random weights"]}
    write_bundle(out, exports, meta, "probs", LABELS, "none", None, trained_on)
    return out


def _functions(paths: list[Path]) -> list[str]:
    from enstack.csyntax.functions import extract_functions
    from enstack.csyntax.parser import language_of

    codes = []
    for path in paths:
        found = extract_functions(path.read_bytes(), str(path), language_of(path)).functions
        codes += [f.code for f in found]
    return codes


def _juliet_functions() -> list[str]:
    files = sorted((SHARED_DATA / "juliet-scan-val" / "src").glob("*"))
    return _functions(files[: JULIET_FUNCTIONS // 2])[:JULIET_FUNCTIONS]


def _int8(bundle: Path, sources: list[Path], quick: bool) -> Result:
    from enstack.scan.api import Scanner

    every = sorted(_functions(sources), key=len)
    sample = 12 if quick else PROJECT_SAMPLE
    codes = [every[i * len(every) // sample] for i in range(sample)]
    juliet = _juliet_functions()
    scanners = {p: Scanner(bundle, precision=p) for p in ("fp32", "int8")}
    timed, probs = {}, {}
    for precision, scanner in scanners.items():
        scanner.predict_proba(codes[:2])  # loads the models: not part of the rate
        started = time.perf_counter()
        probs[precision] = scanner.predict_proba(codes)
        timed[precision] = time.perf_counter() - started
        probs[f"{precision}-juliet"] = scanner.predict_proba(juliet)
    benign = scanners["fp32"].card.benign_id
    agreement = {
        "project": _agreement(probs["fp32"], probs["int8"], benign),
        "juliet_fixture": _agreement(probs["fp32-juliet"], probs["int8-juliet"], benign),
    }
    rates = {p: len(codes) / s for p, s in timed.items()}
    return Result(
        value=rates["int8"] / rates["fp32"],
        unit="x functions/s, int8 over fp32",
        goal=">= 2.5",
        detail={
            "functions": len(codes),
            "functions_per_s": {p: round(r, 3) for p, r in rates.items()},
            "agreement": agreement,
            "juliet_functions": len(juliet),
        },
    )


def _trained_agreement(workdir: Path) -> Result:
    from enstack.scan.api import Scanner

    run_dir = workdir / "scan-ci-demo"
    if not (run_dir / "stack" / "bundle" / "manifest.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "enstack", "demo", "--run-dir", str(run_dir)],
            check=True,
            capture_output=True,
        )
    codes = _functions(sorted((SHARED_DATA / "juliet-scan-val" / "src").glob("*")))
    bundle = run_dir / "stack" / "bundle"
    full = Scanner(bundle).predict_proba(codes)
    int8 = Scanner(bundle, precision="int8")
    found = _agreement(full, int8.predict_proba(codes), int8.card.benign_id, threshold=0.5)
    return Result(
        value=found["findings_unchanged"],
        unit="share of functions whose finding is unchanged, int8 vs fp32",
        goal=">= 0.99",
        detail={**found, "model": "the demo's ensemble", "data": "juliet-scan-val"},
    )


def _agreement(full, quantised, benign: int, threshold: float | None = None) -> dict:
    import numpy as np

    p_full, p_int8 = 1 - full[:, benign], 1 - quantised[:, benign]
    threshold = float(np.median(p_full)) if threshold is None else threshold
    same = (p_full >= threshold) == (p_int8 >= threshold)
    return {
        "findings_unchanged": round(float(same.mean()), 4),
        "threshold": round(threshold, 4),
        "max_abs_p_vulnerable_change": round(float(np.abs(p_full - p_int8).max()), 4),
        "functions": len(p_full),
    }


def _scan_command(bundle: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "enstack", "scan", "--bundle", str(bundle), *args]


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stderr.strip().splitlines()[-1]


def pull_request_repo(repo: Path) -> Path:
    """A copy of the project as a git repository, ten functions edited in the working tree."""
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    for path in _project_files():
        shutil.copy(path, repo / path.name)
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    _edit_functions(repo, PR_FUNCTIONS)
    return repo


def _pull_request(bundle: Path, workdir: Path, quick: bool) -> Result:
    repo = pull_request_repo(workdir / "scan-ci-pr")
    walls, summaries = {}, {}
    for precision in ("int8",) if quick else ("int8", "fp32"):
        command = _scan_command(
            bundle, "--changed-since", "HEAD", "--no-cache", "--precision", precision
        )
        walls[precision], summaries[precision] = _timed(command, repo)
    return Result(
        value=walls["int8"],
        unit="s wall, 10 changed functions, int8, start-up included",
        goal="<= 30",
        detail={"wall_s": {p: round(w, 1) for p, w in walls.items()}, "summary": summaries},
    )


def _edit_functions(repo: Path, count: int) -> None:
    """Insert a statement before the closing brace of `count` functions, the first function
    of at least three lines in each file in turn (one per file per round)."""
    from enstack.csyntax.functions import extract_functions
    from enstack.csyntax.parser import language_of

    edited: set[tuple[str, str]] = set()
    while len(edited) < count:
        before = len(edited)
        for path in sorted(repo.glob("*.c")):
            lines = path.read_text(errors="replace").splitlines(keepends=True)
            source = "".join(lines).encode()
            found = extract_functions(source, str(path), language_of(path)).functions
            for f in found:
                last = lines[f.end_line - 1]
                if (path.name, f.name) in edited or f.end_line - f.start_line < 3:
                    continue
                if last.strip() != "}":
                    continue
                lines.insert(f.end_line - 1, "    (void)0; /* pr edit */\n")
                path.write_text("".join(lines))
                edited.add((path.name, f.name))
                break
            if len(edited) == count:
                return
        if len(edited) == before:
            raise RuntimeError(f"only {len(edited)} functions could be edited")


def _rescan(bundle: Path, workdir: Path) -> Result:
    cache = workdir / "scan-ci-cache"
    shutil.rmtree(cache, ignore_errors=True)
    command = _scan_command(
        bundle, *map(str, _project_files()), "--precision", "int8", "--cache-dir", str(cache)
    )
    cold, cold_summary = _timed(command, workdir)
    warm, warm_summary = _timed(command, workdir)
    return Result(
        value=cold / warm,
        unit="x, cold scan wall over a warm re-scan (CLI, fresh process each)",
        goal=">= 20",
        detail={
            "cold_s": round(cold, 1),
            "warm_s": round(warm, 1),
            "summary": cold_summary,
            "warm_summary": warm_summary,
            "project": PROJECT.name,
        },
    )


if __name__ == "__main__":
    print(json.dumps({k: v.to_json() for k, v in run(Path(sys.argv[1]), False).items()}))
