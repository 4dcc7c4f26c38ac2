"""Argument checks shared by the helpers: each error says what was wrong and how to fix it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

import torch


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer at least ``minimum``.

    Args:
        name: the argument's name, used in the error message.
        value: the value to check; bools are rejected.
        minimum: smallest allowed value (default: no lower bound).

    Returns:
        ``int(value)``.
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(name: str, value: object, *, positive: bool = False,
                nonnegative: bool = False) -> float:
    """Return ``value`` as a finite float, optionally required to be > 0 or >= 0.

    Args:
        name: the argument's name, used in the error message.
        value: the value to check; bools are rejected.
        positive: require ``value > 0`` (default False).
        nonnegative: require ``value >= 0`` (default False).

    Returns:
        ``float(value)``.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise, listing the choices.

    Args:
        name: the argument's name, used in the error message.
        value: the value to check.
        choices: the allowed strings.

    Returns:
        ``value``.
    """
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value  # type: ignore[return-value]


def check_tensor(name: str, value: object, *, ndim: int | None = None) -> torch.Tensor:
    """Return ``value`` if it is a floating-point tensor with ``ndim`` dimensions.

    Args:
        name: the argument's name, used in the error message.
        value: the value to check.
        ndim: required number of dimensions (default: any).

    Returns:
        ``value``.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}; "
                        f"convert it with {name}.float() or {name}.double()")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    return value


def check_weight_stack(weights: object) -> tuple[int, int, int]:
    """Check a stack of square weight matrices ``(S, depth, n, n)``; return ``(S, depth, n)``.

    The form in which many random nets are drawn at once (lessons 6, 7).

    Args:
        weights: the stack.

    Returns:
        Members, layers and width.
    """
    check_tensor("weights", weights, ndim=4)
    members, depth, n_out, n_in = weights.shape
    if n_out != n_in:
        raise ValueError(f"weights must be square per layer, got {n_out}×{n_in}")
    return members, depth, n_in


def member_batch(name: str, value: object, members: int, width: int,
                 dtype: torch.dtype) -> torch.Tensor:
    """Inputs for ``members`` nets: ``(batch, width)`` shared, or ``(members, batch, width)``.

    Args:
        name: the argument's name, used in the error message.
        value: the inputs.
        members: number of nets.
        width: features per input.
        dtype: the nets' dtype (the inputs are converted).

    Returns:
        A ``(members, batch, width)`` tensor (a broadcast view of shared inputs).
    """
    x = check_tensor(name, value).to(dtype)
    if x.ndim == 2:
        x = x.unsqueeze(0).expand(members, -1, -1)
    if x.ndim != 3 or x.shape[0] != members or x.shape[2] != width:
        raise ValueError(f"{name} must have shape (batch, {width}) or ({members}, batch, "
                         f"{width}), got {tuple(value.shape)}")
    return x


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Return ``value`` if every entry is finite; otherwise say how many are inf or NaN.

    Args:
        name: what the tensor is, used in the error message.
        value: the tensor to check.

    Returns:
        ``value``.
    """
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(value).sum())
        n_inf = int(torch.isinf(value).sum())
        raise FloatingPointError(
            f"{name} is not finite: {n_nan} NaN and {n_inf} inf entries out of "
            f"{value.numel()}. Lower the learning rate or weight scale, clip gradients, "
            f"or compute in float64.")
    return value
