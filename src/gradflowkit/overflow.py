"""Where a forward/backward pass first overflows to inf and turns into NaN (lesson 3).

An exploding product ends in floating-point overflow: a value beyond the largest finite
number (about 3.4e38 in float32, 1.8e308 in float64) becomes ``inf``, and the next
``inf - inf`` or ``0 * inf`` becomes ``NaN``. :func:`overflow_trace` runs one pass of a
plain :class:`~gradflowkit.nets.DeepMLP` without stopping at non-finite values and keeps
every intermediate tensor, so that a lesson can point at the layer where each one appeared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from .gradients import capture_inputs
from .nets import DeepMLP
from .validation import check_tensor


class NonfiniteCounts(NamedTuple):
    """Per-tensor counts of non-finite entries, and the largest finite magnitude."""

    inf: np.ndarray      # number of ±inf entries in each tensor
    nan: np.ndarray      # number of NaN entries in each tensor
    max_abs: np.ndarray  # largest finite |entry| of each tensor (nan if none is finite)


def nonfinite_counts(tensors: Sequence[torch.Tensor]) -> NonfiniteCounts:
    """Count ``inf`` and ``NaN`` entries in each tensor of a sequence.

    Args:
        tensors: floating-point tensors, e.g. one per layer.

    Returns:
        A :class:`NonfiniteCounts` with one entry per tensor.
    """
    if len(tensors) == 0:
        raise ValueError("tensors is empty; pass one tensor per layer")
    inf, nan, max_abs = [], [], []
    for i, t in enumerate(tensors):
        t = check_tensor(f"tensors[{i}]", t).detach()
        inf.append(int(torch.isinf(t).sum()))
        nan.append(int(torch.isnan(t).sum()))
        finite = t[torch.isfinite(t)]
        max_abs.append(float(finite.abs().max()) if finite.numel() else float("nan"))
    return NonfiniteCounts(np.array(inf), np.array(nan), np.array(max_abs))


def first_index(counts: Sequence[int] | np.ndarray, *, reverse: bool = False) -> int | None:
    """Index of the first nonzero count (or ``None`` if all are zero).

    Args:
        counts: one count per layer, e.g. ``nonfinite_counts(...).inf``.
        reverse: search from the last entry backwards (default False), as the backward
            pass runs; the index returned is still a position in ``counts``.

    Returns:
        The index, or ``None``.
    """
    indices = range(len(counts) - 1, -1, -1) if reverse else range(len(counts))
    return next((i for i in indices if counts[i] != 0), None)


class OverflowTrace(NamedTuple):
    """Every intermediate tensor of one forward and backward pass, non-finite ones kept."""

    states: list[torch.Tensor]        # x_1 … x_{L+1}: input of each block, then the output
    preactivations: list[torch.Tensor]  # z_1 … z_L (what each activation sees)
    loss: float                       # the loss, possibly inf or nan
    signals: list[torch.Tensor]       # ∂L/∂x_1 … ∂L/∂x_{L+1}
    deltas: list[torch.Tensor]        # δ_l = ∂L/∂z_l, l = 1 … L
    weight_grads: list[torch.Tensor]  # ∂L/∂W_l, l = 1 … L


def overflow_trace(model: DeepMLP, inputs: torch.Tensor,
                   loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> OverflowTrace:
    """One forward and backward pass of a plain ``DeepMLP``, keeping inf and NaN values.

    Unlike :func:`~gradflowkit.gradients.layer_profile`, nothing is checked for
    finiteness: the point is to see where overflow starts and how it spreads.

    Args:
        model: a plain (not residual) :class:`~gradflowkit.nets.DeepMLP` without a stem
            or head; compute in the dtype you want to study (``model.float()``).
        inputs: a batch, shape ``(batch, width)``, in the model's dtype.
        loss_fn: maps the last block's output to a scalar loss.

    Returns:
        An :class:`OverflowTrace` of detached tensors (weight gradients copied); the
        model's ``.grad`` are overwritten.
    """
    if not isinstance(model, DeepMLP):
        raise TypeError(f"model must be a DeepMLP, got {type(model).__name__}")
    cfg = model.config
    if cfg.residual or model.stem is not None or model.head is not None:
        raise ValueError("overflow_trace needs a plain DeepMLP without stem or head "
                         "(residual=False, in_features and out_features unset)")
    check_tensor("inputs", inputs)
    model.zero_grad(set_to_none=True)
    with capture_inputs(model.activation_modules()) as captured:
        states = model.hidden_states(inputs.detach().requires_grad_(True))
    zs = [captured[str(i)] for i in range(len(model.blocks))]
    for t in [*states, *zs]:
        t.retain_grad()  # before backward, so .grad is kept on these non-leaf tensors
    loss = loss_fn(states[-1])
    loss.backward()
    return OverflowTrace(
        states=[s.detach() for s in states], preactivations=[z.detach() for z in zs],
        loss=float(loss.detach()), signals=[s.grad.detach() for s in states],
        deltas=[z.grad.detach() for z in zs],
        weight_grads=[b.linear.weight.grad.detach().clone() for b in model.blocks])
