"""Exports in Hugging Face format: config.json, model.safetensors and the tokenizer files."""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors.torch import save_file

from enstack.fsutil import staged_dir
from enstack.models.classifier import Classifier


def export_model(model: Classifier, base_dir: Path, out_dir: Path, extra: dict) -> None:
    """Atomically write `out_dir`; `extra` (epoch, metrics) goes into enstack.json."""
    import json

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with staged_dir(out_dir) as tmp:
        for path in base_dir.iterdir():
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "enstack.json").write_text(json.dumps(extra, indent=2) + "\n")
