"""A vanilla recurrent net and its backpropagation-through-time Jacobians (lesson 4).

The net is ``h_k = f(a_k)``, ``a_k = W h_{k-1} + U x_k + b`` for ``k = 1, …, T``. Its state
Jacobian over one step is ``∂h_k/∂h_{k-1} = diag(f'(a_k)) W``, so

    ∂h_T/∂h_t = diag(f'(a_T)) W · diag(f'(a_{T-1})) W ⋯ diag(f'(a_{t+1})) W,

the same matrix ``W`` ``T − t`` times, interleaved with the slopes. Pascanu, Mikolov &
Bengio (2013) bound its norm by ``(γ λ₁)^{T−t}``, with ``λ₁ = ‖W‖`` and ``γ ≥ |f'|``
(:data:`SLOPE_BOUND`); :func:`pascanu_bound` computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .activations import activate, derivative
from .validation import check_choice, check_float, check_int, check_tensor

#: ``γ = max |f'|`` for the activations a :class:`VanillaRNN` accepts.
SLOPE_BOUND: dict[str, float] = {"tanh": 1.0, "sigmoid": 0.25, "identity": 1.0}


def recurrent_weight(size: int, sigma_max: float, *, kind: str = "orthogonal",
                     generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A random square matrix rescaled so that its largest singular value is ``sigma_max``.

    Args:
        size: ``n``.
        sigma_max: ``λ₁ = ‖W‖``, the largest singular value wanted (>= 0).
        kind: ``"orthogonal"`` (all singular values equal ``sigma_max``) or ``"gaussian"``
            (i.i.d. normal entries, then rescaled; default ``"orthogonal"``).
        generator: torch random generator (default: the global one).
        dtype: floating dtype (default float64).

    Returns:
        The ``n × n`` matrix ``W``.
    """
    size = check_int("size", size, minimum=1)
    sigma_max = check_float("sigma_max", sigma_max, nonnegative=True)
    check_choice("kind", kind, ("orthogonal", "gaussian"))
    m = torch.randn(size, size, generator=generator, dtype=torch.float64)
    if kind == "orthogonal":
        q, r = torch.linalg.qr(m)
        w = q * torch.sign(torch.diagonal(r))  # sign fix: Haar-distributed
    else:
        w = m / torch.linalg.matrix_norm(m, ord=2)
    return (sigma_max * w).to(dtype)


class RNNTrace(NamedTuple):
    """States and pre-activations of one run of a :class:`VanillaRNN`."""

    states: torch.Tensor           # (T + 1, ..., n): h_0, h_1, ..., h_T
    preactivations: torch.Tensor   # (T, ..., n): a_1, ..., a_T


class VanillaRNN(nn.Module):
    """``h_k = f(W h_{k-1} + U x_k + b)``, with ``W`` given or drawn by :func:`recurrent_weight`.

    Args:
        hidden_size: ``n``, the size of ``h``.
        input_size: size of each input ``x_k``.
        activation: ``"tanh"``, ``"sigmoid"`` or ``"identity"`` (default ``"tanh"``).
        sigma_max: ``λ₁``, the largest singular value of ``W`` (default 1.0).
        kind: how ``W`` is drawn (see :func:`recurrent_weight`; default ``"orthogonal"``).
        input_scale: standard deviation of ``U``'s entries times ``sqrt(input_size)``
            (default 1.0).
        bias: the constant value of every entry of ``b`` (default 0.0).
        generator: torch random generator (default: the global one).
        dtype: floating dtype of the parameters (default float64).
    """

    def __init__(self, hidden_size: int, input_size: int, *, activation: str = "tanh",
                 sigma_max: float = 1.0, kind: str = "orthogonal", input_scale: float = 1.0,
                 bias: float = 0.0, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.activation = check_choice("activation", activation, tuple(SLOPE_BOUND))
        hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        input_size = check_int("input_size", input_size, minimum=1)
        input_scale = check_float("input_scale", input_scale, nonnegative=True)
        self.W = nn.Parameter(recurrent_weight(hidden_size, sigma_max, kind=kind,
                                               generator=generator, dtype=dtype))
        u = torch.randn(hidden_size, input_size, generator=generator, dtype=torch.float64)
        self.U = nn.Parameter((u * input_scale / input_size ** 0.5).to(dtype))
        self.b = nn.Parameter(torch.full((hidden_size,), check_float("bias", bias),
                                         dtype=dtype))

    def step(self, h: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: returns ``(h_k, a_k)`` from ``h_{k-1}`` and ``x_k``."""
        a = h @ self.W.T + x @ self.U.T + self.b
        return activate(self.activation, a), a

    def forward(self, xs: torch.Tensor, h0: torch.Tensor | None = None) -> RNNTrace:
        """Run over a sequence.

        Args:
            xs: inputs ``x_1 … x_T``, shape ``(T, input_size)`` or ``(T, batch, input_size)``.
            h0: initial state (default zeros), shape ``(..., hidden_size)``.

        Returns:
            An :class:`RNNTrace` (in the autograd graph).
        """
        check_tensor("xs", xs)
        if xs.ndim not in (2, 3) or xs.shape[-1] != self.U.shape[1]:
            raise ValueError(f"xs must have shape (T, [batch,] {self.U.shape[1]}), got "
                             f"{tuple(xs.shape)}")
        h = (torch.zeros(*xs.shape[1:-1], self.W.shape[0], dtype=self.W.dtype)
             if h0 is None else h0)
        return _unroll(self.step, h, xs)


def _unroll(step, h: torch.Tensor, xs: torch.Tensor) -> "RNNTrace":
    """Apply ``step(h, x) -> (h, a)`` along the first axis of ``xs``; keep every state."""
    states, pre = [h], []
    for x in xs:
        h, a = step(h, x)
        states.append(h)
        pre.append(a)
    return RNNTrace(torch.stack(states), torch.stack(pre))


def step_jacobians(rnn: "VanillaRNN | StackedRNN", preactivations: torch.Tensor) -> torch.Tensor:
    """``J_k = ∂h_k/∂h_{k-1} = diag(f'(a_k)) W`` for ``k = 1 … T``.

    Args:
        rnn: the net, or a :class:`StackedRNN` of ``S`` nets.
        preactivations: ``a_1 … a_T`` of one sequence, shape ``(T, n)``; for a
            :class:`StackedRNN`, shape ``(T, S, n)``.

    Returns:
        A ``(T, n, n)`` tensor (``(T, S, n, n)`` for a stacked net); entry ``k − 1`` is ``J_k``.
    """
    check_tensor("preactivations", preactivations,
                 ndim=3 if isinstance(rnn, StackedRNN) else 2)
    with torch.no_grad():
        slopes = derivative(rnn.activation, preactivations.detach())
        return slopes[..., :, None] * rnn.W.detach()[None]


def state_jacobian(jacobians: torch.Tensor, t: int) -> torch.Tensor:
    """``∂h_T/∂h_t = J_T J_{T-1} ⋯ J_{t+1}`` (the identity when ``t = T``).

    Args:
        jacobians: ``(T, n, n)`` from :func:`step_jacobians`.
        t: the earlier time, ``0 <= t <= T``.

    Returns:
        The ``(n, n)`` Jacobian.
    """
    check_tensor("jacobians", jacobians, ndim=3)
    T = jacobians.shape[0]
    t = check_int("t", t, minimum=0)
    if t > T:
        raise ValueError(f"t must be <= T = {T}, got {t}")
    result = torch.eye(jacobians.shape[1], dtype=jacobians.dtype)
    for j in jacobians[t:]:          # J_{t+1} first, J_T last (leftmost)
        result = j @ result
    return result


def jacobian_norms_by_distance(jacobians: torch.Tensor) -> np.ndarray:
    """``‖∂h_T/∂h_{T−d}‖`` (spectral norm) for distances ``d = 0 … T``.

    Args:
        jacobians: ``(T, n, n)`` from :func:`step_jacobians`, or ``(T, *batch, n, n)`` for
            several sequences or nets at once (e.g. a :class:`StackedRNN`).

    Returns:
        ``T + 1`` norms (shape ``(*batch, T + 1)`` for batched input); entry ``d`` belongs
        to ``∂h_T/∂h_{T−d}``, entry 0 is 1.
    """
    check_tensor("jacobians", jacobians)
    if jacobians.ndim < 3 or jacobians.shape[-1] != jacobians.shape[-2]:
        raise ValueError(f"jacobians must have shape (T, ..., n, n), got "
                         f"{tuple(jacobians.shape)}")
    batch = jacobians.shape[1:-2]
    product = torch.eye(jacobians.shape[-1], dtype=jacobians.dtype).expand(
        *batch, -1, -1)
    norms = [torch.ones(batch, dtype=torch.float64)]
    for j in reversed(jacobians):    # J_T, then J_T J_{T-1}, ...
        product = product @ j
        norms.append(torch.linalg.matrix_norm(product.double(), ord=2))
    return torch.stack(norms, dim=-1).numpy()


def pascanu_bound(sigma_max: float, activation: str, distances) -> np.ndarray:
    """The bound ``‖∂h_T/∂h_{T−d}‖ ≤ (γ λ₁)^d`` of Pascanu, Mikolov & Bengio (2013).

    Args:
        sigma_max: ``λ₁ = ‖W‖``.
        activation: a key of :data:`SLOPE_BOUND`, which gives ``γ``.
        distances: the distances ``d``.

    Returns:
        ``(γ λ₁)^d`` as an array.
    """
    sigma_max = check_float("sigma_max", sigma_max, nonnegative=True)
    check_choice("activation", activation, tuple(SLOPE_BOUND))
    return (SLOPE_BOUND[activation] * sigma_max) ** np.asarray(distances, dtype=float)


def typical_log_rate(rnn: "VanillaRNN | StackedRNN",
                     preactivations: torch.Tensor) -> float | np.ndarray:
    """Estimate of the per-step log-growth of ``‖∂h_T/∂h_t‖`` from the *typical* slope.

    For orthogonal ``W`` (all singular values ``λ₁``), one step maps a spread-out vector
    ``u`` to ``‖diag(f'(a_k)) W u‖ ≈ λ₁ · rms_i f'(a_{k,i}) · ‖u‖``. The estimate is the
    average over steps of ``log(λ₁ · rms_i f'(a_{k,i}))``; the bound of
    :func:`pascanu_bound` uses ``max |f'| = γ`` instead.

    Args:
        rnn: the net; ``λ₁`` is taken as ``‖W‖``. Or a :class:`StackedRNN` of ``S`` nets.
        preactivations: ``a_1 … a_T`` of one sequence, shape ``(T, n)``; ``(T, S, n)`` for
            a :class:`StackedRNN`.

    Returns:
        The estimated rate, in natural-log units per step (an array ``(S,)`` for a
        :class:`StackedRNN`).
    """
    stacked = isinstance(rnn, StackedRNN)
    check_tensor("preactivations", preactivations, ndim=3 if stacked else 2)
    with torch.no_grad():
        slopes = derivative(rnn.activation, preactivations.detach().double())
        rms = slopes.pow(2).mean(dim=-1).sqrt()                     # (T,) or (T, S)
        sigma_max = torch.linalg.matrix_norm(rnn.W.detach().double(), ord=2)
        rate = (sigma_max.log() + rms.log()).mean(dim=0)
        return rate.numpy() if stacked else float(rate)


class StackedRNN(nn.Module):
    """``S`` :class:`VanillaRNN` members run together: member ``s`` computes as ``rnns[s]``.

    The parameters are stacked along a leading member axis, ``W`` ``(S, n, n)``, ``U``
    ``(S, n, m)``, ``b`` ``(S, n)``; inputs are ``(T, S, m)``, one sequence per member.
    Lesson 4 measures the backward Jacobian of many random nets at once with it.

    Args:
        rnns: the members; they must share the activation and the sizes.
    """

    def __init__(self, rnns: Sequence[VanillaRNN]):
        super().__init__()
        rnns = list(rnns)
        if not rnns or not all(isinstance(r, VanillaRNN) for r in rnns):
            raise TypeError("rnns must be a non-empty sequence of VanillaRNN")
        acts = {r.activation for r in rnns}
        shapes = {(tuple(r.W.shape), tuple(r.U.shape)) for r in rnns}
        if len(acts) != 1 or len(shapes) != 1:
            raise ValueError(f"members must share the activation and sizes, got "
                             f"activations {sorted(acts)} and shapes {sorted(shapes)}")
        self.activation = acts.pop()
        with torch.no_grad():
            self.W = nn.Parameter(torch.stack([r.W.detach() for r in rnns]))
            self.U = nn.Parameter(torch.stack([r.U.detach() for r in rnns]))
            self.b = nn.Parameter(torch.stack([r.b.detach() for r in rnns]))

    def step(self, h: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of every member: ``(h_k, a_k)``, each ``(S, n)``, from ``h`` and ``x``."""
        a = ((self.W @ h.unsqueeze(-1)).squeeze(-1) + (self.U @ x.unsqueeze(-1)).squeeze(-1)
             + self.b)
        return activate(self.activation, a), a

    def forward(self, xs: torch.Tensor, h0: torch.Tensor | None = None) -> RNNTrace:
        """Run every member over its sequence.

        Args:
            xs: inputs, shape ``(T, S, input_size)``.
            h0: initial states (default zeros), shape ``(S, hidden_size)``.

        Returns:
            An :class:`RNNTrace` with states ``(T + 1, S, n)`` and pre-activations
            ``(T, S, n)``.
        """
        check_tensor("xs", xs, ndim=3)
        members, hidden, inputs = self.W.shape[0], self.W.shape[1], self.U.shape[2]
        if xs.shape[1:] != (members, inputs):
            raise ValueError(f"xs must have shape (T, {members}, {inputs}), got "
                             f"{tuple(xs.shape)}")
        h = torch.zeros(members, hidden, dtype=self.W.dtype) if h0 is None else h0
        return _unroll(self.step, h, xs)


def random_runs(seeds: Sequence[int], hidden_size: int, input_size: int, steps: int,
                **options) -> tuple[StackedRNN, torch.Tensor]:
    """One random :class:`VanillaRNN` and one random input sequence per seed, stacked.

    For each seed, a generator seeded with it draws the net (``VanillaRNN(hidden_size,
    input_size, generator=…, **options)``) and then the inputs ``x_1 … x_T`` (entries
    ``N(0, 1)``, float64). Nets that differ only in ``sigma_max`` but share a seed share
    their random draws, which makes comparisons across ``sigma_max`` less noisy.

    Args:
        seeds: one seed per member, e.g. from :func:`gradflowkit.seeding.ensemble_seeds`.
        hidden_size: ``n``.
        input_size: size of each input.
        steps: ``T``.
        **options: passed to :class:`VanillaRNN` (``activation``, ``sigma_max``, ...).

    Returns:
        ``(nets, xs)``: a :class:`StackedRNN` and inputs of shape ``(T, S, input_size)``.
    """
    steps = check_int("steps", steps, minimum=1)
    rnns, xs = [], []
    for seed in seeds:
        gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
        rnns.append(VanillaRNN(hidden_size, input_size, generator=gen, **options))
        xs.append(torch.randn(steps, input_size, generator=gen, dtype=torch.float64))
    return StackedRNN(rnns), torch.stack(xs, dim=1)


def fitted_log_rate(norms: np.ndarray) -> np.ndarray | float:
    """Least-squares slope of ``log ‖∂h_T/∂h_{T−d}‖`` against ``d``: the rate per step.

    Args:
        norms: ``(T + 1,)`` from :func:`jacobian_norms_by_distance`, or ``(*batch, T + 1)``.

    Returns:
        The slope per sequence (a float for 1-D input), in natural-log units per step.
    """
    norms = np.asarray(norms, dtype=float)
    if norms.ndim < 1 or norms.shape[-1] < 2 or not np.all(np.isfinite(norms) & (norms > 0)):
        raise ValueError("norms must have at least 2 positive finite entries per row")
    y = np.log(norms)
    d = np.arange(y.shape[-1], dtype=float)
    dc = d - d.mean()
    slope = ((y - y.mean(axis=-1, keepdims=True)) * dc).sum(axis=-1) / (dc ** 2).sum()
    return float(slope) if y.ndim == 1 else slope
