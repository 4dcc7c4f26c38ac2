"""Shattered gradients: ``dy/dx`` of a scalar net along a line of inputs (lesson 15).

Balduzzi et al. (2017) feed a 1-D grid of inputs to a net with one input and one output and
look at the derivative ``dy/dx`` along the grid. In a deep plain ReLU net it looks like white
noise ("shattered"); in a residual net it stays correlated from one grid point to the next.

One net's ``ρ`` varies a lot from seed to seed, so lesson 15 measures ensembles:
:func:`scalar_ensemble` draws many such nets at once, :func:`member_input_derivatives`
gives every member's ``dy/dx``, :func:`autocorrelations` their ``ρ(τ)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .ensemble import EnsembleMLP
from .initialization import init_std
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


def scalar_ensemble(members: int, depth: int, width: int, *, residual: bool, seed: int,
                    branch_scale: float = 1.0, zero_bias: bool = False,
                    dtype: torch.dtype = torch.float32) -> EnsembleMLP:
    """``members`` independent :func:`scalar_net` nets as one ensemble, drawn all at once.

    Each member has the distribution of a :func:`scalar_net` (He-initialized weights, head
    Xavier, biases uniform in ``±1/sqrt(fan_in)`` unless ``zero_bias``), but the weights
    of all members come from one generator seeded with ``seed``, stacked, instead of one
    ``DeepMLP`` per member (building 16 nets of depth 50 costs several times more than
    computing their gradients). Torch's global generator is not used.

    Args:
        members: number of nets (>= 1).
        depth: hidden blocks per net.
        width: units per block.
        residual: plain layers or residual blocks with two-layer branches.
        seed: seed of all the draws.
        branch_scale: ``s`` of the residual blocks (default 1).
        zero_bias: keep the biases at zero (default False).
        dtype: of the parameters (default float32).

    Returns:
        An :class:`~gradflowkit.ensemble.EnsembleMLP` mapping ``(S, n, 1)`` to ``(S, n, 1)``.
    """
    members = check_int("members", members, minimum=1)
    check_float("branch_scale", branch_scale)
    options = dict(residual=True, branch_layers=2, branch_scale=branch_scale) if residual else {}
    with torch.random.fork_rng(devices=[]):      # the template's draws are overwritten
        template = DeepMLP(depth, width, in_features=1, out_features=1, activation="relu",
                           init="he", **options).to(dtype)
    ens = EnsembleMLP([template] * members)
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    layers = [(ens.stem, "he")]
    for block in ens.blocks:
        layers += [(block.linear, "he")] + ([(block.linear2, "he")] if block.linear2 else [])
    layers.append((ens.head, "xavier"))
    with torch.no_grad():
        for layer, scheme in layers:
            _, fan_out, fan_in = layer.weight.shape
            std = init_std(scheme, fan_in, fan_out)
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen,
                                           dtype=dtype) * std)
            if zero_bias:
                layer.bias.zero_()
            else:
                bound = fan_in ** -0.5
                layer.bias.copy_((2 * torch.rand(layer.bias.shape, generator=gen,
                                                 dtype=dtype) - 1) * bound)
    return ens


def member_input_derivatives(model: EnsembleMLP, x: torch.Tensor) -> torch.Tensor:
    """``dy/dx`` of every member at each point of a 1-D grid ``x`` of shape ``(n,)``.

    Args:
        model: an ensemble of ``S`` nets with one input and one output.
        x: the grid.

    Returns:
        ``(S, n)``, row ``s`` = :func:`input_derivative` of member ``s``.
    """
    check_tensor("x", x, ndim=1)
    if not isinstance(model, EnsembleMLP):
        raise TypeError(f"model must be an EnsembleMLP, got {type(model).__name__}; for one "
                        "net use input_derivative")
    xs = x.detach().to(model.head.weight.dtype)[None, :, None]
    xs = xs.expand(model.n_members, -1, -1).clone().requires_grad_(True)
    y = model(xs)
    if y.shape != xs.shape:
        raise ValueError(f"model must map (S, n, 1) to (S, n, 1); got output shape "
                         f"{tuple(y.shape)}")
    (grad,) = torch.autograd.grad(y.sum(), xs)
    return grad[..., 0].detach()


def autocorrelations(signals: np.ndarray, max_lag: int) -> np.ndarray:
    """:func:`autocorrelation` of each row of ``signals`` ``(S, n)``: shape ``(S, max_lag + 1)``."""
    g = np.asarray(signals, dtype=float)
    if g.ndim != 2:
        raise ValueError(f"signals must be 2-D (one signal per row), got shape {g.shape}")
    return np.stack([autocorrelation(row, max_lag) for row in g])
