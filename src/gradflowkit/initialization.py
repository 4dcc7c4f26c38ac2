"""Weight initialization schemes (lesson 6), applied to ``nn.Linear`` layers in place.

Each scheme fixes the variance of the weights from the layer's fan-in and fan-out:

- ``"normal"``: N(0, 1/n_in) (LeCun et al.), keeps the forward variance of a linear layer.
- ``"xavier"``: N(0, 2/(n_in + n_out)) (Glorot & Bengio 2010), a compromise between the
  forward (1/n_in) and backward (1/n_out) conditions.
- ``"he"``: N(0, 2/n_in) (He et al. 2015), compensates ReLU zeroing half its inputs.
- ``"orthogonal"``: a random orthogonal matrix (Saxe et al. 2014): all singular values 1.
- ``"zeros"``: all zero (used to make a residual branch start as the identity).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .validation import check_choice, check_float, check_int

#: Names accepted wherever the package takes an initialization.
INITS: tuple[str, ...] = ("normal", "xavier", "he", "orthogonal", "zeros")


def init_std(scheme: str, fan_in: int, fan_out: int) -> float:
    """Standard deviation of the Gaussian weights of ``scheme`` (0 for ``"zeros"``).

    Args:
        scheme: one of ``"normal"``, ``"xavier"``, ``"he"``, ``"zeros"``. Orthogonal
            weights are not Gaussian; their entries have root-mean-square
            ``1/sqrt(max(fan_in, fan_out))`` (``1/sqrt(fan_in)`` when square), returned too.
        fan_in: number of inputs of the layer.
        fan_out: number of outputs of the layer.

    Returns:
        The standard deviation.
    """
    check_choice("scheme", scheme, INITS)
    fan_in = check_int("fan_in", fan_in, minimum=1)
    fan_out = check_int("fan_out", fan_out, minimum=1)
    if scheme == "zeros":
        return 0.0
    if scheme == "orthogonal":  # ‖W‖_F² = min(fan_in, fan_out) over fan_in·fan_out entries
        return math.sqrt(1.0 / max(fan_in, fan_out))
    if scheme == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if scheme == "he":
        return math.sqrt(2.0 / fan_in)
    return math.sqrt(1.0 / fan_in)  # "normal"


def draw_weight(scheme: str, fan_out: int, fan_in: int, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One ``(fan_out, fan_in)`` weight matrix drawn by ``scheme``, in float64.

    The draw :func:`init_linear_` makes (and :func:`gradflowkit.nets.initial_parameters`
    for every layer of a net): Gaussian with :func:`init_std`, or for ``"orthogonal"`` the
    Q of a QR decomposition of a Gaussian matrix with the sign fix that makes Q
    Haar-distributed. ``"zeros"`` draws nothing.

    Args:
        scheme: one of :data:`INITS`.
        fan_out: rows (outputs of the layer).
        fan_in: columns (inputs).
        generator: random generator (default: torch's global one).

    Returns:
        A float64 tensor. Callers round it to the layer's dtype and only then multiply by
        a weight scale, so that nets of different scales share their draws bit for bit.
    """
    check_choice("scheme", scheme, INITS)
    if scheme == "zeros":
        return torch.zeros(fan_out, fan_in, dtype=torch.float64)
    if scheme == "orthogonal":
        a = torch.randn(max(fan_in, fan_out), min(fan_in, fan_out), generator=generator,
                        dtype=torch.float64)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        return q if fan_out >= fan_in else q.T
    std = init_std(scheme, fan_in, fan_out)
    return torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64) * std


@torch.no_grad()
def init_linear_(layer: nn.Linear, scheme: str, *, scale: float = 1.0,
                 generator: torch.Generator | None = None) -> nn.Linear:
    """Initialize ``layer.weight`` by ``scheme`` times ``scale``; set the bias to zero.

    Args:
        layer: the layer to change in place.
        scheme: one of :data:`INITS`.
        scale: extra multiplier on the weights (default 1.0); ``scale > 1`` is the
            "bad initialization" of several lessons.
        generator: random generator (default: torch's global one).

    Returns:
        ``layer``, for chaining.
    """
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    scale = check_float("scale", scale, nonnegative=True)
    fan_out, fan_in = layer.weight.shape
    weight = draw_weight(scheme, fan_out, fan_in, generator=generator)
    layer.weight.copy_(weight.to(layer.weight.dtype) * scale)
    if layer.bias is not None:
        layer.bias.zero_()
    return layer


def init_weights(scheme: str, shape: tuple[int, ...], *, scale: float = 1.0,
                 generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A stack of independent weight matrices drawn by ``scheme``, all at once.

    For many random nets at once (lesson 6): ``shape = (members, depth, fan_out, fan_in)``
    draws ``members × depth`` matrices in one call instead of building as many
    ``nn.Linear`` layers. Each matrix has the distribution :func:`init_linear_` gives a
    layer of that shape.

    Args:
        scheme: one of :data:`INITS`.
        shape: ``(..., fan_out, fan_in)``, at least 2 dimensions.
        scale: extra multiplier on the weights (default 1.0).
        generator: random generator (default: torch's global one).
        dtype: of the draws and the result (default float32; float64 where a derivation
            is checked).

    Returns:
        A tensor of ``shape``. Orthogonal matrices are the Q of a QR decomposition of a
        Gaussian matrix with the sign fix that makes them Haar-distributed.
    """
    check_choice("scheme", scheme, INITS)
    scale = check_float("scale", scale, nonnegative=True)
    shape = tuple(check_int("shape entry", k, minimum=1) for k in shape)
    if len(shape) < 2:
        raise ValueError(f"shape must have at least 2 entries (fan_out, fan_in), got {shape}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    *lead, fan_out, fan_in = shape
    if scheme == "orthogonal":
        a = torch.randn(*lead, max(fan_in, fan_out), min(fan_in, fan_out),
                        generator=generator, dtype=dtype)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
        w = q if fan_out >= fan_in else q.transpose(-2, -1)
        return w * scale
    std = init_std(scheme, fan_in, fan_out)
    return torch.randn(*shape, generator=generator, dtype=dtype) * (std * scale)
