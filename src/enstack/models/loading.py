"""Getting a model's config and tokenizer into `models/NAME/base/`, and loading exports.

`base/` is written once per training run (atomically) and holds what every later step needs
without the hub: the encoder's config (with the class labels) and the tokenizer. Scratch
models get a byte-level BPE tokenizer trained on the train split here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from enstack import log
from enstack.config import ModelConfig
from enstack.errors import UserError
from enstack.fsutil import staged_dir
from enstack.models.classifier import Classifier, build_encoder
from enstack.models.contract import INT8_WEIGHTS
from enstack.registries.families import (
    ENSTACK_MODEL_TYPES,
    FAMILIES,
    SUPPORTED_MODEL_TYPES,
    pooling_of,
)

LOG = log.get(__name__)

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0-4


def describe_source(model: ModelConfig) -> str:
    return f"models[{model.name}].pretrained"


def is_local(pretrained: str) -> bool:
    return Path(pretrained).exists() or pretrained.startswith(("/", "./", "../", "~"))


def load_pretrained_config(model: ModelConfig, labels: list[str]) -> PretrainedConfig:
    assert model.pretrained is not None
    source = model.pretrained
    if is_local(source):
        path = Path(source).expanduser()
        if not (path / "config.json").is_file():
            raise UserError(
                f"{describe_source(model)}: {path} is not a Hugging Face model directory "
                "(no config.json); save one with save_pretrained or give a hub id"
            )
    else:
        LOG.info(
            f"note: loading {source!r} from the Hugging Face hub (downloaded on first use, then "
            "cached); set pretrained: to a local directory to avoid the network"
        )
        _offline_unless_hub_reachable()
    try:
        config = AutoConfig.from_pretrained(source, num_labels=len(labels))
    except (OSError, ValueError) as exc:
        raise UserError(_unreachable(model, exc)) from None
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise UserError(
            f"{describe_source(model)}: model type {config.model_type!r} is not a BERT/RoBERTa-"
            f"family encoder (supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))})"
        )
    return config


HUB_PROBE_SECONDS = 3.0


def _offline_unless_hub_reachable() -> None:
    """Fail fast offline: when the hub cannot be reached in a few seconds, use only the local
    cache (HF_HUB_OFFLINE) instead of letting every download retry for a minute."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return  # already told: the libraries do not try the network
    from huggingface_hub import constants

    host = constants.ENDPOINT.split("://", 1)[-1].split("/", 1)[0]
    try:
        socket.create_connection((host, 443), timeout=HUB_PROBE_SECONDS).close()
    except OSError:
        LOG.info(f"note: {host} cannot be reached; using the local cache only")
        os.environ["HF_HUB_OFFLINE"] = "1"
        constants.HF_HUB_OFFLINE = True


def _unreachable(model: ModelConfig, exc: Exception) -> str:
    source = model.pretrained
    if is_local(str(source)):
        return f"{describe_source(model)}: cannot load {source}: {exc}".splitlines()[0]
    return (
        f"{describe_source(model)}: cannot fetch {source!r} from the Hugging Face hub (offline, "
        "or no such model). On a machine with network, save it with `hf download "
        f"{source} --local-dir DIR` (or save_pretrained), copy DIR here and set "
        f"--set models.N.pretrained=DIR"
    )


def scratch_config(model: ModelConfig, labels: list[str], max_length: int, vocab: int):
    from transformers import RobertaConfig

    assert model.scratch is not None
    s = model.scratch
    return RobertaConfig(
        vocab_size=vocab,
        hidden_size=s.hidden,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        intermediate_size=s.intermediate,
        max_position_embeddings=max_length + 2,  # RoBERTa positions start after the pad id
        type_vocab_size=1,
        hidden_dropout_prob=s.dropout,
        attention_probs_dropout_prob=(
            s.dropout if s.attention_dropout is None else s.attention_dropout
        ),
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=len(labels),
    )


def train_scratch_tokenizer(model: ModelConfig, codes: Iterable[str]) -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer, trained on the train split's code, RoBERTa's special ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    assert model.scratch is not None
    specials = SPECIAL_TOKENS + list(t for t in FAMILIES[model.family].prefix if t != "</s>")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=model.scratch.vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(codes, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def write_base(
    base_dir: Path,
    model: ModelConfig,
    labels: list[str],
    max_length: int,
    train_codes: Iterable[str],
) -> None:
    """Write `base/` (config + tokenizer) once; later runs and resumes reuse it."""
    if (base_dir / "config.json").is_file():
        return
    if model.scratch is not None:
        tokenizer = train_scratch_tokenizer(model, train_codes)
        config = scratch_config(model, labels, max_length, len(tokenizer))
    else:
        config = load_pretrained_config(model, labels)
        try:
            tokenizer = AutoTokenizer.from_pretrained(model.pretrained)
        except (OSError, ValueError, TypeError) as exc:
            raise UserError(_unreachable(model, exc)) from None
        check_tokenizer(tokenizer, describe_source(model))
        check_max_length(config, max_length, describe_source(model))
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    config.enstack = {
        "family": model.family,
        "pooling": pooling_of(model.family, model.pooling),
        "source": model.pretrained or "scratch",
    }
    with staged_dir(base_dir) as tmp:
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


# a line of C that any code tokenizer splits into several known pieces
PROBE = "int main(void) { char buf[16]; strcpy(buf, argv[1]); return 0; }"


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, source: str) -> None:
    """Refuse a tokenizer that cannot encode code (a directory without tokenizer files loads
    as an empty one that turns every function into its special tokens alone)."""
    ids = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    unknown = sum(1 for i in ids if i == tokenizer.unk_token_id)
    if len(ids) < 8 or unknown > len(ids) // 2:
        raise UserError(
            f"{source}: its tokenizer cannot encode code ({len(ids)} tokens, {unknown} unknown, "
            "for a line of C); the directory lacks its tokenizer files (tokenizer.json, or "
            "vocab.json and merges.txt): save them with the tokenizer's save_pretrained"
        )


def check_max_length(config: PretrainedConfig, max_length: int, source: str) -> None:
    """training.max_length must fit the model's position embeddings (RoBERTa-family models
    reserve two positions: their position ids start after the pad id)."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return
    usable = usable_positions(config)
    if max_length > usable:
        raise UserError(
            f"training.max_length: {max_length} is longer than {source} can read ({usable} "
            f"tokens, from max_position_embeddings {positions}); set it to {usable} or less"
        )


def usable_positions(config: PretrainedConfig, default: int = 512) -> int:
    """Tokens a model can read: RoBERTa-family position ids start after the pad id."""
    positions = getattr(config, "max_position_embeddings", None) or default
    return positions - 2 if config.model_type in {"roberta", "xlm-roberta"} else positions


def load_base(base_dir: Path) -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    config = read_hf_config(base_dir)
    # the config read above, not transformers' own reading of config.json, which for a
    # mean-pooled export would offer to run the code shipped beside it
    tokenizer = AutoTokenizer.from_pretrained(base_dir, config=config)
    return config, tokenizer


def read_hf_config(directory: Path) -> PretrainedConfig:
    """config.json as transformers reads it, never running code shipped beside it: the model
    types enstack gives exports that other tools must not read as plain encoders (mean-pooled:
    `train.export.declare_mean_pooling`; with a data-flow graph: `declare_graph_input`) are
    read back as their encoder's."""
    from enstack.models.hf_mean_pooled import EnstackMeanPooledConfig

    path = directory / "config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    if not isinstance(raw, dict) or raw.get("model_type") not in ENSTACK_MODEL_TYPES:
        return AutoConfig.from_pretrained(directory)
    if raw.get("encoder_model_type") not in SUPPORTED_MODEL_TYPES:
        raise UserError(
            f"{path}: encoder_model_type {raw.get('encoder_model_type')!r} is not one enstack reads"
        )
    # the mean-pooled config class only carries the encoder's settings here: no code runs
    return EnstackMeanPooledConfig.from_dict(raw).encoder_config()


def new_classifier(config: PretrainedConfig, weights_from: str | None) -> Classifier:
    """A classifier from `config`; encoder weights from `weights_from` (pretrained) or random."""
    encoder = build_encoder(config, weights_from)
    return Classifier(encoder, config, config.enstack["pooling"])


def _skip_random_init() -> contextlib.AbstractContextManager:
    """Building a full-size encoder draws 125M random numbers (about 2 s on a CPU) that the
    export's weights then replace: transformers' own switch skips them where it has one."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # an older transformers: initialise, only slower
        return contextlib.nullcontext()
    return no_init_weights()


def as_model_dtypes(
    model: torch.nn.Module, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`state` with each tensor in the dtype the model's own has: loading assigns the file's
    tensors as they are, and a file of another precision (fp16, float64, handed over or
    crafted) must not leave a model of mixed types that fails mid-scan."""
    own = model.state_dict()
    return {k: v.to(own[k].dtype) if k in own and v.dtype != own[k].dtype else v
            for k, v in state.items()}  # fmt: skip


def load_classifier(export_dir: Path, device: str = "cpu") -> tuple[Classifier, object]:
    """Load a `best/` or `final/` export: the classifier (eval mode) and its tokenizer. An
    int8 export (`enstack quantise`) loads with its linear layers quantised, on the CPU."""
    from enstack.models.int8 import load_int8

    config_path = export_dir / "config.json"
    weights = export_dir / "model.safetensors"
    int8 = export_dir / INT8_WEIGHTS
    if not config_path.is_file() or not (weights.is_file() or int8.is_file()):
        raise UserError(
            f"{export_dir}: not an enstack export (needs config.json, model.safetensors)"
        )
    if not weights.is_file() and device != "cpu":
        raise UserError(f"{export_dir}: an int8 export runs on the CPU (use --device cpu)")
    config, tokenizer = load_base(export_dir)
    check_tokenizer(tokenizer, str(export_dir))  # a bundle's files may have been swapped
    if not isinstance(getattr(config, "enstack", None), dict):
        raise UserError(f"{config_path}: no 'enstack' section; not exported by enstack")
    with _skip_random_init():  # every tensor is overwritten below, or the load is refused
        model = new_classifier(config, None)
    if not weights.is_file():
        return load_int8(model, int8).eval(), tokenizer
    state = as_model_dtypes(model, load_file(str(weights), device=device))
    # the file's tensors themselves, memory-mapped (copy-on-write): no second copy of the
    # weights, and only the pages a forward pass reads are loaded
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise UserError(
            f"{weights}: weights do not match config.json ({(missing + unexpected)[0]})"
        )
    return model.to(device).eval(), tokenizer
