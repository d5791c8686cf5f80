"""`int8_bundle`: a bundle stored as int8 (`enstack quantise`) against quantising at every start.

The full-size bundle of `scan_ci` (three encoders at CodeBERT-base size, random weights: the
figures are about time and size, not findings), then `enstack quantise` on it once. Measured
in this one run, each in a fresh process on the same ten-function pull request of a C
project (start-up, imports and loading included, no cache):

- `int8_bundle_pr_speedup`: wall of `enstack scan --changed-since HEAD --precision int8` on the
  fp32 bundle over the same scan with the int8 bundle (which quantises nothing at load);
  the fp32 scan's wall beside them.
- `int8_bundle_load_speedup`: seconds from a fresh interpreter to the three models loaded
  (`load_scan_model`, imports included), quantising at load over the stored int8 bundle.
- `int8_bundle_size_ratio`: bytes of the base models' weights, fp32 over int8 (the embedding
  tables stay fp32).
- `fp32_load_mapped_speedup`: the fp32 bundle's three exports loaded by copying the file's
  tensors into the model (`load_state_dict`, as enstack did before) over assigning them,
  memory-mapped (`assign=True`, as `models.loading` does now); each in a fresh process,
  with its peak resident memory beside it.

Both int8 paths give the same scores bit for bit (tests/integration/test_int8.py). Needs the
C project of `scan_ci` (`ENSTACK_BENCH_C_PROJECT`, default ../zlib). Reproduce:
`python -m benchmarks --only int8_bundle [--workdir DIR]` (the bundles are kept in DIR).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Result
from benchmarks.scan_ci import (
    _full_size_bundle,
    _project_files,
    _scan_command,
    _timed,
    pull_request_repo,
)

MAPPED = """
import resource, sys, time
from pathlib import Path
from safetensors.torch import load_file
from enstack.models.loading import _skip_random_init, load_base, new_classifier

started, models = time.perf_counter(), []  # all three held, as a scan holds them
for export in sorted((Path(sys.argv[1]) / "models").iterdir()):
    with _skip_random_init():  # as load_classifier builds it: the file's weights replace all
        models.append(new_classifier(load_base(export)[0], None))
    state = load_file(str(export / "model.safetensors"))
    models[-1].load_state_dict(state, assign=sys.argv[2] == "mapped")
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
LOAD = (
    "import sys, time; t = time.perf_counter(); "
    "from enstack.scan.model import load_scan_model; "
    "load_scan_model(sys.argv[1], device='cpu', precision=sys.argv[2]); "
    "print(time.perf_counter() - t)"
)


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    sources = _project_files()
    fp32 = _full_size_bundle(workdir / "scan-ci-bundle", sources)
    int8 = workdir / "scan-ci-bundle-int8"
    quantise_s = None
    if not (int8 / "manifest.json").is_file():
        shutil.rmtree(int8, ignore_errors=True)
        started = time.perf_counter()
        command = [sys.executable, "-m", "enstack", "quantise", str(fp32), "--out", str(int8)]
        subprocess.run(command, check=True, capture_output=True)
        quantise_s = round(time.perf_counter() - started, 1)
    return {
        "int8_bundle_size_ratio": _sizes(fp32, int8, quantise_s),
        "int8_bundle_load_speedup": _loads(fp32, int8),
        "int8_bundle_pr_speedup": _pull_request(fp32, int8, workdir, quick),
        "fp32_load_mapped_speedup": _mapped(fp32),
    }


def _weights_bytes(bundle: Path) -> int:
    return sum(p.stat().st_size for p in (bundle / "models").rglob("*.safetensors"))


def _sizes(fp32: Path, int8: Path, quantise_s: float | None) -> Result:
    before, after = _weights_bytes(fp32), _weights_bytes(int8)
    return Result(
        value=before / after,
        unit="x, bytes of the base models' weights, fp32 bundle over int8 bundle",
        goal="(none: reported)",
        detail={
            "fp32_mb": round(before / 1e6, 1),
            "int8_mb": round(after / 1e6, 1),
            "quantise_command_s": quantise_s,  # None: the int8 bundle was already in workdir
        },
    )


def _load_seconds(bundle: Path, precision: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(bundle), precision],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def _loads(fp32: Path, int8: Path) -> Result:
    _load_seconds(int8, "int8")  # both bundles' files in the page cache before timing
    _load_seconds(fp32, "fp32")
    at_load = _load_seconds(fp32, "int8")
    stored = _load_seconds(int8, "int8")
    return Result(
        value=at_load / stored,
        unit="x, s from a fresh interpreter to the models loaded (imports included), "
        "quantising at load over stored int8",
        goal="(none: reported)",
        detail={"quantise_at_load_s": round(at_load, 2), "stored_int8_s": round(stored, 2)},
    )


def _mapped(fp32: Path) -> Result:
    runs = {}
    for mode in ("copied", "mapped", "copied", "mapped"):  # the second of each is kept
        done = subprocess.run(
            [sys.executable, "-c", MAPPED, str(fp32), mode],
            check=True,
            capture_output=True,
            text=True,
        )
        seconds, kib = done.stdout.split()
        runs[mode] = (float(seconds), int(kib) / 1e6)
    return Result(
        value=runs["copied"][0] / runs["mapped"][0],
        unit="x, s to load the three fp32 exports' weights, copied over memory-mapped",
        goal="(none: reported)",
        detail={
            "copied_s": round(runs["copied"][0], 2),
            "mapped_s": round(runs["mapped"][0], 2),
            "copied_peak_gb": round(runs["copied"][1], 2),
            "mapped_peak_gb": round(runs["mapped"][1], 2),
        },
    )


def _pull_request(fp32: Path, int8: Path, workdir: Path, quick: bool) -> Result:
    repo = pull_request_repo(workdir / "int8-bundle-pr")
    runs = {
        "int8_bundle": _scan_command(int8, "--changed-since", "HEAD", "--no-cache"),
        "quantise_at_load": _scan_command(
            fp32, "--changed-since", "HEAD", "--no-cache", "--precision", "int8"
        ),
    }
    if not quick:
        runs["fp32"] = _scan_command(fp32, "--changed-since", "HEAD", "--no-cache")
    walls, summaries = {}, {}
    for name, command in runs.items():
        walls[name], summaries[name] = _timed(command, repo)
    return Result(
        value=walls["quantise_at_load"] / walls["int8_bundle"],
        unit="x, PR scan wall (10 changed functions, fresh process), quantising at load over "
        "the int8 bundle",
        goal="(none: reported; issue 38's PR goal is a student's <= 10 s)",
        detail={"wall_s": {k: round(v, 1) for k, v in walls.items()}, "summary": summaries},
    )
