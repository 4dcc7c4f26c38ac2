"""The path view of a residual net: path lengths and the gradient each length carries (lesson 15).

A residual net of ``n`` blocks ``x_{i+1} = x_i + F_i(x_i)`` has, at a point, the input-output
Jacobian ``(I + J_{n-1}) ⋯ (I + J_1)(I + J_0)`` with ``J_i`` the Jacobian of branch ``F_i``.
Multiplied out, it is a sum of ``2^n`` products, one per subset of the blocks: a **path**
that goes through the branches in the subset and skips the others (Veit et al. 2016). A
path's **length** is the number of branches it goes through; ``C(n, k)`` paths have length
``k``. The sum of all length-``k`` products is the coefficient of ``t^k`` in
``Π (I + t J_i)``, which :func:`path_length_terms` computes by one pass over the blocks.
"""

from __future__ import annotations

from contextlib import contextmanager
from math import comb
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from .ensemble import StackedBatchNorm
from .validation import check_int


def path_length_counts(n: int) -> np.ndarray:
    """``C(n, k)`` for ``k = 0..n``: how many of the ``2^n`` paths have length ``k``."""
    check_int("n", n, minimum=0)
    return np.array([comb(n, k) for k in range(n + 1)], dtype=np.int64)


def _check_jacobians(jacobians: Sequence[torch.Tensor]) -> int:
    if len(jacobians) == 0:
        raise ValueError("jacobians must hold at least one matrix")
    w = jacobians[0].shape[-1]
    for i, J in enumerate(jacobians):
        if J.ndim != 2 or J.shape != (w, w):
            raise ValueError(f"jacobians[{i}] must be a square ({w}, {w}) matrix, "
                             f"got shape {tuple(J.shape)}")
    return w


def path_length_terms(jacobians: Sequence[torch.Tensor],
                      grad: torch.Tensor | None = None) -> torch.Tensor:
    """The sum over all paths of each length: coefficients of ``Π (I + t J_i)`` in ``t``.

    Args:
        jacobians: branch Jacobians ``[J_0, …, J_{n-1}]`` in forward order, each ``(w, w)``.
        grad: optional row vector(s) ``∂L/∂x_n`` at the output, shape ``(w,)`` or ``(b, w)``.

    Returns:
        Without ``grad``: ``E`` of shape ``(n + 1, w, w)`` with ``E[k]`` the sum of the
        ``C(n, k)`` ordered products of ``k`` distinct ``J_i`` (later blocks on the left),
        so ``E.sum(0)`` is the full product. With ``grad``: ``grad @ E[k]`` for each ``k``,
        shape ``(n + 1, *grad.shape)``, the part of ``∂L/∂x_0`` carried by length-``k`` paths.
    """
    w = _check_jacobians(jacobians)
    n = len(jacobians)
    if grad is None:
        # forward order: E_k <- E_k + J_i E_{k-1} (block i multiplies on the left)
        J0 = jacobians[0]
        terms = torch.zeros(n + 1, w, w, dtype=J0.dtype)
        terms[0] = torch.eye(w, dtype=J0.dtype)
        for i, J in enumerate(jacobians):
            terms[1:i + 2] = terms[1:i + 2] + J @ terms[:i + 1]
        return terms
    if grad.shape[-1] != w or grad.ndim not in (1, 2):
        raise ValueError(f"grad must have shape ({w},) or (batch, {w}), got {tuple(grad.shape)}")
    # backward order: v_k <- v_k + v_{k-1} J_i, starting from the last block
    terms = torch.zeros(n + 1, *grad.shape, dtype=grad.dtype)
    terms[0] = grad
    for done, J in enumerate(reversed(jacobians)):
        terms[1:done + 2] = terms[1:done + 2] + terms[:done + 1] @ J
    return terms


def path_gradients(jacobians: Sequence[torch.Tensor],
                   grad: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """The gradient each of the ``2^n`` paths carries to the input, one row per path.

    Args:
        jacobians: branch Jacobians ``[J_0, …, J_{n-1}]`` in forward order, each ``(w, w)``.
        grad: the row vector ``∂L/∂x_n`` at the output, shape ``(w,)``.

    Returns:
        ``(lengths, grads)``: ``grads[p] = grad · Π_{i in p} J_i`` (the path's factors in
        backward order), shape ``(2^n, w)``, and ``lengths[p]`` the path's length. Path ``p``
        goes through branch ``i`` when bit ``i`` of ``p`` is set. Cost: ``2^(n+1)`` products.
    """
    w = _check_jacobians(jacobians)
    if grad.shape != (w,):
        raise ValueError(f"grad must have shape ({w},), got {tuple(grad.shape)}")
    n = len(jacobians)
    if n > 16:
        raise ValueError(f"2^{n} paths are too many to enumerate; use path_length_terms")
    grads = grad.unsqueeze(0)                    # paths through the blocks after i
    ids = np.zeros(1, dtype=np.int64)
    for i in reversed(range(n)):
        grads = torch.cat([grads, grads @ jacobians[i]])   # skip branch i, or go through it
        ids = np.concatenate([ids, ids | (1 << i)])
    order = np.argsort(ids)
    lengths = np.array([bin(p).count("1") for p in range(2 ** n)], dtype=np.int64)
    return lengths, grads[torch.as_tensor(order)]


class PathProfile(NamedTuple):
    """Gradient per path length ``k = 0..n``, as in Veit et al. (2016), Fig. 6."""

    count: np.ndarray       # C(n, k), number of paths of length k
    per_path: np.ndarray    # mean over those paths of ‖gradient of one path‖
    total: np.ndarray       # count * per_path: the gradient magnitude length k carries
    term: np.ndarray        # ‖sum of the length-k paths' gradients‖ (≤ total)


def path_profile(jacobians: Sequence[torch.Tensor], grad: torch.Tensor) -> PathProfile:
    """Per-length gradient magnitudes of one input, from all ``2^n`` paths.

    Args:
        jacobians: branch Jacobians in forward order, each ``(w, w)``, ``n <= 16`` of them.
        grad: ``∂L/∂x_n`` at the output, shape ``(w,)``.
    """
    lengths, grads = path_gradients(jacobians, grad)
    norms = grads.norm(dim=1).cpu().numpy()
    n = len(jacobians)
    count = path_length_counts(n)
    per_path = np.array([norms[lengths == k].mean() for k in range(n + 1)])
    term = path_length_terms(jacobians, grad).norm(dim=-1).cpu().numpy()
    return PathProfile(count, per_path, count * per_path, term)


def central_range(weights: np.ndarray, share: float = 0.9) -> tuple[int, int]:
    """The shortest index range ``[lo, hi]`` whose weights sum to at least ``share``.

    Ties go to the range with the larger sum, then the smaller ``lo``.
    """
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 1 or weights.size == 0 or np.any(weights < 0):
        raise ValueError("weights must be a non-empty 1-D array of non-negative numbers")
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    total, n = weights.sum(), weights.size
    best = None
    for lo in range(n):
        for hi in range(lo, n):
            s = weights[lo:hi + 1].sum()
            if s >= share * total * (1 - 1e-12):
                key = (hi - lo, -s, lo)
                if best is None or key < best[0]:
                    best = (key, (lo, hi))
                break
    return best[1]


@contextmanager
def skipping(model: nn.Module, dropped: Sequence[int]) -> Iterator[nn.Module]:
    """Temporarily replace ``model.blocks[i]`` for ``i`` in ``dropped`` by the identity.

    For a residual block ``x + F(x)`` this deletes the branch; for a plain (square) layer it
    deletes the layer, passing its input on unchanged. The blocks are restored on exit.
    """
    blocks = model.blocks
    saved = {}
    for i in dropped:
        check_int("dropped index", i, minimum=0)
        if i >= len(blocks):
            raise IndexError(f"block {i} does not exist: the model has {len(blocks)} blocks")
        saved[i] = blocks[i]
    try:
        for i in saved:
            blocks[i] = nn.Identity()
        yield model
    finally:
        for i, block in saved.items():
            blocks[i] = block


def _has_training_batch_norm(block: nn.Module) -> bool:
    return any(isinstance(m, (nn.modules.batchnorm._BatchNorm, StackedBatchNorm))
               and m.training for m in block.modules())


def row_jacobians(blocks: Sequence[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """Jacobian of each block at every row of a batch, for many inputs (and members) at once.

    The batched counterpart of :func:`~gradflowkit.jacobians.block_jacobians`: the blocks
    must act on each row separately (no batch norm in training mode), as the blocks of a
    :class:`~gradflowkit.nets.DeepMLP` or an :class:`~gradflowkit.ensemble.EnsembleMLP` in
    eval mode or without normalization do. Each row is repeated ``w`` times and one
    backward pass per block gives all ``w`` rows of every Jacobian.

    Args:
        blocks: callables applied in order, each mapping ``(..., batch, w)`` to
            ``(..., batch, w)`` (e.g. ``model.blocks``).
        x: the input of the first block, ``(..., batch, w)``: ``(batch, w)`` for a
            ``DeepMLP``, ``(S, batch, w)`` for an ensemble.

    Returns:
        ``[J_0, J_1, …]``, each ``(..., batch, w, w)`` with
        ``J_i[..., b, j, k] = ∂x_{i+1}[..., b, j] / ∂x_i[..., b, k]`` along the forward pass
        that starts at ``x``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError(f"x must be a tensor of shape (..., batch, width), got "
                         f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    for i, block in enumerate(blocks):
        if isinstance(block, nn.Module) and _has_training_batch_norm(block):
            raise ValueError(f"blocks[{i}] has batch norm in training mode, whose output for "
                             "one row depends on the batch; call model.eval() first")
    *lead, batch, w = x.shape
    with torch.no_grad():
        states = [x.detach()]
        for block in blocks:
            states.append(block(states[-1]))
    seed = torch.eye(w, dtype=x.dtype).expand(*lead, batch, w, w).reshape(*lead, batch * w, w)
    jacobians = []
    for i, (block, xi) in enumerate(zip(blocks, states)):
        rep = xi.unsqueeze(-2).expand(*lead, batch, w, w).reshape(*lead, batch * w, w)
        rep = rep.clone().requires_grad_(True)
        out = block(rep)
        if out.shape != rep.shape:
            raise ValueError(f"blocks[{i}] must keep the width {w}; it maps "
                             f"{tuple(rep.shape)} to {tuple(out.shape)}")
        (rows,) = torch.autograd.grad(out, rep, grad_outputs=seed)   # row j = e_jᵀ J
        jacobians.append(rows.reshape(*lead, batch, w, w))
    return jacobians


def path_profiles(jacobians: Sequence[torch.Tensor], grad: torch.Tensor) -> PathProfile:
    """:func:`path_profile` for a batch of inputs (and members) at once.

    Args:
        jacobians: branch Jacobians in forward order, each ``(..., w, w)`` (leading axes as
            ``grad``'s, e.g. ``(S, batch)``), ``n <= 16`` of them.
        grad: ``∂L/∂x_n`` at the output, ``(..., w)``.

    Returns:
        A :class:`PathProfile` whose ``per_path``, ``total`` and ``term`` have shape
        ``(..., n + 1)`` (one profile per leading index); ``count`` is ``(n + 1,)``.
        Entry ``[..., k]`` equals :func:`path_profile` of that input.
    """
    n = len(jacobians)
    if n == 0:
        raise ValueError("jacobians must hold at least one matrix")
    if n > 16:
        raise ValueError(f"2^{n} paths are too many to enumerate; use path_length_terms")
    w = grad.shape[-1]
    lead = grad.shape[:-1]
    for i, J in enumerate(jacobians):
        if J.shape != (*lead, w, w):
            raise ValueError(f"jacobians[{i}] must have shape {(*lead, w, w)} to match grad "
                             f"{tuple(grad.shape)}, got {tuple(J.shape)}")
    grads = grad.unsqueeze(-2)                       # (..., paths so far, w)
    ids = np.zeros(1, dtype=np.int64)
    terms = [grad]                                    # terms[k]: sum of length-k paths
    for done, i in enumerate(reversed(range(n))):
        J = jacobians[i]
        grads = torch.cat([grads, grads @ J], dim=-2)   # skip branch i, or go through it
        ids = np.concatenate([ids, ids | (1 << i)])
        through = [(t.unsqueeze(-2) @ J).squeeze(-2) for t in terms]
        terms = [terms[0]] + [terms[k] + through[k - 1] for k in range(1, done + 1)] \
            + [through[done]]
    lengths = np.array([bin(int(p)).count("1") for p in ids], dtype=np.int64)
    norms = torch.linalg.vector_norm(grads, dim=-1).cpu().numpy()      # (..., 2^n)
    count = path_length_counts(n)
    per_path = np.stack([norms[..., lengths == k].mean(-1) for k in range(n + 1)], axis=-1)
    term = torch.stack([torch.linalg.vector_norm(t, dim=-1) for t in terms], dim=-1)
    return PathProfile(count, per_path, count * per_path, term.cpu().numpy())
