"""`enstack run` and `enstack demo`: stages skipped or resumed, identical results after kills,
and clear errors for bad input."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from enstack.errors import UserError

from support import REPO, TINY_MODEL, assert_user_error, run_cli, until_event, write_config

REPORTS = ("results.json", "results.csv", "results.md")


def _pipeline_config(path: Path, run_dir: Path, **stacking: object) -> Path:
    return write_config(
        path,
        {
            "run_dir": str(run_dir),
            "data": {"format": "synthetic", "synthetic": {"n_per_class": 40}},
            "models": [
                {"name": "c", "family": "codebert", "scratch": TINY_MODEL},
                {"name": "u", "family": "unixcoder", "scratch": TINY_MODEL},
            ],
            "training": {
                "epochs": 2,
                "batch_size": 8,
                "learning_rate": 1e-3,
                "max_length": 128,
                "save_steps": 3,
                "device": "cpu",
            },
            "stacking": {"meta": ["lr", "rf"], "mode": "cv", **stacking},
        },
    )


def _run(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "enstack", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_run_killed_anywhere_ends_with_the_same_results(tmp_path: Path) -> None:
    ref_cfg = _pipeline_config(tmp_path / "ref.yaml", tmp_path / "ref")
    ref = run_cli("run", "--config", str(ref_cfg))
    assert ref.code == 0, ref.stderr
    assert "Ensembles" in ref.stdout and "selected on validation" in ref.stdout

    twin = tmp_path / "twin"
    cfg = _pipeline_config(tmp_path / "twin.yaml", twin)
    moments = [  # inside the second model's training, then inside stacking
        lambda: (twin / "models" / "u" / "checkpoints").is_dir(),
        lambda: (twin / "features").is_dir(),
    ]
    for moment in moments:
        proc = _run(cfg)
        until_event(proc, moment)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    final = run_cli("run", "--config", str(cfg))
    assert final.code == 0, final.stderr
    for name in REPORTS:
        assert (twin / "reports" / name).read_bytes() == (
            tmp_path / "ref" / "reports" / name
        ).read_bytes(), name
    page = (twin / "reports" / "report.html").read_text()  # the tables and plots, in one file
    assert "<h1>Results (test set, %)</h1>" in page and "<table>" in page
    assert page.count('src="data:image/png;base64,') >= 3

    # what a SIGKILL inside the stack or evaluate writes leaves behind
    debris = [twin / ".reports.tmp-deadbeef", twin / ".stack.tmp-cafef00d"]
    for path in debris:
        (path / "plots").mkdir(parents=True)
    again = run_cli("run", "--config", str(cfg))  # everything finished: all stages skipped
    assert again.code == 0
    assert "already trained" in again.stderr and "stack: unchanged" in again.stderr
    assert not any(path.exists() for path in debris)  # swept by the next run
    results = json.loads((twin / "reports" / "results.json").read_text())
    assert len(results["rows"]) == 2 * (2 + 3 * 2)  # (2 singles + 3 subsets x 2 metas) x 2
    assert results["selected"]["meta"] in ("lr", "rf")
    plots = {p.name for p in (twin / "reports" / "plots").iterdir()}
    assert {"confusion_selected.png", "roc_selected.png", "tsne.png", "ablation.png"} <= plots
    assert (twin / "stack" / "bundle" / "manifest.json").is_file()

    # finding finished work needs none of the heavy libraries: start-up stays short
    for command in (["run"], ["train", "--model", "u"]):
        probe = (
            "import sys\n"
            "from enstack.cli import main\n"
            f"code = main({[*command, '--config', str(cfg)]!r})\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'sklearn', 'matplotlib') "
            "if m in sys.modules)\n"
            "print('RESULT', code, heavy)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        )
        assert "RESULT 0 []" in done.stdout, (command, done.stdout, done.stderr)
        assert "already trained" in done.stdout + done.stderr


def test_stack_before_training_names_the_missing_model(tmp_path: Path) -> None:
    cfg = _pipeline_config(tmp_path / "c.yaml", tmp_path / "run")
    assert run_cli("prepare", "--config", str(cfg)).code == 0
    assert_user_error(run_cli("stack", "--config", str(cfg)), "models/c/best", "enstack train")


def test_evaluate_before_stack(tmp_path: Path) -> None:
    cfg = _pipeline_config(tmp_path / "c.yaml", tmp_path / "run")
    assert_user_error(run_cli("evaluate", "--config", str(cfg)), "enstack stack")


def test_unknown_meta_classifier_in_the_config(tmp_path: Path) -> None:
    cfg = _pipeline_config(tmp_path / "c.yaml", tmp_path / "run", meta=["lr", "knn"])
    assert_user_error(run_cli("run", "--config", str(cfg)), "stacking.meta")


def test_run_dir_made_by_a_different_config(tmp_path: Path) -> None:
    cfg = _pipeline_config(tmp_path / "c.yaml", tmp_path / "run")
    from enstack.config import load_config
    from enstack.pipeline import check_run_dir

    check_run_dir(load_config(cfg))
    result = run_cli("run", "--config", str(cfg), "--set", "data.synthetic.n_per_class=50")
    assert_user_error(result, "different config", "data.synthetic.n_per_class")


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_the_readme_scans_with_it(tmp_path: Path) -> None:
    result = run_cli("demo", cwd=tmp_path, timeout=900)  # as the README runs it: ./enstack-demo
    assert result.code == 0, result.stderr
    assert "Individual models" in result.stdout and "Ensembles" in result.stdout
    assert "demo data, not a benchmark" in result.stderr
    results = json.loads((tmp_path / "enstack-demo" / "reports" / "results.json").read_text())
    assert len(results["rows"]) == 2 * (3 + 7 * 4)  # 3 singles; 7 subsets x 4 metas
    assert results["mode"] == "cv"

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "copy.c").write_text(FLAWED_C)
    commands = _readme_demo_scans()
    assert commands, "the README's scan example lost its demo-bundle lines"
    for command in commands:
        scanned = run_cli(*command[1:], cwd=tmp_path)
        assert scanned.code == 0, (command, scanned.stderr)
        assert "scanned 1 file, 2 functions" in scanned.stderr
        written = command[command.index("-o") + 1] if "-o" in command else None
        report = (tmp_path / written).read_text() if written else scanned.stdout
        assert "src/copy.c" in report or "no finding" in report.lower(), command


FLAWED_C = """#include <string.h>
void copy(char *src) { char buf[8]; strcpy(buf, src); }
int twice(int x) { return 2 * x; }
"""


def _readme_demo_scans() -> list[list[str]]:
    """The `enstack scan` lines of the README's scan example that use the demo's bundle."""
    text = (REPO / "README.md").read_text()
    block = text.split("## A first scan", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [
        shlex.split(line)
        for line in lines
        if line.startswith("enstack scan") and "enstack-demo/stack/bundle" in line
    ]


def test_a_run_dir_from_before_a_new_setting_is_the_same_run(tmp_path: Path) -> None:
    """enstack gained `data.group_column` (unset: None): a run_dir recorded without it goes on;
    one recorded with another value of a real setting is refused naming it."""
    from enstack.config import load_config
    from enstack.pipeline import check_run_dir

    cfg = _pipeline_config(tmp_path / "c.yaml", tmp_path / "run")
    config = load_config(cfg)
    check_run_dir(config)
    record = tmp_path / "run" / "run.json"
    recorded = json.loads(record.read_text())
    del recorded["identity"]["data"]["group_column"]
    recorded["identity_hash"] = "from an older enstack"
    record.write_text(json.dumps(recorded))
    check_run_dir(config)  # accepted, and recorded afresh
    assert "group_column" in json.loads(record.read_text())["identity"]["data"]

    recorded = json.loads(record.read_text())
    recorded["identity"]["seed"] = 7
    recorded["identity_hash"] = "another run"
    record.write_text(json.dumps(recorded))
    with pytest.raises(UserError, match="differs in seed"):
        check_run_dir(config)
