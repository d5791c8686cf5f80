"""Exports in Hugging Face format: config.json, model.safetensors and the tokenizer files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import save_file

from enstack.fsutil import staged_dir
from enstack.models.classifier import Classifier
from enstack.registries.families import GRAPH_INPUT_TYPE, MEAN_POOLED_TYPE

MEAN_POOLED_MODULE = "modeling_enstack_mean.py"  # the file transformers imports by that name


def export_model(model: Classifier, base_dir: Path, out_dir: Path, extra: dict) -> None:
    """Atomically write `out_dir`; `extra` (epoch, metrics, family, max_length) goes into
    enstack.json."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with staged_dir(out_dir) as tmp:
        for path in base_dir.iterdir():
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "enstack.json").write_text(json.dumps(extra, indent=2) + "\n")
        frame_like_training(tmp, extra["family"], extra["max_length"])
        if extra.get("dfg_length"):
            declare_graph_input(tmp, extra["dfg_length"])
        elif model.pooling == "mean":
            declare_mean_pooling(tmp)


def declare_graph_input(export: Path, dfg_length: int) -> None:
    """Record that the model reads a data-flow graph (`enstack.dfg_length` in config.json,
    which enstack's loaders build the graph from), under a model type transformers refuses:
    without the graph its answers would differ, so other tools must not load it as a plain
    RoBERTa classifier."""
    _own_model_type(
        export, GRAPH_INPUT_TYPE, "EnstackGraphInputClassifier", {"dfg_length": dfg_length}
    )


def declare_mean_pooling(export: Path) -> None:
    """Give a mean-pooled export its own model type and the code that reads it
    (`enstack.models.hf_mean_pooled`), so that `AutoModelForSequenceClassification` refuses
    it unless told `trust_remote_code=True`, and then answers as enstack does, instead of
    silently reading it as CLS-pooled."""
    from enstack.models import hf_mean_pooled

    module = MEAN_POOLED_MODULE.removesuffix(".py")
    auto_map = {
        "AutoConfig": f"{module}.EnstackMeanPooledConfig",
        "AutoModelForSequenceClassification": (
            f"{module}.EnstackMeanPooledForSequenceClassification"
        ),
    }
    _own_model_type(
        export, MEAN_POOLED_TYPE, "EnstackMeanPooledForSequenceClassification", auto_map=auto_map
    )
    shutil.copyfile(hf_mean_pooled.__file__, export / MEAN_POOLED_MODULE)


def _own_model_type(
    export: Path,
    model_type: str,
    architecture: str,
    enstack: dict | None = None,
    auto_map: dict | None = None,
) -> None:
    """Rewrite config.json under enstack's own `model_type`, the encoder's kept as
    `encoder_model_type` (what `models.loading.read_hf_config` reads back)."""
    path = export / "config.json"
    config = json.loads(path.read_text())
    config["enstack"] = {**config.get("enstack", {}), **(enstack or {})}
    config["encoder_model_type"] = config["model_type"]
    config["model_type"] = model_type
    config["architectures"] = [architecture]
    if auto_map:
        config["auto_map"] = auto_map
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def frame_like_training(export: Path, family: str, max_length: int) -> None:
    """Make the export's tokenizer frame code as training did, for tools that add special
    tokens themselves (`pipeline("text-classification")`, `AutoTokenizer` then the model):
    `<s> [family prefix] code </s>` (the tokens `special_ids` gives training) by its
    post-processor, truncated to `max_length` tokens. enstack itself encodes without the
    tokenizer's special tokens, so it is unaffected. Exports without a tokenizer.json (slow
    tokenizer files only) are left as they are."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    from enstack.encode import special_ids

    tokenizer_file, settings_file = export / "tokenizer.json", export / "tokenizer_config.json"
    if not tokenizer_file.is_file() or not settings_file.is_file():
        return
    head_ids, tail_ids = special_ids(AutoTokenizer.from_pretrained(export), family)
    fast = Tokenizer.from_file(str(tokenizer_file))
    head = [fast.id_to_token(i) for i in head_ids]
    (sep,) = [fast.id_to_token(i) for i in tail_ids]
    fast.post_processor = TemplateProcessing(
        single=" ".join([*head, "$A", sep]),
        pair=" ".join([*head, "$A", sep, "$B:1", f"{sep}:1"]),
        special_tokens=list(dict(zip([*head, sep], [*head_ids, *tail_ids], strict=True)).items()),
    )
    fast.save(str(tokenizer_file))
    settings = json.loads(settings_file.read_text())
    settings["model_max_length"] = max_length
    settings_file.write_text(json.dumps(settings, indent=2) + "\n")
