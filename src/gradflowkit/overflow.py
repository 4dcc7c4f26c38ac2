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
from .validation import check_float, check_int, check_tensor


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

    states: list[torch.Tensor]        # x_1 … x_{D+1}: input of each block, then the output
    preactivations: list[torch.Tensor]  # z_1 … z_L (what each activation sees)
    loss: float                       # the loss, possibly inf or nan
    signals: list[torch.Tensor]       # ∂L/∂x_1 … ∂L/∂x_{D+1}
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


# --- Ensembles of bias-free ReLU chains, computed together -----------------------------
#
# Where a float32 pass first overflows depends on the random weights: it is a random
# variable, and lesson 3 measures its distribution over many nets at once. The chain
# ``x_{l+1} = relu(W_l x_l)`` has no biases, so it is positively homogeneous
# (``relu(W (c x)) = c relu(W x)`` for ``c > 0``): its exact log-scale can be followed in
# float64 far beyond any floating-point range (:func:`relu_chain_log_max`), which predicts
# the layer where a finite format overflows.


def relu_chain_weights(depth: int, width: int, members: int, *, scale: float = 1.0,
                       generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """He-initialized weights (entries ``N(0, 2/width)``) times ``scale``, for many chains.

    Args:
        depth: ``D``, layers per chain.
        width: ``n``, units per layer.
        members: ``S``, independent chains.
        scale: multiplier on the He weights (default 1.0); ``scale = 4`` makes the
            activations grow by about 4 per layer.
        generator: torch random generator (default: torch's global one).
        dtype: of the weights (default float64). With float32 the weights are float32
            numbers, so a float32 and a float64 run of them use exactly the same weights
            (and drawing them costs half as much).

    Returns:
        A tensor of shape ``(L, S, n, n)``; ``[l, s]`` is ``W_{l+1}`` of chain ``s``.
    """
    depth = check_int("depth", depth, minimum=1)
    width = check_int("width", width, minimum=1)
    members = check_int("members", members, minimum=1)
    scale = check_float("scale", scale, nonnegative=True)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    w = torch.randn(depth, members, width, width, generator=generator, dtype=dtype)
    return w.mul_(scale * (2.0 / width) ** 0.5)


def _check_chain(weights: torch.Tensor, x: torch.Tensor) -> None:
    check_tensor("weights", weights, ndim=4)
    check_tensor("x", x, ndim=2)
    depth, members, n_out, n_in = weights.shape
    if n_out != n_in or x.shape != (members, n_in):
        raise ValueError(f"weights must have shape (depth, S, n, n) and x shape (S, n); got "
                         f"{tuple(weights.shape)} and {tuple(x.shape)}")


def _matvec(w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return (w @ h.unsqueeze(-1)).squeeze(-1)


def relu_chain_states(weights: torch.Tensor, x: torch.Tensor, *,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Every state ``x_1 … x_{D+1}`` of ``x_{l+1} = relu(W_l x_l)``, inf and NaN kept.

    Args:
        weights: ``(L, S, n, n)`` from :func:`relu_chain_weights`.
        x: the inputs ``x_1``, shape ``(S, n)``.
        dtype: the format to compute in (default float32); each layer's weights and the
            inputs are rounded to it first.

    Returns:
        A tensor of shape ``(D + 1, S, n)`` in ``dtype`` (no autograd graph).
    """
    _check_chain(weights, x)
    with torch.no_grad():
        h = x.to(dtype)
        states = [h]
        for w in weights:
            h = torch.relu(_matvec(w.to(dtype), h))
            states.append(h)
    return torch.stack(states)


def relu_chain_log_max(weights: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """``log max_i |x_{l,i}|`` of the exact chain, for every layer, without overflow.

    The state is renormalized after every layer and the logs of the scale factors are
    summed (valid because the chain is positively homogeneous), in float64. The result is
    the float64 prediction of where a finite format overflows: the first layer whose
    value exceeds ``log(torch.finfo(dtype).max)``.

    Args:
        weights: ``(L, S, n, n)``.
        x: the inputs, ``(S, n)``.

    Returns:
        An array ``(S, D + 1)``; ``-inf`` from the layer on where a state is exactly 0.
    """
    _check_chain(weights, x)
    with torch.no_grad():
        h = x.double()
        scale = h.abs().amax(dim=-1)
        log_scale = scale.log()
        h = h / torch.where(scale > 0, scale, torch.ones_like(scale))[:, None]
        logs = [log_scale]
        for w in weights:
            h = torch.relu(_matvec(w.double(), h))
            step = h.abs().amax(dim=-1)
            log_scale = log_scale + step.log()
            h = h / torch.where(step > 0, step, torch.ones_like(step))[:, None]
            logs.append(log_scale)
    return torch.stack(logs, dim=1).numpy()


class ChainTrace(NamedTuple):
    """One forward and backward pass of ``S`` ReLU chains, non-finite values kept."""

    states: torch.Tensor          # (D + 1, S, n): x_1 … x_{D+1}
    preactivations: torch.Tensor  # (L, S, n): z_l = W_l x_l
    loss: torch.Tensor            # (S,): each chain's loss, possibly inf or NaN
    signals: torch.Tensor         # (D + 1, S, n): ∂L/∂x_l
    deltas: torch.Tensor          # (L, S, n): δ_l = ∂L/∂z_l
    weight_grads: torch.Tensor    # (L, S, n, n): ∂L/∂W_l


def relu_chain_trace(weights: torch.Tensor, x: torch.Tensor,
                     loss_fn: Callable[[torch.Tensor], torch.Tensor], *,
                     dtype: torch.dtype = torch.float32) -> ChainTrace:
    """Forward and backward pass of ``S`` ReLU chains in ``dtype``, keeping inf and NaN.

    The chains are independent, so differentiating the sum of their losses gives each
    chain its own gradients. Nothing is checked for finiteness.

    Args:
        weights: ``(L, S, n, n)`` from :func:`relu_chain_weights`.
        x: the inputs, ``(S, n)``.
        loss_fn: maps the outputs ``x_{D+1}``, shape ``(S, n)``, to one loss per chain,
            shape ``(S,)``.
        dtype: the format to compute in (default float32).

    Returns:
        A :class:`ChainTrace` of detached tensors.
    """
    _check_chain(weights, x)
    ws = [w.to(dtype, copy=True).requires_grad_(True) for w in weights]
    h = x.to(dtype).requires_grad_(True)
    states, zs = [h], []
    for w in ws:
        z = _matvec(w, h)
        h = torch.relu(z)
        zs.append(z)
        states.append(h)
    loss = loss_fn(h)
    if loss.shape != (x.shape[0],):
        raise ValueError(f"loss_fn must return one loss per chain, shape ({x.shape[0]},), "
                         f"got {tuple(loss.shape)}")
    grads = torch.autograd.grad(loss.sum(), [*states, *zs, *ws])
    depth = len(ws)
    return ChainTrace(
        states=torch.stack(states).detach(), preactivations=torch.stack(zs).detach(),
        loss=loss.detach(), signals=torch.stack(grads[:depth + 1]),
        deltas=torch.stack(grads[depth + 1:2 * depth + 1]),
        weight_grads=torch.stack(grads[2 * depth + 1:]))


def first_layers(mask: torch.Tensor | np.ndarray, *, reverse: bool = False) -> np.ndarray:
    """Per chain, the first layer (index along axis 0) where ``mask`` has a True entry.

    Args:
        mask: boolean, shape ``(L, S, ...)``, e.g. ``torch.isinf(trace.signals)``.
        reverse: search from the last layer backwards, as the backward pass runs
            (default False); the index returned is still a position along axis 0.

    Returns:
        An int array ``(S,)``; -1 for a chain where no entry is True.
    """
    m = np.asarray(mask.numpy() if isinstance(mask, torch.Tensor) else mask, dtype=bool)
    if m.ndim < 2:
        raise ValueError(f"mask must have shape (layers, chains, ...), got {m.shape}")
    hit = m.reshape(m.shape[0], m.shape[1], -1).any(axis=2)          # (L, S)
    if reverse:
        hit = hit[::-1]
    first = np.argmax(hit, axis=0)
    if reverse:
        first = m.shape[0] - 1 - first
    return np.where(hit.any(axis=0), first, -1)


def forced_nan_matvec(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """Entries of ``matrix @ vector`` that are NaN in every order of summation.

    ``y_i = Σ_j A_ij v_j`` is NaN whatever order the CPU adds the terms in, and with or
    without fused multiply-adds, when its operands already decide it: some ``v_j`` (or
    ``A_ij``) is NaN, a term is ``0 · ∞``, or two infinite operands give terms ``+∞`` and
    ``−∞``. Other NaN entries can appear too, when finite terms overflow inside the sum;
    whether they do depends on the kernel's order of operations.

    Args:
        matrix: ``A``, shape ``(..., m, k)``.
        vector: ``v``, shape ``(..., k)``.

    Returns:
        A boolean tensor of shape ``(..., m)``.
    """
    check_tensor("matrix", matrix)
    check_tensor("vector", vector)
    if matrix.ndim < 2 or vector.shape[-1] != matrix.shape[-1]:
        raise ValueError(f"need matrix (..., m, k) and vector (..., k); got "
                         f"{tuple(matrix.shape)} and {tuple(vector.shape)}")
    a, v = matrix, vector.unsqueeze(-2)                       # v: (..., 1, k)
    nan_term = (torch.isnan(a) | torch.isnan(v) | (torch.isinf(a) & (v == 0))
                | ((a == 0) & torch.isinf(v)))
    infinite = torch.isinf(a) | torch.isinf(v)
    sign = torch.sign(a) * torch.sign(v)
    plus = (infinite & (sign > 0)).any(-1)
    minus = (infinite & (sign < 0)).any(-1)
    return nan_term.any(-1) | (plus & minus)


def nan_of_outer(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Entries of the outer product ``a bᵀ`` that are NaN: each is one product, so exactly
    ``a_i`` or ``b_j`` NaN, or ``0 · ∞``.

    This is the pattern of a weight gradient ``δ_l x_lᵀ`` for one example.

    Args:
        left: ``a``, shape ``(..., m)``.
        right: ``b``, shape ``(..., k)``.

    Returns:
        A boolean tensor of shape ``(..., m, k)``.
    """
    check_tensor("left", left)
    check_tensor("right", right)
    a, b = left.unsqueeze(-1), right.unsqueeze(-2)
    return (torch.isnan(a) | torch.isnan(b) | (torch.isinf(a) & (b == 0))
            | ((a == 0) & torch.isinf(b)))
