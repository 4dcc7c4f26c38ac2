"""Batch normalization by hand, and what its scale invariance does to SGD (lesson 8).

- :func:`batchnorm_forward` and :func:`batchnorm_backward`: training-mode batch
  normalization of a ``(batch, features)`` array and its backward pass, in closed form;
- :func:`sgd_norm_trace`: plain SGD (optionally with weight decay) on a classifier,
  recording the norm of one weight matrix, its gradient and their inner product at every
  step, to watch a scale-invariant weight grow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Split
from .validation import check_float, check_int, check_tensor


@dataclass(frozen=True)
class BatchNormCache:
    """What :func:`batchnorm_forward` keeps for the backward pass."""

    x_hat: torch.Tensor    # normalized input (z − μ) / sqrt(var + eps), per feature
    inv_std: torch.Tensor  # 1 / sqrt(var + eps), shape (features,)
    gamma: torch.Tensor    # the scale γ, shape (features,)


def batchnorm_forward(z: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                      eps: float = 1e-5) -> tuple[torch.Tensor, BatchNormCache]:
    """Training-mode batch normalization: ``y = γ (z − μ_B) / sqrt(σ²_B + ε) + β``.

    The mean ``μ_B`` and the biased variance ``σ²_B`` (divided by the batch size) are taken
    over the batch, per feature, as ``nn.BatchNorm1d`` does in training mode.

    Args:
        z: pre-activations, shape ``(batch, features)``, batch >= 2.
        gamma: scale γ, shape ``(features,)``.
        beta: shift β, shape ``(features,)``.
        eps: added to the variance (default 1e-5, PyTorch's default).

    Returns:
        ``(y, cache)``: the output, shape of ``z``, and a :class:`BatchNormCache`.
    """
    check_tensor("z", z, ndim=2)
    if z.shape[0] < 2:
        raise ValueError(f"batch normalization needs a batch of >= 2 rows, got {z.shape[0]}")
    eps = check_float("eps", eps, nonnegative=True)
    mean = z.mean(dim=0)
    var = ((z - mean) ** 2).mean(dim=0)
    inv_std = 1.0 / torch.sqrt(var + eps)
    x_hat = (z - mean) * inv_std
    return gamma * x_hat + beta, BatchNormCache(x_hat=x_hat, inv_std=inv_std, gamma=gamma)


def batchnorm_backward(dy: torch.Tensor, cache: BatchNormCache
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward pass of :func:`batchnorm_forward` in closed form.

    With ``g = γ ⊙ ∂L/∂y`` (the gradient at ``x̂``) and B the batch size, per feature:
    ``∂L/∂z = (g − mean_B(g) − x̂ · mean_B(g ⊙ x̂)) / sqrt(σ²_B + ε)``.

    Args:
        dy: ``∂L/∂y``, shape ``(batch, features)``.
        cache: from :func:`batchnorm_forward`.

    Returns:
        ``(∂L/∂z, ∂L/∂γ, ∂L/∂β)``.
    """
    check_tensor("dy", dy, ndim=2)
    if dy.shape != cache.x_hat.shape:
        raise ValueError(f"dy has shape {tuple(dy.shape)}, the forward input had "
                         f"{tuple(cache.x_hat.shape)}")
    g = dy * cache.gamma
    dz = (g - g.mean(dim=0) - cache.x_hat * (g * cache.x_hat).mean(dim=0)) * cache.inv_std
    return dz, (dy * cache.x_hat).sum(dim=0), dy.sum(dim=0)


@dataclass(frozen=True)
class NormTrace:
    """What :func:`sgd_norm_trace` recorded; arrays have one entry per step."""

    norm_sq: np.ndarray    # ‖W_t‖² before step t, and after the last step (steps + 1 entries)
    grad_sq: np.ndarray    # ‖∇_W L‖² of the loss alone (no weight decay), at step t
    inner: np.ndarray      # ⟨∇_W L, W_t⟩ at step t
    loss: np.ndarray       # training loss at step t


def sgd_norm_trace(model: nn.Module, weight: torch.Tensor, data: Split, *, steps: int,
                   lr: float, weight_decay: float = 0.0, batch_size: int = 64,
                   seed: int = 0) -> NormTrace:
    """Train ``model`` with cross-entropy and plain SGD, recording one weight's norm.

    Every parameter gets ``θ ← θ − η (∇L + λ θ)`` (``torch.optim.SGD``, no momentum).

    Args:
        model: maps ``(batch, features)`` to logits; trained in place.
        weight: the parameter of ``model`` to watch (e.g. a weight followed by batch norm).
        data: the :class:`~gradflowkit.data.Split` whose training part to use.
        steps: SGD steps (>= 1).
        lr: learning rate η (> 0).
        weight_decay: λ (default 0).
        batch_size: rows per step (default 64).
        seed: seed of the mini-batch order (default 0).

    Returns:
        A :class:`NormTrace`. Raises ``FloatingPointError`` if the loss is not finite.
    """
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=2)
    if not any(p is weight for p in model.parameters()):
        raise ValueError("weight must be one of model.parameters()")
    optimizer = torch.optim.SGD(model.parameters(), lr=check_float("lr", lr, positive=True),
                                weight_decay=check_float("weight_decay", weight_decay,
                                                         nonnegative=True))
    gen = torch.Generator().manual_seed(check_int("seed", seed))
    n = len(data.y_train)
    norm_sq, grad_sq, inner, losses = [], [], [], []
    model.train()
    for step in range(steps):
        idx = torch.randperm(n, generator=gen)[:batch_size]
        loss = F.cross_entropy(model(data.x_train[idx].to(weight.dtype)), data.y_train[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step}; "
                                     "lower lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        w, g = weight.detach(), weight.grad.detach()
        norm_sq.append(float((w * w).sum()))
        grad_sq.append(float((g * g).sum()))
        inner.append(float((g * w).sum()))
        losses.append(loss.item())
        optimizer.step()
    norm_sq.append(float((weight.detach() ** 2).sum()))
    return NormTrace(norm_sq=np.array(norm_sq), grad_sq=np.array(grad_sq),
                     inner=np.array(inner), loss=np.array(losses))
