"""What a :class:`~gradflowkit.monitor.Monitor` watches, and what it says it cannot see.

A monitor reads activations with forward hooks, so it sees the outputs of *modules*. This
module decides which modules those are and how to read them:

- modules of the ``activation_types`` (torch's activation modules, the recurrent layers and
  Hugging Face Transformers' activation classes, matched by class name so that
  ``transformers`` is never imported);
- the activation *function* of torch's ``nn.TransformerEncoderLayer`` and
  ``nn.TransformerDecoderLayer`` (``activation="relu"`` or ``"gelu"`` stores ``F.relu`` or
  ``F.gelu``, not a module): it is read as the input of the layer's ``dropout`` module,
  which the layer applies to the activation's output and to nothing else;
- the names of the model's own modules, also under ``torch.compile`` (whose wrapper adds
  ``_orig_mod.`` to every name).

What no hook can see: an activation called as a function inside a ``forward`` the monitor
does not know (``F.relu(x)``, ``x.sigmoid()``), and the gates inside the fused kernels of
``nn.LSTM`` / ``nn.GRU`` (only the layer's output sequence is visible). :func:`unwatched`
lists the activation-like modules that are not watched, so that the monitor can say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import nn

#: How the saturated share of an output is counted (see the monitor module's docstring).
SIGMOID, TANH, RELU, SOFTPLUS, RECTIFIER = "sigmoid", "tanh", "relu", "softplus", "rectifier"

#: Hugging Face Transformers' activation modules (``transformers.activations``), by name.
HF_ACTIVATION_NAMES: tuple[str, ...] = (
    "GELUActivation", "NewGELUActivation", "FastGELUActivation", "QuickGELUActivation",
    "AccurateGELUActivation", "ClippedGELUActivation", "GELUTanh", "PytorchGELUTanh",
    "SiLUActivation", "MishActivation", "ReLUSquaredActivation")

#: Module types (or class names) whose outputs a :class:`~gradflowkit.monitor.Monitor`
#: watches by default.
DEFAULT_ACTIVATION_TYPES: tuple[Union[type[nn.Module], str], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Softplus,
    nn.Sigmoid, nn.Hardsigmoid, nn.Tanh, nn.Hardtanh, nn.Softsign,
    nn.RNN, nn.LSTM, nn.GRU,
    *HF_ACTIVATION_NAMES)

ActivationTypes = tuple[Union[type[nn.Module], str], ...]

# Module classes of torch.nn.modules.activation that are not elementwise activations.
_NOT_ACTIVATIONS = (nn.MultiheadAttention, nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d)
# Class names that look like an activation's; "LinearActivation" is Hugging Face's identity.
_ACTIVATION_NAME = re.compile(r"Activation$|GELU|ReLU|SiLU|Swish|Mish|Sigmoid|Tanh|Softplus|ELU")
_NOT_ACTIVATION_NAMES = {"LinearActivation", "Identity"}
# The activation functions a Transformer layer may hold, with their saturation rule.
_FUNCTIONAL_KINDS = {F.relu: RELU, F.gelu: RECTIFIER, torch.relu: RELU, F.silu: RECTIFIER}
_COMPILED = re.compile(r"(^|\.)_orig_mod(?=\.|$)")


@dataclass(frozen=True)
class Watch:
    """One watched activation: where its hook goes and how to read the tensor.

    Attributes:
        name: the record's name (the module's name; ``<layer>.activation`` for a Transformer
            layer's activation function).
        module: the module the hook is registered on.
        kind: the saturation rule (``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"softplus"``,
            ``"rectifier"``).
        read: ``"output"`` (a forward hook), ``"sequence"`` (a recurrent layer's output
            sequence, ``output[0]``) or ``"input"`` (a forward pre-hook, first argument).
    """

    name: str
    module: nn.Module
    kind: str
    read: str

    def tensor(self, value: Any) -> torch.Tensor | None:
        """The watched tensor in a hook's output (or arguments), or None."""
        if self.read == "sequence" and isinstance(value, tuple) and value:
            value = value[0]
            value = getattr(value, "data", value)    # a PackedSequence's packed entries
        elif self.read == "input":
            value = value[0] if isinstance(value, tuple) and value else None
        return value if isinstance(value, torch.Tensor) else None


def check_activation_types(activation_types: object) -> ActivationTypes:
    """``activation_types`` as given, or a TypeError that says what it must be."""
    if not (isinstance(activation_types, tuple) and all(
            (isinstance(t, type) and issubclass(t, nn.Module))
            or (isinstance(t, str) and t.strip()) for t in activation_types)):
        raise TypeError("activation_types must be a tuple of nn.Module subclasses or class "
                        f"names, e.g. (nn.ReLU, nn.Tanh, 'NewGELUActivation'); got "
                        f"{activation_types!r}")
    return activation_types


def unwrap_compiled(model: nn.Module) -> nn.Module:
    """The module ``torch.compile`` wrapped (``model`` itself if it is not compiled)."""
    while isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model = model._orig_mod
    return model


def contains_compiled(model: nn.Module) -> bool:
    """Whether ``model`` or any of its submodules is a ``torch.compile`` wrapper."""
    return any(isinstance(getattr(m, "_orig_mod", None), nn.Module) for m in model.modules())


def clean_name(name: str) -> str:
    """A module or parameter name without the ``_orig_mod`` parts of compiled submodules."""
    return _COMPILED.sub("", name).lstrip(".")


def is_watched_type(module: nn.Module, activation_types: ActivationTypes) -> bool:
    classes = tuple(t for t in activation_types if isinstance(t, type))
    names = {t for t in activation_types if isinstance(t, str)}
    return (bool(classes) and isinstance(module, classes)) or type(module).__name__ in names


def saturation_kind(module: nn.Module) -> str:
    """The rule that counts the saturated share of ``module``'s output."""
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return SIGMOID
    if isinstance(module, (nn.Tanh, nn.Softsign)) or (
            type(module) is nn.Hardtanh and (module.min_val, module.max_val) == (-1.0, 1.0)):
        return TANH
    if isinstance(module, nn.RNNBase):
        return RELU if getattr(module, "nonlinearity", "tanh") == "relu" else TANH
    if isinstance(module, (nn.ReLU, nn.ReLU6)) or type(module).__name__ == "ReLUSquaredActivation":
        return RELU      # outputs >= 0: the share at 0 is the saturated one
    if isinstance(module, nn.Softplus) and module.beta == 1:
        return SOFTPLUS
    return RECTIFIER


def watches(model: nn.Module, activation_types: ActivationTypes) -> list[Watch]:
    """The activations of ``model`` a monitor with these ``activation_types`` records."""
    found: list[Watch] = []
    if not activation_types:
        return found
    for name, module in model.named_modules():
        name = clean_name(name)
        if is_watched_type(module, activation_types):
            read = "sequence" if isinstance(module, nn.RNNBase) else "output"
            found.append(Watch(name, module, saturation_kind(module), read))
        elif isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
            kind = _FUNCTIONAL_KINDS.get(getattr(module, "activation", None))
            if kind is not None and isinstance(getattr(module, "dropout", None), nn.Module):
                found.append(Watch(_join(name, "activation"), module.dropout, kind, "input"))
    return found


def unwatched(model: nn.Module, activation_types: ActivationTypes) -> list[str]:
    """Activation-like parts of ``model`` no watch covers: ``"name (Class)"`` each."""
    missed = []
    for name, module in model.named_modules():
        name = clean_name(name)
        cls = type(module)
        if is_watched_type(module, activation_types) or cls.__name__ in _NOT_ACTIVATION_NAMES:
            continue
        if isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
            fn = getattr(module, "activation", None)
            if not isinstance(fn, nn.Module) and (
                    not activation_types or fn not in _FUNCTIONAL_KINDS):
                label = getattr(fn, "__name__", type(fn).__name__)
                missed.append(f"{_join(name, 'activation')} (function {label})")
            continue
        torch_activation = (cls.__module__ == "torch.nn.modules.activation"
                            and not issubclass(cls, _NOT_ACTIVATIONS))
        if torch_activation or _ACTIVATION_NAME.search(cls.__name__):
            missed.append(f"{name} ({cls.__name__})")
    return missed


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
