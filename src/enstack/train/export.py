"""Exports in Hugging Face format: config.json, model.safetensors and the tokenizer files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import save_file

from enstack.fsutil import staged_dir
from enstack.models.classifier import Classifier


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


def frame_like_training(export: Path, family: str, max_length: int) -> None:
    """Make the export's tokenizer frame code as training did, for tools that add special
    tokens themselves (`pipeline("text-classification")`, `AutoTokenizer` then the model):
    `<s> [family prefix] code </s>` by its post-processor, truncated to `max_length` tokens.
    enstack itself encodes without the tokenizer's special tokens, so it is unaffected.
    Exports without a tokenizer.json (slow tokenizer files only) are left as they are."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    from enstack.models.families import FAMILIES

    tokenizer_file, settings_file = export / "tokenizer.json", export / "tokenizer_config.json"
    if not tokenizer_file.is_file() or not settings_file.is_file():
        return
    settings = json.loads(settings_file.read_text())
    cls = _token_text(settings.get("cls_token") or settings.get("bos_token"))
    sep = _token_text(settings.get("sep_token") or settings.get("eos_token"))
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    head = [cls, *FAMILIES[family].prefix]
    specials = {token: tokenizer.token_to_id(token) for token in [*head, sep]}
    if None in (cls, sep) or None in specials.values():
        return  # a tokenizer enstack could not have trained with either
    tokenizer.post_processor = TemplateProcessing(
        single=" ".join([*head, "$A", sep]),
        pair=" ".join([*head, "$A", sep, "$B:1", f"{sep}:1"]),
        special_tokens=list(specials.items()),
    )
    tokenizer.save(str(tokenizer_file))
    settings["model_max_length"] = max_length
    settings_file.write_text(json.dumps(settings, indent=2) + "\n")


def _token_text(token: object) -> str | None:
    """A special token as tokenizer_config.json gives it: a string or {"content": ...}."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else None
