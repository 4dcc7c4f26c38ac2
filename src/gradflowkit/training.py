"""Weight-change and accuracy measures of one net, and a moving average (lessons 2, 14, 16).

The book's training loop is :func:`gradflowkit.trainer.train`, for ensembles.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .validation import check_int


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copy of every parameter, keyed by name, to compare against later.

    Args:
        model: any module.

    Returns:
        ``{name: detached clone}``.
    """
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def relative_change(before: dict[str, torch.Tensor], model: nn.Module) -> dict[str, float]:
    """``‖θ_after − θ_before‖ / ‖θ_before‖`` for every parameter in ``before``.

    Args:
        before: a :func:`snapshot` taken earlier.
        model: the same module, later.

    Returns:
        ``{name: relative change}``; a parameter that started at zero gets ``inf`` if it moved.
    """
    params = dict(model.named_parameters())
    missing = sorted(set(before) - set(params))
    if missing:
        raise ValueError(f"snapshot has parameters the model lacks: {missing}")
    changes = {}
    for name, old in before.items():
        diff = float(torch.linalg.vector_norm(params[name].detach() - old))
        base = float(torch.linalg.vector_norm(old))
        changes[name] = diff / base if base > 0 else (0.0 if diff == 0 else float("inf"))
    return changes


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of rows of ``x`` whose arg-max output equals the label ``y`` (eval mode)."""
    was_training = model.training
    model.eval()
    acc = float((model(x).argmax(1) == y).double().mean())
    model.train(was_training)
    return acc


def moving_average(values, window: int) -> np.ndarray:
    """Trailing mean over ``window`` values: entry ``i`` averages ``values[i-window+1 … i]``.

    Args:
        values: a sequence of numbers, e.g. ``History.loss``.
        window: how many values to average (>= 1, at most ``len(values)``).

    Returns:
        ``len(values) - window + 1`` means, in float64; entry ``j`` belongs to step
        ``j + window - 1``.
    """
    v = np.asarray(values, dtype=np.float64)
    window = check_int("window", window, minimum=1)
    if v.ndim != 1 or window > len(v):
        raise ValueError(f"need a 1-D sequence of at least window={window} values, got "
                         f"shape {v.shape}")
    c = np.concatenate([[0.0], np.cumsum(v)])
    return (c[window:] - c[:-window]) / window
