"""Residual streams: branch outputs, the unrolled sum and branch Jacobians (lessons 11-12).

A residual :class:`~gradflowkit.nets.DeepMLP` computes ``x_{i+1} = λ x_i + s F(x_i)`` in
block ``i`` (``λ`` = ``shortcut_scale``, ``s`` = ``branch_scale``). Unrolled from block
``l`` to a later state ``k`` (He et al. 2016, "Identity mappings", eqs. 4 and 8):

    x_k = λ^(k-l) x_l + Σ_{i=l}^{k-1} λ^(k-1-i) s F(x_i).

Indices here are 0-based like ``model.blocks``: ``states[i]`` is the input of
``blocks[i]`` and ``states[-1]`` the last block's output.
"""

from __future__ import annotations

import torch

from .jacobians import module_jacobian
from .nets import DeepMLP
from .validation import check_int, check_tensor


def _check_residual(model: DeepMLP) -> None:
    if not isinstance(model, DeepMLP):
        raise TypeError(f"model must be a DeepMLP, got {type(model).__name__}")
    if not model.config.residual:
        raise ValueError("model is not residual; build it with DeepMLP(..., residual=True)")


def branch_outputs(model: DeepMLP, x: torch.Tensor) -> tuple[list[torch.Tensor],
                                                               list[torch.Tensor]]:
    """The states of a residual net's stream and what each branch adds to it.

    Args:
        model: a residual :class:`~gradflowkit.nets.DeepMLP`.
        x: a batch of inputs, shape ``(batch, in_features)``.

    Returns:
        ``(states, branches)``: ``states = [x_0, …, x_D]`` as from ``model.hidden_states``
        and ``branches[i] = s F(x_i)``, the scaled branch output of ``blocks[i]``, so that
        ``states[i + 1] = λ states[i] + branches[i]``. Computed without autograd.
    """
    _check_residual(model)
    check_tensor("x", x, ndim=2)
    with torch.no_grad():
        states = model.hidden_states(x)
        branches = [block.branch_scale * block.branch(xi)
                    for block, xi in zip(model.blocks, states)]
    return states, branches


def unrolled_states(states: list[torch.Tensor], branches: list[torch.Tensor], start: int,
                    shortcut_scale: float = 1.0) -> list[torch.Tensor]:
    """The stream rebuilt from ``states[start]`` and the branch outputs alone.

    Args:
        states: ``[x_0, …, x_D]`` from :func:`branch_outputs`.
        branches: the branch outputs from :func:`branch_outputs`.
        start: the block ``l`` to unroll from, ``0 <= l <= D``.
        shortcut_scale: ``λ`` of the net (1 for the plain identity shortcut).

    Returns:
        ``[x̂_l, x̂_{l+1}, …, x̂_D]`` with ``x̂_k = λ^(k-l) x_l + Σ_{i=l}^{k-1} λ^(k-1-i)
        branches[i]``. The branch outputs are summed first and ``x_l`` added last, so
        the result is computed independently of the forward recursion (its rounding
        differs).
    """
    check_int("start", start, minimum=0)
    if len(states) != len(branches) + 1:
        raise ValueError(f"need one more state than branches, got {len(states)} states and "
                         f"{len(branches)} branches")
    if start >= len(states):
        raise ValueError(f"start must be at most {len(states) - 1}, got {start}")
    lam = float(shortcut_scale)
    out = [states[start]]
    for k in range(start + 1, len(states)):   # the branch sum first, then add x_l to it
        summed = torch.stack([lam ** (k - 1 - i) * branches[i] for i in range(start, k)])
        out.append(lam ** (k - start) * states[start] + summed.sum(dim=0))
    return out


def branch_jacobians(model: DeepMLP, x: torch.Tensor) -> list[torch.Tensor]:
    """Jacobian of each scaled branch ``s F_i`` at its input along one forward pass.

    Args:
        model: a residual :class:`~gradflowkit.nets.DeepMLP` (no batch norm in training mode).
        x: the input of the first block, one vector of shape ``(width,)``.

    Returns:
        ``[A_0, A_1, …]`` with ``A_i = s ∂F_i/∂x_i``; block ``i``'s Jacobian is
        ``λ I + A_i``.
    """
    _check_residual(model)
    check_tensor("x", x, ndim=1)
    states, _ = branch_outputs(model, x.unsqueeze(0))
    return [module_jacobian(lambda v, b=block: b.branch_scale * b.branch(v), xi[0])
            for block, xi in zip(model.blocks, states)]


def branch_sum_jacobian(model: DeepMLP, x_start: torch.Tensor, start: int,
                        stop: int | None = None) -> torch.Tensor:
    """Jacobian with respect to ``x_l`` of the summed branch outputs ``Σ_{i=l}^{k-1} s F(x_i)``.

    The later states ``x_i`` are run forward from ``x_l`` through ``blocks[l:k]``, so the
    sum depends on ``x_l`` through every branch (He et al. 2016, "Identity mappings", eq. 5).

    Args:
        model: a residual :class:`~gradflowkit.nets.DeepMLP`.
        x_start: ``x_l``, one vector of shape ``(width,)``.
        start: ``l``, the block whose input is ``x_start``.
        stop: ``k``, one past the last block summed (default: all blocks, ``D``).

    Returns:
        The ``(width, width)`` Jacobian ``∂/∂x_l Σ_{i=l}^{k-1} s F(x_i)``.
    """
    _check_residual(model)
    check_tensor("x_start", x_start, ndim=1)
    depth = len(model.blocks)
    stop = depth if stop is None else stop
    check_int("start", start, minimum=0)
    check_int("stop", stop, minimum=start + 1)
    if stop > depth:
        raise ValueError(f"stop must be at most {depth}, got {stop}")

    def summed(v: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(v)
        for block in model.blocks[start:stop]:
            branch = block.branch_scale * block.branch(v)
            total = total + branch
            v = block.shortcut_scale * v + branch
        return total

    return module_jacobian(summed, x_start)


def stream_norms(model: DeepMLP, x: torch.Tensor) -> list[float]:
    """Root-mean-square over the batch of ``‖x_i‖`` for every state of a net's stream.

    Works for plain and residual nets alike.

    Args:
        model: a :class:`~gradflowkit.nets.DeepMLP`.
        x: a batch of inputs, shape ``(batch, in_features)``.

    Returns:
        ``depth + 1`` floats, ``sqrt(mean_batch ‖x_i‖²)`` for ``i = 0 … D``.
    """
    check_tensor("x", x, ndim=2)
    with torch.no_grad():
        return [torch.linalg.vector_norm(s, dim=1, dtype=torch.float64).pow(2).mean()
                .sqrt().item() for s in model.hidden_states(x)]
