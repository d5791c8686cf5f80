"""`student_pr`: the pull-request scan with `enstack distill`'s default student against the
full-size teacher, in one run on this CPU.

The student is built in place at the `distill.student` default size (2 layers, 128 wide, 2
heads, 256 intermediate, a 4,000-token BPE vocabulary trained on the project's files; CodeBERT
framing, 512 tokens), with random weights: the figures are about time and size, not findings.
The teacher is `scan_ci`'s full-size three-encoder bundle. Each scan is `enstack scan
--changed-since HEAD --no-cache` in a fresh process (start-up, imports, loading included) on
a copy of the C project with ten functions edited.

- `student_pr_wall_s`: the student's wall (goal, issue 38: <= 10 s).
- `student_pr_speedup`: the fp32 teacher's wall over the student's (goal >= 5).
- `student_export_mb`: the student export's size on disk (goal <= 60 MB).

Whether the student's findings agree with a trained full-size teacher's (goal >= 98%) needs a
full-size teacher trained first (a GPU): not measured here. Needs the C project of `scan_ci`
(`ENSTACK_BENCH_C_PROJECT`). Reproduce: `python -m benchmarks --only student_pr [--workdir
DIR]` (the bundles are kept in DIR).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import Result
from benchmarks.scan_ci import (
    LABELS,
    MAX_LENGTH,
    _full_size_bundle,
    _project_files,
    _scan_command,
    _timed,
    pull_request_repo,
)


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    sources = _project_files()
    teacher = _full_size_bundle(workdir / "scan-ci-bundle", sources)
    student = _student_export(workdir / "student", sources)
    repo = pull_request_repo(workdir / "student-pr")
    walls, summaries = {}, {}
    runs = {"student": student} if quick else {"student": student, "teacher_fp32": teacher}
    for name, bundle in runs.items():
        command = _scan_command(bundle, "--changed-since", "HEAD", "--no-cache")
        walls[name], summaries[name] = _timed(command, repo)
    size = sum(p.stat().st_size for p in student.iterdir() if p.is_file())
    detail = {"wall_s": {k: round(v, 1) for k, v in walls.items()}, "summary": summaries}
    results = {
        "student_pr_wall_s": Result(
            value=walls["student"],
            unit="s wall, 10 changed functions, the default student (fp32), start-up included",
            goal="<= 10",
            detail=detail,
        ),
        "student_export_mb": Result(
            value=size / 1e6,
            unit="MB on disk, the default student's export (weights, config, tokenizer)",
            goal="<= 60",
            detail={},
        ),
    }
    if "teacher_fp32" in walls:
        results["student_pr_speedup"] = Result(
            value=walls["teacher_fp32"] / walls["student"],
            unit="x, PR scan wall, the fp32 full-size teacher over the default student",
            goal=">= 5",
            detail=detail,
        )
    return results


def _student_export(out: Path, sources: list[Path]) -> Path:
    """A random student of `distill.student`'s default size, exported as distill does."""
    export = out / "best"
    if (export / "model.safetensors").is_file():
        return export
    import torch

    from enstack.config import DistillConfig, ModelConfig
    from enstack.models.loading import new_classifier, read_hf_config, write_base
    from enstack.train.export import export_model

    codes = [p.read_text(errors="replace") for p in sources]
    model_cfg = ModelConfig(name="student", family="codebert", scratch=DistillConfig().student)
    base = out / "base"
    write_base(base, model_cfg, LABELS, MAX_LENGTH, codes)
    torch.manual_seed(0)
    model = new_classifier(read_hf_config(base), None)
    extra = {"family": "codebert", "max_length": MAX_LENGTH, "labels": LABELS, "dfg_length": 0}
    export_model(model, base, export, extra)
    return export
