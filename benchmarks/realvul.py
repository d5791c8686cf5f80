"""Real CVE fixes: `configs/realvul.yaml` (PairVul + SVEN as published, three scratch models,
grouped by CVE and project) trained here, then scored on its held-out test split, CVEs and
projects that neither training nor the selection saw:

- `realvul_pair_correct` and `realvul_roc_auc`: detection F1, ROC-AUC, FPR, VD-S and
  PrimeVul's pair-wise outcomes of the selected bundle reading long functions in windows and
  truncated, beside a TF-IDF + logistic regression baseline (identifiers and symbols, unigrams
  and bigrams, as the data's README) fitted on the same train split, and flawfinder and
  cppcheck run on the same functions (a function is flagged when the tool reports anything).
- `realvul_localisation`: for test flaws whose fix is in test, LineVul's measures of the lines
  a finding ranks first against the lines the fix changed: top-1 and top-10 accuracy and the
  initial false alarm (lines ranked above the first changed one), for the bundle's learned
  line ranker and for attention.
- `realvul_long_functions`: how many test functions exceed the window, and in how many of the
  flawed ones the first changed line lies past it.

Reproduce: `python -m benchmarks --only realvul [--workdir DIR]` (`--quick`: one epoch).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED_DATA, Result

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "realvul.yaml"
TOKEN_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*|[^\sA-Za-z0-9_]"  # identifiers and single symbols
TOOLS_TIMEOUT = 1800


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    if not (SHARED_DATA / "realvul").is_dir():
        raise RuntimeError(f"{SHARED_DATA / 'realvul'} is not here")
    run_dir = workdir / ("realvul-quick" if quick else "realvul")
    train_seconds = _train(run_dir, quick)
    split = _split(run_dir, "test")
    labels = _labels(run_dir)
    benign = labels.index("none")
    rows = _score_all(run_dir, split, _split(run_dir, "train"), labels, benign)
    detail = {"train_seconds": round(train_seconds, 1), "test_functions": len(split["code"]),
              "rows": rows}  # fmt: skip
    windows = rows["enstack, windows"]
    top1, localisation = _localisation(run_dir, split, labels, benign)
    return {
        "realvul_pair_correct": Result(
            windows["pair_correct"], "fraction of pairs", ">= 0.15 (TF-IDF 0.083)", detail
        ),
        "realvul_roc_auc": Result(windows["roc_auc"], "ROC-AUC", ">= 0.65 (TF-IDF 0.536)", {}),
        "realvul_localisation": Result(top1, "top-1 accuracy, learned ranker", "", localisation),
        "realvul_long_functions": _long_functions(run_dir, split, benign),
    }


def _train(run_dir: Path, quick: bool) -> float:
    command = ["run", "--config", str(CONFIG), "--set", f"run_dir={run_dir}"]
    if quick:
        command += ["--set", "training.epochs=1"]
    started = time.perf_counter()
    # from the project root: the config names the data as ../shared/data/realvul
    proc = subprocess.run(
        [sys.executable, "-m", "enstack", *command], cwd=REPO, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"enstack run failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def _split(run_dir: Path, name: str) -> dict[str, list]:
    import pyarrow.parquet as pq

    return pq.read_table(run_dir / "data" / f"{name}.parquet").to_pydict()


def _labels(run_dir: Path) -> list[str]:
    import json

    return json.loads((run_dir / "data" / "manifest.json").read_text())["labels"]


def _score_all(run_dir: Path, test: dict, train: dict, labels: list, benign: int) -> dict:
    from enstack.scan.api import Scanner

    y, pairs = np.asarray(test["label"]), np.asarray(test["pair"])
    bundle = run_dir / "stack" / "bundle"
    rows = {}
    for mode in ("windows", "truncate"):
        probs = Scanner(bundle, long_functions=mode).predict_proba(test["code"])
        rows[f"enstack, {'windows' if mode == 'windows' else 'truncated'}"] = _figures(
            y, probs, pairs, benign
        )
    rows["TF-IDF + logistic regression"] = _figures(
        y, _as_probs(_tfidf(train, test["code"], benign), labels, benign), pairs, benign
    )
    for tool in ("flawfinder", "cppcheck"):
        if shutil.which(tool) is None:
            rows[tool] = {"missing": f"{tool} is not installed"}
            continue
        flags = _tool_flags(tool, test["code"])
        rows[tool] = _figures(y, _as_probs(flags, labels, benign), pairs, benign)
    return rows


def _figures(y: np.ndarray, probs: np.ndarray, pairs: np.ndarray, benign: int) -> dict:
    from enstack.metrics import detection_metrics, pair_outcomes

    detection = detection_metrics(y, probs, benign)
    outcome = pair_outcomes(y, probs, pairs, benign)
    keys = ("f1", "roc_auc", "fpr", "vd_s")
    figures = {key: round(float(detection[key]), 4) for key in keys}
    figures.update({key: round(float(outcome[key]), 4) for key in outcome if key != "n"})
    return {**figures, "pairs": outcome["n"]}


def _as_probs(p_vulnerable: np.ndarray, labels: list, benign: int) -> np.ndarray:
    """Scores of a detector that names no class, in the layout the metrics read."""
    probs = np.zeros((len(p_vulnerable), len(labels)))
    probs[:, benign] = 1.0 - p_vulnerable
    probs[:, 0 if benign else 1] = p_vulnerable
    return probs


def _tfidf(train: dict, codes: list[str], benign: int) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectoriser = TfidfVectorizer(
        token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), min_df=2, lowercase=False
    )
    x = vectoriser.fit_transform(train["code"])
    y = np.asarray(train["label"]) != benign
    model = LogisticRegression(max_iter=2000).fit(x, y)
    return model.predict_proba(vectoriser.transform(codes))[:, 1]


def _tool_flags(tool: str, codes: list[str]) -> np.ndarray:
    """1 for a function the tool reports anything in, each function in a file of its own."""
    with tempfile.TemporaryDirectory(prefix=f"realvul-{tool}-") as tmp:
        for i, code in enumerate(codes):
            (Path(tmp) / f"f{i:05d}.c").write_text(code)
        if tool == "flawfinder":
            command = ["flawfinder", "--dataonly", "--quiet", "--singleline", tmp]
        else:
            command = ["cppcheck", "--enable=warning,style,performance,portability",
                       "--template={file}:{line}:{severity}:{id}", "--quiet", tmp]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=TOOLS_TIMEOUT)
    hits = {int(m) for m in re.findall(r"f(\d{5})\.c:\d+", done.stdout + done.stderr)}
    return np.asarray([float(i in hits) for i in range(len(codes))])


def _localisation(run_dir: Path, split: dict, labels: list, benign: int) -> tuple[float, dict]:
    """LineVul's measures over test flaws whose fix is in test: the changed lines are what
    the fix deleted or rewrote (`fixed_lines`), ranked by each method."""
    from enstack.lines.fit import fit_on_split
    from enstack.lines.labels import fixed_lines
    from enstack.scan.localise import rank_lines
    from enstack.scan.model import load_scan_model

    model = load_scan_model(run_dir / "stack" / "bundle")
    plain = frozenset()  # the truth on real fixes: every statement the fix changed
    fixes: dict[int, list[str]] = {}
    for code, label, pair in zip(split["code"], split["label"], split["pair"], strict=True):
        if label == benign and pair not in (None, ""):
            fixes.setdefault(pair, []).append(code)
    cases = []
    for code, label, pair in zip(split["code"], split["label"], split["pair"], strict=True):
        if label != benign and pair in fixes:
            changed = fixed_lines(code, fixes[pair], plain)
            if changed:
                cases.append((code, label, changed))
    out = {}
    methods = ["attention"] + (["learned"] if model.line_ranker is not None else [])
    rankers = {"learned": model.line_ranker}
    if model.line_ranker is not None:  # the same ranker fitted without the Juliet-only rules
        # configs/realvul.yaml's seed, as `enstack stack` fits the bundle's
        rankers["learned_without_juliet_rules"] = fit_on_split(
            run_dir / "data" / "train.parquet", labels, benign, 42, False, rules=frozenset()
        )
        methods.append("learned_without_juliet_rules")
    for method in methods:
        model.line_ranker = rankers.get(method, model.line_ranker)
        method_name = "learned" if method.startswith("learned") else method
        top1 = top10 = 0
        alarms = []
        for code, label, changed in cases:
            ranked = [line for line, _ in rank_lines(model, code, 0, label, method_name)]
            top1 += bool(ranked[:1]) and ranked[0] in changed
            top10 += bool(set(ranked[:10]) & changed)
            first = next((i for i, line in enumerate(ranked) if line in changed), len(ranked))
            alarms.append(first)
        n = max(len(cases), 1)
        out[method] = {"top1": round(top1 / n, 4), "top10": round(top10 / n, 4),
                       "ifa_mean": round(float(np.mean(alarms)) if alarms else 0.0, 2)}  # fmt: skip
    out["cases"] = len(cases)
    headline = out.get("learned", out["attention"])["top1"]
    return headline, out


def _long_functions(run_dir: Path, split: dict, benign: int) -> Result:
    from transformers import AutoTokenizer

    from enstack.lines.labels import fixed_lines

    export = run_dir / "stack" / "bundle" / "models"
    tokenizer = AutoTokenizer.from_pretrained(sorted(export.iterdir())[0])
    room = 254
    fixes: dict[int, list[str]] = {}
    for code, label, pair in zip(split["code"], split["label"], split["pair"], strict=True):
        if label == benign and pair not in (None, ""):
            fixes.setdefault(pair, []).append(code)
    long = past = flawed = 0
    for code, label, pair in zip(split["code"], split["label"], split["pair"], strict=True):
        encoded = tokenizer(code, add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)  # fmt: skip
        is_long = len(encoded["input_ids"]) > room
        long += is_long
        if label != benign and pair in fixes:
            flawed += 1
            changed = fixed_lines(code, fixes[pair])
            if is_long and changed:
                cut = encoded["offset_mapping"][room - 1][1]
                past += min(changed) >= code.count("\n", 0, cut)
    n = len(split["code"])
    return Result(
        round(long / n, 4),
        "fraction of test functions longer than the window (254 code tokens)",
        "",
        {"flawed_with_fix": flawed, "first_change_past_window": round(past / max(flawed, 1), 4)},
    )
