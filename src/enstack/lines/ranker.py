"""The fitted line ranker: how it ranks a flagged function's statements, and its file in the
bundle (`ranker.safetensors`: the weights; `ranker.json`: the format and what it was fitted
on). A ranker of another format is not loaded (the scanner falls back to attention)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from enstack import versions
from enstack.csyntax.statements import statement_spans
from enstack.errors import UserError
from enstack.lines.features import HASH_FEATURES, features, statement_text, vectorizer


@dataclass
class LineRanker:
    coef: np.ndarray  # (HASH_FEATURES,) float32
    intercept: float
    info: dict  # what it was fitted on

    def rank(self, code: str, class_name: str) -> dict[int, float]:
        """0-based line index -> share of the function's flaw score (softmax; sums to 1)."""
        lines = code.split("\n")
        spans = statement_spans(code)
        candidates = list(spans)
        x = vectorizer().transform(
            [features(statement_text(lines, spans[i]), class_name) for i in candidates]
        )
        logits = x @ self.coef + self.intercept
        shares = np.exp(logits - logits.max())
        shares /= shares.sum()
        return {i: float(s) for i, s in zip(candidates, shares, strict=True)}

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "coef": self.coef.astype(np.float32),
                "intercept": np.array([self.intercept], np.float32),
            },
            str(directory / "ranker.safetensors"),
        )
        header = {
            "version": versions.LINE_RANKER_FORMAT,
            "hash_features": HASH_FEATURES,
            **self.info,
        }
        (directory / "ranker.json").write_text(json.dumps(header, indent=2) + "\n")


def load_line_ranker(directory: Path) -> LineRanker | None:
    """The bundle's ranker; None when it has none, or one from another ranker version.

    The bundle's manifest has vouched for these files' bytes, but a manifest can be rewritten
    along with them: anything but the two files `save` writes is refused in one line."""
    header_path = directory / "ranker.json"
    if not header_path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        header = json.loads(header_path.read_text())
        arrays = load_file(str(directory / "ranker.safetensors"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise UserError(f"{directory}: line ranker unreadable ({exc})") from None
    if not isinstance(header, dict):
        raise UserError(f"{header_path}: not a JSON object; not a ranker enstack wrote")
    if (
        header.get("version") != versions.LINE_RANKER_FORMAT
        or header.get("hash_features") != HASH_FEATURES
    ):
        return None
    coef, intercept = arrays.get("coef"), arrays.get("intercept")
    shapes = {"coef": (HASH_FEATURES,), "intercept": (1,)}
    for name, array in (("coef", coef), ("intercept", intercept)):
        if array is None or array.dtype != np.float32 or array.shape != shapes[name]:
            raise UserError(
                f"{directory / 'ranker.safetensors'}: `{name}` is not float32 of shape "
                f"{shapes[name]}; not a ranker enstack wrote"
            )
    if not np.isfinite(coef).all() or not np.isfinite(intercept).all():
        raise UserError(f"{directory / 'ranker.safetensors'}: weights that are not finite")
    info = {k: v for k, v in header.items() if k not in ("version", "hash_features")}
    return LineRanker(coef, float(intercept[0]), info)
