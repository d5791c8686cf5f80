"""Typed configuration: YAML validated by pydantic, with dotted `--set key=value` overrides.

Every key has a default, so an empty file is a valid config (the paper's hyperparameters on
synthetic data). Unknown keys and wrong types are rejected with the dotted key's name.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from enstack.errors import UserError
from enstack.labels import PAPER_LABELS
from enstack.registries.cwe_ids import cwe_ids
from enstack.registries.families import FAMILIES
from enstack.registries.formats import FORMATS, TABULAR
from enstack.registries.metas import META_NAMES, PAPER_METAS
from enstack.registries.modes import LONG_FUNCTION_MODES
from enstack.registries.presets import PRESETS
from enstack.run_layout import RunLayout


class Strict(BaseModel):
    # no NaN or infinity anywhere: a learning rate of .inf is a mistake, never a setting
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class MaxPerClass(Strict):
    max_per_class: Annotated[int, Field(gt=0)]


class SyntheticConfig(Strict):
    n_per_class: Annotated[int, Field(gt=0)] = 200


class PairColumns(Strict):
    """Pairs stored in one row: the function before its fix and after it."""

    vulnerable: Annotated[str, Field(min_length=1)]
    fixed: Annotated[str, Field(min_length=1)]


COLUMN_KEYS = (
    *("pair_column", "group_column", "cwe_column", "target_column", "pair_columns"),
    "cve_column",
)
# what each of data.sources sets for itself; every other data key is shared
SOURCE_KEYS = (
    *("preset", "format", "path", "train", "val", "test", "code_column", "label_column"),
    *("id_column", "multi_label", "group_pattern", "sqlite_query", *COLUMN_KEYS),
)


class DataConfig(Strict):
    # a published dataset's layout (registries/presets.py): fills in the keys below that are unset
    preset: Literal[tuple(PRESETS)] | None = None  # type: ignore[valid-type]
    format: Literal[FORMATS] = "synthetic"  # type: ignore[valid-type]  # data/formats.py
    train: Path | None = None
    val: Path | None = None
    test: Path | None = None
    path: Path | None = None
    code_column: str = "code"
    label_column: str = "label"
    id_column: str = "id"  # used when the tabular file has it; ids are generated otherwise
    labels: list[str] = Field(default_factory=lambda: list(PAPER_LABELS))
    multi_label: Literal["first", "drop"] = "first"  # Draper rows with several flags
    downsample: Literal["none", "paper"] | MaxPerClass = "none"
    # The detection task: when `labels` holds `benign_label`, Draper rows with no flag become
    # that class instead of being dropped; tabular rows give it as their label.
    benign_label: Annotated[str, Field(min_length=1)] = "none"
    # At most R benign train rows per vulnerable train row (None: no cap beyond downsample).
    benign_ratio: Annotated[float, Field(gt=0)] | None = None
    # A column whose value ties a flawed function to its fixed versions: carried to every
    # split, and a pair is never split apart where enstack makes the splits.
    pair_column: Annotated[str, Field(min_length=1)] | None = None
    # A column naming the group a row comes from (a project, a Juliet testcase family): carried
    # to every split; where enstack makes the splits, a group lands in one split only (its pairs
    # with it), so test measures groups never seen, and stacking cross-validates by group.
    group_column: Annotated[str, Field(min_length=1)] | None = None
    # A regular expression whose first group cuts the group out of group_column's value
    # (SVEN's project from its commit link); a value it does not match is its own group.
    group_pattern: str | None = None
    # Real datasets' labels: MITRE CWE ids mapped onto `labels` through the CWE hierarchy
    # (data/cwe.py), `cwe_map` overriding single ids; a binary target (0: the benign class);
    # pairs as two columns of one row (the fixed text becomes a benign row of the same pair).
    cwe_column: Annotated[str, Field(min_length=1)] | None = None
    cwe_map: dict[str, str] = Field(default_factory=dict)
    # A column holding the row's CVE id, for `enstack known build` (a base names its entries'
    # CVEs; where it is unset, the group and id columns are searched for one). Optional in rows.
    cve_column: Annotated[str, Field(min_length=1)] | None = None
    target_column: Annotated[str, Field(min_length=1)] | None = None
    pair_columns: PairColumns | None = None
    # Several sources, each read by its own keys (SOURCE_KEYS: a preset, a format, its paths
    # and columns) under the shared ones (labels, cwe_map, downsample, ...): PairVul's JSON
    # arrays and SVEN's JSON lines in one training set. All give the same split layout.
    sources: list[dict[str, Any]] | None = None
    # format sqlite: the SELECT whose rows are the data (its column names are the columns),
    # run over the database opened read-only; anything but reading is refused
    sqlite_query: Annotated[str, Field(min_length=1)] | None = None
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, raw: Any) -> Any:
        """A preset's keys under the user's: whatever the config sets itself wins."""
        if isinstance(raw, dict) and isinstance(raw.get("preset"), str):
            preset = PRESETS.get(raw["preset"])
            if preset is not None:
                return {**copy.deepcopy(preset), **raw}
        return raw

    chunk_rows: Annotated[int, Field(gt=0)] = 20_000  # rows read per chunk while streaming

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, labels: list[str]) -> list[str]:
        if len(labels) < 2:
            raise ValueError("needs at least two classes")
        if len(set(labels)) != len(labels):
            raise ValueError("has a class listed twice")
        return labels

    @model_validator(mode="after")
    def _sources_consistent(self) -> DataConfig:
        split_paths = [self.train, self.val, self.test]
        if self.benign_ratio is not None and self.benign_label not in self.labels:
            raise ValueError(
                f"benign_ratio needs the benign class {self.benign_label!r} in data.labels"
            )
        if self.sources is not None:
            self._check_sources()
            return self
        for key in COLUMN_KEYS:
            if getattr(self, key) is not None and self.format not in TABULAR:
                raise ValueError(f"{key}: format {self.format!r} has no columns to read it from")
        if (self.sqlite_query is not None) != (self.format == "sqlite"):
            raise ValueError("data.sqlite_query goes with format sqlite, which needs it")
        self._check_real_labels()
        if self.format == "synthetic":
            return self
        if self.path is not None and any(p is not None for p in split_paths):
            raise ValueError("give either data.path (one source to split) or data.train/val/test")
        if self.path is None and self.train is None:
            raise ValueError(f"format {self.format!r} needs data.path or data.train")
        if self.test is not None and self.val is None:
            raise ValueError("data.test is given without data.val")
        return self

    def _check_sources(self) -> None:
        if not self.sources:
            raise ValueError("sources: an empty list (give at least one source, or none)")
        if any(getattr(self, key) is not None for key in ("path", "train", "val", "test")):
            raise ValueError("give the paths in each of data.sources, not beside them")
        layouts = set()
        for i, source in enumerate(self.sources):
            if not isinstance(source, dict):
                raise ValueError(f"sources[{i}]: a mapping of keys, not {type(source).__name__}")
            foreign = sorted(set(source) - set(SOURCE_KEYS))
            if foreign:
                raise ValueError(
                    f"sources[{i}]: {foreign[0]!r} is shared by every source; set it beside "
                    f"data.sources (a source sets only {', '.join(SOURCE_KEYS)})"
                )
            try:
                reader = self._reader(source)
            except ValidationError as exc:
                raise ValueError(f"sources[{i}]: {_describe(exc)}") from None
            if reader.format == "synthetic":
                raise ValueError(f"sources[{i}]: needs a format or a preset (files to read)")
            layouts.add(tuple(k for k in ("path", "train", "val", "test") if getattr(reader, k)))
        if len(layouts) > 1:
            raise ValueError(
                "sources: every source gives the same paths (all `path`, or all train/val/test)"
            )

    def _reader(self, source: dict[str, Any]) -> DataConfig:
        shared = self.model_dump(exclude={"sources", *SOURCE_KEYS})
        return DataConfig.model_validate({**shared, **source})

    def readers(self) -> list[DataConfig]:
        """The configs that read the data: one per source, or this one."""
        if self.sources is None:
            return [self]
        return [self._reader(source) for source in self.sources]

    def _check_real_labels(self) -> None:
        """CWE ids, targets and pairs: what each needs from the rest of the config."""
        if self.pair_columns is not None and self.pair_column is not None:
            raise ValueError("give pair_column (pairs over rows) or pair_columns (in one row)")
        if (self.pair_columns or self.target_column) and self.benign_label not in self.labels:
            key = "pair_columns" if self.pair_columns else "target_column"
            raise ValueError(
                f"{key}: fixed or target-0 functions are the benign class, so data.labels needs "
                f"{self.benign_label!r} (data.benign_label)"
            )
        if self.group_pattern is not None:
            try:
                if re.compile(self.group_pattern).groups < 1:
                    raise ValueError("group_pattern: needs a (group) that captures the name")
            except re.error as exc:
                raise ValueError(f"group_pattern: not a regular expression ({exc})") from None
        normalised = {}
        for key, value in self.cwe_map.items():
            ids = cwe_ids(key)
            if len(ids) != 1:
                raise ValueError(f"cwe_map: {key!r} is not one CWE id (CWE-787, NVD-CWE-Other)")
            if value not in self.labels:
                raise ValueError(f"cwe_map: {key} maps to {value!r}, not one of data.labels")
            normalised[ids[0]] = value
        self.cwe_map = normalised

    @property
    def benign_id(self) -> int | None:
        """The benign class's id when this is a detection task, else None."""
        return self.labels.index(self.benign_label) if self.benign_label in self.labels else None

    @property
    def has_pairs(self) -> bool:
        if self.sources is not None:
            return any(reader.has_pairs for reader in self.readers())
        # synthetic data makes its own pairs when it has a benign class
        return (
            self.pair_column is not None
            or self.pair_columns is not None
            or (self.format == "synthetic" and self.benign_label in self.labels)
        )

    @property
    def has_groups(self) -> bool:
        if self.sources is not None:
            return any(reader.has_groups for reader in self.readers())
        return self.group_column is not None


class ScratchConfig(Strict):
    layers: Annotated[int, Field(gt=0)] = 2
    hidden: Annotated[int, Field(gt=0)] = 128
    heads: Annotated[int, Field(gt=0)] = 2
    intermediate: Annotated[int, Field(gt=0)] = 256
    vocab_size: Annotated[int, Field(ge=300)] = 4000
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1  # hidden (and attention) dropout
    # None: the same as `dropout`. On CPU, dropout on the attention probabilities costs about
    # half of a small model's training step (a random draw per query-key pair); 0 skips it.
    attention_dropout: Annotated[float | None, Field(ge=0, lt=1)] = None

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ScratchConfig:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        return self


class ModelConfig(Strict):
    # a plain directory name under models/: no path separators, no leading dot (`.`, `..`
    # and hidden names would escape models/NAME or collide with enstack's temporary files)
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")]
    family: Literal[tuple(FAMILIES)] = "auto"  # type: ignore[valid-type]  # registries/families.py
    pretrained: str | None = None
    scratch: ScratchConfig | None = None
    pooling: Literal["cls", "mean", "auto"] = "auto"  # auto: mean for unixcoder, CLS otherwise
    # GraphCodeBERT's data-flow graph as input (RoBERTa-type encoders); None: on for
    # family graphcodebert, off otherwise
    dfg: bool | None = None

    @property
    def uses_dfg(self) -> bool:
        return self.family == "graphcodebert" if self.dfg is None else self.dfg

    @model_validator(mode="after")
    def _one_source_of_weights(self) -> ModelConfig:
        if (self.pretrained is None) == (self.scratch is None):
            raise ValueError(f"model {self.name!r}: set exactly one of pretrained or scratch")
        return self


def _paper_models() -> list[ModelConfig]:
    return [
        ModelConfig(name="codebert", family="codebert", pretrained="microsoft/codebert-base"),
        ModelConfig(
            name="graphcodebert", family="graphcodebert", pretrained="microsoft/graphcodebert-base"
        ),
        ModelConfig(name="unixcoder", family="unixcoder", pretrained="microsoft/unixcoder-base"),
    ]


class TrainingConfig(Strict):
    epochs: Annotated[int, Field(gt=0)] = 10
    batch_size: Annotated[int, Field(gt=0)] = 16
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 2.0e-5
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.0
    grad_accum_steps: Annotated[int, Field(gt=0)] = 1
    max_grad_norm: Annotated[float, Field(ge=0)] = 1.0
    max_length: Annotated[int, Field(gt=8)] = 512
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    class_weights: bool = False
    early_stopping_patience: Annotated[int, Field(ge=0)] = 0  # 0 = off
    dfg_length: Annotated[int, Field(gt=0, le=512)] = 64  # graph nodes after the code
    # Where, how often and on what hardware: whether each setting changes the weights (and so
    # a checkpoint's fingerprint) is decided in enstack.train.trajectory, for every setting.
    save_steps: Annotated[int, Field(ge=0)] = 500
    keep_checkpoints: Annotated[int, Field(gt=0)] = 2
    # fast local disk for saves; copied to run_dir afterwards
    staging_dir: Path | None = None
    log_steps: Annotated[int, Field(gt=0)] = 10
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch CPU threads; 0 = torch's default
    num_threads: Annotated[int, Field(ge=0)] = 0
    # deterministic CUDA kernels (torch.use_deterministic_algorithms, CUBLAS_WORKSPACE_CONFIG):
    # bit-identical resume on GPU, at some speed; CPU training is deterministic either way
    deterministic: bool = False
    # A function longer than max_length: read whole in windows cut at statement boundaries
    # (training rows, validation, stack features, evaluation; `enstack scan --long-functions`),
    # or truncated to its first window. A run from before windows goes on truncated.
    long_functions: Literal[LONG_FUNCTION_MODES] = "windows"  # type: ignore[valid-type]
    # Fix pairs (data with pairs and a benign class): beside cross-entropy, a margin ranking
    # term asking each flawed function to score as more vulnerable than its fix by
    # `pair_margin` (log-odds), weighted by `pair_weight`; batches then keep pairs together.
    pairwise: bool = False
    pair_margin: Annotated[float, Field(gt=0)] = 1.0
    pair_weight: Annotated[float, Field(gt=0)] = 1.0


MetaName = Literal[META_NAMES]  # type: ignore[valid-type]  # the registry's names
# What selection maximises on val: a class metric, or (with a benign class) a detection one.
SelectOn = Literal["f1", "macro_f1", "accuracy", "detection_f1", "pr_auc", "pair_correct"]


class StackingConfig(Strict):
    features: Literal["probs", "logits", "embedding"] = "probs"
    meta: Annotated[list[MetaName], Field(min_length=1)] = Field(
        default_factory=lambda: list(PAPER_METAS)
    )
    mode: Literal["paper", "cv"] = "paper"
    select_on: SelectOn = "f1"  # weighted F1 over the classes, as the paper selects
    cv_folds: Annotated[int, Field(ge=2)] = 5
    scale: bool = False  # standardise meta-features before the meta-classifier
    extract_batch_size: Annotated[int, Field(gt=0)] = 64
    meta_params: dict[MetaName, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("meta_params")
    @classmethod
    def _params_exist(cls, meta_params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each override must be a real parameter of its estimator, with a value it accepts."""
        if not meta_params:
            return meta_params
        from enstack.stack.meta import check_params

        for name, params in meta_params.items():
            problem = check_params(name, params)
            if problem:
                raise ValueError(f"{name}: {problem}")
        return meta_params


def _default_student() -> ScratchConfig:
    return ScratchConfig(layers=2, hidden=128, heads=2, intermediate=256, attention_dropout=0)


class DistillConfig(Strict):
    """`enstack distill`: one compact encoder (the student) trained on the selected bundle's
    class probabilities (the teacher's), to scan fast where the ensemble is slow."""

    family: Literal[tuple(FAMILIES)] = "codebert"  # type: ignore[valid-type]
    student: ScratchConfig = Field(default_factory=_default_student)
    temperature: Annotated[float, Field(gt=0)] = 2.0  # softens the teacher's probabilities
    epochs: Annotated[int, Field(gt=0)] | None = None  # None: training.epochs
    learning_rate: Annotated[float, Field(gt=0)] | None = None  # None: training.learning_rate
    # C/C++ files or trees whose functions the teacher scores too (no labels needed): more
    # of the code the student will scan, beside the run's train split
    unlabelled: list[Path] = Field(default_factory=list)
    max_unlabelled: Annotated[int, Field(ge=0)] = 50_000  # functions taken from `unlabelled`


def _default_pretrain_model() -> ScratchConfig:
    return ScratchConfig(
        layers=2, hidden=128, heads=2, intermediate=256, vocab_size=8000, attention_dropout=0
    )


class PretrainConfig(Strict):
    """`enstack pretrain`: masked-language pretraining of one encoder on C/C++ source, before
    fine-tuning (`models.N.pretrained` takes the result). `training:` sets the optimisation
    (batch, schedule, checkpoints) unless overridden here."""

    # C/C++ files, directories (walked as a scan walks them) and globs (`src/**/*.c`)
    corpus: list[str] = Field(default_factory=list)
    # datasets whose code column joins the corpus, each as one of data.sources is written
    # ({preset: sven, path: ...}); the readers check labels against data.labels (or the
    # entry's own `labels`), and nothing else is done with them
    datasets: list[dict[str, Any]] = Field(default_factory=list)
    # a local model directory to continue pretraining (its tokenizer is kept); None: a new
    # encoder of `model`'s size with a BPE tokenizer trained on the corpus
    continue_from: Path | None = None
    family: Literal[tuple(FAMILIES)] = "codebert"  # type: ignore[valid-type]
    model: ScratchConfig = Field(default_factory=_default_pretrain_model)
    mask_probability: Annotated[float, Field(gt=0, lt=1)] = 0.15  # BERT's 80/10/10 rule
    val_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.02  # functions held out, by hash
    max_functions: Annotated[int, Field(ge=0)] = 0  # 0: every function of the corpus
    # configs to be fine-tuned after: their val and test functions are dropped from the
    # corpus (this config's own too, when it names real data)
    decontaminate: list[Path] = Field(default_factory=list)
    epochs: Annotated[int, Field(gt=0)] | None = None  # None: training.epochs
    learning_rate: Annotated[float, Field(gt=0)] | None = None  # None: training.learning_rate
    max_length: Annotated[int, Field(gt=8)] | None = None  # None: training.max_length


class Config(Strict):
    run_dir: Path = Path("runs/default")
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 42  # NumPy's seeds are 32-bit
    data: DataConfig = Field(default_factory=DataConfig)
    models: list[ModelConfig] = Field(default_factory=_paper_models)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    stacking: StackingConfig = Field(default_factory=StackingConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)

    @property
    def layout(self) -> RunLayout:
        """Where everything this run writes lives under `run_dir`."""
        return RunLayout(self.run_dir)

    @field_validator("models")
    @classmethod
    def _model_names_unique(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError("two models share a name")
        if not models:
            raise ValueError("needs at least one model")
        return models

    @model_validator(mode="after")
    def _selection_measurable(self) -> Config:
        select_on = self.stacking.select_on
        detection = select_on in ("detection_f1", "pr_auc", "pair_correct")
        if detection and self.data.benign_id is None:
            raise ValueError(
                f"stacking.select_on: {select_on} needs the benign class "
                f"{self.data.benign_label!r} in data.labels"
            )
        if select_on == "pair_correct" and not self.data.has_pairs:
            raise ValueError("stacking.select_on: pair_correct needs data.pair_column")
        if self.training.pairwise and (self.data.benign_id is None or not self.data.has_pairs):
            raise ValueError(
                "training.pairwise: needs fix pairs (data.pair_column or pair_columns) and the "
                f"benign class {self.data.benign_label!r} in data.labels"
            )
        return self

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        known = ", ".join(m.name for m in self.models)
        raise UserError(f"no model named {name!r} in the config (models: {known})")


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two config dumps, sorted."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, name + ".")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            # item by item: a setting added to enstack since, unset, is no change (models)
            out += changed_keys(dict(enumerate(a)), dict(enumerate(b)), name + ".")
        elif a != b:
            out.append(name)
    return out


# --- loading -------------------------------------------------------------------------------


def load_config(path: Path | None, overrides: list[str] | None = None) -> Config:
    """Read YAML at `path` (or the defaults when None), apply `key=value` overrides, validate.

    Relative paths (run_dir, data files, a local `pretrained` directory) are resolved against
    the working directory, as the command line would.
    """
    if path is None:
        return _validate({}, "defaults", overrides)
    return _validate(read_config_yaml(path), str(path), overrides)


def load_config_text(text: str, source: str, overrides: list[str] | None = None) -> Config:
    """Validate a YAML string (the embedded demo config) with the same rules as a file."""
    return _validate(parse_yaml(text) or {}, source, overrides)


def load_config_dict(
    raw: dict[str, Any], source: str, overrides: list[str] | None = None
) -> Config:
    """Validate a mapping (the Python API's configs) with the same rules as a file."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: a config is a mapping of keys, not {type(raw).__name__}")
    return _validate(copy.deepcopy(raw), source, overrides)


def _validate(raw: dict[str, Any], source: str, overrides: list[str] | str | None) -> Config:
    if isinstance(overrides, str):  # one `key=value`, not a list of its characters
        overrides = [overrides]
    for item in overrides or []:
        _apply_override(raw, item)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{_culprit(exc, source, overrides or [])}: {_describe(exc)}") from None
    return _resolve_paths(config, Path.cwd())


def _culprit(exc: ValidationError, source: str, overrides: list[str]) -> str:
    """The config file, or the `--set KEY=VALUE` that put the bad key or value there."""
    key = ".".join(str(p) for p in _first_error(exc)["loc"] if not _is_union_tag(p))
    for item in reversed(overrides):  # the last --set of a key is the one that counts
        name = item.partition("=")[0].strip()
        if name and (key == name or key.startswith(name + ".") or name.startswith(key + ".")):
            return f"--set {item}"
    return source


def _first_error(exc: ValidationError) -> dict:
    """The error that names what the user got wrong: for a value that matches no branch of a
    union, the deepest one."""
    errors = exc.errors()
    return max(errors, key=lambda e: (len(e["loc"]), -errors.index(e)))


MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 100_000


class ConfigTooLarge(yaml.YAMLError):
    """YAML that expands to more values than any config holds."""


def parse_yaml(text: str) -> Any:
    """Safe YAML, refused when it expands to more values than any config has: anchors and
    aliases are allowed, but a few hundred bytes of nested aliases (the "billion laughs")
    expand to billions of values when validated."""
    value = yaml.safe_load(text)
    if _expanded_size(value, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigTooLarge(f"expands to over {MAX_CONFIG_VALUES} values (nested aliases?)")
    return value


def _expanded_size(value: Any, limit: int) -> int:
    """Values in `value` with every alias expanded, counting stops past `limit`."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def shipped_names() -> list[str]:
    """The configs that ship inside the package (`configs/` in a checkout), by name."""
    folder = resources.files("enstack").joinpath("configs")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def shipped_config(name: str) -> Path:
    """A shipped config by name (`juliet6` or `juliet6.yaml`), from a pip install as from a
    checkout: `configs/` is not where a notebook's working directory is."""
    stem = name.removesuffix(".yaml")
    if stem not in shipped_names():
        raise UserError(f"no shipped config {name!r} (shipped: {', '.join(shipped_names())})")
    return Path(str(resources.files("enstack").joinpath("configs", f"{stem}.yaml")))


def config_file(path: Path | str) -> Path:
    """Where a `--config` value points: the file, when it exists; else a bare name of a
    shipped config (`--config juliet6`); else an error naming both."""
    path = Path(path)
    if path.is_file() or len(path.parts) != 1:
        return path
    if path.name.removesuffix(".yaml") in shipped_names():
        return shipped_config(path.name)
    return path


def read_config_yaml(path: Path) -> dict[str, Any]:
    path = config_file(path)
    if not path.is_file():
        shipped = ", ".join(shipped_names())
        raise UserError(f"config file not found: {path} (or a shipped config's name: {shipped})")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise UserError(f"{path}: over {MAX_CONFIG_BYTES} bytes; not an enstack config")
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        detail = f": {exc}" if isinstance(exc, ConfigTooLarge) else ""
        raise UserError(f"{path}: not valid YAML{where}{detail}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(
            f"{path}: the top level must be a mapping of keys, not {type(raw).__name__}"
        )
    return raw


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set training.epochs=3")
    try:
        value = parse_yaml(text) if text else None
    except yaml.YAMLError:
        value = text
    node: Any = raw
    parts = key.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {key}: {'.'.join(parts[:depth])} has no item {part}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: {'.'.join(parts[:depth])} is not a mapping")
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = _default_container(parts[: depth + 1])
            node = node[part]


def _default_container(parts: list[str]) -> Any:
    """When `--set models.0.x=...` targets a key the file left out, start from the default."""
    value: Any = Config().model_dump(mode="json")
    for part in parts:
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and isinstance(value.get(part), dict | list):
            value = value[part]
        else:
            return {}
    return value


def _describe(exc: ValidationError) -> str:
    """One line for the first problem: the dotted key, and for unknown keys the valid ones.

    For a value that matches no branch of a union (downsample: none | paper | {max_per_class}),
    the deepest error is the one that names what the user got wrong.
    """
    err = _first_error(exc)
    loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
    key = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        hint = f"; valid keys here: {', '.join(valid)}" if valid else ""
        return f"unknown key '{key}'{hint}"
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    shown = err.get("input")
    got = f" (got {shown!r})" if isinstance(shown, str | int | float | bool) else ""
    return f"{key}: {message}{got}"


def _is_union_tag(part: Any) -> bool:
    # pydantic puts union branch names such as "literal['none','paper']" into error locations
    return isinstance(part, str) and ("[" in part or part in {"MaxPerClass", "function-after"})


def _valid_keys(parent: list[str]) -> list[str]:
    model: Any = Config
    for part in parent:
        if part.isdigit():
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _resolve_paths(config: Config, base: Path) -> Config:
    def fix(p: Path | None) -> Path | None:
        if p is None or p.is_absolute():
            return p
        return (base / p).resolve()

    data = config.data.model_copy(
        update={k: fix(getattr(config.data, k)) for k in ("train", "val", "test", "path")}
    )
    if data.sources is not None:  # each source's paths, as written, against the same base
        sources = [_resolved_source(s, fix) for s in data.sources]
        data = data.model_copy(update={"sources": sources})
    training = config.training.model_copy(update={"staging_dir": fix(config.training.staging_dir)})
    models = [
        m.model_copy(update={"pretrained": _resolve_model_path(m.pretrained, base)})
        for m in config.models
    ]
    pretrain = config.pretrain.model_copy(
        update={
            "corpus": [str(fix(Path(p))) for p in config.pretrain.corpus],
            "datasets": [_resolved_source(s, fix) for s in config.pretrain.datasets],
            "continue_from": fix(config.pretrain.continue_from),
            "decontaminate": [fix(p) for p in config.pretrain.decontaminate],
        }
    )
    return config.model_copy(
        update={
            "run_dir": fix(config.run_dir),
            "data": data,
            "training": training,
            "models": models,
            "pretrain": pretrain,
        }
    )


def _resolved_source(source: dict[str, Any], fix) -> dict[str, Any]:
    """A source's paths, as written, against the config's directory."""
    paths = ("train", "val", "test", "path")
    return {
        k: str(fix(Path(v))) if k in paths and isinstance(v, str) else v for k, v in source.items()
    }


def _resolve_model_path(pretrained: str | None, base: Path) -> str | None:
    """A relative `pretrained` that exists on disk is a local directory, else a hub id."""
    if pretrained is None or Path(pretrained).is_absolute():
        return pretrained
    candidate = base / pretrained
    return str(candidate.resolve()) if candidate.exists() else pretrained
