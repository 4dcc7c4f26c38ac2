"""Products of matrices: random-matrix growth rates and non-normal transients (lesson 3).

The backward signal of a deep net is a matrix product applied to a vector. Two facts about
such products carry lesson 3:

- For Gaussian matrices with entries ``N(0, g²/n)`` the log-norm of ``W_k ⋯ W_1 v`` grows
  linearly in ``k`` with a rate close to ``log g`` (:func:`gaussian_log_rate` gives it
  exactly), while the bound ``∏ ‖W_j‖`` grows like ``log(2g)`` per factor.
- A *non-normal* matrix (one that does not commute with its transpose) can have every
  eigenvalue inside the unit circle and still make its powers grow for a while:
  :func:`jordan_like` builds one, :func:`power_norms` measures ``‖A^k‖``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .seeding import resolve_seed
from .validation import check_float, check_int, check_tensor


def gaussian_matrices(count: int, width: int, gain: float, *,
                      generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64,
                      batch: tuple[int, ...] = ()) -> torch.Tensor:
    """Independent square matrices with i.i.d. entries ``N(0, gain² / width)``.

    Args:
        count: how many matrices (the depth of the product).
        width: ``n``, each matrix is ``n × n``.
        gain: ``g``; the entries' standard deviation is ``g / sqrt(n)``, so that
            ``E ‖W v‖² = g² ‖v‖²``.
        generator: torch random generator (default: torch's global one).
        dtype: floating dtype (default float64).
        batch: extra leading dimensions after ``count`` (default none), e.g. ``(trials,)``.

    Returns:
        A tensor of shape ``(count, *batch, width, width)``.
    """
    count = check_int("count", count, minimum=1)
    width = check_int("width", width, minimum=1)
    gain = check_float("gain", gain, nonnegative=True)
    shape = (count, *batch, width, width)
    return torch.randn(shape, generator=generator, dtype=dtype) * (gain / width ** 0.5)


def log_norms_along(matrices: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``log(‖W_k ⋯ W_1 v‖ / ‖v‖)`` for ``k = 0, …, depth``, without overflow.

    The vector is renormalized after every factor and the logs of the scale factors are
    summed, so products far beyond the floating-point range are measured exactly.

    Args:
        matrices: ``(depth, *batch, n, n)``; ``matrices[0]`` is applied first.
        v: the starting vector(s), shape ``(*batch, n)``.

    Returns:
        A tensor of shape ``(*batch, depth + 1)``; entry 0 is 0. It is ``-inf`` from the
        step on where the product maps ``v`` to exactly zero.
    """
    check_tensor("matrices", matrices)
    check_tensor("v", v)
    if matrices.ndim < 3 or matrices.shape[-1] != matrices.shape[-2]:
        raise ValueError(f"matrices must have shape (depth, ..., n, n), got "
                         f"{tuple(matrices.shape)}")
    if v.shape[-1] != matrices.shape[-1] or v.shape[:-1] != matrices.shape[1:-2]:
        raise ValueError(f"v has shape {tuple(v.shape)}; with matrices of shape "
                         f"{tuple(matrices.shape)} it must be {tuple(matrices.shape[1:-1])}")
    norm = v.norm(dim=-1, keepdim=True)
    u = v / norm
    logs = [torch.zeros(v.shape[:-1], dtype=v.dtype)]
    for w in matrices:
        u = (w @ u.unsqueeze(-1)).squeeze(-1)
        step = u.norm(dim=-1, keepdim=True)
        logs.append(logs[-1] + step.squeeze(-1).log())
        u = u / torch.where(step > 0, step, torch.ones_like(step))
    return torch.stack(logs, dim=-1)


class ProductGrowth(NamedTuple):
    """How ``‖W_k ⋯ W_1 v‖`` grows with ``k`` for random Gaussian matrices."""

    log_norm: np.ndarray   # (trials, depth + 1): log(‖W_k ⋯ W_1 v‖ / ‖v‖), k = 0..depth
    log_bound: np.ndarray | None  # (trials, depth + 1): Σ_{j ≤ k} log ‖W_j‖, or None


def product_growth(depth: int, width: int, gain: float, *, trials: int = 10,
                   seed: int | None = None, bound: bool = True) -> ProductGrowth:
    """Log-norm of ``W_k ⋯ W_1 v`` and of its bound ``∏ ‖W_j‖``, per trial, in float64.

    Args:
        depth: number of factors.
        width: ``n``; the matrices are ``n × n`` with entries ``N(0, gain² / n)``.
        gain: ``g``, the per-factor gain in root-mean-square norm.
        trials: independent repetitions (default 10), each with its own matrices and ``v``.
        seed: seed of the random generator (default None: derived from
            ``GRADFLOW_SEED``).
        bound: also compute the bound ``∏ ‖W_j‖`` (default True); it needs one singular
            value decomposition per matrix, most of the cost. With False, ``log_bound`` is
            None.

    Returns:
        A :class:`ProductGrowth`.
    """
    trials = check_int("trials", trials, minimum=1)
    gen = torch.Generator().manual_seed(resolve_seed(seed, "product-growth"))
    ws = gaussian_matrices(depth, width, gain, generator=gen, batch=(trials,))
    v = torch.randn(trials, width, generator=gen, dtype=torch.float64)
    log_norm = log_norms_along(ws, v)
    if not bound:
        return ProductGrowth(log_norm.numpy(), None)
    step_bounds = torch.linalg.matrix_norm(ws, ord=2).log().T        # (trials, depth)
    log_bound = torch.cat([torch.zeros(trials, 1, dtype=torch.float64),
                           step_bounds.cumsum(dim=1)], dim=1)
    return ProductGrowth(log_norm.numpy(), log_bound.numpy())


def log_growth_rate(log_norm: np.ndarray) -> float:
    """Least-squares slope of ``log ‖W_k ⋯ W_1 v‖`` against ``k``: the rate per factor.

    Args:
        log_norm: ``(depth + 1,)`` for one product or ``(trials, depth + 1)`` for several;
            all trials are fitted together (one line through all points).

    Returns:
        The fitted slope, in natural-log units per factor (compare with ``log g``).
    """
    y = np.atleast_2d(np.asarray(log_norm, dtype=float))
    if y.shape[1] < 2:
        raise ValueError(f"need at least 2 points per product to fit a slope, got {y.shape[1]}")
    if not np.all(np.isfinite(y)):
        raise ValueError("log_norm has non-finite entries; a product reached exactly 0")
    k = np.broadcast_to(np.arange(y.shape[1], dtype=float), y.shape)
    return float(np.polyfit(k.ravel(), y.ravel(), 1)[0])


def gaussian_log_rate(width: int, gain: float) -> float:
    """Exact ``E log(‖W v‖ / ‖v‖)`` for ``W`` with i.i.d. ``N(0, g²/n)`` entries.

    ``‖W v‖² n / (g² ‖v‖²)`` is chi-squared with ``n`` degrees of freedom for every ``v``,
    so the expectation is ``log g + ½ (ψ(n/2) + log(2/n))`` (``ψ`` the digamma function),
    a little below ``log g``. Because the direction of ``W v`` is again uniformly random,
    this is also the growth rate of the log-norm of the whole product (its top Lyapunov
    exponent).

    Args:
        width: ``n``.
        gain: ``g`` (> 0).

    Returns:
        The expected log-growth per factor, in natural-log units.
    """
    width = check_int("width", width, minimum=1)
    gain = check_float("gain", gain, positive=True)
    digamma = float(torch.special.digamma(torch.tensor(width / 2, dtype=torch.float64)))
    return float(np.log(gain) + 0.5 * (digamma + np.log(2 / width)))


def gaussian_log_rate_std(width: int) -> float:
    """Standard deviation of ``log(‖W v‖ / ‖v‖)`` for one Gaussian factor (any gain).

    ``2 log(‖W v‖/‖v‖) = log(g²/n) + log χ²_n``, and ``Var log χ²_n = ψ'(n/2)`` (``ψ'`` the
    trigamma function), so the standard deviation is ``½ √ψ'(n/2) ≈ 1/√(2n)``. The factors
    of a product are independent, so the per-factor rate ``(1/k) log(‖W_k ⋯ W_1 v‖/‖v‖)``
    of one product has standard deviation ``gaussian_log_rate_std(n) / √k`` around
    :func:`gaussian_log_rate` (lesson 3 compares both with an ensemble of products).

    Args:
        width: ``n``.

    Returns:
        The standard deviation, in natural-log units.
    """
    width = check_int("width", width, minimum=1)
    trigamma = float(torch.special.polygamma(1, torch.tensor(width / 2, dtype=torch.float64)))
    return 0.5 * trigamma ** 0.5


def jordan_like(size: int, eigenvalue: float, off_diagonal: float, *,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Upper bidiagonal matrix: ``eigenvalue`` on the diagonal, ``off_diagonal`` above it.

    All its eigenvalues equal ``eigenvalue``, so its spectral radius is ``|eigenvalue|``,
    but for ``off_diagonal ≠ 0`` it is non-normal and its norm can be far larger.

    Args:
        size: ``n`` (>= 1).
        eigenvalue: the diagonal entry.
        off_diagonal: the entries ``A[i, i + 1]``.
        dtype: floating dtype (default float64).

    Returns:
        The ``n × n`` matrix.
    """
    size = check_int("size", size, minimum=1)
    eigenvalue = check_float("eigenvalue", eigenvalue)
    off_diagonal = check_float("off_diagonal", off_diagonal)
    return (eigenvalue * torch.eye(size, dtype=dtype)
            + off_diagonal * torch.diag(torch.ones(size - 1, dtype=dtype), 1))


def power_norms(matrix: torch.Tensor, max_power: int) -> np.ndarray:
    """Spectral norms ``‖A^k‖`` for ``k = 0, …, max_power``, in float64.

    Args:
        matrix: a square matrix ``A``.
        max_power: the largest ``k``.

    Returns:
        An array of ``max_power + 1`` norms; entry 0 is ``‖I‖ = 1``.
    """
    check_tensor("matrix", matrix, ndim=2)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square, got shape {tuple(matrix.shape)}")
    max_power = check_int("max_power", max_power, minimum=0)
    a = matrix.double()
    power = torch.eye(a.shape[0], dtype=torch.float64)
    norms = [1.0]
    for _ in range(max_power):
        power = a @ power
        norms.append(float(torch.linalg.matrix_norm(power, ord=2)))
    return np.array(norms)


def spectral_radius(matrix: torch.Tensor) -> float:
    """Largest modulus of an eigenvalue of a square matrix (computed in float64).

    Args:
        matrix: a square matrix.

    Returns:
        ``ρ(A) = max |λ_i(A)|``.
    """
    check_tensor("matrix", matrix, ndim=2)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square, got shape {tuple(matrix.shape)}")
    return float(torch.linalg.eigvals(matrix.double()).abs().max())
