"""`resume_95_vs_0`: time to the first trained step when resuming at 95% of an epoch over
resuming at its start (goal <= 1.2: resume costs O(1) in the position).

A tiny model on synthetic data big enough for a long epoch (1,000 batches; --quick 150) is
trained for one step to get a real checkpoint; two copies are then placed at (epoch 1, step 0)
and (epoch 1, step 950): the same state, only the position differs. Each resume runs in a
fresh process, timed from the call to `train_model` to the end of the first optimizer step.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

from benchmarks.common import Result, run_measured

CHILD = """
import time
from pathlib import Path
from enstack.config import load_config
from enstack.train import trainer as T

config = load_config(Path({cfg!r}))
original = T.Trainer._train_step
marks = {{}}

class FirstStep(Exception):
    pass

def first_step(self, group):
    loss = original(self, group)
    marks['first_step'] = time.perf_counter()
    {after}

T.Trainer._train_step = first_step
started = time.perf_counter()
try:
    T.train_model(config, 'm', resume={resume!r}, progress=False)
except (FirstStep, T.Interrupted):
    pass
result = {{'to_first_step_s': marks['first_step'] - started}}
"""


def _config(workdir: Path, rows_per_class: int) -> Path:
    import yaml

    cfg = workdir / "resume.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(workdir / "resume-run"),
                "data": {"format": "synthetic", "synthetic": {"n_per_class": rows_per_class}},
                "models": [
                    {
                        "name": "m",
                        "family": "codebert",
                        "scratch": {
                            "layers": 2,
                            "hidden": 64,
                            "heads": 2,
                            "intermediate": 128,
                            "vocab_size": 1000,
                        },
                    }
                ],
                "training": {
                    "epochs": 2,
                    "batch_size": 16,
                    "max_length": 256,
                    "save_steps": 1,
                    "device": "cpu",
                },
            }
        )
    )
    return cfg


def _place(source: Path, target: Path, epoch: int, step: int, per_epoch: int) -> Path:
    from enstack import versions
    from enstack.manifest import MANIFEST, describe_files, manifest_bytes

    shutil.copytree(source, target)
    state = json.loads((target / "state.json").read_text())
    state.update(epoch=epoch, step=step, global_step=epoch * per_epoch + step)
    state["scheduler"]["last_epoch"] = state["global_step"]
    (target / "state.json").write_text(json.dumps(state))
    (target / MANIFEST).unlink()  # signed again over the edited state, as a save would
    (target / MANIFEST).write_bytes(
        manifest_bytes(versions.CHECKPOINT_FORMAT, describe_files(target))
    )
    return target


def run(workdir: Path, quick: bool) -> dict[str, Result]:
    rows_per_class = 600 if quick else 4000  # 80% train: 2,400 or 16,000 rows
    cfg = _config(workdir, rows_per_class)
    shutil.rmtree(workdir / "resume-run", ignore_errors=True)
    # one real step, then stop: a real checkpoint written by the trainer
    run_measured(
        CHILD.format(
            cfg=str(cfg), resume="never", after="self.state.global_step += 0; raise FirstStep"
        )
    )
    ckpt_dir = workdir / "resume-run" / "models" / "m" / "checkpoints"
    T_SAVE = "return loss"
    run_measured(
        CHILD.format(
            cfg=str(cfg),
            resume="auto",
            after="import signal, os; os.kill(os.getpid(), signal.SIGTERM); " + T_SAVE,
        )
    )
    source = max(ckpt_dir.iterdir(), key=lambda p: p.name)
    state = json.loads((source / "state.json").read_text())
    per_epoch = state["total_batches"]
    at_95 = int(per_epoch * 0.95)
    places = {
        "0": _place(source, workdir / "at0", 1, 0, per_epoch),
        "95": _place(source, workdir / "at95", 1, at_95, per_epoch),
    }
    times: dict[str, list[float]] = {"0": [], "95": []}
    for _ in range(3):
        for key, path in places.items():
            out = run_measured(
                CHILD.format(cfg=str(cfg), resume=str(path), after="raise FirstStep")
            )
            times[key].append(out["to_first_step_s"])
    t0, t95 = statistics.median(times["0"]), statistics.median(times["95"])
    for path in places.values():
        shutil.rmtree(path)
    return {
        "resume_95_vs_0": Result(
            t95 / t0,
            "x",
            "<= 1.2",
            {
                "batches_per_epoch": per_epoch,
                "resume_at": [0, at_95],
                "to_first_step_s": [round(t0, 3), round(t95, 3)],
                "repeats": 3,
            },
        )
    }
