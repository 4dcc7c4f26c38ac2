"""How the size of the forward and backward signals changes from layer to layer (lessons 6-7).

Variance-propagation arguments (LeCun, Glorot & Bengio, He et al.) predict how the spread of
the activations ``x_l`` and of the backward signal ``∂L/∂x_l`` changes per layer. The
helpers here measure both for a :class:`~gradflowkit.nets.DeepMLP` at one forward and one
backward pass, and fit the per-layer rate of a geometric trend.

To measure the backward pass without a particular loss, the gradient at the last block's
output is a random standard-normal array: then ``∂L/∂x_{D+1}`` has standard deviation 1
and every earlier ``∂L/∂x_l`` is that random vector sent back through the transposed
Jacobians, as in a loss whose output gradient is unstructured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from .activations import derivative, make_activation
from .gradients import capture_inputs
from .nets import DeepMLP
from .validation import check_tensor, check_weight_stack, member_batch


class SignalStats(NamedTuple):
    """Per-layer standard deviations of a :class:`~gradflowkit.nets.DeepMLP`'s signals."""

    forward: np.ndarray   # std of x_l over the batch and the units, l = input … last output
    backward: np.ndarray  # std of ∂L/∂x_l, same layers; the last entry is the seed's (≈ 1)
    preact: np.ndarray    # std of z_l = W_l x_l + b_l, one per block


def signal_stats(model: DeepMLP, inputs: torch.Tensor, *,
                 generator: torch.Generator | None = None) -> SignalStats:
    """Forward and backward standard deviation per layer, from one pass of ``inputs``.

    The model's head (if any) is not used: the backward pass starts at the last block's
    output with a standard-normal gradient drawn from ``generator``.

    Args:
        model: the network (any activation, init, plain or residual).
        inputs: a batch, shape ``(batch, in_features)``.
        generator: random generator for the output gradient (default: torch's global one).

    Returns:
        A :class:`SignalStats`; ``forward`` and ``backward`` have ``depth + 1`` entries
        (index 0 is the input of the first block), ``preact`` has ``depth``. The
        standard deviations are computed in float64 (population std, over all entries).
    """
    if not isinstance(model, DeepMLP):
        raise TypeError(f"model must be a DeepMLP, got {type(model).__name__}")
    check_tensor("inputs", inputs, ndim=2)
    with capture_inputs(model.activation_modules()) as captured:
        states = model.hidden_states(inputs.detach().requires_grad_(True))
    preacts = [captured[str(i)].detach() for i in range(len(model.blocks))]
    out = states[-1]
    seed = torch.randn(out.shape, generator=generator, dtype=out.dtype)
    grads = torch.autograd.grad(out, states[:-1], grad_outputs=seed, allow_unused=True)
    grads = [torch.zeros_like(s) if g is None else g for s, g in zip(states, grads)] + [seed]
    std = lambda t: float(t.detach().double().std(unbiased=False))  # noqa: E731
    return SignalStats(forward=np.array([std(s) for s in states]),
                       backward=np.array([std(g) for g in grads]),
                       preact=np.array([std(z) for z in preacts]))


def geometric_rate(values: Sequence[float] | np.ndarray, *, steps: Sequence[float] | None = None
                   ) -> float:
    """Per-step factor ``r`` of the least-squares fit ``log v_k ≈ a + k log r``.

    Args:
        values: positive values, e.g. a per-layer standard deviation.
        steps: the ``k`` of each value (default ``0, 1, 2, …``), e.g. the depths of a sweep.

    Returns:
        ``r = exp(slope)``: below 1 the values shrink geometrically, above 1 they grow.
    """
    v = np.asarray(values, dtype=float)
    k = np.arange(v.size, dtype=float) if steps is None else np.asarray(steps, dtype=float)
    if v.ndim != 1 or v.size < 2 or k.shape != v.shape:
        raise ValueError(f"need >= 2 values and as many steps, got {v.size} values and "
                         f"{k.size} steps")
    if not (np.isfinite(v).all() and (v > 0).all()):
        raise ValueError("values must be finite and > 0 to fit a geometric rate; "
                         "drop zeros (underflow) or infs (overflow) first")
    slope = np.polyfit(k, np.log(v), 1)[0]
    return float(np.exp(slope))


def relu_family_gain(weight_var_times_fan: float, negative_slope: float = 0.0) -> float:
    """Predicted per-layer factor of the std of a ReLU/Leaky-ReLU net's signals.

    With weights of variance ``c / n`` (``c = weight_var_times_fan``) and slope
    ``a = negative_slope`` for negative inputs, ``E[f(z)²] = (1 + a²) Var[z] / 2`` and
    ``E[f'(z)²] = (1 + a²) / 2`` for symmetric ``z``, so both the forward and the backward
    variance are multiplied by ``c (1 + a²) / 2`` per square layer; the std by its root.

    Args:
        weight_var_times_fan: ``n · Var[w]`` (1 for N(0, 1/n), 2 for He).
        negative_slope: ``a`` (0 for ReLU).

    Returns:
        ``sqrt(c (1 + a²) / 2)``.
    """
    if weight_var_times_fan < 0:
        raise ValueError(f"weight_var_times_fan must be >= 0, got {weight_var_times_fan}")
    return float(np.sqrt(weight_var_times_fan * (1 + negative_slope**2) / 2))


def relu_residual_moments(depth: int, *, mean_square: float = 1.0, mean: float = 0.0,
                          branch_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Predicted moments of the stream ``x_{l+1} = x_l + s relu(W x_l)`` (lesson 13).

    With He-initialized ``W`` (variance ``2/n``), no bias and a wide layer, ``z = W x_l``
    is Gaussian with variance ``2 q_l`` where ``q_l`` is the mean square of ``x_l`` over
    its units. Then ``E[relu(z)²] = q_l`` and ``E[relu(z)] = sqrt(q_l/π)``; the branch
    output is independent of ``x_l``'s units but has a positive mean, so with ``m_l`` the
    mean of ``x_l`` over its units

        q_{l+1} = q_l + s² q_l + 2 s m_l sqrt(q_l/π),    m_{l+1} = m_l + s sqrt(q_l/π).

    Without the mean term (``m = 0``) ``q`` would double per block when ``s = 1``.

    Args:
        depth: number of blocks (>= 0).
        mean_square: ``q_0`` of the input (default 1).
        mean: ``m_0`` of the input (default 0).
        branch_scale: ``s`` (default 1).

    Returns:
        ``(q, m)``, two arrays of ``depth + 1`` entries; the variance over units is
        ``q - m**2``.
    """
    if depth < 0 or mean_square < 0:
        raise ValueError("depth and mean_square must be >= 0")
    q, m = [float(mean_square)], [float(mean)]
    for _ in range(depth):
        r = np.sqrt(q[-1] / np.pi)
        q.append(q[-1] * (1 + branch_scale**2) + 2 * branch_scale * m[-1] * r)
        m.append(m[-1] + branch_scale * r)
    return np.array(q), np.array(m)


def relu_residual_rate() -> float:
    """The per-block factor of the mean square deep in the stream of
    :func:`relu_residual_moments` with ``branch_scale=1`` (lesson 13, eq. eq-limits-rate).

    Deep in the stack ``m_l ≈ c sqrt(q_l)`` and ``q_{l+1} ≈ r q_l``; put into the moments'
    recursion, ``c (sqrt(r) - 1) = 1/sqrt(π)`` and ``r = 2 + 2c/sqrt(π)``, so ``r`` is the
    root of ``r = 2 + 2 / (π (sqrt(r) - 1))``, about 2.904 (not 2: the stream's mean adds a
    cross term). Found by fixed-point iteration from 3, a contraction near the root (slope
    about -0.38), so 200 steps reach float64's last digits.
    """
    r = 3.0
    for _ in range(200):
        r = 2 + 2 / (np.pi * (np.sqrt(r) - 1))
    return float(r)


class StackStats(NamedTuple):
    """Per-member, per-layer standard deviations of a stack of random nets (lesson 6)."""

    forward: np.ndarray    # (S, L+1) std of x_l; column 0 is the input
    backward: np.ndarray   # (S, L+1) std of ∂L/∂x_l; the last column is the output gradient's
    preact: np.ndarray     # (S, L) std of z_l = W_l x_l
    rms_slope: np.ndarray  # (S, L) sqrt(mean f'(z_l)²) over the batch and the units


class StackPasses(NamedTuple):
    """The tensors of one forward and one backward pass through ``S`` stacked nets."""

    states: list[torch.Tensor]   # L+1 of (S, batch, n): x_1 (the input) … x_{L+1}
    preacts: list[torch.Tensor]  # L: z_l = W_l x_l (+ b_l)
    slopes: list[torch.Tensor]   # L: f'(z_l)
    grads: list[torch.Tensor]    # L+1: ∂L/∂x_1 … ∂L/∂x_{L+1} (the output gradient)


@torch.no_grad()
def stack_passes(weights: torch.Tensor, activation: str, inputs: torch.Tensor, *,
                 biases: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 grad_output: torch.Tensor | None = None) -> StackPasses:
    """Forward and backward pass of ``S`` nets ``x_{l+1} = f(W_l x_l + b_l)``, by hand.

    The backward pass sends the output gradient back through the transposed Jacobians,
    ``∂L/∂x_l = W_lᵀ (f'(z_l) ⊙ ∂L/∂x_{l+1})``, with
    :func:`~gradflowkit.activations.derivative` (the unit tests compare it with autograd).
    The statistics of lessons 6 (:func:`stack_signal_stats`) and 18
    (:func:`~gradflowkit.meanfield.stack_backward_signal`) are read off these tensors.

    Args:
        weights: ``(S, L, n, n)``.
        activation: the name of ``f`` (:data:`~gradflowkit.activations.ACTIVATIONS`).
        inputs: ``(batch, n)`` shared by the members, or ``(S, batch, n)``.
        biases: ``(S, L, n)`` (default None: no biases).
        generator: for the output gradient, a standard-normal draw (default: torch's
            global generator).
        grad_output: the output gradient ``(S, batch, n)`` itself, instead of a draw.

    Returns:
        A :class:`StackPasses`, in the weights' dtype.
    """
    members, depth, n_in = check_weight_stack(weights)
    if biases is not None:
        check_tensor("biases", biases, ndim=3)
        if tuple(biases.shape) != (members, depth, weights.shape[2]):
            raise ValueError(f"biases must have shape {(members, depth, weights.shape[2])}, "
                             f"got {tuple(biases.shape)}")
    x = member_batch("inputs", inputs, members, n_in, weights.dtype)
    out_shape = (members, x.shape[1], weights.shape[2])
    if grad_output is not None and tuple(check_tensor("grad_output", grad_output).shape) != out_shape:
        raise ValueError(f"grad_output must have shape {out_shape} (members, batch, width), "
                         f"got {tuple(grad_output.shape)}")
    f = make_activation(activation)
    states, slopes, preacts = [x], [], []
    for layer in range(depth):
        w_t = weights[:, layer].transpose(1, 2)
        z = (torch.bmm(states[-1], w_t) if biases is None
             else torch.baddbmm(biases[:, layer].unsqueeze(1), states[-1], w_t))
        preacts.append(z)
        slopes.append(derivative(activation, z))
        states.append(f(z))
    if grad_output is None:
        grad_output = torch.randn(out_shape, generator=generator, dtype=weights.dtype)
    grads = [grad_output.to(weights.dtype)]
    for layer in reversed(range(depth)):
        grads.append(torch.bmm(slopes[layer] * grads[-1], weights[:, layer]))
    grads.reverse()
    return StackPasses(states, preacts, slopes, grads)


def stack_signal_stats(weights: torch.Tensor, activation: str, inputs: torch.Tensor, *,
                       generator: torch.Generator | None = None,
                       grad_output: torch.Tensor | None = None) -> StackStats:
    """Forward and backward standard deviations per layer of ``S`` nets ``x ↦ f(W_l x)``.

    Every member ``s`` is the plain net ``x_{l+1} = f(W[s, l] x_l)`` without biases (biases
    start at zero), run by :func:`stack_passes`: a standard-normal output gradient is sent
    back through the transposed Jacobians. The stack counterpart of :func:`signal_stats`.

    Args:
        weights: ``(S, L, n, n)``, e.g. from :func:`~gradflowkit.initialization.init_weights`.
        activation: the name of ``f``.
        inputs: ``(batch, n)`` shared by the members, or ``(S, batch, n)``.
        generator: for the output gradient (default: torch's global generator).
        grad_output: the output gradient ``(S, batch, n)`` itself, instead of a draw.

    Returns:
        A :class:`StackStats`: population standard deviations over the batch and the
        units, computed in the weights' dtype and returned as float64 arrays.
    """
    run = stack_passes(weights, activation, inputs, generator=generator,
                       grad_output=grad_output)
    std = lambda t: t.flatten(1).std(1, correction=0).double()  # noqa: E731 - per member
    column = lambda ts: torch.stack(ts, dim=1).numpy()  # noqa: E731
    return StackStats(
        forward=column([std(s) for s in run.states]),
        backward=column([std(g) for g in run.grads]),
        preact=column([std(z) for z in run.preacts]),
        rms_slope=column([s.square().flatten(1).mean(1).sqrt().double()
                          for s in run.slopes]))
