"""Where everything lives in a run directory: the one place that spells its paths.

run_dir/
  run.json                 which config made this directory (pipeline)
  data/                    prepared splits and their manifest (prepare)
  cache/tokens/            tokenised splits, per tokenizer, data and max_length (train)
  models/NAME/             base/, checkpoints/, best/, final/, tb/, metrics.jsonl (train)
  features/NAME/           each model's val and test outputs (stack)
  stack/                   ablation.json, arrays.safetensors, bundle/ (stack)
  reports/                 results.json, .md, .csv, plots/ (evaluate)
  distill/                 a student's own run: data/ (the teacher's probabilities), cache/,
                           models/student/, and bundle/: what `enstack scan --bundle` takes
  pretrain/                masked-language pretraining (`enstack pretrain`): data/ (the corpus
                           as functions), cache/, models/encoder/ (best/: the model to fine-tune)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from enstack.fsutil import sha256_json


@dataclass(frozen=True)
class ModelPaths:
    root: Path

    @property
    def base(self) -> Path:
        """config.json and tokenizer files, written once before training."""
        return self.root / "base"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best(self) -> Path:
        """The export of the best val epoch: what stacking and scanning read."""
        return self.root / "best"

    @property
    def final(self) -> Path:
        return self.root / "final"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def record(self) -> Path:
        return self.root / "run.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def split(self, name: str) -> Path:
        return self.data / f"{name}.parquet"

    @property
    def token_cache(self) -> Path:
        return self.root / "cache" / "tokens"

    def model(self, name: str) -> ModelPaths:
        return ModelPaths(self.root / "models" / name)

    def features(self, name: str) -> Path:
        return self.root / "features" / name

    @property
    def stack(self) -> Path:
        return self.root / "stack"

    @property
    def bundle(self) -> Path:
        """The selected ensemble, as `enstack scan --config` finds it."""
        return self.stack / "bundle"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def distill(self) -> Path:
        """The student's run directory (`enstack distill`): a run layout of its own."""
        return self.root / "distill"

    @property
    def pretrain(self) -> Path:
        """The pretraining run (`enstack pretrain`): data/ (the corpus), cache/, models/encoder/."""
        return self.root / "pretrain"


def staging_path(staging_dir: Path, run_dir: Path, name: str) -> Path:
    """Where a model's saves are staged: unique to the run directory (by its absolute path,
    not only its last component, which two runs may share) and to the model."""
    key = sha256_json(str(run_dir.resolve()))[:12]
    return staging_dir / f"{run_dir.name}-{key}" / name
