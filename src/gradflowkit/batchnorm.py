"""Batch normalization by hand, and what its scale invariance does to SGD (lesson 8).

- :func:`batchnorm_forward` and :func:`batchnorm_backward`: training-mode batch
  normalization of a ``(batch, features)`` array and its backward pass, in closed form;
- :class:`WeightNormTrace`: callbacks for :func:`~gradflowkit.trainer.train` that record,
  per member of an ensemble, the squared norm of one weight matrix, of its gradient and
  their inner product at every step, to watch a scale-invariant weight grow under SGD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .validation import check_float, check_tensor


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


class WeightNormTrace:
    """Record ``‖W_t‖²``, ``‖g_t‖²`` and ``⟨g_t, W_t⟩`` of one weight, per member, in training.

    Pass :meth:`WeightNormTrace.callback` and :meth:`WeightNormTrace.grad_callback` to
    :func:`~gradflowkit.trainer.train` with ``record_every=1``: the first sees ``W_t`` before step ``t`` (and the weight after
    the last step), the second the loss gradient ``g_t = ∇_W L`` after the backward pass,
    before clipping, weight decay and the update. For a weight followed by batch
    normalization ``⟨g_t, W_t⟩ ≈ 0``, so plain SGD grows the norm by ``η²‖g_t‖²`` per step.

    Args:
        name: the weight's name in ``model.named_parameters()``, e.g.
            ``"blocks.0.linear.weight"`` of an :class:`~gradflowkit.ensemble.EnsembleMLP`
            (member axis first).
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a parameter name such as "
                             f"'blocks.0.linear.weight', got {name!r}")
        self.name = name
        self._norm_sq: list[np.ndarray] = []
        self._grad_sq: list[np.ndarray] = []
        self._inner: list[np.ndarray] = []

    def _weight(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        if self.name not in params:
            raise ValueError(f"the model has no parameter {self.name!r}; it has "
                             f"{list(params)[:6]}...")
        return params[self.name]

    @torch.no_grad()
    def callback(self, step: int, model: nn.Module) -> None:
        """Record ``‖W‖²`` of every member (trainer ``callback``)."""
        w = self._weight(model).detach()
        self._norm_sq.append(_member_dot(w, w))

    @torch.no_grad()
    def grad_callback(self, step: int, model: nn.Module) -> None:
        """Record ``‖g‖²`` and ``⟨g, W⟩`` of every member (trainer ``grad_callback``)."""
        w = self._weight(model)
        if w.grad is None:
            raise ValueError(f"{self.name} has no gradient: call this after backward")
        g, w = w.grad.detach(), w.detach()
        self._grad_sq.append(_member_dot(g, g))
        self._inner.append(_member_dot(g, w))

    @property
    def norm_sq(self) -> np.ndarray:
        """``(S, steps + 1)``: ``‖W_t‖²`` before every step and after the last one."""
        return np.stack(self._norm_sq, axis=1)

    @property
    def grad_sq(self) -> np.ndarray:
        """``(S, steps)``: ``‖∇_W L‖²`` of the loss alone at every step."""
        return np.stack(self._grad_sq, axis=1)

    @property
    def inner(self) -> np.ndarray:
        """``(S, steps)``: ``⟨∇_W L, W_t⟩`` at every step."""
        return np.stack(self._inner, axis=1)


def _member_dot(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-member ``Σ a·b`` over all but the first axis, in float64."""
    n = a.shape[0]
    return (a.reshape(n, -1).double() * b.reshape(n, -1).double()).sum(1).numpy()
