"""`python -m benchmarks [--quick] [--json FILE] [--only NAME...]`: every figure, side by side.

Each module measures its figures as ratios of two things timed in the same run on the same
machine, so the ratio means something wherever it is run. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from benchmarks import (
    checkpoint,
    cuda_resume,
    demo,
    dfg,
    gpu_memory,
    int8_bundle,
    int8_kernels,
    known,
    parse,
    prepare_hdf5,
    pretrain,
    realvul,
    resume,
    scan,
    scan_ci,
    student_pr,
    training,
)

MODULES = {
    "prepare": prepare_hdf5,
    "training": training,
    "resume": resume,
    "checkpoint": checkpoint,
    "demo": demo,
    "gpu_memory": gpu_memory,
    "cuda_resume": cuda_resume,
    "scan": scan,
    "dfg": dfg,  # minutes: `--only dfg`
    "scan_ci": scan_ci,  # full-size encoders on the CPU, a C project: `--only scan_ci`
    # the same bundle stored as int8 (`enstack quantise`) against quantising at load
    "int8_bundle": int8_bundle,
    # torch.ao's dynamic int8 against torchao's, on one full-size encoder
    "int8_kernels": int8_kernels,
    # the default student's PR scan against the full-size teacher's
    "student_pr": student_pr,
    "realvul": realvul,  # real CVE fixes, trained here (about 15 min): `--only realvul`
    "parse": parse,  # function extraction on real C trees against ctags: `--only parse`
    "known": known,  # known-vulnerability matching: realvul, 100k entries, libexpat releases
    # pretraining on Debian's glibc and binutils sources, then realvul (about an hour)
    "pretrain": pretrain,
}
# what each device measures by default; modules that take a device get it
DEFAULT = {
    "cpu": ["prepare", "training", "resume", "checkpoint", "demo", "scan"],
    "cuda": ["training", "checkpoint", "gpu_memory", "cuda_resume"],
}
TAKES_DEVICE = {"training", "checkpoint", "gpu_memory", "cuda_resume"}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--only", nargs="*", choices=sorted(MODULES), help="run only these")
    parser.add_argument("--workdir", type=Path, help="keep generated files here (default: tmp)")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cuda: the GPU figures (roberta-base in bf16, memory, MFU, resume on CUDA)",
    )
    args = parser.parse_args()

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="enstack-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for key in args.only or DEFAULT[args.device]:
            started = time.perf_counter()
            extra = {"device": args.device} if key in TAKES_DEVICE else {}
            for name, result in MODULES[key].run(workdir, args.quick, **extra).items():
                results[name] = result.to_json()
            print(f"[{key}: {time.perf_counter() - started:.0f} s]")
    _print_table(results)
    if args.json:
        machine = {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            **_software(args.device),
        }
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


def _software(device: str) -> dict:
    import torch
    import transformers

    info = {"torch": torch.__version__, "transformers": transformers.__version__}
    if device == "cuda":
        info.update(
            gpu=torch.cuda.get_device_name(),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def _print_table(results: dict[str, dict]) -> None:
    print(f"{'figure':<28}{'value':>10}  {'goal':<10}detail")
    for name, r in results.items():
        print(f"{name:<28}{r['value']:>10.3f}  {r['goal']:<10}{json.dumps(r['detail'])}")


if __name__ == "__main__":
    raise SystemExit(main())
