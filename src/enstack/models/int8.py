"""int8 inference on a CPU: linear layers quantised (PyTorch's dynamic quantisation), either at
load or once, when an int8 export is written.

`quantise_int8` is what `enstack scan --precision int8` does to an fp32 export at every start.
`save_int8` does it once and stores the result, `model.int8.safetensors`: each linear layer's
int8 weight with its scale and zero point, everything else as it was. `load_int8` builds the
model with quantised linear layers straight from that file: nothing is observed or rounded
at load, and the file is about a third of the fp32 one at full size (the embeddings stay
fp32). Both give bit-identical outputs (tested).

The file is read as untrusted input: every tensor's name, dtype and shape must be the ones
the config's model has, and every scale a finite positive number.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch.ao.nn.quantized.dynamic import Linear as QuantisedLinear

from enstack.errors import UserError

_WEIGHT, _SCALE, _ZERO, _BIAS = ".weight.int8", ".weight.scale", ".weight.zero_point", ".bias"


@contextlib.contextmanager
def int8_engine() -> Iterator[None]:
    """oneDNN's int8 kernels, the fastest measured on an AVX2 CPU (benchmarks/scan_ci.py),
    while weights are packed: packed weights keep the engine they were packed for, so the
    global setting is restored after."""
    previous = torch.backends.quantized.engine
    engines = torch.backends.quantized.supported_engines
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice, on every call
        try:
            torch.backends.quantized.engine = "onednn" if "onednn" in engines else previous
            yield
        finally:
            torch.backends.quantized.engine = previous


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def quantise_int8(model: ModuleT) -> ModuleT:
    """Linear layers with int8 weights, activations quantised on the fly: attention and
    feed-forward matrices are where a CPU spends its time."""
    from torch.ao.quantization import quantize_dynamic

    with int8_engine():
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def save_int8(model: torch.nn.Module, path: Path) -> None:
    """`model` (fp32) as `quantise_int8` would make it, stored at `path` (safetensors)."""
    quantised = quantise_int8(model)
    linear = _quantised_linears(quantised)
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in linear.items():
        weight, bias = layer.weight(), layer.bias()
        tensors[name + _WEIGHT] = weight.int_repr().contiguous()
        tensors[name + _SCALE] = torch.tensor([weight.q_scale()], dtype=torch.float64)
        tensors[name + _ZERO] = torch.tensor([weight.q_zero_point()], dtype=torch.int64)
        if bias is not None:
            tensors[name + _BIAS] = bias.detach().clone().contiguous()
    for key, value in model.state_dict().items():
        if key.rpartition(".")[0] not in linear:  # the rest as it was (a copy: no shared storage)
            tensors[key] = value.detach().clone().contiguous()
    save_file(tensors, str(path), metadata={"format": "pt", "enstack_precision": "int8"})


def load_int8(model: ModuleT, path: Path) -> ModuleT:
    """`model` (built from the export's config, weights not yet loaded) with `path`'s weights:
    its linear layers replaced by quantised ones. An error naming the file where the file is
    not the one this model's int8 export would be."""
    state = load_file(str(path))
    linear = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    quantised = {name: _quantised_linear(state, name, m, path) for name, m in linear.items()}
    rest = {k: v for k, v in state.items() if _owner(k) not in linear}
    # what the file must hold besides the linear layers: exactly the model's other tensors
    expected = {k for k in model.state_dict() if k.rpartition(".")[0] not in linear}
    if set(rest) != expected:
        odd = sorted(set(rest) ^ expected)[0]
        raise UserError(f"{path}: weights do not match config.json ({odd})")
    own = model.state_dict()  # in its own dtypes, whatever the file's (see as_model_dtypes)
    rest = {k: v if v.dtype == own[k].dtype else v.to(own[k].dtype) for k, v in rest.items()}
    model.load_state_dict(rest, strict=False, assign=True)  # memory-mapped, not copied
    for name, layer in quantised.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)
    return model


def _owner(key: str) -> str:
    """The module a tensor of the file belongs to (`a.b.weight.scale` -> `a.b`)."""
    for suffix in (_WEIGHT, _SCALE, _ZERO):
        if key.endswith(suffix):
            return key.removesuffix(suffix)
    return key.rpartition(".")[0]


def _quantised_linears(model: torch.nn.Module) -> dict[str, QuantisedLinear]:

    return {n: m for n, m in model.named_modules() if isinstance(m, QuantisedLinear)}


def _quantised_linear(
    state: dict[str, torch.Tensor], name: str, layer: torch.nn.Linear, path: Path
) -> QuantisedLinear:
    """The quantised twin of `layer` from the file's int8 weight, scale, zero point, bias."""
    weight, scale, zero = (state.get(name + s) for s in (_WEIGHT, _SCALE, _ZERO))
    bias = state.get(name + _BIAS)
    shape = (layer.out_features, layer.in_features)
    if weight is None or weight.dtype != torch.int8 or tuple(weight.shape) != shape:
        raise UserError(f"{path}: no int8 weight of shape {shape} for {name}")
    if scale is None or scale.numel() != 1 or zero is None or zero.numel() != 1:
        raise UserError(f"{path}: no scale and zero point for {name}")
    scale_value, zero_value = float(scale.item()), int(zero.item())
    if not (math.isfinite(scale_value) and scale_value > 0) or not -128 <= zero_value <= 127:
        raise UserError(f"{path}: {name}'s scale or zero point is out of range (crafted?)")
    if (bias is None) != (layer.bias is None) or (
        bias is not None and tuple(bias.shape) != (layer.out_features,)
    ):
        raise UserError(f"{path}: {name}'s bias does not match config.json")
    if bias is not None and not torch.isfinite(bias).all():
        raise UserError(f"{path}: {name}'s bias is not finite (crafted?)")
    with int8_engine():  # its constructor warns that quantised tensors are deprecated
        # built 1 x 1, then given its weight: the constructor packs an all-zero weight of the
        # full size first, a third of the load's packing time for nothing
        twin = QuantisedLinear(1, 1, dtype=torch.qint8)
        packed = torch._make_per_tensor_quantized_tensor(weight, scale_value, zero_value)
        twin.set_weight_bias(packed, None if bias is None else bias.float())
    twin.in_features, twin.out_features = layer.in_features, layer.out_features
    return twin
