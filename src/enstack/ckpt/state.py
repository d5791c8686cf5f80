"""Turning live training state into tensors + JSON and back, without pickle.

Optimizer state: tensors go to safetensors under `state.<param index>.<key>`, everything else
(param groups, non-tensor entries) to JSON. RNG states: torch's byte tensors and NumPy's key
array to safetensors, the rest (Python's Mersenne Twister state, NumPy's position) to JSON.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from enstack import versions
from enstack.ckpt.layout import TENSOR_FILES, CheckpointError

if TYPE_CHECKING:
    from enstack.ckpt.layout import Checkpoint


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


# --- a training run's parts: captured into a checkpoint and restored from one -------------


class Ranks(Protocol):
    """What capture and restore need of the process group (`train.distributed.Dist`)."""

    rank: int
    world: int

    @property
    def active(self) -> bool: ...

    def gather(self, obj: Any) -> list[Any]: ...


@dataclass
class TrainingParts:
    """The live objects whose state a checkpoint holds besides the run's scalars."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler  # disabled unless fp16


def capture(
    parts: TrainingParts, scalars: dict, ranks: Ranks
) -> tuple[dict, dict[str, torch.Tensor]]:
    """state.json's content (the writer adds the optimizer's groups and rank 0's RNG) and the
    extra RNG tensors: under several ranks every rank's generators, gathered to rank 0, so that
    each resumes its own dropout stream. Collective: every rank calls it."""
    from enstack import __version__

    state = {
        "format_version": versions.CHECKPOINT_FORMAT,
        "enstack_version": __version__,
        **scalars,
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler.is_enabled() else None,
        "saved_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "world_size": ranks.world,
    }
    extra_rng: dict[str, torch.Tensor] = {}
    if ranks.active:
        per_rank = ranks.gather(capture_rng())
        state["rng_ranks"] = [meta for _, meta in per_rank]
        extra_rng = {f"rank{r}.{k}": t for r, (ts, _) in enumerate(per_rank) for k, t in ts.items()}
    return state, extra_rng


def restore(ckpt: Checkpoint, parts: TrainingParts, ranks: Ranks) -> list[str]:
    """Load a verified checkpoint into `parts` and this rank's generators; the warnings (an
    RNG state this machine cannot apply). The mirror of `capture` plus the writer's files."""
    from safetensors.torch import load_file

    saved = ckpt.state
    try:
        weights, opt_tensors, rng_tensors = (
            load_file(str(ckpt.path / name)) for name in TENSOR_FILES
        )
    except Exception as exc:  # safetensors rejects anything that is not its format
        raise CheckpointError(f"{ckpt.path}: unreadable tensors ({exc})") from None
    try:  # shapes of another architecture (a --force-resume after changing the model)
        missing, unexpected = parts.model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        missing, unexpected = [_first_mismatch(exc)], []
    if missing or unexpected:
        first = (missing + unexpected)[0]
        raise CheckpointError(
            f"{ckpt.path / TENSOR_FILES[0]}: does not match the model ({first}); "
            "--resume never starts over (old checkpoints are kept aside)"
        )
    try:  # another number of parameter groups, or of parameters in one, is another optimizer
        parts.optimizer.load_state_dict(optimizer_from_flat(opt_tensors, saved["optimizer"]))
        parts.scheduler.load_state_dict(saved["scheduler"])
        if parts.scaler.is_enabled() and saved.get("scaler"):
            parts.scaler.load_state_dict(saved["scaler"])
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise CheckpointError(
            f"{ckpt.path / 'state.json'}: its optimizer or schedule does not fit this model "
            f"({reason})"
        ) from None
    own, meta, warnings = _own_rng(rng_tensors, saved, ranks.rank)
    return warnings + restore_rng(own, meta)


def _first_mismatch(exc: RuntimeError) -> str:
    """The first line of torch's size-mismatch report: which weight, which two shapes."""
    lines = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
    return lines[0] if lines else " ".join(str(exc).split())[:160]


def _own_rng(tensors: dict, saved: dict, rank: int) -> tuple[dict, dict, list[str]]:
    """This rank's RNG states from a checkpoint (rank 0's are the plain keys)."""
    prefix = f"rank{rank}."
    own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if own and len(saved.get("rng_ranks") or []) > rank:
        return own, saved["rng_ranks"][rank], []
    warnings = [f"the checkpoint has no RNG state for rank {rank}"] if rank else []
    plain = {k: v for k, v in tensors.items() if not k.startswith("rank")}
    return plain, saved["rng"], warnings
