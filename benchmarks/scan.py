"""`enstack scan` on the Juliet scan fixture (`../shared/data/juliet-scan-val/`), three figures:

- `scan_f1_juliet`: function-level F1 of a scan by the model `configs/juliet6-scan.yaml`
  trains on Juliet-6 (unixcoder, the one `configs/juliet6.yaml`'s selection keeps, on every
  train row for 2 epochs; trained here first, or resumed from `--workdir`), scored by the
  fixture's own scorer (`shared/tools/scan_score.py`), with flawfinder's row (`flawfinder
  --sarif`) scored the same way in the same run. Every method of line ranking is scored too.
- `scan_speedup_vs_pipeline`: functions/s of `Scanner.scan` (walk, parse, score each distinct
  text once in length-sorted batches under `torch.inference_mode`, every base model, the
  meta-classifier; no cache, no line ranking) over a naive loop calling a Hugging Face
  `pipeline("text-classification")` per extracted function and per base model (the same
  exports, truncated to the same max_length). Beside it, `scoring_only_speedup`: enstack's
  `predict_proba` on every function, repeats included, over the same loop.
- `rescan_speedup_cached`: a cold scan (empty cache) over a re-scan of the unchanged tree.
  Both are whole `Scanner.scan` calls (walk, parse, score, rank lines), the model loaded once.

`--quick` trains the demo's tiny ensemble instead (minutes, not half an hour) and times the
pipeline loop on 100 functions: its F1 says nothing about enstack, only that the path works.
Reproduce: `python -m benchmarks --only scan [--quick] [--workdir DIR]`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import SHARED_DATA, Result

FIXTURE = SHARED_DATA / "juliet-scan-val"
SCORER = SHARED_DATA.parent / "tools" / "scan_score.py"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "juliet6-scan.yaml"
PIPELINE_FUNCTIONS_QUICK = 100


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    from enstack.scan.api import Scanner

    bundle, train_seconds = _bundle(workdir, quick)
    scanner = Scanner(bundle)
    sources = [str(FIXTURE / "src")]
    results = {"scan_f1_juliet": _quality(scanner, sources, workdir, bundle, train_seconds)}
    results["scan_speedup_vs_pipeline"] = _versus_pipeline(scanner, sources, quick)
    results["rescan_speedup_cached"] = _rescan(scanner, sources, workdir)
    return results


def _bundle(workdir: Path, quick: bool) -> tuple[Path, float]:
    """Train (or finish training) the ensemble to scan with; its wall time (0 if it was done)."""
    run_dir = workdir / ("scan-demo" if quick else "scan-juliet6")
    if quick:
        command = ["demo", "--run-dir", str(run_dir), "--set", "training.epochs=1"]
    else:
        data = SHARED_DATA / "juliet6"
        command = [
            "run",
            "--config",
            str(CONFIG),
            "--set",
            f"run_dir={run_dir}",
            "--set",
            f"data.train={data / 'train.jsonl'}",
            "--set",
            f"data.val={data / 'val.jsonl'}",
        ]
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "enstack", *command], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"enstack {command[0]} failed:\n{proc.stderr[-3000:]}")
    return run_dir / "stack" / "bundle", time.perf_counter() - started


def _quality(
    scanner, sources: list[str], workdir: Path, bundle: Path, train_seconds: float
) -> Result:
    from enstack.scan import LOCALISE_METHODS as METHODS
    from enstack.scan.card import resolve_method
    from enstack.scan.formats import render

    out = workdir / "scan-sarif"
    out.mkdir(exist_ok=True)
    rows = {}
    default_method = resolve_method(scanner.card, "auto")
    for method in METHODS:
        if method == "learned" and not scanner.card.has_line_ranker:
            continue
        scanner.localise = method
        started = time.perf_counter()
        report = scanner.scan(sources, progress=False)
        seconds = time.perf_counter() - started
        sarif = out / f"enstack-{method}.sarif"
        sarif.write_text(render(report, "sarif"))
        rows[method] = {**_score(sarif, f"enstack ({method})"), "seconds": round(seconds, 1)}
    scanner.localise = default_method
    without = _without_juliet_rules(scanner, sources, bundle, out)
    flawfinder = _flawfinder(out / "flawfinder.sarif")
    default = rows[default_method]
    return Result(
        default["f1"],
        "F1",
        ">= 0.95",
        {
            "bundle": str(bundle),
            "models": scanner.model.bundle.models if scanner.model.bundle else None,
            "line_ranker": scanner.model.line_ranker.info if scanner.model.line_ranker else None,
            "train_seconds": round(train_seconds, 1),
            "enstack": default,
            "localised_by_method": {m: r["localised_of_tp"] for m, r in rows.items()},
            # the learned ranker fitted again without the labelling rules that exist for
            # Juliet's templates (enstack.lines.labels.JULIET_RULES), scored the same way
            "localised_learned_without_juliet_rules": without,
            "scan_seconds_by_method": {m: r["seconds"] for m, r in rows.items()},
            "flawfinder": flawfinder,
            "goals": "fpr <= 0.05, pair_correct >= 0.90, localised_of_tp >= 0.70",
        },
    )


def _without_juliet_rules(scanner, sources: list[str], bundle: Path, out: Path) -> float | None:
    from enstack.lines.fit import fit_on_split
    from enstack.scan.formats import render

    if not scanner.card.has_line_ranker:
        return None
    train = bundle.parent.parent / "data" / "train.parquet"
    # configs/juliet6-scan.yaml's seed, as `enstack stack` fits the bundle's
    ranker = fit_on_split(
        train, scanner.card.labels, scanner.card.benign_id, 42, False, rules=frozenset()
    )
    kept, scanner.model.line_ranker = scanner.model.line_ranker, ranker
    kept_method, scanner.localise = scanner.localise, "learned"
    try:
        report = scanner.scan(sources, progress=False)
    finally:
        scanner.model.line_ranker, scanner.localise = kept, kept_method
    sarif = out / "enstack-learned-without-juliet-rules.sarif"
    sarif.write_text(render(report, "sarif"))
    return _score(sarif, "enstack (learned, no Juliet rules)")["localised_of_tp"]


def _score(sarif: Path, name: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCORER), str(FIXTURE / "truth.json"), str(sarif), "--name", name],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _flawfinder(sarif: Path) -> dict:
    # beside this interpreter first: a virtual environment need not be activated
    command = shutil.which(
        "flawfinder", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    if command is None:
        return {"skipped": "flawfinder is not installed (pip install flawfinder)"}
    with sarif.open("w") as out:
        subprocess.run(
            [command, "--sarif", "--quiet", str(FIXTURE / "src")],
            check=True,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
    return _score(sarif, "flawfinder")


def _versus_pipeline(scanner, sources: list[str], quick: bool) -> Result:
    from transformers import pipeline

    from enstack.scan.api import Scanner

    # `enstack scan` as run, less the output: walk, parse, score (each distinct text once),
    # no cache and no line ranking (the pipeline loop ranks none); the same loaded model
    plain = Scanner(scanner.model, threshold=scanner.threshold, top_lines=0)
    started = time.perf_counter()
    scanned = plain.scan(sources, progress=False)
    enstack_rate = len(scanned.scored) / (time.perf_counter() - started)
    codes = [item.function.code for item in scanned.scored]  # every function the scan cut out
    # scoring alone, every function however often its text recurs: the model's own pace
    started = time.perf_counter()
    scanner.predict_proba(codes)
    scoring_rate = len(codes) / (time.perf_counter() - started)

    sample = codes[:PIPELINE_FUNCTIONS_QUICK] if quick else codes
    pipes = [
        # enstack's own exports: a mean-pooled one (UniXcoder) ships its modeling file, which
        # transformers runs only when told to
        (
            pipeline(
                "text-classification", model=str(model.export), device=-1, trust_remote_code=True
            ),
            model.max_length,
        )
        for model in scanner.model.models
    ]
    started = time.perf_counter()
    for code in sample:
        for pipe, max_length in pipes:
            pipe(code, truncation=True, max_length=max_length, top_k=None)
    pipeline_rate = len(sample) / (time.perf_counter() - started)
    return Result(
        enstack_rate / pipeline_rate,
        "x",
        ">= 5",
        {
            "enstack_functions_per_s": round(enstack_rate, 1),
            "pipeline_functions_per_s": round(pipeline_rate, 1),
            "scoring_only_functions_per_s": round(scoring_rate, 1),
            "scoring_only_speedup": round(scoring_rate / pipeline_rate, 2),
            "functions": len(codes),
            "distinct_functions": len(set(codes)),
            "pipeline_functions": len(sample),
            "base_models": len(pipes),
        },
    )


def _rescan(scanner, sources: list[str], workdir: Path) -> Result:
    with tempfile.TemporaryDirectory(dir=workdir) as cache_dir:
        scanner.cache_dir = Path(cache_dir)
        started = time.perf_counter()
        cold = scanner.scan(sources, progress=False)
        cold_seconds = time.perf_counter() - started
        started = time.perf_counter()
        warm = scanner.scan(sources, progress=False)
        warm_seconds = time.perf_counter() - started
        scanner.cache_dir = None
    assert len(warm.findings) == len(cold.findings)  # the cache must not change the answer
    return Result(
        cold_seconds / warm_seconds,
        "x",
        ">= 20",
        {
            "cold_seconds": round(cold_seconds, 2),
            "cached_seconds": round(warm_seconds, 2),
            "functions": len(cold.scored),
            "findings": len(cold.findings),
        },
    )
