"""Turning live training state into tensors + JSON and back, without pickle.

Optimizer state: tensors go to safetensors under `state.<param index>.<key>`, everything else
(param groups, non-tensor entries) to JSON. RNG states: torch's byte tensors and NumPy's key
array to safetensors, the rest (Python's Mersenne Twister state, NumPy's position) to JSON.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, entries in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def capture_rng() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch.cuda.{i}"] = state
    kind, key, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy.key"] = torch.from_numpy(np.asarray(key, dtype=np.uint32).astype(np.int64))
    version, mt, gauss = random.getstate()
    meta = {
        "python": {"version": version, "state": list(mt), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> list[str]:
    """Restore every generator; returns warnings (e.g. a CUDA state that cannot be applied)."""
    warnings = []
    torch.set_rng_state(tensors["torch.cpu"])
    cuda = sorted((k for k in tensors if k.startswith("torch.cuda.")), key=lambda k: int(k[11:]))
    if cuda:
        if torch.cuda.is_available() and torch.cuda.device_count() >= len(cuda):
            torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
        else:
            warnings.append(
                f"checkpoint has {len(cuda)} CUDA RNG states; this machine cannot "
                "apply them, so dropout on GPU will differ from the original run"
            )
    py = meta["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npm = meta["numpy"]
    key = tensors["numpy.key"].numpy().astype(np.uint32)
    np.random.set_state((npm["kind"], key, npm["pos"], npm["has_gauss"], npm["cached"]))
    return warnings
