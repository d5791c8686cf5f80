"""An export's encoding contract: how its model reads code, recorded by the trainer in the
export (`enstack.json`'s `max_length` and `long_functions`; the family and the graph length
in `config.json`).
Everything that encodes code for an export (stack features, evaluation, the scanner,
localisation) reads the length from here, never from a config that may have changed since.
Light (JSON only): read before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

from enstack.errors import UserError

CONTRACT_FILE = "enstack.json"
# an int8 export's weights (`enstack quantise`), in place of model.safetensors
INT8_WEIGHTS = "model.int8.safetensors"


def _recorded(export: Path, key: str) -> object:
    try:
        return json.loads((export / CONTRACT_FILE).read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def recorded_max_length(export: Path) -> int | None:
    """The max_length the export was trained at; None for an export without one (a model
    directory enstack did not train, read as its positions allow)."""
    recorded = _recorded(export, "max_length")
    return recorded if isinstance(recorded, int) and not isinstance(recorded, bool) else None


def recorded_long_functions(export: Path) -> str | None:
    """How training read functions longer than a window (`windows` or `truncate`); None for
    an export that does not say (one an older enstack wrote, or another tool)."""
    from enstack.registries.modes import LONG_FUNCTION_MODES

    recorded = _recorded(export, "long_functions")
    return recorded if recorded in LONG_FUNCTION_MODES else None


def trained_length(export: Path, positions: int) -> int:
    """The length to encode at for a model with `positions` usable positions: the recorded
    one (refused when the positions cannot hold it), else all of them."""
    recorded = recorded_max_length(export)
    if recorded is not None and recorded > positions:  # graph nodes take position 0
        raise UserError(
            f"{export / CONTRACT_FILE}: max_length {recorded} exceeds the model's "
            f"{positions} positions; not an export enstack wrote"
        )
    return recorded if recorded is not None and recorded > 8 else positions


def is_int8_export(export: Path) -> bool:
    """Whether the export holds int8 weights only (written by `enstack quantise`)."""
    return (export / INT8_WEIGHTS).is_file() and not (export / "model.safetensors").is_file()
