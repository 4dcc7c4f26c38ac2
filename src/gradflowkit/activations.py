"""Activation functions and their closed-form derivatives (lessons 2 and 7).

The derivatives are written out by hand, not taken from autograd, so that the lessons can
compare them against autograd and so that the gradient-product bounds (σ' ≤ 1/4, tanh' ≤ 1)
can be read off the formulas.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .validation import check_choice, check_tensor

#: Slope of Leaky ReLU for negative inputs (PyTorch's default).
LEAKY_SLOPE = 0.01
#: Scale of ELU for negative inputs (PyTorch's default).
ELU_ALPHA = 1.0

_MODULES: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
    "elu": lambda: nn.ELU(ELU_ALPHA),
    "gelu": nn.GELU,
}

#: Names accepted wherever the package takes an activation.
ACTIVATIONS: tuple[str, ...] = tuple(_MODULES)


def make_activation(name: str) -> nn.Module:
    """Return a fresh ``nn.Module`` for the activation called ``name``.

    Args:
        name: one of :data:`ACTIVATIONS`.

    Returns:
        The module, e.g. ``nn.Sigmoid()`` for ``"sigmoid"``.
    """
    check_choice("activation", name, ACTIVATIONS)
    return _MODULES[name]()


def activate(name: str, x: torch.Tensor) -> torch.Tensor:
    """Apply the activation ``name`` to ``x`` elementwise.

    Args:
        name: one of :data:`ACTIVATIONS`.
        x: input tensor.

    Returns:
        ``f(x)``, same shape and dtype as ``x``.
    """
    return make_activation(name)(check_tensor("x", x))


def derivative(name: str, x: torch.Tensor) -> torch.Tensor:
    """Closed-form derivative ``f'(x)`` of the activation ``name``, elementwise.

    At the kink of ReLU and Leaky ReLU (x = 0) the value is the one PyTorch's autograd uses
    (the left slope), so the two agree everywhere.

    Args:
        name: one of :data:`ACTIVATIONS`.
        x: pre-activation tensor.

    Returns:
        ``f'(x)``, same shape and dtype as ``x``.
    """
    check_choice("activation", name, ACTIVATIONS)
    check_tensor("x", x)
    if name == "identity":
        return torch.ones_like(x)
    if name == "sigmoid":
        s = torch.sigmoid(x)
        return s * (1 - s)
    if name == "tanh":
        return 1 - torch.tanh(x) ** 2
    if name == "relu":
        return (x > 0).to(x.dtype)
    if name == "leaky_relu":
        return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, LEAKY_SLOPE))
    if name == "elu":
        return torch.where(x > 0, torch.ones_like(x), ELU_ALPHA * torch.exp(x))
    # GELU(x) = x Φ(x), so GELU'(x) = Φ(x) + x φ(x).
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    pdf = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    return cdf + x * pdf


def second_derivative(name: str, x: torch.Tensor) -> torch.Tensor:
    """Closed-form second derivative ``f''(x)`` of the activation ``name``, elementwise.

    Used by the mean-field slope of lesson 18. The piecewise-linear activations (ReLU,
    Leaky ReLU) get 0 everywhere, their kink included (a measure-zero point the Gaussian
    expectations do not see); ELU gets its left branch ``α eˣ`` at x = 0, as for f'.

    Args:
        name: one of :data:`ACTIVATIONS`.
        x: pre-activation tensor.

    Returns:
        ``f''(x)``, same shape and dtype as ``x``.
    """
    check_choice("activation", name, ACTIVATIONS)
    check_tensor("x", x)
    if name in ("identity", "relu", "leaky_relu"):
        return torch.zeros_like(x)
    if name == "sigmoid":
        s = torch.sigmoid(x)
        return s * (1 - s) * (1 - 2 * s)
    if name == "tanh":
        t = torch.tanh(x)
        return -2 * t * (1 - t * t)
    if name == "elu":
        return torch.where(x > 0, torch.zeros_like(x), ELU_ALPHA * torch.exp(x))
    # GELU'(x) = Φ(x) + x φ(x), so GELU''(x) = 2 φ(x) − x² φ(x).
    pdf = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    return (2 - x**2) * pdf
