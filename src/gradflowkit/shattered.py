"""Shattered gradients: ``dy/dx`` of a scalar net along a line of inputs (lesson 15).

Balduzzi et al. (2017) feed a 1-D grid of inputs to a net with one input and one output and
look at the derivative ``dy/dx`` along the grid. In a deep plain ReLU net it looks like white
noise ("shattered"); in a residual net it stays correlated from one grid point to the next.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .nets import DeepMLP
from .validation import check_float, check_int, check_tensor


def scalar_net(depth: int, width: int, *, residual: bool, seed: int,
               branch_scale: float = 1.0, zero_bias: bool = False) -> DeepMLP:
    """A He-initialized ReLU :class:`~gradflowkit.nets.DeepMLP` from 1 input to 1 output.

    Args:
        depth: number of hidden blocks.
        width: units per block.
        residual: plain layers ``relu(W x + b)`` or residual blocks
            ``x + s (W2 relu(W1 x + b1) + b2)``.
        seed: seed of the weights.
        branch_scale: ``s``, e.g. ``1/sqrt(depth)``.
        zero_bias: keep :class:`~gradflowkit.nets.DeepMLP`'s zero biases. By default the
            biases are drawn as PyTorch's ``nn.Linear`` does, uniform in
            ``±1/sqrt(fan_in)``. With zero biases a ReLU net is positively homogeneous,
            ``y(c x) = c y(x)`` for ``c > 0``, so ``dy/dx`` of a scalar input is constant on
            each side of 0: the biases are what put kinks inside the grid.
    """
    check_float("branch_scale", branch_scale)
    torch.manual_seed(seed)
    options = dict(residual=True, branch_layers=2, branch_scale=branch_scale) if residual else {}
    net = DeepMLP(depth, width, in_features=1, out_features=1, activation="relu", init="he",
                  **options)
    if not zero_bias:
        with torch.no_grad():
            for module in net.modules():
                if isinstance(module, nn.Linear) and module.bias is not None:
                    bound = module.in_features ** -0.5
                    module.bias.uniform_(-bound, bound)
    return net


def input_derivative(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``dy/dx`` at each point of a 1-D grid ``x`` of shape ``(n,)`` for a 1-in/1-out net."""
    check_tensor("x", x, ndim=1)
    xg = x.detach().clone().unsqueeze(1).requires_grad_(True)
    y = model(xg)
    if y.shape != (x.shape[0], 1):
        raise ValueError(f"model must map (n, 1) to (n, 1); got output shape {tuple(y.shape)}")
    (grad,) = torch.autograd.grad(y.sum(), xg)
    return grad[:, 0].detach()


def autocorrelation(signal: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalized autocorrelation ``ρ(τ)`` for ``τ = 0..max_lag`` of a 1-D signal.

    ``ρ(τ) = Σ_i (g_i - ḡ)(g_{i+τ} - ḡ) / Σ_i (g_i - ḡ)²`` (the biased estimator, so
    ``ρ(0) = 1`` and ``|ρ(τ)| <= 1``). A constant signal has no defined correlation: NaN.
    """
    g = np.asarray(signal, dtype=float)
    if g.ndim != 1:
        raise ValueError(f"signal must be 1-D, got shape {g.shape}")
    check_int("max_lag", max_lag, minimum=0)
    if max_lag >= g.size:
        raise ValueError(f"max_lag must be < len(signal) = {g.size}, got {max_lag}")
    d = g - g.mean()
    denom = float(d @ d)
    if denom == 0.0:
        return np.full(max_lag + 1, np.nan)
    return np.array([float(d[:g.size - t] @ d[t:]) / denom for t in range(max_lag + 1)])
