"""Loss-surface slices along filter-normalized random directions (lesson 13).

Li et al. (2018, "Visualizing the loss landscape of neural nets") plot the loss along
``θ + α d₁ (+ β d₂)`` where each random direction ``d`` is **filter-normalized**: ``d`` is
drawn from a standard Gaussian, then every filter of every weight is rescaled so that its
norm equals the norm of the same filter of the weights,

    d_{i,j} ← d_{i,j} / ‖d_{i,j}‖ · ‖θ_{i,j}‖,

(``d_{i,j}`` is filter ``j`` of layer ``i``, as in the paper), and the directions of biases and batch-norm parameters are set to zero (the paper's
"ignore biasbn"). For a fully-connected layer a filter is one row of the weight matrix (the
weights into one unit), so a random step of size ``α = 1`` changes each unit's weights by as
much as their own size, whatever the scale of that layer. This makes slices of different
networks comparable.

For an ensemble (:class:`~gradflowkit.ensemble.EnsembleMLP`, parameters with the member
axis first), :func:`member_filter_normalized_direction` draws one direction per member and
:func:`member_loss_surface` evaluates every member's slice in one pass per grid point
(lesson 13).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .validation import check_tensor

Direction = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor], torch.Tensor]


def filter_normalized_direction(model: nn.Module, *, generator: torch.Generator | None = None,
                                eps: float = 1e-12) -> Direction:
    """A random direction in parameter space, filter-normalized as in Li et al. (2018).

    Args:
        model: any module; every parameter with 2 or more dimensions is a weight whose
            filters are its slices along dimension 0 (rows of a linear layer's weight).
        generator: random generator for the Gaussian draw (default: torch's global one).
        eps: guard against dividing by a zero-norm random row.

    Returns:
        ``{name: tensor}`` with one entry per ``named_parameters()`` entry, same shapes and
        dtypes. Weight rows have the norms of the weight rows (a zero row stays zero);
        1-dimensional parameters (biases, batch-norm scales and shifts) are zero.
    """
    return _filter_normalized(model, 1, generator, eps)


def _filter_normalized(model: nn.Module, lead: int, generator: torch.Generator | None,
                       eps: float) -> Direction:
    """Gaussian directions whose filters (slices over the first ``lead`` axes + 1) have the
    norms of the model's; parameters with ``lead`` or fewer axes get zero directions."""
    direction = {}
    for name, p in model.named_parameters():
        if p.ndim <= lead:
            direction[name] = torch.zeros_like(p, requires_grad=False)
            continue
        w = p.detach()
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype)
        rows_w = w.flatten(lead).norm(dim=lead)
        rows_d = d.flatten(lead).norm(dim=lead)
        scale = (rows_w / rows_d.clamp_min(eps)).reshape(*w.shape[:lead], *([1] * (w.ndim - lead)))
        direction[name] = d * scale
    return direction


@torch.no_grad()
def loss_surface(model: nn.Module, inputs: torch.Tensor, loss_fn: LossFn,
                 directions: Sequence[Direction],
                 coords: Sequence[Sequence[float] | np.ndarray]) -> np.ndarray:
    """The loss at ``θ + Σ_k c_k d_k`` on a grid of coefficients ``c``.

    The model is evaluated in its current mode (in train mode a batch-norm layer uses the
    statistics of ``inputs``). Its parameters and buffers (e.g. running statistics) are
    restored afterwards.

    Args:
        model: the network at the centre point ``θ``.
        inputs: the batch to evaluate the loss on.
        loss_fn: maps the model's output to a scalar loss.
        directions: one or two directions, e.g. from :func:`filter_normalized_direction`.
        coords: one array of coefficients per direction.

    Returns:
        For one direction an array of ``len(coords[0])`` losses; for two, an array of shape
        ``(len(coords[1]), len(coords[0]))`` (rows follow the second direction, as
        ``plt.contour(coords[0], coords[1], Z)`` expects).
    """
    return _surface(model, inputs, lambda out: np.float64(float(loss_fn(out))), directions,
                    coords)


def _surface(model: nn.Module, inputs: torch.Tensor, evaluate, directions: Sequence[Direction],
             coords) -> np.ndarray:
    """``evaluate(model(inputs))`` (an array) at every grid point, parameters restored.

    Returns the values stacked as ``grid shape + value shape``; rows of the grid follow the
    last direction.
    """
    check_tensor("inputs", inputs)
    if len(directions) not in (1, 2) or len(coords) != len(directions):
        raise ValueError("pass one or two directions and one coordinate array per direction")
    params = dict(model.named_parameters())
    for d in directions:
        if set(d) != set(params):
            raise ValueError("a direction must have exactly the model's parameter names")
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    centre = {k: p.detach().clone() for k, p in params.items()}
    grids = np.meshgrid(*[np.asarray(c, dtype=float) for c in reversed(coords)],
                        indexing="ij")[::-1]   # grids[k][row, col]; rows = last direction
    values = []
    try:
        for idx in np.ndindex(grids[0].shape):
            for name, p in params.items():
                p.copy_(centre[name])
                for d, g in zip(directions, grids):
                    p.add_(d[name], alpha=float(g[idx]))
            values.append(np.asarray(evaluate(model(inputs)), dtype=np.float64))
    finally:
        model.load_state_dict(saved)
    return np.stack(values).reshape(*grids[0].shape, *values[0].shape)


def grid_local_minima(z: np.ndarray) -> int:
    """Number of interior points of a 2-D grid lower than all 8 of their neighbours."""
    z = np.asarray(z, dtype=float)
    if z.ndim != 2 or min(z.shape) < 3:
        raise ValueError(f"need a 2-D grid of at least 3 x 3 points, got shape {z.shape}")
    centre = z[1:-1, 1:-1]
    lower = np.ones(centre.shape, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                lower &= centre < z[1 + di:z.shape[0] - 1 + di, 1 + dj:z.shape[1] - 1 + dj]
    return int(lower.sum())


def member_filter_normalized_direction(model: nn.Module, *,
                                       generator: torch.Generator | None = None,
                                       eps: float = 1e-12) -> Direction:
    """One filter-normalized random direction per member of an ensemble.

    As :func:`filter_normalized_direction`, with the member axis first: every parameter with
    3 or more dimensions, ``(S, out, in, …)``, is a stack of weights whose filters are the
    slices ``[s, j]``; parameters with 1 or 2 dimensions (biases and normalization
    parameters, ``(S, width)``) get zero directions.

    Args:
        model: an ensemble such as :class:`~gradflowkit.ensemble.EnsembleMLP`.
        generator: random generator for the Gaussian draw (default: torch's global one).
        eps: guard against dividing by a zero-norm random row.

    Returns:
        ``{name: tensor}`` like ``model.named_parameters()``; member ``s``'s filter ``j`` of
        every weight has the norm of the same filter of member ``s``'s weights.
    """
    return _filter_normalized(model, 2, generator, eps)


MemberLossFn = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def member_loss_surface(model: nn.Module, inputs: torch.Tensor, loss_fn: MemberLossFn,
                        directions: Sequence[Direction],
                        coords: Sequence[Sequence[float] | np.ndarray]) -> np.ndarray:
    """:func:`loss_surface` for every member of an ensemble at once.

    Member ``s`` is evaluated at ``θ_s + Σ_k c_k d_k[s]``: the coefficients are shared, the
    directions (from :func:`member_filter_normalized_direction`) are the member's own.

    Args:
        model: the ensemble at the centre point.
        inputs: the batch, ``(batch, features)`` shared or ``(S, batch, features)``.
        loss_fn: maps the output ``(S, batch, out)`` to the members' losses, shape ``(S,)``.
        directions: one or two directions with the model's parameter names.
        coords: one array of coefficients per direction.

    Returns:
        Float64 array ``(S, len(coords[0]))`` for one direction, ``(S, len(coords[1]),
        len(coords[0]))`` for two (rows of each member's grid follow the second direction).
        Parameters and buffers are restored afterwards.
    """
    def member_losses(out: torch.Tensor) -> np.ndarray:
        value = loss_fn(out).double().numpy()
        if value.ndim != 1:
            raise ValueError("loss_fn must return one loss per member, shape (S,), got "
                             f"shape {value.shape}")
        return value

    return np.moveaxis(_surface(model, inputs, member_losses, directions, coords), -1, 0)
