"""Jacobians of layers and their products; singular values (lessons 1, 3, 6, 12).

Backpropagation multiplies the loss gradient by the transposed Jacobians of the layers,
``∂L/∂x_l = ∂L/∂x_{D+1} · J_D ⋯ J_l`` with ``J_i = ∂x_{i+1}/∂x_i``. These helpers build
the ``J_i`` explicitly (small widths only: a Jacobian is ``width × width``), so that the
lessons can check autograd against the product and look at its singular values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .activations import derivative, make_activation
from .validation import check_tensor, check_weight_stack


def dense_layer_jacobian(weight: torch.Tensor, pre_activation: torch.Tensor,
                         activation: str) -> torch.Tensor:
    """Closed-form Jacobian of ``x ↦ f(W x + b)`` at one input: ``diag(f'(z)) W``.

    Args:
        weight: ``W``, shape ``(n_out, n_in)``.
        pre_activation: ``z = W x + b`` at the input, shape ``(n_out,)``.
        activation: the name of ``f`` (see :data:`gradflowkit.activations.ACTIVATIONS`).

    Returns:
        The ``(n_out, n_in)`` Jacobian.
    """
    check_tensor("weight", weight, ndim=2)
    check_tensor("pre_activation", pre_activation, ndim=1)
    if pre_activation.shape[0] != weight.shape[0]:
        raise ValueError(f"pre_activation has {pre_activation.shape[0]} entries but weight "
                         f"has {weight.shape[0]} rows; they must match")
    return derivative(activation, pre_activation)[:, None] * weight


def module_jacobian(module: Callable[[torch.Tensor], torch.Tensor],
                    x: torch.Tensor) -> torch.Tensor:
    """Jacobian of ``module`` at one input vector ``x``, by autograd.

    Args:
        module: a function or module mapping a ``(n,)`` vector (as a batch of one) to a vector.
        x: the point, shape ``(n,)``.

    Returns:
        The ``(m, n)`` Jacobian ``∂module(x)/∂x``.
    """
    check_tensor("x", x, ndim=1)
    if isinstance(module, nn.Module) and module.training and _has_batch_norm(module):
        raise ValueError("module has BatchNorm in training mode, whose output for one "
                         "input depends on the batch; call module.eval() first")
    fn = lambda v: module(v.unsqueeze(0)).squeeze(0)  # noqa: E731 - a batch of one
    return torch.autograd.functional.jacobian(fn, x)


def block_jacobians(blocks: Sequence[Callable[[torch.Tensor], torch.Tensor]],
                    x: torch.Tensor) -> list[torch.Tensor]:
    """Jacobian of each block along the forward pass that starts at ``x``.

    Args:
        blocks: callables applied in order (e.g. ``model.blocks`` of a ``DeepMLP``).
        x: the input of the first block, shape ``(n,)``.

    Returns:
        ``[J_0, J_1, …]`` with ``J_i = ∂x_{i+1}/∂x_i`` evaluated at that pass's ``x_i``.
    """
    jacobians = []
    for i, block in enumerate(blocks):  # before the forward pass, which would fail less clearly
        if isinstance(block, nn.Module) and block.training and _has_batch_norm(block):
            raise ValueError(f"blocks[{i}] has BatchNorm in training mode, whose output for "
                             "one input depends on the batch; call model.eval() first")
    with torch.no_grad():
        xs = [x]
        for block in blocks:
            xs.append(block(xs[-1].unsqueeze(0)).squeeze(0))
    for block, xi in zip(blocks, xs):
        jacobians.append(module_jacobian(block, xi.detach()))
    return jacobians


def chain(jacobians: Sequence[torch.Tensor]) -> torch.Tensor:
    """Product ``J_{n-1} ⋯ J_1 J_0`` of Jacobians listed in forward order.

    Args:
        jacobians: ``[J_0, J_1, …]``, each ``(n_{i+1}, n_i)``.

    Returns:
        The Jacobian of the whole chain, ``∂x_n/∂x_0``.
    """
    if len(jacobians) == 0:
        raise ValueError("jacobians is empty; pass at least one matrix")
    result = jacobians[0]
    for i, j in enumerate(jacobians[1:], start=1):
        if j.shape[1] != result.shape[0]:
            raise ValueError(f"jacobians[{i}] has shape {tuple(j.shape)} but the product so "
                             f"far has {result.shape[0]} rows; shapes must chain")
        result = j @ result
    return result


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values of ``matrix``, largest first (computed in float64).

    Args:
        matrix: a 2-D tensor.

    Returns:
        A 1-D float64 tensor of ``min(m, n)`` singular values.
    """
    check_tensor("matrix", matrix, ndim=2)
    return torch.linalg.svdvals(matrix.double())


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def stack_jacobian(weights: torch.Tensor, activation: str, x: torch.Tensor) -> torch.Tensor:
    """Input-output Jacobian of each of ``S`` nets ``x ↦ f(W_L ⋯ f(W_1 x))`` at one input.

    The product ``∏_l diag(f'(z_l)) W_l`` of the closed-form layer Jacobians
    (:func:`dense_layer_jacobian`), for a stack of nets without biases, all at once
    (lesson 6). With ``activation="identity"`` it is the plain product ``W_L ⋯ W_1``.

    Args:
        weights: ``(S, D, n, n)``, layer 1 first.
        activation: the name of ``f``.
        x: ``(n,)`` shared by the members, or ``(S, n)``: the point of each member.

    Returns:
        ``(S, n, n)``: ``∂x_{D+1}/∂x_1`` of every member, in the weights' dtype.
    """
    members, depth, n_in = check_weight_stack(weights)
    check_tensor("x", x)
    x = x.to(weights.dtype)
    if x.ndim == 1:
        x = x.expand(members, -1)
    if x.shape != (members, n_in):
        raise ValueError(f"x must have shape ({n_in},) or ({members}, {n_in}), got "
                         f"{tuple(x.shape)}")
    f = make_activation(activation)
    product = torch.eye(n_in, dtype=weights.dtype).expand(members, -1, -1)
    with torch.no_grad():
        for layer in range(depth):
            w = weights[:, layer]
            z = torch.bmm(w, x.unsqueeze(-1)).squeeze(-1)
            product = torch.bmm(derivative(activation, z).unsqueeze(-1) * w, product)
            x = f(z)
    return product
