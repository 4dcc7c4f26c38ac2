"""Spectral norms of the weights during training, and how fast weight decay shrinks them
(lesson 10).

Weight decay multiplies every weight by ``1 - ηλ`` per SGD step before the gradient step is
added, so with no gradient the spectral norm ``σ_max(W)`` shrinks geometrically:
``σ_max(W_k) = (1 - ηλ)^k σ_max(W_0)``. :func:`decay_steps` inverts that, and
:class:`SpectralTracker` records what actually happens while a net trains: ``σ_max`` of every
weight matrix and the backward-signal ratio ``‖∂L/∂x_1‖ / ‖∂L/∂x_{L+1}‖`` on a fixed batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .gradients import layer_profile
from .validation import check_float, check_tensor


def spectral_norms(model: nn.Module) -> dict[str, float]:
    """The largest singular value of every 2-D parameter (weight matrix) of ``model``.

    Args:
        model: any module.

    Returns:
        ``{parameter name: σ_max}`` in ``named_parameters()`` order; biases are skipped.
    """
    with torch.no_grad():
        return {name: float(torch.linalg.matrix_norm(p.detach(), ord=2))
                for name, p in model.named_parameters() if p.ndim == 2}


def decay_steps(factor: float, lr: float, weight_decay: float) -> float:
    """Number of pure weight-decay steps that divide a weight matrix by ``factor``.

    Solves ``(1 - lr · weight_decay)^k = 1 / factor`` for ``k``, that is
    ``k = ln(factor) / (-ln(1 - lr · weight_decay))``, which is about
    ``ln(factor) / (lr · weight_decay)`` when ``lr · weight_decay`` is small.

    Args:
        factor: how many times smaller the weights should get (> 0; < 1 gives a negative k).
        lr: learning rate η (> 0).
        weight_decay: λ (> 0), with ``lr · weight_decay < 1``.

    Returns:
        ``k`` as a float (not rounded).
    """
    factor = check_float("factor", factor, positive=True)
    rate = check_float("lr", lr, positive=True) * check_float("weight_decay", weight_decay,
                                                              positive=True)
    if rate >= 1:
        raise ValueError(f"lr * weight_decay must be < 1, got {rate}; each step would flip "
                         "or zero the weights")
    return math.log(factor) / -math.log1p(-rate)


class SpectralTracker:
    """A training callback that records ``σ_max`` of every weight and the backward signal.

    Pass it as ``callback=`` to :func:`~gradflowkit.training.train_classifier`. Every call
    appends the step, :func:`spectral_norms` of the model, and the ratio
    ``‖∂L/∂x_1‖ / ‖∂L/∂x_{L+1}‖`` of :func:`~gradflowkit.gradients.layer_profile` on the
    fixed batch ``(x, y)`` with cross-entropy (> 1: the signal grows towards the input).

    Args:
        x: a fixed batch of inputs.
        y: its integer labels.
        loss_fn: maps ``(output, y)`` to the loss (default cross-entropy).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy):
        self.x = check_tensor("x", x, ndim=2)
        if not isinstance(y, torch.Tensor) or len(y) != len(x):
            raise ValueError(f"y must be a tensor with one label per row of x ({len(x)} rows)")
        self.y = y
        self.loss_fn = loss_fn
        self.steps: list[int] = []
        self.sigma: dict[str, list[float]] = {}
        self.backward_ratio: list[float] = []

    def __call__(self, step: int, model: nn.Module) -> None:
        self.steps.append(int(step))
        for name, value in spectral_norms(model).items():
            self.sigma.setdefault(name, []).append(value)
        signal = layer_profile(model, self.x, lambda out: self.loss_fn(out, self.y)).signal
        self.backward_ratio.append(float(signal[0] / signal[-1]))
