"""`enstack run` and `enstack demo`: every stage in order, finished work skipped.

A run directory remembers the config that made it (`run.json`); a different data, model or
training setup pointed at the same directory is refused rather than mixed in.
"""

from __future__ import annotations

import time
from pathlib import Path

from enstack import IMPORTED_AT, log
from enstack.config import Config, changed_keys, load_config_text, shipped_config
from enstack.data.prepare import prepare, split_warnings
from enstack.errors import UserError
from enstack.evaluate.stage import run_evaluate
from enstack.evaluate.tables import long_functions_text, plain_table
from enstack.fsutil import atomic_write_json, read_json_object, sha256_json
from enstack.stack.stage import line_ranker_text, run_stack
from enstack.stack.summary import StackSummary
from enstack.train.status import train_unless_done
from enstack.train.trajectory import RUN_DIR_IGNORES

LOG = log.get(__name__)

IDENTITY_KEYS = ("seed", "data", "models")


def demo_yaml() -> str:
    """The demo's config as shipped inside the package (`configs/demo.yaml` in a checkout);
    its run_dir is always replaced by the demo's own."""
    return shipped_config("demo").read_text(encoding="utf-8")


def demo_config(run_dir: Path, overrides: list[str]) -> Config:
    return load_config_text(demo_yaml(), "the demo config", [f"run_dir={run_dir}", *overrides])


def run_pipeline(
    config: Config, progress: bool | None = None, force_resume: bool = False
) -> StackSummary:
    started = _clock_start()
    check_run_dir(config)
    data = prepare(config, progress)
    LOG.info(
        f"prepare: {'unchanged' if data.skipped else 'done'} "
        f"({data.manifest.table['total']['train']} train rows)"
    )
    for warning in split_warnings(data.manifest):
        LOG.warning(warning)
    for model in config.models:
        result = train_unless_done(
            config, model.name, "auto", progress, force_resume, manifest=data.manifest
        )
        LOG.info(
            f"train {model.name}: {'already trained' if result.already_done else 'done'}, "
            f"best val F1 {result.state.best_f1:.4f}"
        )
    stacked = run_stack(config, progress)
    LOG.info(
        f"stack: {'unchanged' if stacked.skipped else 'done'}; {line_ranker_text(stacked.summary)}"
    )
    long = long_functions_text(stacked.summary.as_json())
    if long:
        LOG.info(f"stack: {long}")
    reports, summary, skipped = run_evaluate(config)
    LOG.info(f"evaluate: {'unchanged' if skipped else 'done'} -> {reports}")
    print(plain_table(summary.as_json()))
    print(f"\nreports: {reports}/report.html, results.md, results.json, results.csv, plots/")
    LOG.info(f"total time: {time.perf_counter() - started:.0f} s")
    return summary


_RUNS_IN_PROCESS: list[float] = []


def _clock_start() -> float:
    """The first run in a process counts from enstack's import (on the command line, the wait
    a user sees, loading torch included); a later one (a notebook cell run again) from its call."""
    now = time.perf_counter()
    _RUNS_IN_PROCESS.append(now)
    return IMPORTED_AT if len(_RUNS_IN_PROCESS) == 1 else now


def check_run_dir(config: Config) -> None:
    """Record which config made run_dir; refuse a different one."""
    identity = _identity(config)
    path = config.layout.record
    if path.is_file():
        recorded = read_json_object(path) or {}
        if recorded.get("identity_hash") not in (None, sha256_json(identity)):
            differs = changed_keys(recorded.get("identity", {}), identity)
            if not differs and isinstance(recorded.get("identity"), dict):
                # only settings added to enstack since, at their unset default: the same run
                atomic_write_json(
                    path, {"identity_hash": sha256_json(identity), "identity": identity}
                )
                return
            raise UserError(
                f"run_dir {config.run_dir} was made by a different config (differs in "
                f"{', '.join(differs[:4]) or 'its settings'}); use another run_dir, or "
                "delete this one to start over"
            )
        return
    atomic_write_json(path, {"identity_hash": sha256_json(identity), "identity": identity})


def _identity(config: Config) -> dict:
    dumped = config.model_dump(mode="json")
    identity = {key: dumped[key] for key in IDENTITY_KEYS}
    identity["data"].pop("chunk_rows", None)
    identity["data"].pop("cve_column", None)  # read by `enstack known build` only
    identity["training"] = {k: v for k, v in dumped["training"].items() if k not in RUN_DIR_IGNORES}
    return identity
