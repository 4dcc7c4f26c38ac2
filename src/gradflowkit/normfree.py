"""Deep residual nets without normalization: Fixup, SkipInit and ReZero (lesson 17).

Each recipe is a set of :class:`~gradflowkit.nets.DeepMLP` options for a residual net of
two-layer branches ``x_{l+1} = x_l + α W2 ReLU(N(W1 x_l))`` (He-initialized, no biases),
and a prediction of what it does to the net at initialization, for wide layers:

- the stream's mean square per unit, ``q_{l+1} = q_l + b_l`` with ``b_l`` the branch's
  (:func:`predicted_stream`);
- the backward signal, ``‖∂L/∂x_l‖² = (1 + a_l) ‖∂L/∂x_{l+1}‖²`` with ``a_l`` the branch
  Jacobian's gain ``E‖J_lᵀ v‖² / ‖v‖²`` (:func:`predicted_backward`).

Unnormalized: ``b_l = 2 q_l`` and ``a_l = 2`` (each He layer doubles a mean square, the ReLU
halves it), so both grow as ``3^l``. Batch norm before the ReLU: the branch forgets the
scale of its input, ``b_l = 1``, so ``q_l = q_0 + l``: linear, not exponential (De & Smith
2020). Its Jacobian divides by the batch standard deviation of ``W1 x_l``, so
``a_l = 1 / v_l`` with ``v_l`` the stream's variance *over the batch* per unit. That grows
more slowly than ``q_l``: of the branch's ``b_l = 1``, a share ``1/π`` is the same for every
example (``W2`` times the ReLU's mean ``1/sqrt(2π)``, squared and doubled), so
``v_l = v_0 + (1 - 1/π) l`` and the backward growth is ``∏ (1 + 1/v_l)``, a power of ``D``
(about ``D^{1.47}``).
Fixup's zeroed last layer and SkipInit's or ReZero's ``α = 0`` make every block the identity:
``b_l = a_l = 0`` exactly.
"""

from __future__ import annotations

import numpy as np

from .validation import check_choice, check_float, check_int

#: The recipes, in the order the lesson shows them.
RECIPES: tuple[str, ...] = ("unnormalized", "batch norm", "Fixup", "SkipInit / ReZero")


def fixup_scale(depth: int, branch_layers: int = 2) -> float:
    """Fixup's rescaling of the branch weights, ``depth ** (-1 / (2 m - 2))``.

    Args:
        depth: number of residual blocks ``L`` (>= 1).
        branch_layers: weight layers per branch ``m`` (>= 2: with one layer Fixup's rule
            has no exponent; default 2, where the scale is ``1/sqrt(L)``).
    """
    depth = check_int("depth", depth, minimum=1)
    m = check_int("branch_layers", branch_layers, minimum=2)
    return float(depth ** (-1.0 / (2 * m - 2)))


def recipe_options(recipe: str, depth: int) -> dict:
    """The :class:`~gradflowkit.nets.DeepMLP` options of ``recipe`` for ``depth`` blocks.

    Every recipe is a residual net of two-layer ReLU branches with He initialization and
    no biases; they differ only in what is listed here. Fixup is its first two rules
    (zero-initialize each branch's last layer, rescale the other branch weights by
    :func:`fixup_scale`); its scalar biases and multipliers are left out, and the linear
    head keeps its Xavier initialization.
    """
    check_choice("recipe", recipe, RECIPES)
    depth = check_int("depth", depth, minimum=1)
    base = dict(residual=True, branch_layers=2, activation="relu", init="he", bias=False)
    extra = {"unnormalized": {},
             "batch norm": {"norm": "batch"},
             "Fixup": {"weight_scale": fixup_scale(depth), "zero_init_last": True},
             "SkipInit / ReZero": {"branch_gain": 0.0}}[recipe]
    return base | extra


def predicted_stream(recipe: str, depth: int, q0: float = 1.0) -> np.ndarray:
    """Mean square per unit of the stream ``x_0 … x_depth`` at initialization (wide nets).

    Args:
        recipe: one of :data:`RECIPES`.
        depth: number of blocks (>= 0).
        q0: mean square of the input per unit (> 0, default 1).

    Returns:
        ``(depth + 1,)`` float64 array ``q_l``.
    """
    check_choice("recipe", recipe, RECIPES)
    depth = check_int("depth", depth, minimum=0)
    q0 = check_float("q0", q0, positive=True)
    blocks = np.arange(depth + 1, dtype=np.float64)
    if recipe == "unnormalized":
        return q0 * 3.0 ** blocks
    if recipe == "batch norm":
        return q0 + blocks
    return np.full(depth + 1, q0)


def predicted_backward(recipe: str, depth: int, q0: float = 1.0) -> np.ndarray:
    """``‖∂L/∂x_l‖² / ‖∂L/∂x_depth‖²`` for ``l = 0 … depth`` at initialization (wide nets).

    For a loss whose gradient at the last block's output does not depend on the net (a
    fixed linear read-out), and an input whose mean over the batch is zero (its variance
    over the batch is then ``q0``): the growth of the backward signal from the output side
    to block ``l``.
    """
    check_choice("recipe", recipe, RECIPES)
    depth = check_int("depth", depth, minimum=0)
    q0 = check_float("q0", q0, positive=True)
    if recipe == "unnormalized":
        gains = np.full(depth, 2.0)
    elif recipe == "batch norm":
        gains = 1.0 / (q0 + (1 - 1 / np.pi) * np.arange(depth))   # 1 / v_l
    else:
        gains = np.zeros(depth)
    growth = np.cumprod((1.0 + gains)[::-1])[::-1]        # product over blocks l .. D-1
    return np.append(growth, 1.0)
