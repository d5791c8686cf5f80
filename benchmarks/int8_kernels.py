"""`int8_kernels`: which int8 path speeds a full-size encoder's forward pass on this CPU.

One encoder of `scan_ci`'s full-size bundle (CodeBERT-base size, random weights), a batch of
8 windows of 512 tokens, the mean of 3 forward passes after a warm-up, in one process:

- `int8_ao_dynamic_speedup`: fp32 over PyTorch's dynamic quantisation (`torch.ao`, oneDNN
  kernels), what `--precision int8` and `enstack quantise` use.
- `int8_torchao_dynamic_speedup`: fp32 over torchao's int8 dynamic activation, int8 weight.
- `int8_torchao_weight_only_speedup`: fp32 over torchao's int8 weight-only.

Each with the largest change of a logit against fp32. Needs torchao (`pip install
torchao`, measured with 0.18.0), in a separate environment or uninstalled after: it is in no
extra, because transformers imports it wherever it is installed, and on this CPU build every
enstack command then prints its load warnings. Reproduce: `python -m benchmarks --only
int8_kernels [--workdir DIR]`.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path

from benchmarks.common import Result
from benchmarks.scan_ci import _full_size_bundle, _project_files

BATCH, LENGTH, REPEATS = 8, 512, 3


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    import torch
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        quantize_,
    )

    from enstack.models.int8 import quantise_int8
    from enstack.models.loading import load_classifier

    bundle = _full_size_bundle(workdir / "scan-ci-bundle", _project_files())
    model, _ = load_classifier(bundle / "models" / "codebert", "cpu")
    torch.manual_seed(0)
    ids = torch.randint(5, 50_000, (BATCH, LENGTH))
    mask = torch.ones_like(ids)

    def timed(candidate: torch.nn.Module) -> tuple[float, torch.Tensor]:
        with torch.inference_mode():
            candidate(ids, mask)
            started = time.perf_counter()
            for _ in range(REPEATS):
                out = candidate(ids, mask)
        return (time.perf_counter() - started) / REPEATS, out

    def torchao(config: object) -> torch.nn.Module:
        twin = copy.deepcopy(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_(twin, config)
        return twin

    fp32_s, reference = timed(model)
    candidates = {
        "int8_ao_dynamic_speedup": ("torch.ao dynamic", quantise_int8(model)),
        "int8_torchao_dynamic_speedup": (
            "torchao int8 dynamic activation, int8 weight",
            torchao(Int8DynamicActivationInt8WeightConfig()),
        ),
        "int8_torchao_weight_only_speedup": (
            "torchao int8 weight-only",
            torchao(Int8WeightOnlyConfig()),
        ),
    }
    results = {}
    for name, (label, candidate) in candidates.items():
        seconds, out = timed(candidate)
        results[name] = Result(
            value=fp32_s / seconds,
            unit=f"x, fp32 forward over {label} (8 x 512 tokens, one full-size encoder)",
            goal="(reported: issue 38 asks >= 2.5 for the whole scan)",
            detail={
                "fp32_s": round(fp32_s, 2),
                "int8_s": round(seconds, 2),
                "max_abs_logit_change": round(float((out - reference).abs().max()), 4),
            },
        )
    return results
