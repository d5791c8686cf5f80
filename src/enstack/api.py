"""enstack from Python (notebooks, Colab, services): the command line's stages as functions.

    import enstack.api as es

    config = es.load_config("juliet6", run_dir="/content/drive/MyDrive/j6",
                            training={"staging_dir": "/content/staging"})
    es.run(config)                          # every stage; finished work is skipped
    report = es.scan(["src/"], config=config)
    [(f.function.name, f.label, f.confidence) for f in report.findings]

Each function is the stage the CLI runs, with the same files written and the same skipping
and resuming: after a disconnect, run the same cell. Bad input raises `UserError`, whose
message is the line the CLI prints after `error:`; a training interrupted by the kernel's
stop button saves a checkpoint and raises `Interrupted`. Progress renders as a notebook
widget in Jupyter and Colab (see `enstack.progress`). Each stage's warnings are also issued
as `EnstackWarning`s (`warnings.simplefilter("error", es.EnstackWarning)` makes them fatal).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enstack.config import Config, load_config_dict, parse_yaml, read_config_yaml
from enstack.errors import UserError
from enstack.log import EnstackWarning, warnings_issued
from enstack.stack.summary import StackSummary

__all__ = [
    "Config",
    "EnstackWarning",
    "Reports",
    "UserError",
    "demo_config",
    "distill",
    "evaluate",
    "load_config",
    "prepare",
    "pretrain",
    "run",
    "scan",
    "stack",
    "train",
]


@dataclass
class Reports:
    """What `evaluate` wrote: the reports directory and the results it holds."""

    directory: Path
    summary: StackSummary  # rows, selection, labels (results.json holds more)
    skipped: bool  # unchanged inputs: nothing rewritten

    @property
    def results_json(self) -> Path:
        return self.directory / "results.json"


def load_config(
    source: str | Path | dict | None = None, overrides: Iterable[str] = (), **settings: Any
) -> Config:
    """A config from a YAML file, a dict, or the defaults (None), then `overrides` in the
    command line's `key=value` form, then keyword settings: top-level keys, whose dict values
    merge into the config's (`training={"epochs": 2}` keeps the other training keys)."""
    if source is None:
        raw, name = {}, "defaults"
    elif isinstance(source, dict):
        raw, name = source, "the config dict"
    elif isinstance(source, (str, Path)):
        raw, name = read_config_yaml(Path(source)), str(source)
    else:
        raise UserError(f"load_config: give a YAML path, a dict or None, not {source!r}")
    if isinstance(overrides, str):  # one `key=value`, not a list of its characters
        overrides = [overrides]
    try:
        merged = _merge(raw, settings)
        return load_config_dict(merged, name, list(overrides))
    except RecursionError:
        raise UserError(f"{name}: nested too deeply to be a config") from None


def _config(config: Config | str | Path, where: str) -> Config:
    """A Config, or the path of a YAML one (read as `load_config` reads it)."""
    if isinstance(config, Config):
        return config
    if isinstance(config, (str, Path)):
        return load_config(config)
    raise UserError(
        f"{where}: config must be a Config (es.load_config(...)) or a path, not {config!r}"
    )


def demo_config(run_dir: str | Path = "enstack-demo", **settings: Any) -> Config:
    """The config `enstack demo` runs, with `run_dir` and any keyword settings."""
    from enstack.pipeline import demo_yaml

    raw = parse_yaml(demo_yaml())
    return load_config_dict(_merge(raw, {"run_dir": str(run_dir), **settings}), "the demo config")


def prepare(config: Config | str | Path, progress: bool | None = None):
    """Stage 1: read, label, dedup, split. Returns a `PrepareResult` (data_dir, manifest)."""
    from enstack.data.prepare import prepare as run_prepare

    with warnings_issued():
        return run_prepare(_config(config, "prepare"), progress)


def train(
    config: Config | str | Path,
    model: str,
    resume: str = "auto",
    force_resume: bool = False,
    progress: bool | None = None,
):
    """Stage 2 for one model (`resume`: auto, never, or a checkpoint path). Returns a
    `TrainResult` (paths, final state, where it resumed from)."""
    from enstack.train.status import train_unless_done

    if not isinstance(model, str):
        raise UserError(f"train: model must be a model's name from the config, not {model!r}")
    with warnings_issued():
        return train_unless_done(_config(config, "train"), model, resume, progress, force_resume)


def stack(config: Config | str | Path, progress: bool | None = None):
    """Stage 3: features, the ablation, the selected bundle. Returns a `StackResult`."""
    from enstack.stack.stage import run_stack

    with warnings_issued():
        return run_stack(_config(config, "stack"), progress)


def evaluate(config: Config | str | Path) -> Reports:
    """Stage 4: results.json/md/csv and plots under run_dir/reports."""
    from enstack.evaluate.stage import run_evaluate

    with warnings_issued():
        return Reports(*run_evaluate(_config(config, "evaluate")))


def run(
    config: Config | str | Path, progress: bool | None = None, force_resume: bool = False
) -> StackSummary:
    """Every stage in order, as `enstack run` (and `enstack demo`); returns the stack summary
    (`rows`, `selected`, `best_single`, ...: `enstack.stack.summary.StackSummary`, also
    readable as `summary["rows"]`) and prints the results table."""
    from enstack.pipeline import run_pipeline

    with warnings_issued():
        return run_pipeline(_config(config, "run"), progress, force_resume)


def pretrain(
    config: Config | str | Path,
    resume: str = "auto",
    force_resume: bool = False,
    progress: bool | None = None,
):
    """`enstack pretrain`: masked-language pretraining on the config's `pretrain.corpus`.
    Returns a `PretrainResult`: `model` is the directory to fine-tune from
    (`models.N.pretrained`), `corpus` what was read, `train` the training's result."""
    from enstack.pretrain.stage import run_pretrain

    with warnings_issued():
        return run_pretrain(_config(config, "pretrain"), progress, resume, force_resume)


def distill(
    config: Config | str | Path,
    resume: str = "auto",
    force_resume: bool = False,
    progress: bool | None = None,
):
    """`enstack distill`: a compact student of the run's selected bundle. Returns a
    `DistillResult` (`bundle`, `agreement` with the teacher on val and test)."""
    from enstack.distill.stage import run_distill

    with warnings_issued():
        return run_distill(_config(config, "distill"), progress, resume, force_resume)


def scan(
    paths: Iterable[str | Path] | str | Path,
    bundle: str | Path | None = None,
    config: Config | str | Path | None = None,
    known: str | Path | None = None,
    **options: Any,
):
    """Scan files or directories with a bundle (or a run's selected bundle, `config`), a
    knowledge base of known vulnerable functions (`known`, built by `enstack known build`), or
    both. `options`: `threshold`, `top_lines`, `localise`, `cache_dir`, as the `Scanner` takes
    them. Returns a `ScanReport` (`findings`, `scored`, `known`, `summary()`, `render(fmt)`,
    `write(path)`); what the model card warns about (synthetic training data, no benign class)
    is issued as an `EnstackWarning` (a `UserWarning`)."""
    from enstack.scan.api import Scanner
    from enstack.stack.stage import selected_bundle

    if bundle is not None and config is not None:
        raise UserError("scan: give a bundle or a config, not both")
    if bundle is None and config is None and known is None:
        raise UserError("scan: give a bundle or a config (a model), a known base, or both")
    if bundle is not None and not isinstance(bundle, (str, Path)):
        raise UserError(f"scan: bundle must be a bundle directory's path, not {bundle!r}")
    where = Path(bundle) if bundle is not None else None
    if config is not None:
        where = selected_bundle(_config(config, "scan"))
    report = Scanner(where, known=known, **options).scan(paths)
    for text in report.model.warnings() if report.model else []:  # as the CLI prints them
        warnings.warn(text, EnstackWarning, stacklevel=2)
    return report


def _merge(base: dict, settings: dict) -> dict:
    """`settings` over `base`, dicts merged key by key (lists and values replaced)."""
    out = dict(base)
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
