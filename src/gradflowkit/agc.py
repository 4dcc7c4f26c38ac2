"""Adaptive gradient clipping, unit by unit (Brock et al. 2021, Section 4, eq. 3; lesson 20).

Global-norm clipping (lesson 5) compares the whole gradient with one fixed threshold.
Adaptive gradient clipping (AGC) compares each unit's gradient with the size of that unit's
weights: for the ``i``-th unit of a layer, with weights ``W_i`` and gradient ``G_i``,

    G_i ← λ · (max(‖W_i‖, ε) / ‖G_i‖) · G_i    if ‖G_i‖ / max(‖W_i‖, ε) > λ,

and ``G_i`` unchanged otherwise. So no step can change a unit's weights by more than about
``λ`` times their norm (times the learning rate, for SGD). ``ε`` (default 1e-3, as in the
paper) keeps zero-initialized weights, such as biases, from never moving.

A *unit* is one output unit: a row of a PyTorch weight matrix ``(out, in)`` (the paper's
JAX code stores ``(in, out)`` and takes the norm over the inputs, the same thing), or one
output channel of a convolution kernel ``(out, in, …)``. A vector (a bias or a gain) or a
scalar counts as a single unit, as in the paper's reference implementation
(``unitwise_norm`` in deepmind-research ``nfnets/optim.py``).

For an ensemble (:class:`~gradflowkit.ensemble.EnsembleMLP`) the first axis of every
parameter is the member axis: pass ``members=S`` and each member is clipped as if it were
a plain net of its own (a stacked weight ``(S, out, in)`` has ``S·out`` units, a stacked
bias ``(S, out)`` one unit per member).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .validation import check_float, check_int

#: The paper's ε, the smallest weight norm a unit is compared with.
EPS = 1e-3


def unitwise_norm(x: torch.Tensor, *, members: int | None = None) -> torch.Tensor:
    """The Euclidean norm of every unit of ``x``, shaped to broadcast against ``x``.

    Args:
        x: a parameter or its gradient.
        members: None (default) for a plain parameter; ``S`` when the first axis of ``x``
            is an ensemble's member axis (``x.shape[0]`` must be ``S``).

    Returns:
        For a plain tensor with ``ndim >= 2``: norms over every axis but the first, shape
        ``(out, 1, …)``; with ``ndim <= 1``: the norm of the whole tensor (0-d). With
        ``members``: the same per member, shape ``(S, out, 1, …)`` or ``(S, 1, …)``.
        The norm is taken in ``x``'s dtype (float32 overflows only for entries near 1e19).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if members is None:
        if x.ndim <= 1:
            return torch.linalg.vector_norm(x)
        return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)
    members = check_int("members", members, minimum=1)
    if x.ndim == 0 or x.shape[0] != members:
        raise ValueError(f"with members={members} the first axis must be the member axis, "
                         f"got shape {tuple(x.shape)}")
    if x.ndim <= 2:                  # a member's scalar or vector is one unit
        dims = tuple(range(1, x.ndim))
    else:                            # (S, out, in, …): one unit per member and output
        dims = tuple(range(2, x.ndim))
    if not dims:
        return x.abs()
    return torch.linalg.vector_norm(x, dim=dims, keepdim=True)


@torch.no_grad()
def adaptive_clip_grad_(parameters: Iterable[torch.nn.Parameter], clipping: float = 0.01,
                        eps: float = EPS, *, members: int | None = None,
                        error_if_nonfinite: bool = True) -> torch.Tensor:
    """Clip the ``.grad`` of ``parameters`` in place, unit by unit (eq. 3 of Brock et al.).

    Args:
        parameters: parameters, e.g. ``model.parameters()``; those without ``.grad`` are
            skipped.
        clipping: λ (> 0), the largest allowed ratio ‖G_i‖ / max(‖W_i‖, ε) (default 0.01;
            the paper finds the best λ smaller for larger batches).
        eps: ε (> 0, default 1e-3).
        members: None (default) for a plain model; ``S`` for an ensemble's stacked
            parameters whose first axis is the member axis.
        error_if_nonfinite: raise ``FloatingPointError`` if a unit's gradient norm is inf
            or NaN (default True). If False, such units are left as they are (inf or NaN),
            for a caller that stops those members anyway (the trainer).

    Returns:
        How many units were clipped: a 0-d int64 tensor, or one count per member ``(S,)``
        with ``members``.
    """
    clipping = check_float("clipping", clipping, positive=True)
    eps = check_float("eps", eps, positive=True)
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    params = [p for p in parameters if p.grad is not None]
    if not params:
        raise ValueError("no parameter has a .grad; call loss.backward() before clipping")
    count = torch.zeros(() if members is None else (members,), dtype=torch.int64)
    for p in params:
        g_norm = unitwise_norm(p.grad, members=members)
        bad = ~torch.isfinite(g_norm)
        if error_if_nonfinite and bool(bad.any()):
            raise FloatingPointError(f"a unit of a parameter of shape {tuple(p.shape)} has a "
                                     "non-finite gradient norm; find the inf/NaN (lesson 16) "
                                     "or pass error_if_nonfinite=False")
        w_norm = unitwise_norm(p.detach(), members=members).clamp(min=eps)
        limit = clipping * w_norm
        clip = (g_norm > limit) & ~bad
        # g_norm > limit > 0 wherever clip holds, so the division is safe there.
        scale = torch.where(clip, limit / torch.where(clip, g_norm, 1.0), 1.0)
        p.grad.mul_(scale.to(p.grad.dtype))
        count += _count(clip, members)
    return count


def _count(clip: torch.Tensor, members: int | None) -> torch.Tensor:
    """Clipped units in total, or per member (first axis)."""
    if members is None:
        return clip.sum()
    return clip.reshape(members, -1).sum(1)
