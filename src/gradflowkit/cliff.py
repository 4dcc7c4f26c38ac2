"""Pascanu's cliff: a one-unit recurrent net, its loss surface, and descent on it (lesson 5).

The model is the one-unit net of Pascanu, Mikolov & Bengio (2013, Fig. 6), in their
parametrization ``x_t = w σ(x_{t-1}) + b`` for ``t = 1 .. T``, started at ``x_0``, with the
loss ``L(w, b) = (x_T - y)^2``. (With ``h_t = σ(x_t)`` this is the familiar
``h_t = σ(w h_{t-1} + b)``.) For ``w > 4`` the map has two stable fixed points, and a thin
band of ``(w, b)`` separates the starts that end near one from those that end near the
other: there ``x_T`` changes by about ``w`` over a tiny change of the parameters, a wall in
the loss surface whose gradient is huge.

Everything is NumPy float64 and vectorized: ``w`` and ``b`` broadcast, so one call computes
a whole grid, and :func:`descend` runs many descent paths (one per threshold) at once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from .clipping import EPS
from .validation import check_float, check_int


class CliffTask(NamedTuple):
    """The one-unit net and its target."""

    steps: int = 50       # T, time steps the unit runs
    x0: float = 0.5       # initial state x_0
    target: float = 0.7   # y, the wanted x_T


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warning for large |x|


def cliff_loss_and_grad(w: ArrayLike, b: ArrayLike,
                        task: CliffTask = CliffTask()) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """Loss ``(x_T - y)^2`` and its gradient, by forward-mode differentiation.

    The sensitivities follow the recursion ``∂x_t/∂w = σ(x_{t-1}) + w σ'(x_{t-1}) ∂x_{t-1}/∂w``
    and ``∂x_t/∂b = 1 + w σ'(x_{t-1}) ∂x_{t-1}/∂b``, with both zero at ``t = 0``.

    Args:
        w: recurrent weight(s); broadcast against ``b``.
        b: bias(es).
        task: the :class:`CliffTask` (default: T = 50, x_0 = 0.5, y = 0.7).

    Returns:
        ``(loss, dL/dw, dL/db)``, float64 arrays of the broadcast shape.
    """
    steps = check_int("task.steps", task.steps, minimum=1)
    w, b = np.broadcast_arrays(np.asarray(w, dtype=np.float64),
                               np.asarray(b, dtype=np.float64))
    x = np.full(w.shape, check_float("task.x0", task.x0))
    dx_dw = np.zeros(w.shape)
    dx_db = np.zeros(w.shape)
    for _ in range(steps):
        s = _sigmoid(x)
        gain = w * s * (1.0 - s)  # ∂x_t/∂x_{t-1}
        dx_dw = s + gain * dx_dw
        dx_db = 1.0 + gain * dx_db
        x = w * s + b
    err = x - check_float("task.target", task.target)
    return err ** 2, 2.0 * err * dx_dw, 2.0 * err * dx_db


def cliff_loss(w: ArrayLike, b: ArrayLike, task: CliffTask = CliffTask()) -> np.ndarray:
    """The loss ``(x_T - y)^2`` alone; see :func:`cliff_loss_and_grad`."""
    return cliff_loss_and_grad(w, b, task)[0]


class DescentPaths(NamedTuple):
    """What :func:`descend` recorded, for ``n`` paths run side by side."""

    points: np.ndarray      # (steps + 1, n, 2): (w, b) before each step and at the end
    losses: np.ndarray      # (steps + 1, n): the loss at each point
    grad_norms: np.ndarray  # (steps, n): ‖∇L‖ before clipping, at each step

    @property
    def step_lengths(self) -> np.ndarray:
        """The distance each step moved the parameters, shape ``(steps, n)``."""
        return np.linalg.norm(np.diff(self.points, axis=0), axis=-1)


def descend(starts: ArrayLike, *, lr: float | ArrayLike, steps: int,
            max_norm: ArrayLike | None = None,
            task: CliffTask = CliffTask()) -> DescentPaths:
    """Gradient descent on the cliff loss, optionally with norm clipping, for many paths.

    Each step is ``θ ← θ - lr · c(g)``, where ``c(g) = g · min(1, τ/(‖g‖ + ε))`` clips the
    gradient's norm to ``τ = max_norm`` as :func:`~gradflowkit.clipping.clip_by_global_norm`
    does (``ε`` = :data:`~gradflowkit.clipping.EPS`). Every step of a clipped path is
    therefore at most ``lr · τ`` long.

    Args:
        starts: ``(2,)`` or ``(n, 2)`` starting points ``(w, b)``.
        lr: learning rate (> 0), or one per path (a 1-D array, broadcast like
            ``max_norm``), so that paths with different rates run in one call.
        steps: number of steps (>= 1).
        max_norm: ``None`` (no clipping, the default), one threshold for all paths, or one
            per path; ``inf`` means no clipping for that path. One start is repeated for
            every threshold (and every learning rate).
        task: the :class:`CliffTask`.

    Returns:
        A :class:`DescentPaths`.
    """
    rate = np.atleast_1d(np.asarray(lr, dtype=np.float64))
    if rate.ndim != 1 or not np.all(np.isfinite(rate) & (rate > 0)):
        raise ValueError(f"lr must be > 0, or a 1-D array of values > 0, got {lr!r}")
    steps = check_int("steps", steps, minimum=1)
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    if starts.ndim != 2 or starts.shape[1] != 2:
        raise ValueError(f"starts must have shape (2,) or (n, 2), got {starts.shape}")
    tau = np.atleast_1d(np.asarray(np.inf if max_norm is None else max_norm,
                                   dtype=np.float64))
    if tau.ndim != 1 or np.any(np.isnan(tau)) or np.any(tau <= 0):
        raise ValueError(f"max_norm must be None, > 0 or a 1-D array of values > 0 "
                         f"(inf for no clipping), got {max_norm!r}")
    n = np.broadcast_shapes((len(starts),), tau.shape, rate.shape)[0]
    p = np.broadcast_to(starts, (n, 2)).copy()
    tau = np.broadcast_to(tau, (n,))
    rate = np.broadcast_to(rate, (n,))
    points, losses, norms = [p.copy()], [], []
    for _ in range(steps):
        loss, gw, gb = cliff_loss_and_grad(p[:, 0], p[:, 1], task)
        g = np.stack([gw, gb], axis=1)
        norm = np.linalg.norm(g, axis=1)
        factor = np.minimum(1.0, tau / (norm + EPS))
        p = p - (rate * factor)[:, None] * g
        points.append(p.copy())
        losses.append(loss)
        norms.append(norm)
    losses.append(cliff_loss(p[:, 0], p[:, 1], task))
    return DescentPaths(np.stack(points), np.stack(losses), np.stack(norms))
