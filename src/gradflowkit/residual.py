"""Residual streams: branch outputs, the unrolled sum and branch Jacobians (lessons 11-13).

A residual :class:`~gradflowkit.nets.DeepMLP` computes ``x_{i+1} = λ x_i + s F(x_i)`` in
block ``i`` (``λ`` = ``shortcut_scale``, ``s`` = ``branch_scale``). Unrolled from block
``l`` to a later state ``k`` (He et al. 2016, "Identity mappings", eq. 4 for ``λ = 1`` and
eq. 7 for a scaled shortcut, where the paper folds the factors ``λ`` into ``F``):

    x_k = λ^(k-l) x_l + Σ_{i=l}^{k-1} λ^(k-1-i) s F(x_i).

The sum needs the after-addition map to be the identity: with the ReLU after the addition
of He et al. (2015), ``x_{i+1} = relu(x_i + F(x_i))``, it fails
(:func:`post_relu_outputs`). For ensembles (:class:`~gradflowkit.ensemble.EnsembleMLP`),
:func:`member_stream_norms` and :func:`member_signal_stats` measure every member's stream
and backward signal in one pass, and :func:`reconfigure` turns one built ensemble into a
shallower one, or one with other shortcut or branch scales, without drawing new weights.

Indices here are 0-based like ``model.blocks``: ``states[i]`` is the input of
``blocks[i]`` and ``states[-1]`` the last block's output.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .ensemble import EnsembleMLP, StackedBatchNorm, StackedLayerNorm
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
        branches = [block.scaled_branch(xi)
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
    return [module_jacobian(lambda v, b=block: b.scaled_branch(v), xi[0])
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
            branch = block.scaled_branch(v)
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


def post_relu_outputs(model: DeepMLP, x: torch.Tensor) -> tuple[list[torch.Tensor],
                                                                  list[torch.Tensor]]:
    """The stream of the original ResNet block, with a ReLU **after** the addition.

    He et al. (2015) compute ``x_{i+1} = relu(λ x_i + s F(x_i))``; the book's nets (and He
    et al. 2016's identity form) leave out that ReLU. This runs ``model``'s blocks in the
    2015 form, to show what the after-addition ReLU does to the unrolled sum.

    Args:
        model: a residual :class:`~gradflowkit.nets.DeepMLP` (its branches are reused).
        x: a batch of inputs, shape ``(batch, in_features)``.

    Returns:
        ``(states, branches)`` as in :func:`branch_outputs`, but with
        ``states[i + 1] = relu(λ states[i] + branches[i])``. Computed without autograd.
    """
    _check_residual(model)
    check_tensor("x", x, ndim=2)
    with torch.no_grad():
        h = model.stem(x) if model.stem is not None else x
        states, branches = [h], []
        for block in model.blocks:
            branches.append(block.scaled_branch(h))
            h = torch.relu(block.shortcut_scale * h + branches[-1])
            states.append(h)
    return states, branches


def _check_ensemble(model: EnsembleMLP) -> None:
    if not isinstance(model, EnsembleMLP):
        raise TypeError(f"model must be an EnsembleMLP, got {type(model).__name__}")


def member_stream_norms(model: EnsembleMLP, x: torch.Tensor) -> np.ndarray:
    """:func:`stream_norms` of every member of an ensemble, in one forward pass.

    Args:
        model: an :class:`~gradflowkit.ensemble.EnsembleMLP` (plain or residual).
        x: inputs ``(batch, features)`` shared by the members, or ``(S, batch, features)``.

    Returns:
        Float64 array ``(S, depth + 1)``: ``sqrt(mean_batch ‖x_i‖²)`` of member ``s`` in
        row ``s``.
    """
    _check_ensemble(model)
    with torch.no_grad():
        states = model.hidden_states(x)
        return torch.stack([torch.linalg.vector_norm(h, dim=2, dtype=torch.float64)
                            .pow(2).mean(1).sqrt() for h in states], dim=1).numpy()


class MemberSignalStats(NamedTuple):
    """Per-member, per-layer statistics of an ensemble's signals; each ``(S, depth + 1)``."""

    forward: np.ndarray      # population std of x_l over the batch and the units
    backward: np.ndarray     # population std of ∂L/∂x_l; the last column is the seed's
    mean_square: np.ndarray  # mean of x_l² over the batch and the units


def member_signal_stats(model: EnsembleMLP, inputs: torch.Tensor, *,
                        generator: torch.Generator | None = None,
                        grad_output: torch.Tensor | None = None) -> MemberSignalStats:
    """:func:`~gradflowkit.propagation.signal_stats` for every member of an ensemble.

    The backward pass starts at the last block's output (the head is not used) with a
    standard-normal gradient: member ``s`` gets the ``s``-th ``(batch, width)`` draw from
    ``generator``, so member 0 sees what ``signal_stats`` would with the same generator.

    Args:
        model: an :class:`~gradflowkit.ensemble.EnsembleMLP`.
        inputs: ``(batch, features)`` shared by the members, or ``(S, batch, features)``.
        generator: random generator of the output gradients (default: torch's global one).
        grad_output: the output gradients ``(S, batch, width)`` instead of a random draw.

    Returns:
        A :class:`MemberSignalStats` (float64 arrays).
    """
    _check_ensemble(model)
    inputs = model._inputs(inputs).detach().requires_grad_(True)
    states = model.hidden_states(inputs)
    out = states[-1]
    if grad_output is None:
        grad_output = torch.stack([torch.randn(out.shape[1:], generator=generator,
                                               dtype=out.dtype)
                                   for _ in range(model.n_members)])
    check_tensor("grad_output", grad_output, ndim=3)
    if grad_output.shape != out.shape:
        raise ValueError(f"grad_output must have the output's shape {tuple(out.shape)}, "
                         f"got {tuple(grad_output.shape)}")
    grads = list(torch.autograd.grad(out, states[:-1], grad_outputs=grad_output,
                                     allow_unused=True))
    grads = [torch.zeros_like(h) if g is None else g
             for h, g in zip(states, grads)] + [grad_output]

    def per_member(tensors, fn):
        return torch.stack([fn(t.detach().double().flatten(1)) for t in tensors],
                           dim=1).numpy()

    std = lambda t: t.std(1, correction=0)  # noqa: E731
    return MemberSignalStats(forward=per_member(states, std),
                             backward=per_member(grads, std),
                             mean_square=per_member(states, lambda t: t.pow(2).mean(1)))


def _shallow_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` and its submodules that shares their tensors (own dicts)."""
    new = copy.copy(module)
    new.__dict__ = dict(module.__dict__)
    new._parameters = dict(module._parameters)
    new._buffers = dict(module._buffers)
    new._modules = {k: None if m is None else _shallow_copy(m)
                    for k, m in module._modules.items()}
    return new


def _fresh_norm(norm: str | None, members: int, width: int,
                like: torch.Tensor) -> nn.Module:
    if norm == "batch":
        return StackedBatchNorm(members, width).to(like.dtype)
    if norm == "layer":
        return StackedLayerNorm(members, width).to(like.dtype)
    return nn.Identity()


def reconfigure(model: EnsembleMLP, *, depth: int | None = None,
                branch_scale: float | None = None, shortcut_scale: float | None = None,
                norm: str | None = "unchanged",
                zero_init_last: bool = False) -> EnsembleMLP:
    """The same ensemble with fewer blocks, other scales or norms, or zeroed last layers.

    A :class:`~gradflowkit.nets.DeepMLP` draws its blocks one after the other, and the
    scales ``λ`` and ``s`` and the normalization layers (which start at scale 1 and shift
    0) draw nothing. So for an ensemble built with
    :meth:`~gradflowkit.ensemble.EnsembleMLP.build`, changing ``depth``, the scales and
    ``norm`` gives exactly the ensemble ``build`` would give for the same seeds and
    options, without building new nets (explorer frames, cures of one stack).
    ``zero_init_last`` zeroes the last branch layers and keeps every other weight;
    a fresh build with ``zero_init_last=True`` has other first-layer weights (its zero
    initialization still consumes random numbers), from the same distribution.

    The result **shares** its weight tensors with ``model`` (only the zeroed layers are
    new), so it is meant for measuring; ``copy.deepcopy`` it before training either.

    Args:
        model: an :class:`~gradflowkit.ensemble.EnsembleMLP` without a head when ``depth``
            changes (a head is drawn after the last block).
        depth: keep the first ``depth`` blocks (default: all).
        branch_scale: new ``s`` of every block (default: unchanged).
        shortcut_scale: new ``λ`` of every block (default: unchanged).
        norm: ``None``, ``"batch"`` or ``"layer"``: a fresh normalization layer in every
            block, in the model's training mode (default: unchanged).
        zero_init_last: zero the weights and biases of every branch's last linear layer.

    Returns:
        A new ensemble; ``model`` is not changed.
    """
    _check_ensemble(model)
    cfg = model.config
    depth = cfg.depth if depth is None else check_int("depth", depth, minimum=1)
    if depth > cfg.depth:
        raise ValueError(f"depth must be at most the ensemble's {cfg.depth}, got {depth}")
    if depth != cfg.depth and model.head is not None:
        raise ValueError("cannot drop blocks of a net with a head: the head's weights are "
                         "drawn after the last block; build the shallower ensemble instead")
    changes = {"depth": depth}
    if branch_scale is not None:
        changes["branch_scale"] = float(branch_scale)
    if shortcut_scale is not None:
        changes["shortcut_scale"] = float(shortcut_scale)
    if zero_init_last:
        changes["zero_init_last"] = True
    if norm != "unchanged":
        changes["norm"] = norm
    new_cfg = dataclasses.replace(cfg, **changes).validate()
    new = copy.copy(model)
    new.__dict__ = dict(model.__dict__)
    new._modules = {k: None if m is None else (m if k == "blocks" else _shallow_copy(m))
                    for k, m in model._modules.items()}
    new.blocks = nn.ModuleList(_shallow_copy(b) for b in list(model.blocks)[:depth])
    new.config = new_cfg
    for block in new.blocks:
        block.branch_scale, block.shortcut_scale = new_cfg.branch_scale, new_cfg.shortcut_scale
        if norm != "unchanged":
            block.norm = _fresh_norm(new_cfg.norm, model.n_members, cfg.width,
                                     block.linear.weight).train(model.training)
        if zero_init_last:
            last = block.linear2 if block.linear2 is not None else block.linear
            last.weight = nn.Parameter(torch.zeros_like(last.weight))
            if last.bias is not None:
                last.bias = nn.Parameter(torch.zeros_like(last.bias))
    return new
