"""Gradient clipping by norm and by value (lesson 5).

Norm clipping rescales the gradient ``g`` to ``(θ/‖g‖) g`` when ``‖g‖ > θ`` (Pascanu et al.
2013): the direction is kept and the norm becomes ``θ``. Value clipping clamps each entry to
``[-c, c]`` and so turns the direction. The functions work on plain lists of tensors, and
:func:`clip_grad_norm_` on a model's parameters like ``torch.nn.utils.clip_grad_norm_``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from .validation import check_finite, check_float

#: Added to the norm before dividing, as torch does, so a zero gradient stays zero.
EPS = 1e-6


def global_norm(grads: Sequence[torch.Tensor], norm_type: float = 2.0) -> torch.Tensor:
    """The norm of all gradients taken together as one long vector.

    Args:
        grads: gradient tensors.
        norm_type: the p of the p-norm (default 2; ``float('inf')`` for the max norm).

    Returns:
        A scalar tensor.
    """
    grads = _as_list(grads)
    if norm_type != float("inf"):
        check_float("norm_type", norm_type, positive=True)
    per_tensor = torch.stack([torch.linalg.vector_norm(g.detach(), norm_type) for g in grads])
    return torch.linalg.vector_norm(per_tensor, norm_type)


def clip_by_global_norm(grads: Sequence[torch.Tensor], max_norm: float, *,
                        norm_type: float = 2.0,
                        error_if_nonfinite: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Scale all gradients by one factor so that their global norm is at most ``max_norm``.

    Args:
        grads: gradient tensors (not modified).
        max_norm: the threshold θ (> 0).
        norm_type: the p of the p-norm (default 2).
        error_if_nonfinite: raise ``FloatingPointError`` if the total norm is inf or NaN
            (default True). If False, a non-finite norm makes every clipped entry NaN or 0,
            as in torch: the caller has been warned.

    Returns:
        ``(clipped, total_norm)``: new tensors, and the norm before clipping.
    """
    grads = _as_list(grads)
    max_norm = check_float("max_norm", max_norm, positive=True)
    total = global_norm(grads, norm_type)
    if error_if_nonfinite:
        check_finite(f"the total gradient norm (order {norm_type})", total)
    factor = torch.clamp(max_norm / (total + EPS), max=1.0)
    return [g * factor.to(g.dtype) for g in grads], total


def clip_per_tensor(grads: Sequence[torch.Tensor], max_norm: float, *,
                    error_if_nonfinite: bool = True) -> list[torch.Tensor]:
    """Clip each gradient tensor's own 2-norm to ``max_norm`` separately.

    Args:
        grads: gradient tensors (not modified).
        max_norm: the threshold θ (> 0) for each tensor.
        error_if_nonfinite: raise ``FloatingPointError`` if a tensor's norm is not finite.

    Returns:
        New tensors; the overall direction changes when tensors are scaled differently.
    """
    return [clip_by_global_norm([g], max_norm, error_if_nonfinite=error_if_nonfinite)[0][0]
            for g in _as_list(grads)]


def clip_by_value(grads: Sequence[torch.Tensor], clip_value: float) -> list[torch.Tensor]:
    """Clamp every entry of every gradient to ``[-clip_value, clip_value]``.

    Args:
        grads: gradient tensors (not modified).
        clip_value: the bound c (> 0).

    Returns:
        New tensors. NaN entries stay NaN: check finiteness separately.
    """
    clip_value = check_float("clip_value", clip_value, positive=True)
    return [g.clamp(-clip_value, clip_value) for g in _as_list(grads)]


def clip_grad_norm_(parameters: Iterable[torch.nn.Parameter], max_norm: float, *,
                    norm_type: float = 2.0, error_if_nonfinite: bool = True) -> torch.Tensor:
    """Clip the ``.grad`` of ``parameters`` in place by their global norm.

    Same result as ``torch.nn.utils.clip_grad_norm_`` (lesson 5 checks it), but raising on a
    non-finite norm by default.

    Args:
        parameters: parameters, e.g. ``model.parameters()``; those without ``.grad`` are skipped.
        max_norm: the threshold θ (> 0).
        norm_type: the p of the p-norm (default 2).
        error_if_nonfinite: raise ``FloatingPointError`` on an inf/NaN norm (default True).

    Returns:
        The total norm before clipping.
    """
    if isinstance(parameters, torch.Tensor):  # one tensor, as torch accepts
        parameters = [parameters]
    params = [p for p in parameters if p.grad is not None]
    if not params:
        raise ValueError("no parameter has a .grad; call loss.backward() before clipping")
    clipped, total = clip_by_global_norm([p.grad for p in params], max_norm,
                                         norm_type=norm_type,
                                         error_if_nonfinite=error_if_nonfinite)
    with torch.no_grad():
        for p, g in zip(params, clipped):
            p.grad.copy_(g)
    return total


def _as_list(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(grads, torch.Tensor):
        grads = [grads]
    grads = list(grads)
    if not grads:
        raise ValueError("grads is empty; pass at least one tensor")
    for i, g in enumerate(grads):
        if not isinstance(g, torch.Tensor):
            raise TypeError(f"grads[{i}] must be a torch.Tensor, got {type(g).__name__}")
    return grads
